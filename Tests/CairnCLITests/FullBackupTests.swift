import CairnCore
import CairnTestSupport
import Foundation
import Testing

/// Issue 2: full backups under load restore into a data directory a stock
/// mariadbd starts with, consistent with the position they record.
@Suite("Full backup and restore under load", .serialized)
struct FullBackupTests {
    @Test("a full backup taken while sysbench writes is consistent with its GTID position", arguments: ["physical", "logical"])
    func consistentUnderLoad(engine: String) async throws {
        let work = try TemporaryDirectory(prefix: "cairn-full-\(engine)")
        defer { work.remove() }
        try await Self.consistentUnderLoad(engine: engine, storage: try .file(work.file("backups")), work: work)
    }

    /// The scenario on any storage (S3EndToEndTests runs it against SeaweedFS);
    /// `work` holds the restored data directory.
    static func consistentUnderLoad(engine: String, storage: ScenarioStorage, work: TemporaryDirectory) async throws {
        let source = try await TestServer.start(serverID: 1)
        var restored: TestServer? = nil
        do {
            let bench = Sysbench(server: source, tables: 4, tableSize: 10_000)
            try await bench.prepare()

            let load = try bench.startWriting(threads: 2)
            try await Task.sleep(for: .seconds(1))
            let backup = try await Scenario.backup(source, storage: storage, extra: ["--engine", engine, "--type", "full"])
            try await Task.sleep(for: .seconds(1))
            await load.stop()
            #expect(backup.exitCode == 0, "\(backup)")
            let manifest = try Scenario.backupObject(backup)
            #expect(manifest["method"] as? String == engine)
            let backupPosition = try ReplicationPosition(parsing: try #require(manifest["position"] as? String))
            let stopped = try await Snapshot.take(source)
            // The load really wrote during and after the backup.
            #expect(stopped.position != backupPosition)
            #expect(stopped.position.contains(backupPosition))

            let (result, server) = try await Scenario.restoreAndStart(storage: storage, into: work.file("restored"))
            #expect(result.exitCode == 0, "\(result)")
            restored = server
            guard let restored = server else { throw TestSupportError("restore failed: \(result)") }
            #expect(!FileManager.default.fileExists(atPath: work.file("restored/CAIRN-RESTORE-IN-PROGRESS")))
            let slavePos = try await restored.variable("gtid_slave_pos")
            #expect(slavePos == backupPosition.gtidText)
            #expect(try await restored.gtidBinlogPosition() == backupPosition)

            // Replaying the source's own binlog from the backup's position must reproduce the source exactly.
            try await Scenario.replaySourceBinlogs(from: backupPosition, to: stopped.position, source: source, target: restored)
            #expect(try await restored.checksums() == stopped.checksums)
            #expect(try await restored.gtidBinlogPosition() == stopped.position)
        } catch {
            await restored?.stop()
            await source.stop()
            throw error
        }
        await restored?.stop()
        await source.stop()
    }
}
