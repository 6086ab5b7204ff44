@testable import CairnEngine
import CairnCore
import CairnStorage
import CairnTestSupport
import Crypto
import Foundation
import NIOCore
import Testing

/// Issue 14: the upload and download pipelines with encryption (compress,
/// then encrypt; decrypt, then decompress), the master keys, and rotation,
/// on in-memory storage.
@Suite("Encryption in the pipelines and the keyring")
struct EncryptionPipelineTests {
    typealias Source = PipelineTests.ArraySource
    typealias Sink = PipelineTests.CollectingSink

    let key = "ks/0/b/data"

    func bytes(_ count: Int, seed: UInt64) -> [UInt8] { PipelineTests().bytes(count, seed: seed) }

    func upload(_ chunks: [[UInt8]], to storage: MemoryStorage, dataKey: DataKey, algorithm: String = "zstd") async throws -> ManifestFile {
        try await UploadPipeline.upload(from: Source(chunks: chunks), to: storage, key: key, fileName: "data",
                                        compression: CompressionSettings(algorithm: algorithm, level: 3, threads: 2),
                                        encryption: dataKey.fileKey("data"), progress: nil)
    }

    func download(_ file: ManifestFile, from storage: MemoryStorage, fileKey: FileKey?, algorithm: String = "zstd") async throws -> [UInt8] {
        let sink = Sink()
        let result = try await DownloadPipeline.download(file, key: key, from: storage,
                                                         compression: algorithm == "zstd" ? .zstd(level: 3) : .none,
                                                         decryption: fileKey, to: sink, progress: nil)
        #expect(result.completed)
        return sink.bytes
    }

    static func keyring() -> MasterKeyring { MasterKeyring(current: MasterKey(key: SymmetricKey(size: .bits256))) }

