#if canImport(Glibc)
import Glibc
#endif
import CairnCore
import CairnEngine
import CairnStorage
import CairnSystem
import CairnTestSupport
import Foundation
import NIOCore
import Testing

/// Issue 14 end to end, with the cairn binary on file storage and on S3
/// (SeaweedFS): encrypted chains (full, incrementals, archived segments)
/// restore equal to the source; a missing key, a wrong key, a flipped byte
/// and a cut file are each refused with their sentence and nothing
/// restored; rotation, also stopped midway, keeps everything restorable.
@Suite("Encryption at rest end to end", .serialized)
struct EncryptionTests {
    static let bucket = "cairn-crypt"
    static let shard = "commerce/0"

    /// A random master key file: base64 of 32 bytes.
    static func writeKey(_ path: String) throws {
        var bytes = [UInt8](repeating: 0, count: 32)
        var g = SystemRandomNumberGenerator()
        for i in bytes.indices { bytes[i] = UInt8.random(in: 0...255, using: &g) }
        try (Data(bytes).base64EncodedString() + "\n").write(toFile: path, atomically: true, encoding: .utf8)
    }

    /// Storage configurations of one place that differ only in `encryption`.
    struct Place {
        let work: TemporaryDirectory
        let server: SeaweedFS?
        let prefix: String

        func storage(_ name: String, encryption: [String: any Sendable]?) async throws -> ScenarioStorage {
            let settings: [String: any Sendable] = encryption.map { ["encryption": $0] } ?? [:]
            if let server {
                return try await ScenarioStorage.s3(server, bucket: EncryptionTests.bucket, prefix: prefix,
                                                    configDirectory: work.file("config-\(name)"), settings: settings)
            }
            let directory = work.file("backups")
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            var object: [String: Any] = ["bucket": "file://\(directory)"]
            if let encryption { object["encryption"] = encryption }
            let path = work.file("config-\(name).json")
            try JSONSerialization.data(withJSONObject: object).write(to: URL(fileURLWithPath: path))
            return ScenarioStorage(url: "file://\(directory)", configFile: path, environment: [:])
        }
    }

    func withPlace(_ kind: String, _ body: (Place) async throws -> Void) async throws {
        let work = try TemporaryDirectory(prefix: "cairn-crypt-\(kind)")
        defer { work.remove() }
        let server = kind == "s3" ? try SharedSeaweedFS.server() : nil
        try await body(Place(work: work, server: server, prefix: "crypt-\(UInt32.random(in: 0...UInt32.max))"))
    }

    func manifests(_ storage: ScenarioStorage) async throws -> [BackupManifest] {
        try await storage.withStorage { try await BackupRepository(storage: $0, logger: testLogger).list(try KeyspaceShard(parsing: Self.shard)).manifests }
    }

    func segments(_ storage: ScenarioStorage) async throws -> [ArchiveSegmentManifest] {
        try await storage.withStorage { try await BackupRepository(storage: $0, logger: testLogger).listArchive(try KeyspaceShard(parsing: Self.shard)).segments }
    }

