import CairnCore
import CairnStorage
import CairnTestSupport
import Foundation
import Testing

/// Issue 17, item 5: one oversized MANIFEST must not block the shard.
@Suite("Hardening: an oversized MANIFEST", .serialized)
struct HardeningManifestTests {
    let shard = try! KeyspaceShard(parsing: "commerce/0")

    func json(_ result: CLI.Result) throws -> [String: Any] {
        guard let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any] else {
            throw TestSupportError("not a JSON object: \(result)")
        }
        return object
    }

    @Test("a 17 MB MANIFEST is listed as unreadable with the reason; backups, verify, restore --dry-run and prune --dry-run work; remove-backup --force removes it")
    func oversizedManifest() async throws {
        let work = try TemporaryDirectory(prefix: "cairn-big-manifest")
        defer { work.remove() }
        let root = work.file("backups")
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let storage = FileStorage(root: root)
        let url = "file://\(root)"
        let now = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))

        // A good full backup, and a newer one whose MANIFEST is a real manifest padded to 17 MB.
        let good = try await SyntheticBackups.writeComplete(
            SyntheticBackups.manifest(shard: shard, start: now.addingTimeInterval(-7200), finish: now.addingTimeInterval(-7100), parent: nil, seq: 10),
            to: storage, shard: shard)
        var big = try await SyntheticBackups.writeComplete(
            SyntheticBackups.manifest(shard: shard, start: now.addingTimeInterval(-3600), finish: now.addingTimeInterval(-3500), parent: nil, seq: 20),
            to: storage, shard: shard)
        big.hostname = "padded"
        var padded = try CairnJSON.encoder().encode(big)
        padded.append(Data(repeating: 0x20, count: 17_000_000 - padded.count))
        let repository = BackupRepository(storage: storage, logger: testLogger)
        try await storage.writeAll(key: repository.key(shard, big.backupName, BackupManifest.fileName), data: padded)

        let backups = try await CLI.run(["backups", "commerce/0", "--storage", url, "--json"])
        #expect(backups.exitCode == 0, "\(backups)")
        let entries = try json(backups)["backups"] as? [[String: Any]] ?? []
        let bigEntry = entries.first { $0["name"] as? String == big.backupName }
        #expect(bigEntry?["status"] as? String == "unreadable", "\(backups)")
        let problem = bigEntry?["problem"] as? String ?? ""
        #expect(problem.contains("17000000 bytes") && problem.contains("16 MiB limit"), "\(problem)")
        #expect(entries.first { $0["name"] as? String == good.backupName }?["status"] as? String == "complete", "\(backups)")

        // verify checks the good backup and reports the big one as a problem.
        let verify = try await CLI.run(["verify", "commerce/0", "--storage", url, "--json"])
        #expect(verify.exitCode == 1, "\(verify)")
        let report = try json(verify)
        #expect(report["checked_backups"] as? [String] == [good.backupName], "\(verify)")
        #expect((report["problems"] as? [[String: Any]])?.map { $0["backup"] as? String } == [big.backupName], "\(verify)")

        let restore = try await CLI.run(["restore", "commerce/0", "--local", "--target-datadir", work.file("restored"),
                                         "--storage", url, "--dry-run"])
        #expect(restore.exitCode == 0, "\(restore)")
        #expect(restore.stdout.contains(good.backupName), "\(restore)")

        let config = work.file("cairn.json")
        try Data(#"{"bucket": "\#(url)", "retention": {"min_count": 1}}"#.utf8).write(to: URL(fileURLWithPath: config))
        let prune = try await CLI.run(["prune", "commerce/0", "--config", config, "--dry-run"])
        #expect(prune.exitCode == 0, "\(prune)")
        #expect(prune.stderr.contains("warning: backup \(big.backupName)"), "\(prune)")

        let remove = try await CLI.run(["remove-backup", "commerce/0", big.backupName, "--storage", url, "--force"])
        #expect(remove.exitCode == 0, "\(remove)")
        let left = try await repository.list(shard)
        #expect(left.map(\.name) == [good.backupName])
        #expect(!FileManager.default.fileExists(atPath: "\(root)/commerce/0/\(big.backupName)/\(BackupManifest.fileName)"))
    }
}