    @Test("encrypted data comes back identical; the stored bytes are neither the raw nor the compressed ones; verify needs no key",
          arguments: ["zstd", "none"])
    func roundTrip(algorithm: String) async throws {
        let storage = MemoryStorage()
        let dataKey = try Self.keyring().newDataKey()
        let chunks = [bytes(1, seed: 1), bytes(3_000_000, seed: 2), bytes(0, seed: 3), bytes(1_048_576, seed: 4), bytes(7, seed: 5)]
        let file = try await upload(chunks, to: storage, dataKey: dataKey, algorithm: algorithm)
        let raw = chunks.flatMap { $0 }
        let stored = [UInt8](try await storage.readAll(key: key))
        #expect(file.rawSize == Int64(raw.count))
        #expect(file.storedSize == Int64(stored.count))
        #expect(file.sha256 == Tampering.sha256(Data(stored)), "the manifest's SHA-256 is of the stored (encrypted) bytes")
        #expect(Array(stored.prefix(8)) == EncryptedFraming.magic)
        // No run of 64 raw bytes appears in what is stored.
        let probe = Array(raw[1_000_000..<1_000_064])
        #expect(!stored.indices.dropLast(64).contains { stored[$0] == probe[0] && Array(stored[$0..<$0 + 64]) == probe })
        if algorithm == "zstd" { #expect(file.storedSize < file.rawSize / 2, "compression happens before encryption") }
        #expect(try await download(file, from: storage, fileKey: dataKey.fileKey("data"), algorithm: algorithm) == raw)
        try await DownloadPipeline.verify(file, key: key, from: storage, progress: nil)
    }

    /// What an attacker with write access does: change the stored bytes and
    /// make the manifest's size and SHA-256 agree, so only the encryption can tell.
    func tampered(_ change: (inout [UInt8]) -> Void) async throws -> CairnError? {
        let storage = MemoryStorage()
        let dataKey = try Self.keyring().newDataKey()
        var file = try await upload([bytes(3_500_000, seed: 7)], to: storage, dataKey: dataKey, algorithm: "none")
        var stored = [UInt8](try await storage.readAll(key: key))
        change(&stored)
        try await storage.writeAll(key: key, data: Data(stored))
        file.storedSize = Int64(stored.count)
        file.sha256 = Tampering.sha256(Data(stored))
        do {
            _ = try await download(file, from: storage, fileKey: dataKey.fileKey("data"), algorithm: "none")
            return nil
        } catch let error as CairnError {
            return error
        }
    }

    static let sealedChunk = EncryptedFraming.defaultChunkSize + EncryptedFraming.tagSize

    @Test("on S3, an encrypted file of many parts and many 8 MiB ranges, read by parallel ranged GETs, comes back identical", .seaweedFS)
    func s3ParallelRanges() async throws {
        let server = try SharedSeaweedFS.server()
        let storage = server.storage(bucket: SharedSeaweedFS.bucket, prefix: "crypt-ranges", uploadConcurrency: 4, downloadConcurrency: 4)
        try await storage.shuttingDown {
            let dataKey = try Self.keyring().newDataKey()
            // Incompressible (zstd passes it through), so the stored object spans four 8 MiB ranges and several parts.
            var g = SplitMix64(seed: 14)
            let chunks = (0..<28).map { _ in (0..<(1 << 20)).map { _ in UInt8(truncatingIfNeeded: g.next()) } }
            let file = try await UploadPipeline.upload(from: Source(chunks: chunks), to: storage, key: key, fileName: "data",
                                                       compression: CompressionSettings(), encryption: dataKey.fileKey("data"), progress: nil)
            #expect(file.storedSize > 3 * (8 << 20), "only \(file.storedSize) bytes stored")
            let sink = Sink()
            _ = try await DownloadPipeline.download(file, key: key, from: storage, compression: .zstd(level: 3),
                                                    decryption: dataKey.fileKey("data"), to: sink, progress: nil)
            #expect(sink.bytes == chunks.flatMap { $0 })
        }
    }

    @Test("a flipped byte, chunks swapped, a chunk removed, and a file cut short are each refused, naming the file and what is wrong")
    func tampering() async throws {
        let flipped = try await tampered { $0[EncryptedFraming.headerSize + 1_500_000] ^= 0x01 }
        #expect(flipped?.code == .integrity)
        #expect(flipped?.message.contains("stored file \(key) fails authentication at encrypted chunk 1") == true, "\(String(describing: flipped))")

        let swapped = try await tampered { s in
            let h = EncryptedFraming.headerSize, n = Self.sealedChunk
            let first = Array(s[h..<h + n]), second = Array(s[h + n..<h + 2 * n])
            s.replaceSubrange(h..<h + 2 * n, with: second + first)
        }
        #expect(swapped?.message.contains("fails authentication at encrypted chunk 0") == true, "\(String(describing: swapped))")

        let removed = try await tampered { s in
            let h = EncryptedFraming.headerSize
            s.removeSubrange(h + Self.sealedChunk..<h + 2 * Self.sealedChunk)
        }
        #expect(removed?.message.contains("fails authentication at encrypted chunk 1") == true, "\(String(describing: removed))")

        let cutAtBoundary = try await tampered { s in s.removeLast(s.count - EncryptedFraming.headerSize - 2 * Self.sealedChunk) }
        #expect(cutAtBoundary?.message.contains("it may have been cut short") == true, "\(String(describing: cutAtBoundary))")

        let cutMidChunk = try await tampered { s in s.removeLast(100_000) }
        #expect(cutMidChunk?.message.contains("it may have been cut short") == true, "\(String(describing: cutMidChunk))")

        let header = try await tampered { s in s.removeLast(s.count - 10) }
        #expect(header?.message.contains("shorter than an encrypted file's header") == true, "\(String(describing: header))")
    }

    @Test("a file opens only under its own name in its own backup: another backup's data key, or another file name, fails")
    func fileBinding() async throws {
        let storage = MemoryStorage()
        let ring = Self.keyring()
        let dataKey = try ring.newDataKey()
        let file = try await upload([bytes(100_000, seed: 11)], to: storage, dataKey: dataKey)
        for wrong in [dataKey.fileKey("other"), try ring.newDataKey().fileKey("data")] {
            await #expect {
                _ = try await download(file, from: storage, fileKey: wrong)
            } throws: { ($0 as? CairnError)?.message.contains("fails authentication") == true }
        }
    }

