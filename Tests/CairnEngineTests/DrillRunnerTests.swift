import CairnCore
import CairnEngine
import CairnMySQL
import CairnStorage
import CairnTestSupport
import Foundation
import Testing

/// Restore drills as a library, on the in-memory storage with a real mariadbd.
@Suite("Restore drills", .serialized)
struct DrillRunnerTests {
    let shard = try! KeyspaceShard(parsing: "commerce/0")

    func backup(_ server: TestServer, _ storage: any BackupStorage) async throws -> BackupManifest {
        var context = BackupContext(shard: shard, tabletAlias: try TabletAlias(parsing: "zone1-100"), storage: storage,
                                    mysql: server.connectionConfiguration, dataDirectory: server.dataDirectory,
                                    compression: CompressionSettings(), logger: testLogger, progress: nil)
        // Stored uncompressed, so the test can edit the dump as someone with write access to the bucket would.
        context.compression = CompressionSettings(algorithm: "none")
        guard case .completed(let manifest) = try await BackupRunner(context: context).run(BackupRequest(type: .full, engine: .logical)) else {
            throw TestSupportError("expected a completed backup")
        }
        return manifest
    }

    func drill(_ storage: any BackupStorage, scratch: String? = nil) async throws -> DrillRecord {
        try await DrillRunner(context: RestoreContext(shard: shard, storage: storage, logger: testLogger, progress: nil), ranOn: "local",
                              scratchRoot: scratch).run(.newestBackup)
    }

    @Test("a drill passes and records the reference; the next matches it; a backup changed underneath fails the next drill")
    func passThenTamper() async throws {
        try await withTestServer(serverID: 21) { server in
            try await server.query("CREATE DATABASE app; CREATE TABLE app.orders (id INT PRIMARY KEY, total INT); INSERT INTO app.orders VALUES (1, 10), (2, 20); CREATE TABLE app.customers (id INT PRIMARY KEY); INSERT INTO app.customers VALUES (7)")
            let storage = MemoryStorage()
            let manifest = try await backup(server, storage)

            let scratch = try TemporaryDirectory(prefix: "cairn-drill-scratch")
            defer { scratch.remove() }
            let first = try await drill(storage, scratch: scratch.path)
            #expect(first.passed, "\(first.summary)")
            #expect(first.reference == .recorded)
            #expect(first.fullBackup == manifest.backupName)
            #expect(first.position == manifest.position)
            #expect(Set(first.tables.map(\.table)) == ["app.orders", "app.customers"])
            #expect(first.tables.allSatisfy { $0.checkPassed && $0.checksum != nil })
            // The checksums are the source's own.
            let sourceSum = try await server.query("CHECKSUM TABLE app.orders EXTENDED").values("Checksum").first ?? nil
            #expect(first.tables.first { $0.table == "app.orders" }?.checksum == sourceSum)

            // The drill's scratch directory is gone, and its record is in storage.
            #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.path).isEmpty)
            let stored = try await DrillRepository(storage: storage, logger: testLogger).list(shard)
            #expect(stored.map(\.name) == [first.name])

            // One second later (drill names are per second), the same point again.
            try await Task.sleep(for: .seconds(1.1))
            let second = try await drill(storage)
            #expect(second.passed, "\(second.summary)")
            #expect(second.reference == .matched)
            #expect(second.referenceRecordedBy == first.name)

            // Someone with write access changes a row in the dump and makes the manifest agree.
            let repository = BackupRepository(storage: storage, logger: testLogger)
            let dump = try await storage.readAll(key: repository.key(shard, manifest.backupName, "dump.sql"), limit: 64 << 20)
            let text = try #require(String(data: dump, encoding: .utf8))
            #expect(text.contains("(2,20)"))
            try await Tampering.replaceFile("dump.sql", of: manifest.backupName, with: Data(text.replacingOccurrences(of: "(2,20)", with: "(2,99)").utf8),
                                            in: storage, shard: shard)
            try await Task.sleep(for: .seconds(1.1))
            let third = try await drill(storage)
            #expect(!third.passed)
            #expect(third.reference == .mismatched)
            let failure = try #require(third.failure)
            #expect(failure.contains("app.orders"), "\(failure)")
            #expect(!failure.contains("app.customers"), "\(failure)")
            #expect(failure.contains(first.name), "\(failure)")
            // The failed drill is recorded, newest first.
            let records = try await DrillRepository(storage: storage, logger: testLogger).list(shard)
            #expect(records.map(\.name) == [third.name, second.name, first.name])
            #expect(records.first?.passed == false)
        }
    }

    @Test("a drill whose backup fails its SHA-256 is a failed drill, recorded with the reason")
    func damagedBackup() async throws {
        try await withTestServer(serverID: 22) { server in
            try await server.query("CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY); INSERT INTO app.t VALUES (1)")
            let storage = MemoryStorage()
            let manifest = try await backup(server, storage)
            let repository = BackupRepository(storage: storage, logger: testLogger)
            let key = repository.key(shard, manifest.backupName, "dump.sql")
            var dump = try await storage.readAll(key: key, limit: 64 << 20)
            dump[dump.count / 2] ^= 0x01
            try await storage.writeAll(key: key, data: dump)

            let record = try await drill(storage)
            #expect(!record.passed)
            #expect(record.reference == .notCompared)
            let failure = try #require(record.failure)
            #expect(failure.contains("dump.sql"), "\(failure)")
            let stored = try await DrillRepository(storage: storage, logger: testLogger).list(shard)
            #expect(stored.first?.name == record.name)
            #expect(stored.first?.passed == false)
        }
    }

    @Test("a shard without backups has nothing to drill, and says how to get one")
    func nothingToDrill() async throws {
        let storage = MemoryStorage()
        await #expect(throws: CairnError.self) { try await drill(storage) }
        do {
            _ = try await drill(storage)
        } catch let error as CairnError {
            #expect(error.message.contains("cairn backup commerce/0"))
        }
        #expect(try await DrillRepository(storage: storage, logger: testLogger).list(shard).isEmpty)
    }
}
