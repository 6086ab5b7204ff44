import CairnCore
import CairnTestSupport
import Foundation
import Testing
import CairnMySQL

/// Issue 3: incrementals chain onto a full backup; restores reach the
/// latest point, a position inside a link, and a time between links.
@Suite("Incremental chains and point-in-time restore", .serialized)
struct ChainTests {
    @Test("a chain of incrementals restores to latest, to a position and to a time", arguments: ["physical", "logical"])
    func chainScenario(engine: String) async throws {
        let work = try TemporaryDirectory(prefix: "cairn-chain-\(engine)")
        defer { work.remove() }
        try await Self.chainScenario(engine: engine, storage: try .file(work.file("backups")), work: work)
    }

    /// The scenario on any storage (S3EndToEndTests runs it against SeaweedFS);
    /// `work` holds the restored data directories.
    static func chainScenario(engine: String, storage: ScenarioStorage, work: TemporaryDirectory) async throws {
        let source = try await TestServer.start(serverID: 1)
        do {
            let bench = Sysbench(server: source, tables: 4, tableSize: 5_000)
            try await bench.prepare()

            // Full backup under load.
            var load = try bench.startWriting(rate: 50)
            try await Task.sleep(for: .milliseconds(500))
            let full = try await Scenario.backup(source, storage: storage, extra: ["--engine", engine])
            #expect(full.exitCode == 0, "\(full)")
            #expect(try Scenario.backupObject(full)["incremental"] as? Bool == false)
            try await Task.sleep(for: .seconds(1))
            await load.stop()
            let a = try await Snapshot.take(source)

            load = try bench.startWriting(rate: 50)
            try await Task.sleep(for: .seconds(1))
            let inc1 = try await Scenario.backup(source, storage: storage, extra: ["--engine", engine])
            #expect(inc1.exitCode == 0, "\(inc1)")
            let inc1Object = try Scenario.backupObject(inc1)
            #expect(inc1Object["incremental"] as? Bool == true)
            #expect(inc1Object["parent_backup"] as? String == (try Scenario.backupObject(full)["backup_name"] as? String))
            #expect(inc1Object["first_event_time"] != nil && inc1Object["last_event_time"] != nil)
            // The full backup started a new binary log, so the first incremental does not copy
            // binlog.000001, which holds the sysbench load from before the full backup.
            let inc1Binlogs = (inc1Object["files"] as? [[String: Any]] ?? []).compactMap { $0["binlog_file"] as? String }
            #expect(!inc1Binlogs.isEmpty && !inc1Binlogs.contains("binlog.000001"), "the first incremental copied \(inc1Binlogs)")
            try await Task.sleep(for: .seconds(1))
            await load.stop()
            let b = try await Snapshot.take(source)
            // At least a second of silence after B, so a time a moment after B separates it from what follows.
            try await Task.sleep(for: .seconds(2))

            load = try bench.startWriting(rate: 50)
            try await Task.sleep(for: .seconds(1))
            let inc2 = try await Scenario.backup(source, storage: storage, extra: ["--type", "incremental"])
            #expect(inc2.exitCode == 0, "\(inc2)")
            try await Task.sleep(for: .seconds(1))
            await load.stop()
            let c = try await Snapshot.take(source)
            let inc3 = try await Scenario.backup(source, storage: storage)
            #expect(inc3.exitCode == 0, "\(inc3)")
            #expect(try ReplicationPosition(parsing: try #require(try Scenario.backupObject(inc3)["position"] as? String)) == c.position)

            // Nothing new: nothing written, exit 0.
            let before = try await storage.keys(under: "commerce/0/")
            let nothing = try await Scenario.backup(source, storage: storage, extra: ["--type", "incremental"])
            #expect(nothing.exitCode == 0, "\(nothing)")
            #expect(nothing.stdout.contains("nothing_new"), "\(nothing)")
            #expect(try await storage.keys(under: "commerce/0/") == before)

            let listing = try await Scenario.run(["backups", "commerce/0"], storage: storage)
            #expect(listing.exitCode == 0 && listing.stdout.contains("incremental"), "\(listing)")
            let verify = try await Scenario.run(["verify", "commerce/0"], storage: storage)
            #expect(verify.exitCode == 0 && verify.stdout.contains("in 4 backups"), "\(verify)")

            try await expectRestore(storage: storage, into: work.file("latest"), equals: c, extra: [])
            try await expectRestore(storage: storage, into: work.file("at-a"), equals: a, extra: ["--to-position", a.position.description])
            let afterB = Date(timeIntervalSince1970: floor(b.time.timeIntervalSince1970) + 1)
            try await expectRestore(storage: storage, into: work.file("at-b"), equals: b,
                                    extra: ["--to-time", UTCTime.rfc3339(afterB, fractional: false)])

            // The dry run prints the chain and changes nothing.
            let dry = try await Scenario.run(["restore", "commerce/0", "--local", "--target-datadir", work.file("dry"),
                                              "--to-position", a.position.gtidText, "--dry-run"], storage: storage)
            #expect(dry.exitCode == 0 && dry.stdout.contains("Dry run") && dry.stdout.contains(a.position.description), "\(dry)")
            #expect(!FileManager.default.fileExists(atPath: work.file("dry")))
        } catch {
            await source.stop()
            throw error
        }
        await source.stop()
    }