    func manifest(_ ring: MasterKeyring?) throws -> BackupManifest {
        let dataKey = try ring?.newDataKey()
        let position = try ReplicationPosition(parsing: "MariaDB/0-1-5")
        return BackupManifest(
            backupName: "2026-11-30.120000.zone1-100", keyspace: "ks", shard: "0", tabletAlias: "zone1-100", hostname: "h",
            method: .logical, incremental: false, parentBackup: nil, fromPosition: nil, position: position, purgedPosition: position,
            startTime: Date(), finishTime: Date(), firstEventTime: nil, lastEventTime: nil, serverID: 1, serverVersion: "10.11",
            flavor: .mariadb, compression: .zstd(level: 3),
            encryption: dataKey == nil ? EncryptionScheme.none : EncryptionScheme.aes256GCM,
            files: [ManifestFile(name: "dump.sql.zst", rawSize: 1, storedSize: 1, sha256: String(repeating: "0", count: 64)),
                    ManifestFile(name: "accounts.sql.zst", rawSize: 1, storedSize: 1, sha256: String(repeating: "0", count: 64))],
            keyID: dataKey?.keyID, wrappedKey: dataKey?.wrapped)
    }

    @Test("a missing key and a wrong key each fail in one sentence naming the key id needed; a clear backup needs no key")
    func keyErrors() throws {
        let a = Self.keyring()
        let encrypted = try manifest(a)
        #expect(try MasterKeyring.dataKey(of: manifest(nil), keyring: nil) == nil)
        #expect(try MasterKeyring.dataKey(of: encrypted, keyring: a)?.keyID == a.current.id)

        func message(_ keyring: MasterKeyring?) -> String? {
            do { _ = try MasterKeyring.dataKey(of: encrypted, keyring: keyring); return nil }
            catch { return (error as? CairnError)?.message }
        }
        let none = try #require(message(nil))
        #expect(none.contains("backup 2026-11-30.120000.zone1-100 is encrypted with master key \(a.current.id)"))
        #expect(none.contains("set encryption.key_file"))
        let other = try #require(message(Self.keyring()))
        #expect(other.contains("master key \(a.current.id), which is not in this configuration"))
        // A different key file configured under the same (explicit) id: recognized as the wrong key.
        let impostor = MasterKeyring(current: MasterKey(id: a.current.id, key: SymmetricKey(size: .bits256)))
        let wrong = try #require(message(impostor))
        #expect(wrong.contains("does not open the data key of backup 2026-11-30.120000.zone1-100"))
        for m in [none, other, wrong] {
            #expect(m.filter { $0 == ";" }.count == 1 && !m.contains("\n"), "one sentence: \(m)")
        }
        // A previous key opens it.
        #expect(try MasterKeyring.dataKey(of: encrypted, keyring: MasterKeyring(current: Self.keyring().current, previous: [a.current])) != nil)
    }

    @Test("manifests: encrypted ones round-trip their key fields; old ones without them still decode; unknown schemes are refused")
    func manifestFields() throws {
        let encrypted = try manifest(Self.keyring())
        let decoded = try BackupManifest.decode(try encrypted.encoded(), name: encrypted.backupName)
        #expect(decoded.keyID == encrypted.keyID && decoded.wrappedKey == encrypted.wrappedKey && decoded.encryption == "aes-256-gcm")
        let clear = try manifest(nil)
        let text = String(decoding: try clear.encoded(), as: UTF8.self)
        #expect(!text.contains("key_id") && !text.contains("wrapped_key"), "a clear backup's MANIFEST is as before")
        #expect(try BackupManifest.decode(Data(text.utf8), name: clear.backupName).encryption == "none")
        var unknown = clear
        unknown.encryption = "rot13"
        #expect(throws: CairnError.self) { try BackupManifest.decode(try unknown.encoded(), name: "x") }
        var keyless = encrypted
        keyless.wrappedKey = nil
        #expect(throws: CairnError.self) { try BackupManifest.decode(try keyless.encoded(), name: "x") }
    }

