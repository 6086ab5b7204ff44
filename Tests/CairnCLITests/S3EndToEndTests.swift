#if canImport(Glibc)
import Glibc
#endif
import CairnCore
@testable import CairnStorage
import CairnTestSupport
import Foundation
import Testing
import CairnSystem

/// Issue 4: the cairn binary backs up to and restores from an S3-compatible
/// store (a real SeaweedFS that checks every signature), configured the way
/// an operator would: a `--config` file with the bucket and endpoint, and
/// the keys in `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`.
///
/// A listing of 1,536 objects under one prefix being complete (continuation
/// tokens followed) is checked by the storage conformance suite
/// (`listsThousandsOfObjects`, in S3StorageTests for both the s3:// and the
/// gs:// flavour), not again here.
@Suite("Backups on S3 (SeaweedFS) end to end", .serialized)
struct S3EndToEndTests {
    static let bucket = "cairn-e2e"
    static let prefix = "fleet/backups"

    /// The test's own SeaweedFS (the `.seaweedFS` trait starts it and always removes it).
    func withSeaweedFS(_ body: (SeaweedFS) async throws -> Void) async throws {
        try await body(try SharedSeaweedFS.server())
    }

    @Test("a full backup taken under load into S3 is consistent with its GTID position", .seaweedFS, arguments: ["physical", "logical"])
    func fullBackupConsistency(engine: String) async throws {
        try await withSeaweedFS { server in
            let work = try TemporaryDirectory(prefix: "cairn-s3-full-\(engine)")
            defer { work.remove() }
            let storage = try await ScenarioStorage.s3(server, bucket: Self.bucket, prefix: Self.prefix, configDirectory: work.path,
                                                       settings: ["upload_concurrency": 4])
            try await FullBackupTests.consistentUnderLoad(engine: engine, storage: storage, work: work)
        }
    }

    @Test("a chain of incrementals in S3 restores to latest, to a position and to a time", .seaweedFS)
    func chain() async throws {
        try await withSeaweedFS { server in
            let work = try TemporaryDirectory(prefix: "cairn-s3-chain")
            defer { work.remove() }
            let storage = try await ScenarioStorage.s3(server, bucket: Self.bucket, prefix: Self.prefix, configDirectory: work.path,
                                                       settings: ["upload_concurrency": 4])
            try await ChainTests.chainScenario(engine: "physical", storage: storage, work: work)
        }
    }

    @Test("restores from S3 through the SQL thread equal the source and the client pipe's restores, for latest, a position and a time", .seaweedFS)
    func replayMatchesClientPipe() async throws {
        try await withSeaweedFS { server in
            let work = try TemporaryDirectory(prefix: "cairn-s3-replay")
            defer { work.remove() }
            let storage = try await ScenarioStorage.s3(server, bucket: Self.bucket, prefix: "replay", configDirectory: work.path)
            try await ReplayTests.matchesClientPipe(storage: storage, work: work)
        }
    }

    /// The stored objects directly under `commerce/0/<backup>/`, with the
    /// ETag SeaweedFS reports for each, through the S3 backend itself.
    func objects(of backup: String, in storage: ScenarioStorage) async throws -> [S3Messages.ListedObject] {
        try await storage.withStorage { opened in
            let s3 = try #require(opened as? S3Storage)
            return try await s3.client.listObjects(prefix: s3.settings.objectKey("commerce/0/\(backup)/"))
        }
    }

    func unfinishedUploads(in storage: ScenarioStorage) async throws -> [(key: String, uploadID: String)] {
        try await storage.withStorage { opened in
            try await #require(opened as? S3Storage).unfinishedUploads(prefix: "commerce/0/")
        }
    }

