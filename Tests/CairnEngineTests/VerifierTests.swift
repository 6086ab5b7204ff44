import CairnCore
import CairnEngine
import CairnStorage
import CairnTestSupport
import Foundation
import Testing

/// `verify` over backups whose MANIFEST was edited (bucket write access):
/// each is reported, none stops the others from being checked.
@Suite("Verifier and edited manifests")
struct VerifierTests {
    let shard = try! KeyspaceShard(parsing: "commerce/0")
    let base = UTCTime.parseRFC3339("2026-11-01T02:00:00Z")!

    func manifest(hour: Double) -> BackupManifest {
        let start = base.addingTimeInterval(hour * 3600)
        return SyntheticBackups.manifest(shard: shard, start: start, finish: start.addingTimeInterval(60), parent: nil, seq: UInt64(hour * 100 + 1))
    }

    /// Stores `files` (name, bytes) and a manifest listing `entries` (by default, exactly those files).
    func store(_ m: BackupManifest, files: [(String, Data)], entries: [ManifestFile]? = nil, in storage: any BackupStorage) async throws -> BackupManifest {
        let repository = BackupRepository(storage: storage, logger: testLogger)
        var m = m
        for (name, data) in files {
            try await storage.writeAll(key: repository.key(shard, m.backupName, name), data: data)
        }
        m.files = entries ?? files.map { ManifestFile(name: $0.0, rawSize: Int64($0.1.count), storedSize: Int64($0.1.count), sha256: Tampering.sha256($0.1)) }
        try await Tampering.writeManifest(m, to: storage, shard: shard)
        return m
    }

    @Test("a renamed accounts file, 100,000 duplicate entries and an invalid name are each reported, and the good backup is still verified")
    func editedManifests() async throws {
        let storage = MemoryStorage()
        let good = try await SyntheticBackups.writeComplete(manifest(hour: 0), to: storage, shard: shard)

        var logical = manifest(hour: 1)
        logical.method = .logical
        let renamed = try await store(logical, files: [("dump.sql", Data("CREATE DATABASE app;\n".utf8)),
                                                        ("accounts.sql.old", Data("REPLACE INTO global_priv VALUES ();\n".utf8))], in: storage)

        let data = Data("data\n".utf8)
        let entry = ManifestFile(name: "backup.mbstream", rawSize: Int64(data.count), storedSize: Int64(data.count), sha256: Tampering.sha256(data))
        let duplicated = try await store(manifest(hour: 2), files: [("backup.mbstream", data)],
                                         entries: Array(repeating: entry, count: 100_000), in: storage)

        var outside = entry
        outside.name = "../../../outside"
        let invalid = try await store(manifest(hour: 3), files: [("backup.mbstream", data)], entries: [outside], in: storage)

        let verifier = BackupVerifier(context: RestoreContext(shard: shard, storage: storage, logger: testLogger, progress: nil))
        let report = try await verifier.verify(backup: nil)
        #expect(report.checkedBackups == [good.backupName])
        let reported = Dictionary(report.problems.map { ($0.backup, $0.message) }, uniquingKeysWith: { a, _ in a })
        #expect(reported[renamed.backupName]?.contains("accounts.sql") == true, "\(report.problems)")
        #expect(reported[duplicated.backupName]?.contains("100000 files") == true, "\(report.problems)")
        #expect(reported[invalid.backupName]?.contains("not a plain file name") == true, "\(report.problems)")
        #expect(report.problems.count == 3, "\(report.problems)")

        // Asked for by name, a bad backup is a problem to report, not a failure of verify.
        let one = try await verifier.verify(backup: invalid.backupName)
        #expect(one.problems.map(\.backup) == [invalid.backupName] && one.checkedBackups.isEmpty)

        // And a restore does not use the one missing its accounts.
        let runner = RestoreRunner(context: RestoreContext(shard: shard, storage: storage, logger: testLogger, progress: nil))
        await #expect(throws: CairnError.self) { _ = try await runner.plan(.backup(renamed.backupName)) }
    }
}
