import CairnCore
import CairnTestSupport
import Foundation
import Testing

/// Issue 12 item 2: physical delta backups (`mariadb-backup --incremental-lsn`)
/// as links of a chain, restored by preparing the full backup, applying each
/// delta, then replaying the binary logs after the last one.
@Suite("Physical delta backups", .serialized)
struct DeltaTests {
    @Test("a chain of a full backup, two deltas and incrementals restores to latest, to a time between the deltas and to a position")
    func deltaChain() async throws {
        let work = try TemporaryDirectory(prefix: "cairn-delta")
        defer { work.remove() }
        let loading = try await TestServer.start(serverID: 1)
        let source: TestServer
        do {
            try await Sysbench(server: loading, tables: 4, tableSize: 5_000).prepare()
            // A clean shutdown checkpoints the load. A delta holds every page changed after
            // the full backup's checkpoint LSN (to_lsn), so without it the whole fresh load
            // would be in the delta, as it would on a server that just loaded its data.
            try await loading.stopKeepingFiles()
            source = try await loading.restart()
        } catch {
            await loading.stop()
            throw error
        }
        do {
            try await Self.deltaChain(source: source, work: work)
        } catch {
            await source.stop()
            throw error
        }
        await source.stop()
    }

    static func deltaChain(source: TestServer, work: TemporaryDirectory) async throws {
        let storage = try ScenarioStorage.file(work.file("backups"))
        let bench = Sysbench(server: source, tables: 4, tableSize: 5_000)

        let full = try await Scenario.backup(source, storage: storage, extra: ["--type", "full"])
        #expect(full.exitCode == 0, "\(full)")
        let fullObject = try Scenario.backupObject(full)
        let fullName = try #require(fullObject["backup_name"] as? String)
        let fullLSN = try #require(fullObject["to_lsn"] as? Int, "a full backup records mariadb-backup's to_lsn: \(fullObject)")

        // 1% of the rows, on neighbouring pages: the delta holds those pages, not the tables.
        _ = try await source.query("UPDATE sbtest.sbtest1 SET k = k + 1 WHERE id <= 200")
        let delta1 = try await Scenario.backup(source, storage: storage, extra: ["--type", "delta"])
        #expect(delta1.exitCode == 0, "\(delta1)")
        let d1 = try Scenario.backupObject(delta1)
        let d1Name = try #require(d1["backup_name"] as? String)
        #expect(d1["method"] as? String == "physical" && d1["incremental"] as? Bool == true, "\(d1)")
        #expect(d1["parent_backup"] as? String == fullName)
        #expect(d1["from_lsn"] as? Int == fullLSN)
        // to_lsn is the checkpoint the backup saw, which has not moved unless the server checkpointed since.
        #expect((d1["to_lsn"] as? Int ?? 0) >= fullLSN)
        // Only the changed pages (and the small non-InnoDB files, whole): far smaller than the full backup.
        #expect(Self.storedBytes(d1) < Self.storedBytes(fullObject) / 2, "delta \(Self.storedBytes(d1)) B vs full \(Self.storedBytes(fullObject)) B")

        try await bench.write(events: 300)
        let b = try await Snapshot.take(source)
        // A second of silence after B, so a time just after it separates B from what follows.
        try await Task.sleep(for: .seconds(2))
        try await bench.write(events: 300)
        let inc1 = try await Scenario.backup(source, storage: storage, extra: ["--type", "incremental"])
        #expect(inc1.exitCode == 0, "\(inc1)")
        // The binary logs after a delta continue from the delta.
        #expect(try Scenario.backupObject(inc1)["parent_backup"] as? String == d1Name)

        try await bench.write(events: 300)
        let delta2 = try await Scenario.backup(source, storage: storage, extra: ["--type", "delta"])
        #expect(delta2.exitCode == 0, "\(delta2)")
        let d2 = try Scenario.backupObject(delta2)
        let d2Name = try #require(d2["backup_name"] as? String)
        // A delta continues the newest full backup or delta, never an incremental.
        #expect(d2["parent_backup"] as? String == d1Name)
        #expect(d2["from_lsn"] as? Int == d1["to_lsn"] as? Int)

        try await bench.write(events: 300)
        let inc2 = try await Scenario.backup(source, storage: storage, extra: ["--type", "incremental"])
        #expect(inc2.exitCode == 0, "\(inc2)")
        #expect(try Scenario.backupObject(inc2)["parent_backup"] as? String == d2Name)
        let c = try await Snapshot.take(source)

        let listing = try await Scenario.run(["backups", "commerce/0", "--json"], storage: storage)
        #expect(listing.exitCode == 0, "\(listing)")
        let entries = (try JSONSerialization.jsonObject(with: Data(listing.stdout.utf8)) as? [String: Any])?["backups"] as? [[String: Any]] ?? []
        #expect(entries.compactMap { $0["type"] as? String } == ["full", "delta", "incremental", "delta", "incremental"], "\(listing)")
        let text = try await Scenario.run(["backups", "commerce/0"], storage: storage)
        #expect(text.exitCode == 0 && text.stdout.contains("delta"), "\(text)")
        let verify = try await Scenario.run(["verify", "commerce/0"], storage: storage)
        #expect(verify.exitCode == 0 && verify.stdout.contains("in 5 backups"), "\(verify)")

        // Latest: the full backup, both deltas, then the last incremental only.
        let dry = try await Scenario.run(["restore", "commerce/0", "--local", "--target-datadir", work.file("dry"), "--dry-run", "--json"],
                                         storage: storage)
        #expect(dry.exitCode == 0, "\(dry)")
        let steps = ((try JSONSerialization.jsonObject(with: Data(dry.stdout.utf8)) as? [String: Any])?["steps"] as? [[String: Any]] ?? [])
            .compactMap { $0["backup"] as? String }
        #expect(steps == [fullName, d1Name, d2Name, try #require(try Scenario.backupObject(inc2)["backup_name"] as? String)], "\(dry)")

        try await ChainTests.expectRestore(storage: storage, into: work.file("latest"), equals: c, extra: [])
        let afterB = Date(timeIntervalSince1970: floor(b.time.timeIntervalSince1970) + 1)
        try await ChainTests.expectRestore(storage: storage, into: work.file("at-b"), equals: b,
                                           extra: ["--to-time", UTCTime.rfc3339(afterB, fractional: false)])
        try await ChainTests.expectRestore(storage: storage, into: work.file("at-b-position"), equals: b,
                                           extra: ["--to-position", b.position.description])
    }

