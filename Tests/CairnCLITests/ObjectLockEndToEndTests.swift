import CairnCore
@testable import CairnStorage
import CairnTestSupport
import Foundation
import Testing

/// Issue 14, item 5: backups taken with `object_lock` into a SeaweedFS
/// bucket with Object Lock enabled are locked by the store; prune keeps
/// them, saying until when, and they stay whole and restorable.
@Suite("Object Lock end to end (SeaweedFS)", .serialized)
struct ObjectLockEndToEndTests {
    func json(_ result: CLI.Result) throws -> [String: Any] {
        guard let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any] else {
            throw TestSupportError("not a JSON object: \(result)")
        }
        return object
    }

    @Test("backups taken with object_lock are locked in the store; prune and remove-backup leave them, saying until when, and the oldest still restores equal", .seaweedFS)
    func lockedBackupsSurvivePrune() async throws {
        let seaweed = try SharedSeaweedFS.server()
        try await withTestServer { source in
            let work = try TemporaryDirectory(prefix: "cairn-object-lock")
            defer { work.remove() }
            let storage = try await ScenarioStorage.s3(seaweed, bucket: "cairn-locked", prefix: "fleet", configDirectory: work.path,
                                                       objectLockBucket: true)
            let config = try #require(storage.configFile)
            try Data(#"{"bucket": "s3://cairn-locked/fleet", "s3_endpoint": "\#(seaweed.endpoint)", "object_lock": {"mode": "governance", "days": 1}, "retention": {"min_count": 1}}"#.utf8)
                .write(to: URL(fileURLWithPath: config))

            try await source.query("CREATE DATABASE sbtest; CREATE TABLE sbtest.t (id INT PRIMARY KEY, v VARCHAR(20)); INSERT INTO sbtest.t VALUES (1, 'first')")
            let atFirst = try await source.checksums()
            func backup() async throws -> (name: String, prune: [String: Any]?) {
                let result = try await Scenario.backup(source, storage: storage, extra: ["--engine", "logical", "--type", "full"])
                #expect(result.exitCode == 0, "\(result)")
                let object = try json(result)
                let name = try #require((object["backup"] as? [String: Any])?["backup_name"] as? String, "\(result)")
                return (name, object["prune"] as? [String: Any])
            }
            let beforeUploads = Date()
            let first = try await backup()
            try await source.query("INSERT INTO sbtest.t VALUES (2, 'second')")
            try await Task.sleep(for: .seconds(1.1))
            let second = try await backup()
            let afterUploads = Date()
            #expect(try await source.checksums() != atFirst)

            // min_count 1 would remove the first backup, but the store still locks it:
            // neither the backup's own prune nor `cairn prune` removes it.
            #expect(second.prune?["removed"] as? [String] == [], "\(second.prune ?? [:])")
            let pruned = try await Scenario.run(["prune", "commerce/0", "--json"], storage: storage)
            #expect(pruned.exitCode == 0, "\(pruned)")
            let report = try json(pruned)
            #expect(report["removed"] as? [String] == [])
            #expect(report["removal_order"] as? [String] == [])
            #expect((report["object_lock"] as? [String: Any])?["mode"] as? String == "governance")
            let decisions = report["decisions"] as? [[String: Any]] ?? []
            let firstDecision = try #require(decisions.first { $0["backup"] as? String == first.name }, "\(report)")
            #expect(firstDecision["decision"] as? String == "keep")
            let reasons = firstDecision["reasons"] as? [[String: Any]] ?? []
            #expect(reasons.map { $0["rule"] as? String } == ["object_lock"], "\(reasons)")
            let detail = reasons.first?["detail"] as? String ?? ""
            #expect(detail.hasPrefix("locked until ") && detail.hasSuffix("(object_lock governance, 1 day)"), "\(detail)")

            let text = try await Scenario.run(["prune", "commerce/0", "--dry-run"], storage: storage)
            #expect(text.exitCode == 0 && text.stdout.contains("Object lock: governance, 1 day"), "\(text)")
            #expect(text.stdout.contains("object_lock: locked until "), "\(text)")

            // remove-backup refuses too, with one sentence saying until when.
            let removal = try await Scenario.run(["remove-backup", "commerce/0", first.name, "--force"], storage: storage)
            #expect(removal.exitCode == 1, "\(removal)")
            #expect(removal.stderr.contains("backup \(first.name) of commerce/0 is locked until "), "\(removal)")

            // In the store: every object of both backups carries the lock, and its version cannot be deleted.
            try await storage.withStorage { opened in
                let s3 = try #require(opened as? S3Storage)
                let keys = try await s3.list(prefix: "commerce/0/").map(\.key).filter { $0.contains(first.name) || $0.contains(second.name) }
                #expect(keys.contains("commerce/0/\(first.name)/MANIFEST"), "\(keys)")
                for key in keys {
                    let head = try await s3.client.headObject(objectKey: s3.settings.objectKey(key))
                    #expect(head.lockMode == "GOVERNANCE", "\(key): \(head)")
                    let until = try #require(head.retainUntil, "\(key): \(head)")
                    #expect(until >= beforeUploads.addingTimeInterval(86_400).addingTimeInterval(-1)
                            && until <= afterUploads.addingTimeInterval(86_400 + 1), "\(key) is locked until \(until)")
                }
                let manifest = s3.settings.objectKey("commerce/0/\(first.name)/MANIFEST")
                let version = try #require(try await s3.client.headObject(objectKey: manifest).versionID)
                await #expect(throws: CairnError.self) { try await s3.client.deleteObjectVersion(objectKey: manifest, versionID: version) }
            }

            // The first backup is whole and restores what the source held then.
            let verify = try await Scenario.run(["verify", "commerce/0"], storage: storage)
            #expect(verify.exitCode == 0, "\(verify)")
            let (restore, restored) = try await Scenario.restoreAndStart(storage: storage, into: work.file("restored"),
                                                                         extra: ["--backup", first.name])
            #expect(restore.exitCode == 0, "\(restore)")
            let target = try #require(restored)
            do {
                #expect(try await target.checksums() == atFirst)
            } catch {
                await target.stop()
                throw error
            }
            await target.stop()
        }
    }
}