    @Test("a backup of several hundred MiB goes up with upload_concurrency 4 as one multipart object per file, and restores equal", .seaweedFS)
    func largeMultipartBackup() async throws {
        try await withSeaweedFS { server in
            let work = try TemporaryDirectory(prefix: "cairn-s3-large")
            defer { work.remove() }
            let storage = try await ScenarioStorage.s3(server, bucket: Self.bucket, prefix: Self.prefix, configDirectory: work.path,
                                                       settings: ["upload_concurrency": 4, "s3_part_size": "5MiB"])
            // A larger buffer pool only makes sysbench's load faster.
            let source = try await TestServer.start(serverID: 1, extraArguments: ["--innodb-buffer-pool-size=512M"])
            var restored: TestServer? = nil
            do {
                try await Sysbench(server: source, tables: Self.largeTables, tableSize: Self.largeTableSize).prepare()
                let expected = try await Snapshot.take(source)

                let backup = try await Scenario.backup(source, storage: storage, extra: ["--type", "full", "--engine", "physical"])
                #expect(backup.exitCode == 0, "\(backup)")
                let manifest = try Scenario.backupObject(backup)
                let name = try #require(manifest["backup_name"] as? String)
                let files = try #require(manifest["files"] as? [[String: Any]])
                #expect(files.count == 1)
                let file = try #require(files.first)
                let fileName = try #require(file["name"] as? String)
                let raw = try #require((file["raw_size"] as? NSNumber)?.int64Value)
                let stored = try #require((file["stored_size"] as? NSNumber)?.int64Value)
                // Several hundred MiB streamed, and far more than one part stored.
                #expect(raw >= 300 << 20, "the backup stream was only \(raw) bytes")
                let partSize = S3PartSizing.defaultMinimumPartSize
                #expect(stored > 4 * partSize, "the stored file is only \(stored) bytes")

                // One object per file: no part or temporary object is visible.
                let objects = try await objects(of: name, in: storage)
                let base = "\(Self.prefix)/commerce/0/\(name)/"
                #expect(objects.map(\.key) == [base + "MANIFEST", base + "STARTED", base + fileName], "\(objects.map(\.key))")
                let data = try #require(objects.first { $0.key == base + fileName })
                #expect(data.size == stored)
                // A multipart object's ETag ends in the number of its parts.
                let parts = (stored + partSize - 1) / partSize
                #expect(data.etag?.hasSuffix("-\(parts)\"") == true, "ETag \(data.etag ?? "none") is not that of \(parts) parts")
                #expect(try await unfinishedUploads(in: storage).isEmpty)

                let (result, restoredServer) = try await Scenario.restoreAndStart(storage: storage, into: work.file("restored"))
                #expect(result.exitCode == 0, "\(result)")
                restored = restoredServer
                let target = try #require(restoredServer)
                #expect(try await target.checksums() == expected.checksums)
                #expect(try await target.gtidBinlogPosition() == expected.position)
            } catch {
                await restored?.stop()
                await source.stop()
                throw error
            }
            await restored?.stop()
            await source.stop()
        }
    }

    /// 4 x 300,000 sysbench rows: about 290 MiB of InnoDB data; the physical
    /// stream is about 400 MiB, stored as about 135 MiB in 28 parts of 5 MiB
    /// (the test takes about a minute).
    static let largeTables = 4
    static let largeTableSize = 300_000

    /// How the store goes away in the middle of an upload.
    enum StoreStop: String, Sendable, CaseIterable {
        /// SIGTERM: SeaweedFS answers 500 InternalError while it shuts down (then SIGKILL after 5 s).
        case shutdown
        /// SIGKILL: from then on, connections are refused (each attempt waits out the connect timeout).
        case crash
    }