    func isEmptyOrMissing(_ path: String) -> Bool {
        ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).isEmpty
    }

    /// Expects a restore into a new directory to fail with `phrase` in its one-line error and to leave nothing.
    func expectRefused(_ storage: ScenarioStorage, into target: String, _ phrases: [String],
                       sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let result = try await Scenario.run(["restore", Self.shard, "--local", "--target-datadir", target], storage: storage)
        #expect(result.exitCode == 1, "\(result)", sourceLocation: sourceLocation)
        for phrase in phrases {
            #expect(result.stderr.contains(phrase), "stderr lacks \"\(phrase)\": \(result.stderr)", sourceLocation: sourceLocation)
        }
        // One error sentence (a logical restore also logs the temporary server's log tail before it).
        let errors = result.stderr.split(separator: "\n").filter { $0.hasPrefix("error:") }
        #expect(errors.count == 1 && errors.allSatisfy { $0.filter { $0 == ";" }.count == 1 }, "\(result.stderr)",
                sourceLocation: sourceLocation)
        #expect(isEmptyOrMissing(target), "a refused restore left files in \(target)", sourceLocation: sourceLocation)
    }

    @Test("an encrypted chain restores equal to the source; verify and listing need no key; missing key, wrong key, a flipped byte and a cut file are refused",
          .seaweedFS, arguments: ["file", "s3"])
    func encryptedChain(kind: String) async throws {
        try await withPlace(kind) { place in
            let keyA = place.work.file("a.key"), keyC = place.work.file("c.key")
            try Self.writeKey(keyA)
            try Self.writeKey(keyC)
            let withA = try await place.storage("a", encryption: ["key_file": keyA, "key_id": "key-a"])
            let noKey = try await place.storage("none", encryption: nil)
            // Another key file claiming to be key-a.
            let impostor = try await place.storage("c", encryption: ["key_file": keyC, "key_id": "key-a"])
            let source = try await TestServer.start(serverID: 1)
            var archiver: ChildProcess? = nil
            do {
                let bench = Sysbench(server: source, tables: 2, tableSize: 2_000)
                try await bench.prepare()
                let engine = kind == "file" ? "physical" : "logical"
                let full = try await Scenario.backup(source, storage: withA, extra: ["--type", "full", "--engine", engine])
                #expect(full.exitCode == 0, "\(full)")
                let fullObject = try Scenario.backupObject(full)
                #expect(fullObject["encryption"] as? String == "aes-256-gcm")
                #expect(fullObject["key_id"] as? String == "key-a")
                #expect((fullObject["wrapped_key"] as? String)?.isEmpty == false)
                #expect(!full.stdout.contains(try String(contentsOfFile: keyA, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))

                try await bench.write(events: 200)
                let incremental = try await Scenario.backup(source, storage: withA, extra: ["--type", "incremental"])
                #expect(incremental.exitCode == 0, "\(incremental)")
                if kind == "file" {
                    archiver = try CLI.start(["archive", Self.shard, "--local", "--mysql-socket", source.socketPath,
                                              "--interval", "1s", "--log-level", "warning"] + withA.arguments, environment: withA.environment)
                }
                try await bench.write(events: 200)
                if kind != "file" {
                    let second = try await Scenario.backup(source, storage: withA, extra: ["--type", "incremental"])
                    #expect(second.exitCode == 0, "\(second)")
                }
                let end = try await Snapshot.take(source)
                if let running = archiver {
                    try await waitForArchive(withA, reaching: end.position, archiver: running)
                    let stored = try await segments(withA)
                    #expect(!stored.isEmpty && stored.allSatisfy { $0.encryption == "aes-256-gcm" && $0.keyID == "key-a" && $0.wrappedKey != nil })
                    // Restoring latest must need the segments: they hold what came after the incremental.
                    try await bench.write(events: 100)
                    let later = try await Snapshot.take(source)
                    try await waitForArchive(withA, reaching: later.position, archiver: running)
                    running.kill(SIGTERM)
                    _ = await running.wait()
                    archiver = nil
                    try await check(place: place, kind: kind, withA: withA, noKey: noKey, impostor: impostor, expected: later)
                } else {
                    try await check(place: place, kind: kind, withA: withA, noKey: noKey, impostor: impostor, expected: end)
                }
            } catch {
                archiver?.kill(SIGKILL)
                await source.stop()
                throw error
            }
            await source.stop()
        }
    }

    func check(place: Place, kind: String, withA: ScenarioStorage, noKey: ScenarioStorage, impostor: ScenarioStorage,
               expected: Snapshot) async throws {
        let stored = try await manifests(withA)
        #expect(stored.count == (kind == "file" ? 2 : 3) && stored.allSatisfy { $0.encryption == "aes-256-gcm" && $0.keyID == "key-a" })
        let shard = try KeyspaceShard(parsing: Self.shard)
        // Every stored data file is sealed (the framing's magic, read with a ranged GET on S3).
        try await noKey.withStorage { storage in
            let repository = BackupRepository(storage: storage, logger: testLogger)
            for m in stored {
                for f in m.files {
                    let reader = try await storage.makeReader(key: repository.key(shard, m.backupName, f.name), range: 0..<8)
                    var head: [UInt8] = []
                    while let chunk = try await reader.read() { head += chunk.readableBytesView }
                    await reader.close()
                    #expect(head == Array("CAIRNAE1".utf8), "\(m.backupName)/\(f.name) is not encrypted")
                }
            }
        }

        // Listing and verify need no key; the listing says which key each backup needs.
        let verify = try await Scenario.run(["verify", Self.shard], storage: noKey)
        #expect(verify.exitCode == 0, "\(verify)")
        let listing = try await Scenario.run(["backups", Self.shard, "--json"], storage: noKey)
        let object = try JSONSerialization.jsonObject(with: Data(listing.stdout.utf8)) as? [String: Any]
        let entries = try #require(object?["backups"] as? [[String: Any]], "\(listing)")
        #expect(entries.count == stored.count && entries.allSatisfy { $0["key_id"] as? String == "key-a" }, "\(listing.stdout)")
        if kind == "file" {
            #expect((object?["archive"] as? [String: Any])?["key_ids"] as? [String] == ["key-a"], "\(listing.stdout)")
        }
        let text = try await Scenario.run(["backups", Self.shard], storage: noKey)
        #expect(text.exitCode == 0 && text.stdout.contains("KEY") && text.stdout.contains("key-a"), "\(text)")

        try await expectRefused(noKey, into: place.work.file("no-key"),
                                ["is encrypted with master key key-a", "no encryption key is configured"])
        try await expectRefused(impostor, into: place.work.file("wrong-key"),
                                ["the key file configured for master key key-a does not open the data key of backup"])

        try await ChainTests.expectRestore(storage: withA, into: place.work.file("restored"), equals: expected, extra: [])

        // Write access: change one byte of the full backup's data and make the MANIFEST agree.
        let full = try #require(stored.first)
        let file = try #require(full.files.first)
        let original = try await withA.withStorage { storage in
            try await storage.readAll(key: BackupRepository(storage: storage, logger: testLogger).key(shard, full.backupName, file.name), limit: 256 << 20)
        }
        var flipped = original
        flipped[flipped.count / 2] ^= 0x20
        try await withA.withStorage { try await Tampering.replaceFile(file.name, of: full.backupName, with: flipped, in: $0, shard: shard) }
        try await expectRefused(withA, into: place.work.file("flipped"), ["stored file", file.name, "fails authentication at encrypted chunk"])
        let cut = original.prefix(original.count - 1000)
        try await withA.withStorage { try await Tampering.replaceFile(file.name, of: full.backupName, with: Data(cut), in: $0, shard: shard) }
        try await expectRefused(withA, into: place.work.file("cut"), [file.name, "cut short"])
    }

    /// Waits until the archive holds `position`.
    func waitForArchive(_ storage: ScenarioStorage, reaching position: ReplicationPosition, archiver: ChildProcess) async throws {
        for _ in 0..<240 {
            if let newest = try await segments(storage).last, newest.position.contains(position) { return }
            if let exit = archiver.exitedStatus() {
                throw TestSupportError("the archiver exited (\(exit)): \(await archiver.capturedError())")
            }
            try await Task.sleep(for: .milliseconds(500))
        }
        throw TestSupportError("the archive did not reach \(position) in 2 minutes")
    }

    @Test("rotate-key re-wraps only the manifests; stopped midway every backup opens with the old key or the new; afterwards the new key alone restores",
          .seaweedFS, arguments: ["file", "s3"])
    func rotation(kind: String) async throws {
        try await withPlace(kind) { place in
            let keyA = place.work.file("a.key"), keyB = place.work.file("b.key")
            try Self.writeKey(keyA)
            try Self.writeKey(keyB)
            let onlyA = try await place.storage("a", encryption: ["key_file": keyA])
            let newWithOld = try await place.storage("b-a", encryption: ["key_file": keyB, "previous_key_files": [keyA]])
            let oldWithNew = try await place.storage("a-b", encryption: ["key_file": keyA, "previous_key_files": [keyB]])
            let onlyB = try await place.storage("b", encryption: ["key_file": keyB])
            let noKey = try await place.storage("none", encryption: nil)
            try await withTestServer { source in
                let bench = Sysbench(server: source, tables: 2, tableSize: 1_000)
                try await bench.prepare()
                #expect(try await Scenario.backup(source, storage: onlyA, extra: ["--type", "full"]).exitCode == 0)
                try await bench.write(events: 100)
                #expect(try await Scenario.backup(source, storage: onlyA, extra: ["--type", "incremental"]).exitCode == 0)
                let snapshot = try await Snapshot.take(source)
                let before = try await manifests(onlyA)
                let idA = try #require(before.first?.keyID)
                #expect(before.count == 2 && before.allSatisfy { $0.keyID == idA })
                let dataBefore = try await noKey.keys(under: "commerce/0/")

                // A rotation killed after its first manifest.
                let configuration = try CairnConfiguration.load(file: try #require(newWithOld.configFile))
                let keyring = try #require(try MasterKeyring.load(configuration.encryption))
                let idB = keyring.current.id
                #expect(idB != idA && idB.count == 16)
                try await noKey.withStorage { storage in
                    var rotator = KeyRotator(storage: storage, keyring: keyring, logger: testLogger)
                    rotator.stopAfter = 1
                    await #expect(throws: CairnError.self) { _ = try await rotator.rotate(try KeyspaceShard(parsing: Self.shard)) }
                }
                let midway = try await manifests(noKey)
                #expect(Set(midway.compactMap(\.keyID)) == [idA, idB], "\(midway.map(\.keyID))")
                let listing = try await Scenario.run(["backups", Self.shard], storage: noKey)
                #expect(listing.stdout.contains(idA) && listing.stdout.contains(idB), "\(listing)")
                // Each backup opens with one key alone; a configuration holding both, either way round, opens all.
                try await expectRefused(onlyA, into: place.work.file("midway-a"), ["master key \(idB)"])
                try await expectRefused(onlyB, into: place.work.file("midway-b"), ["master key \(idA)"])
                let dryRun = try await Scenario.run(["restore", Self.shard, "--local", "--target-datadir", place.work.file("dry"), "--dry-run"],
                                                    storage: oldWithNew)
                #expect(dryRun.exitCode == 0, "\(dryRun)")
                try await ChainTests.expectRestore(storage: newWithOld, into: place.work.file("midway"), equals: snapshot, extra: [])

                // The CLI finishes the rotation; a second run has nothing to do.
                let rotate = try await Scenario.run(["rotate-key", Self.shard], storage: newWithOld)
                #expect(rotate.exitCode == 0 && rotate.stdout.contains("re-wrapped 1 backup and 0 archived segments under key \(idB); 1 already under it"), "\(rotate)")
                let again = try await Scenario.run(["rotate-key", "--all", "--json"], storage: newWithOld)
                let report = try JSONSerialization.jsonObject(with: Data(again.stdout.utf8)) as? [String: Any]
                let shards = try #require(report?["shards"] as? [[String: Any]], "\(again)")
                #expect(shards.count == 1 && (shards[0]["rewrapped_backups"] as? [Any])?.isEmpty == true && shards[0]["already_current"] as? Int == 2)
                #expect(!again.stdout.contains(try String(contentsOfFile: keyB, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)))

                // Only the MANIFESTs changed: the same objects, and the same data files.
                let after = try await manifests(noKey)
                #expect(after.allSatisfy { $0.keyID == idB })
                #expect(after.map(\.files) == before.map(\.files))
                #expect(try await noKey.keys(under: "commerce/0/") == dataBefore)
                try await ChainTests.expectRestore(storage: onlyB, into: place.work.file("only-b"), equals: snapshot, extra: [])
                try await expectRefused(onlyA, into: place.work.file("only-a"), ["master key \(idB), which is not in this configuration"])
            }
        }
    }
}