    @Test("a delta of a full backup that records no LSN is refused in one sentence; a damaged delta is named and the target emptied")
    func refusedAndDamaged() async throws {
        try await withTestServer { source in
            let work = try TemporaryDirectory(prefix: "cairn-delta-damaged")
            defer { work.remove() }
            let store = work.file("backups")
            let storage = try ScenarioStorage.file(store)
            let shard = try KeyspaceShard(parsing: "commerce/0")
            let bench = Sysbench(server: source, tables: 2, tableSize: 1_000)
            try await bench.prepare()
            let full = try await Scenario.backup(source, storage: storage, extra: ["--type", "full"])
            #expect(full.exitCode == 0, "\(full)")
            let fullName = try #require(try Scenario.backupObject(full)["backup_name"] as? String)

            // As a full backup taken before Cairn recorded LSNs.
            let manifest = try await storage.withStorage { try await Tampering.readManifest(fullName, in: $0, shard: shard) }
            var old = manifest
            old.toLSN = nil
            try await storage.withStorage { try await Tampering.writeManifest(old, to: $0, shard: shard) }
            try await bench.write(events: 200)
            let refused = try await Scenario.backup(source, storage: storage, extra: ["--type", "delta"])
            #expect(refused.exitCode == 1, "\(refused)")
            let refusal = refused.stderr.split(separator: "\n").filter { $0.hasPrefix("error: ") }
            #expect(refusal.count == 1 && refusal[0].contains(fullName) && refusal[0].contains("take a full backup"), "\(refused)")
            try await storage.withStorage { try await Tampering.writeManifest(manifest, to: $0, shard: shard) }

            let delta = try await Scenario.backup(source, storage: storage, extra: ["--type", "delta"])
            #expect(delta.exitCode == 0, "\(delta)")
            let deltaObject = try Scenario.backupObject(delta)
            let deltaName = try #require(deltaObject["backup_name"] as? String)
            let fileName = try #require((deltaObject["files"] as? [[String: Any]])?.first?["name"] as? String)
            let path = "\(store)/commerce/0/\(deltaName)/\(fileName)"
            var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
            bytes[bytes.count / 2] ^= 0x5a
            try Data(bytes).write(to: URL(fileURLWithPath: path))

            let target = work.file("restored")
            let result = try await Scenario.run(["restore", "commerce/0", "--local", "--target-datadir", target], storage: storage)
            #expect(result.exitCode == 1, "\(result)")
            let errors = result.stderr.split(separator: "\n").filter { $0.hasPrefix("error: ") }
            #expect(errors.count == 1, "\(result)")
            let message = String(errors.first ?? "")
            #expect(message.contains(deltaName) && message.contains("damaged"), "\(result)")
            #expect(try FileManager.default.contentsOfDirectory(atPath: target).isEmpty, "the target still holds files")
        }
    }

    static func storedBytes(_ backup: [String: Any]) -> Int {
        (backup["files"] as? [[String: Any]] ?? []).reduce(0) { $0 + ($1["stored_size"] as? Int ?? 0) }
    }
}