    @Test("SeaweedFS stopping mid-upload fails the backup after its retries; after a restart the next backup succeeds and discards the leftover upload", .seaweedFS,
          arguments: StoreStop.allCases)
    func storeStopsMidBackup(_ stop: StoreStop) async throws {
        try await withSeaweedFS { server in
            let work = try TemporaryDirectory(prefix: "cairn-s3-fault")
            defer { work.remove() }
            // One retry, so the failure comes soon: each attempt on a refused
            // connection waits out the 10-second connect timeout (docs/STORAGE.md).
            let storage = try await ScenarioStorage.s3(server, bucket: Self.bucket, prefix: Self.prefix, configDirectory: work.path,
                                                       settings: ["upload_concurrency": 4, "s3_max_retries": 1])
            try await withTestServer { source in
                try await Sysbench(server: source, tables: 4, tableSize: 100_000).prepare()

                let child = try CLI.start(["backup", "commerce/0", "--local", "--mysql-socket", source.socketPath,
                                           "--mysql-datadir", source.dataDirectory, "--type", "full"] + storage.arguments,
                                          environment: storage.environment)
                // Wait until the data file's multipart upload exists, then stop the store under it.
                var uploading = false
                for _ in 0..<600 {
                    let pending = try await unfinishedUploads(in: storage)
                    if !pending.isEmpty {
                        uploading = true
                        break
                    }
                    try await Task.sleep(for: .milliseconds(50))
                }
                #expect(uploading, "the backup never started a multipart upload")
                let stoppedAt = ContinuousClock.now
                switch stop {
                case .shutdown: await server.stop()
                case .crash: await server.kill()
                }
                let exit = await child.wait()
                let stderr = await child.capturedError()
                // Bounded: the retries and the connect timeouts, not a hang.
                #expect(ContinuousClock.now - stoppedAt < .seconds(120))
                #expect(exit.code == 1, "backup exited with \(exit); stderr: \(stderr)")
                #expect(stderr.contains("retrying"), "no retry was logged: \(stderr)")
                let lastLine = stderr.split(separator: "\n").last.map(String.init) ?? ""
                #expect(lastLine.hasPrefix("error: ") && lastLine.contains(Self.bucket), "\(stderr)")

                try await server.restart()
                let afterFailure = try await storage.keys(under: "commerce/0/")
                let failedNames = Set(afterFailure.compactMap { $0.split(separator: "/").dropFirst(2).first.map(String.init) })
                #expect(failedNames.count == 1, "\(afterFailure)")
                let failed = try #require(failedNames.first)
                // Nothing but the marker: no MANIFEST, no data object.
                #expect(afterFailure == ["commerce/0/\(failed)/STARTED"], "\(afterFailure)")
                // The store was gone when the writer tried to abort its upload.
                let leftover = try await unfinishedUploads(in: storage)
                #expect(leftover.count >= 1 && leftover.allSatisfy { $0.key.hasPrefix("commerce/0/\(failed)/") }, "\(leftover)")

                let next = try await Scenario.backup(source, storage: storage, extra: ["--type", "full"])
                #expect(next.exitCode == 0, "\(next)")
                let nextName = try Scenario.backupObject(next)["backup_name"] as? String
                #expect(try await unfinishedUploads(in: storage).isEmpty, "the failed backup's multipart upload was not aborted")

                let listing = try await Scenario.run(["backups", "commerce/0", "--json"], storage: storage)
                #expect(listing.exitCode == 0, "\(listing)")
                let object = try JSONSerialization.jsonObject(with: Data(listing.stdout.utf8)) as? [String: Any]
                let entries = (object?["backups"] as? [[String: Any]] ?? []).map { ($0["name"] as? String ?? "", $0["status"] as? String ?? "") }
                #expect(entries.count == 2 && entries.contains { $0 == (failed, "incomplete") } && entries.contains { $0 == (nextName ?? "", "complete") },
                        "\(listing.stdout)")

                let expected = try await Snapshot.take(source)
                let (result, restored) = try await Scenario.restoreAndStart(storage: storage, into: work.file("restored"))
                #expect(result.exitCode == 0, "\(result)")
                if let restored {
                    #expect(try await restored.checksums() == expected.checksums)
                    await restored.stop()
                }
            }
        }
    }
}