    static func expectRestore(storage: ScenarioStorage, into target: String, equals snapshot: Snapshot, extra: [String],
                              sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let (result, server) = try await Scenario.restoreAndStart(storage: storage, into: target, extra: extra)
        #expect(result.exitCode == 0, "\(result)", sourceLocation: sourceLocation)
        guard let server else { return }
        let checksums = try await server.checksums()
        let position = try await server.gtidBinlogPosition()
        let slave = try await server.variable("gtid_slave_pos")
        await server.stop()
        #expect(checksums == snapshot.checksums, "restore \(extra) differs from \(snapshot)", sourceLocation: sourceLocation)
        #expect(position == snapshot.position, "restore \(extra) reached \(position), expected \(snapshot.position)", sourceLocation: sourceLocation)
        #expect(slave == snapshot.position.gtidText, sourceLocation: sourceLocation)
    }

    @Test("a missing middle incremental stops restores past it, naming it, and restores before it still work")
    func gapInChain() async throws {
        try await withTestServer { source in
            let work = try TemporaryDirectory(prefix: "cairn-gap")
            defer { work.remove() }
            let store = work.file("backups")
            try FileManager.default.createDirectory(atPath: store, withIntermediateDirectories: true)
            let storage = "file://\(store)"
            let bench = Sysbench(server: source, tables: 2, tableSize: 2_000)
            try await bench.prepare()
            #expect(try await Scenario.backup(source, storage: storage).exitCode == 0)
            var names: [String] = []
            var snapshots: [Snapshot] = []
            for _ in 0..<3 {
                try await bench.write(events: 200)
                snapshots.append(try await Snapshot.take(source))
                let inc = try await Scenario.backup(source, storage: storage)
                #expect(inc.exitCode == 0, "\(inc)")
                names.append(try #require(try Scenario.backupObject(inc)["backup_name"] as? String))
            }
            try FileManager.default.removeItem(atPath: "\(store)/commerce/0/\(names[1])")

            let latest = try await CLI.run(["restore", "commerce/0", "--local", "--target-datadir", work.file("latest"), "--storage", storage])
            #expect(latest.exitCode == 1, "\(latest)")
            #expect(latest.stderr.contains(names[1]) && latest.stderr.contains("missing"), "\(latest)")
            let past = try await CLI.run(["restore", "commerce/0", "--local", "--target-datadir", work.file("past"), "--storage", storage,
                                          "--to-position", snapshots[2].position.description])
            #expect(past.exitCode == 1 && past.stderr.contains(names[1]), "\(past)")

            let (result, server) = try await Scenario.restoreAndStart(storage: storage, into: work.file("before"),
                                                                      extra: ["--to-position", snapshots[0].position.description])
            #expect(result.exitCode == 0, "\(result)")
            if let server {
                #expect(try await server.checksums() == snapshots[0].checksums)
                await server.stop()
            }
            // A new incremental continues the whole part of the chain, never the orphan.
            try await bench.write(events: 50)
            let next = try await Scenario.backup(source, storage: storage, extra: ["--type", "incremental"])
            #expect(next.exitCode == 0, "\(next)")
        }
    }

    @Test("purged binary logs give a clear error for an incremental, and auto takes a full backup instead")
    func purgedBinlogs() async throws {
        try await withTestServer { source in
            let work = try TemporaryDirectory(prefix: "cairn-purged")
            defer { work.remove() }
            let store = work.file("backups")
            try FileManager.default.createDirectory(atPath: store, withIntermediateDirectories: true)
            let storage = "file://\(store)"
            let bench = Sysbench(server: source, tables: 2, tableSize: 2_000)
            try await bench.prepare()
            let full = try await Scenario.backup(source, storage: storage)
            #expect(full.exitCode == 0, "\(full)")
            let fullPosition = try ReplicationPosition(parsing: try #require(try Scenario.backupObject(full)["position"] as? String))
            try await bench.write(events: 100)
            // MariaDB keeps a file until its binlog checkpoint has passed; retry until only the active one is left.
            var remaining: [String] = []
            for _ in 0..<50 {
                try await source.query("FLUSH BINARY LOGS")
                let active = try await source.connect().binaryLogs().last!.name
                try await source.query("PURGE BINARY LOGS TO '\(active)'")
                remaining = try await source.connect().binaryLogs().map(\.name)
                if remaining.count == 1 { break }
                try await Task.sleep(for: .milliseconds(200))
            }
            #expect(remaining.count == 1, "binary logs were not purged: \(remaining)")
            try await bench.write(events: 10)

            let inc = try await Scenario.backup(source, storage: storage, extra: ["--type", "incremental"])
            #expect(inc.exitCode == 1, "\(inc)")
            #expect(inc.stderr.contains("purged") && inc.stderr.contains(fullPosition.description) && inc.stderr.contains("full backup"), "\(inc)")

            let auto = try await Scenario.backup(source, storage: storage)
            #expect(auto.exitCode == 0, "\(auto)")
            let object = try Scenario.backupObject(auto)
            #expect(object["incremental"] as? Bool == false)
        }
    }
}
