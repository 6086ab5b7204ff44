import CairnCore
import CairnEngine
import CairnMySQL
import CairnTestSupport
import Foundation
import NIOCore
import Testing

/// Issue 12: binary logs are replayed by the restore server's SQL thread.
/// Restores reach the source's data for latest, a GTID position and a time,
/// and leave the same GTID state and binary log as the `mariadb-binlog |
/// mariadb` path (`--binlog-replay client`) leaves.
@Suite("Replay through the restore server's SQL thread", .serialized)
struct ReplayTests {
    @Test("restores through the SQL thread equal the source and the client pipe's restores, for latest, a position and a time")
    func matchesClientPipe() async throws {
        let work = try TemporaryDirectory(prefix: "cairn-replay")
        defer { work.remove() }
        try await Self.matchesClientPipe(storage: try .file(work.file("backups")), work: work)
    }

    /// The scenario on any storage (S3EndToEndTests runs it against SeaweedFS).
    static func matchesClientPipe(storage: ScenarioStorage, work: TemporaryDirectory) async throws {
        let source = try await TestServer.start(serverID: 1)
        do {
            let bench = Sysbench(server: source, tables: 2, tableSize: 2_000)
            try await bench.prepare()
            let full = try await Scenario.backup(source, storage: storage, extra: ["--type", "full"])
            #expect(full.exitCode == 0, "\(full)")
            try await bench.write(events: 300)
            let inc1 = try await Scenario.backup(source, storage: storage, extra: ["--type", "incremental"])
            #expect(inc1.exitCode == 0, "\(inc1)")
            try await bench.write(events: 300)
            // A position and a time inside the second incremental: both are cuts.
            let middle = try await Snapshot.take(source)
            try await Task.sleep(for: .seconds(2))
            try await bench.write(events: 300)
            let inc2 = try await Scenario.backup(source, storage: storage, extra: ["--type", "incremental"])
            #expect(inc2.exitCode == 0, "\(inc2)")
            let latest = try await Snapshot.take(source)

            let afterMiddle = Date(timeIntervalSince1970: floor(middle.time.timeIntervalSince1970) + 1)
            let targets: [(name: String, arguments: [String], snapshot: Snapshot)] = [
                ("latest", [], latest),
                ("position", ["--to-position", middle.position.description], middle),
                ("time", ["--to-time", UTCTime.rfc3339(afterMiddle, fractional: false)], middle),
            ]
            for target in targets {
                let replayed = try await RestoredState.restore(storage: storage, into: work.file("\(target.name)-sql"),
                                                                arguments: target.arguments)
                let piped = try await RestoredState.restore(storage: storage, into: work.file("\(target.name)-client"),
                                                             arguments: target.arguments + ["--binlog-replay", "client"])
                #expect(replayed.checksums == target.snapshot.checksums, "the \(target.name) restore differs from the source")
                #expect(replayed.gtid["gtid_binlog_pos"] == target.snapshot.position.gtidText, "\(target.name): \(replayed.gtid)")
                #expect(replayed.gtid == piped.gtid, "\(target.name): SQL thread \(replayed.gtid), client pipe \(piped.gtid)")
                #expect(replayed.slaveTable == piped.slaveTable, "\(target.name): mysql.gtid_slave_pos differs")
                #expect(replayed.binlogEvents == piped.binlogEvents,
                        "\(target.name): the restored binary logs differ (\(replayed.binlogEvents.count) and \(piped.binlogEvents.count) events)")
                #expect(replayed.binlogTransactions == piped.binlogTransactions, "\(target.name): GTIDs or timestamps differ")
                #expect(replayed.binlogTransactions.count > 0)
                #expect(replayed.leftovers.isEmpty, "\(target.name): the SQL thread's files stayed behind: \(replayed.leftovers)")
                #expect(replayed.replicaConfigured == false, "\(target.name): the restored server is still configured as a replica")

                // With parallel appliers: the same outcome; the GTID events also carry group-commit ids.
                let parallel = try await RestoredState.restore(storage: storage, into: work.file("\(target.name)-parallel"),
                                                               arguments: target.arguments + ["--replay-threads", "4"])
                #expect(parallel.checksums == target.snapshot.checksums, "the \(target.name) restore with 4 appliers differs from the source")
                #expect(parallel.gtid == piped.gtid, "\(target.name), 4 appliers: \(parallel.gtid), client pipe \(piped.gtid)")
                #expect(parallel.slaveTable == piped.slaveTable, "\(target.name), 4 appliers: mysql.gtid_slave_pos differs")
                #expect(parallel.binlogEventsWithoutCommitIDs == piped.binlogEventsWithoutCommitIDs,
                        "\(target.name), 4 appliers: the restored binary logs differ (\(parallel.binlogEvents.count) and \(piped.binlogEvents.count) events)")
                #expect(parallel.binlogTransactions == piped.binlogTransactions, "\(target.name), 4 appliers: GTIDs or timestamps differ")
                #expect(parallel.leftovers.isEmpty && !parallel.replicaConfigured, "\(target.name), 4 appliers: \(parallel.leftovers)")
            }
        } catch {
            await source.stop()
            throw error
        }
        await source.stop()
    }

    @Test("a damaged relay log is named in one sentence and the target directory is emptied")
    func damagedRelayLog() async throws {
        try await withTestServer { source in
            let work = try TemporaryDirectory(prefix: "cairn-replay-damaged")
            defer { work.remove() }
            // Stored uncompressed, so the damage can be made with a matching SHA-256:
            // only the SQL thread's event checksums can find it.
            let store = work.file("backups")
            try FileManager.default.createDirectory(atPath: store, withIntermediateDirectories: true)
            let config = work.file("cairn.json")
            try Data(#"{"bucket": "file://\#(store)", "compression": "none"}"#.utf8).write(to: URL(fileURLWithPath: config))
            let storage = ScenarioStorage(url: "file://\(store)", configFile: config, environment: [:])
            let bench = Sysbench(server: source, tables: 2, tableSize: 1_000)
            try await bench.prepare()
            #expect(try await Scenario.backup(source, storage: storage, extra: ["--type", "full"]).exitCode == 0)
            try await bench.write(events: 200)
            let inc = try await Scenario.backup(source, storage: storage, extra: ["--type", "incremental"])
            #expect(inc.exitCode == 0, "\(inc)")
            let name = try #require(try Scenario.backupObject(inc)["backup_name"] as? String)
            let shard = try KeyspaceShard(parsing: "commerce/0")

            let manifest = try await storage.withStorage { try await Tampering.readManifest(name, in: $0, shard: shard) }
            let file = try #require(manifest.files.first)
            let binlogName = try #require(file.binlogFile)
            let path = "\(store)/commerce/0/\(name)/\(file.name)"
            var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
            // A byte in the middle of the event after a transaction's GTID event, halfway through the file.
            var scanner = BinlogScanner(fileName: binlogName)
            let events = try scanner.feed(ByteBuffer(bytes: bytes))
            let gtid = try #require(events.dropFirst(events.count / 2).first)
            func le32(_ at: Int) -> Int { Int(bytes[at]) | Int(bytes[at + 1]) << 8 | Int(bytes[at + 2]) << 16 | Int(bytes[at + 3]) << 24 }
            let next = Int(gtid.offset) + le32(Int(gtid.offset) + 9)
            bytes[next + 19 + (le32(next + 9) - 19) / 2] ^= 0x5a
            try await storage.withStorage {
                try await Tampering.replaceFile(file.name, of: name, with: Data(bytes), in: $0, shard: shard)
            }

            let target = work.file("restored")
            let result = try await Scenario.run(["restore", "commerce/0", "--local", "--target-datadir", target], storage: storage)
            #expect(result.exitCode == 1, "\(result)")
            // Above it, log lines (the temporary server's error log); the error itself is one line.
            let errors = result.stderr.split(separator: "\n").filter { $0.hasPrefix("error: ") }
            #expect(errors.count == 1, "\(result)")
            let message = String(errors.first ?? "")
            #expect(message.contains(binlogName) && message.contains(name) && message.contains("relay log"), "\(result)")
            #expect(try FileManager.default.contentsOfDirectory(atPath: target).isEmpty, "the target still holds files")
        }
    }
}