    @Test("key files: base64 of 32 bytes, id derived or given; a bad file is refused without quoting it")
    func keyFiles() throws {
        let dir = try TemporaryDirectory(prefix: "cairn-keys")
        defer { dir.remove() }
        let raw = Data((0..<32).map { UInt8($0) })
        let good = dir.file("good.key")
        try (raw.base64EncodedString() + "\n").write(toFile: good, atomically: true, encoding: .utf8)
        let derived = try MasterKey.load(.init(path: good), setting: "encryption.key_file")
        #expect(derived.id == DataKeyWrapping.keyID(of: SymmetricKey(data: raw)) && derived.id.count == 16)
        #expect(!"\(derived)".contains(raw.base64EncodedString()))
        #expect(try MasterKey.load(.init(path: good, keyID: "ops-2026"), setting: "encryption.key_file").id == "ops-2026")
        let short = dir.file("short.key")
        try "c2VjcmV0LXNob3J0".write(toFile: short, atomically: true, encoding: .utf8)
        #expect {
            _ = try MasterKey.load(.init(path: short), setting: "encryption.key_file")
        } throws: { error in
            let m = (error as? CairnError)?.message ?? ""
            return m.contains("does not hold base64 of 32 bytes") && !m.contains("c2VjcmV0")
        }
        #expect(throws: CairnError.self) { try MasterKey.load(.init(path: dir.file("missing.key")), setting: "encryption.key_file") }
    }

    @Test("rotation re-wraps only the manifests, keeps the data keys, and a rotation stopped midway leaves each backup readable by its old key or the new")
    func rotation() async throws {
        let storage = MemoryStorage()
        let old = Self.keyring()
        let shard = try KeyspaceShard(keyspace: "ks", shard: "0")
        let repository = BackupRepository(storage: storage, logger: testLogger)
        var names: [String] = []
        var dataKeys: [String: DataKey] = [:]
        for i in 0..<3 {
            var m = try manifest(old)
            m.backupName = "2026-11-30.12000\(i).zone1-100"
            try await repository.commit(m, shard: shard)
            names.append(m.backupName)
            dataKeys[m.backupName] = try MasterKeyring.dataKey(of: m, keyring: old)
        }
        let new = MasterKeyring(current: Self.keyring().current, previous: [old.current])
        var stopped = KeyRotator(storage: storage, keyring: new, logger: testLogger)
        stopped.stopAfter = 1
        await #expect(throws: CairnError.self) { _ = try await stopped.rotate(shard) }
        let midway = try await repository.list(shard).manifests
        #expect(midway.filter { $0.keyID == new.current.id }.count == 1)
        for m in midway {
            let opens = [MasterKeyring(current: old.current), MasterKeyring(current: new.current)].filter {
                (try? MasterKeyring.dataKey(of: m, keyring: $0)) != nil
            }
            #expect(opens.count == 1, "backup \(m.backupName) opens with exactly one of the two keys alone")
            // Both configurations, new-with-old and old-with-new, open every backup.
            #expect(try MasterKeyring.dataKey(of: m, keyring: new) != nil)
            #expect(try MasterKeyring.dataKey(of: m, keyring: MasterKeyring(current: old.current, previous: [new.current])) != nil)
        }
        let report = try await KeyRotator(storage: storage, keyring: new, logger: testLogger).rotate(shard)
        #expect(report.rewrappedBackups.count == 2 && report.alreadyCurrent == 1)
        let onlyNew = MasterKeyring(current: new.current)
        for m in try await repository.list(shard).manifests {
            let key = try #require(try MasterKeyring.dataKey(of: m, keyring: onlyNew))
            // The data key is the one the files were written with.
            let original = try #require(dataKeys[m.backupName])
            #expect(key.key == original.key)
        }
        let again = try await KeyRotator(storage: storage, keyring: new, logger: testLogger).rotate(shard)
        #expect(again.rewrappedBackups.isEmpty && again.alreadyCurrent == 3)
    }
}