/// What a restored data directory holds, read by starting a server on it.
struct RestoredState {
    var checksums: [String: String]
    var gtid: [String: String]
    var slaveTable: [[String?]]
    /// Every event of the restored binary logs: type, server id, and for GTID
    /// and GTID-list events their text. Not `Annotate_rows`, whose text is the
    /// original statement through the SQL thread and a `BINLOG '...'`
    /// statement through the client pipe, nor positions and xids.
    var binlogEvents: [String]
    /// The same without the group-commit ids (`cid=N`) of GTID events: which
    /// transactions the restore server happened to commit together, which
    /// parallel appliers record and one applier does not.
    var binlogEventsWithoutCommitIDs: [String] {
        binlogEvents.map { $0.replacing(#/ cid=\d+/#, with: "") }
    }
    /// Each transaction's GTID and timestamp in the restored binary logs.
    var binlogTransactions: [String]
    var leftovers: [String]
    var replicaConfigured: Bool

    static func restore(storage: ScenarioStorage, into target: String, arguments: [String],
                        sourceLocation: SourceLocation = #_sourceLocation) async throws -> RestoredState {
        let (result, started) = try await Scenario.restoreAndStart(storage: storage, into: target, extra: arguments)
        #expect(result.exitCode == 0, "\(result)", sourceLocation: sourceLocation)
        let server = try #require(started, sourceLocation: sourceLocation)
        do {
            let leftovers = try FileManager.default.contentsOfDirectory(atPath: target).filter {
                $0.hasPrefix("cairn-relay") || $0.hasPrefix("cairn-staged") || $0 == "master.info" || $0 == "relay-log.info"
            }
            var gtid: [String: String] = [:]
            for name in ["gtid_binlog_pos", "gtid_slave_pos", "gtid_current_pos", "gtid_binlog_state"] {
                gtid[name] = try await server.variable(name) ?? ""
            }
            let slaveTable = try await server.query("SELECT domain_id, server_id, seq_no FROM mysql.gtid_slave_pos ORDER BY domain_id, seq_no").rows
            let replica = try await server.query("SHOW SLAVE STATUS").rows.isEmpty == false
            var events: [String] = []
            var transactions: [String] = []
            let logs = try await server.query("SHOW BINARY LOGS").rows.compactMap { $0.first ?? nil }
            for log in logs {
                let rows = try await server.query("SHOW BINLOG EVENTS IN '\(log)'")
                let types = rows.values("Event_type"), servers = rows.values("Server_id"), infos = rows.values("Info")
                for i in types.indices where types[i] != "Annotate_rows" {
                    let type = types[i] ?? ""
                    let info = (type == "Gtid" || type == "Gtid_list") ? " \(infos[i] ?? "")" : ""
                    events.append("\(type) \(servers[i] ?? "")\(info)")
                }
                var scanner = BinlogScanner(fileName: log)
                let data = try Data(contentsOf: URL(fileURLWithPath: "\(target)/\(log)"))
                transactions += try scanner.feed(ByteBuffer(bytes: data)).map { "\($0.gtid) \($0.timestamp)" }
            }
            let state = RestoredState(checksums: try await server.checksums(), gtid: gtid, slaveTable: slaveTable,
                                      binlogEvents: events, binlogTransactions: transactions, leftovers: leftovers,
                                      replicaConfigured: replica)
            await server.stop()
            return state
        } catch {
            await server.stop()
            throw error
        }
    }
}
