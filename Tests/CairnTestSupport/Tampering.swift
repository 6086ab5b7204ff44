import CairnCore
import CairnStorage
import Crypto
import Foundation

/// What someone with write access to the bucket can do: change a stored
/// backup and make its `MANIFEST` agree, so size and SHA-256 checks pass.
public enum Tampering {
    public static func sha256(_ data: Data) -> String {
        SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined()
    }

    /// Replaces the bytes of `file` (stored uncompressed) of backup `name`
    /// and fixes its size and hash in the manifest.
    public static func replaceFile(_ file: String, of name: String, with data: Data, in storage: any BackupStorage,
                                   shard: KeyspaceShard) async throws {
        let repository = BackupRepository(storage: storage, logger: testLogger)
        var manifest = try await readManifest(name, in: storage, shard: shard)
        guard let i = manifest.files.firstIndex(where: { $0.name == file }) else {
            throw TestSupportError("backup \(name) has no file \(file)")
        }
        try await storage.writeAll(key: repository.key(shard, name, file), data: data)
        manifest.files[i].rawSize = Int64(data.count)
        manifest.files[i].storedSize = Int64(data.count)
        manifest.files[i].sha256 = sha256(data)
        try await writeManifest(manifest, to: storage, shard: shard)
    }

    /// The stored manifest of `name`, decoded without validation.
    public static func readManifest(_ name: String, in storage: any BackupStorage, shard: KeyspaceShard) async throws -> BackupManifest {
        let repository = BackupRepository(storage: storage, logger: testLogger)
        let data = try await storage.readAll(key: repository.key(shard, name, BackupManifest.fileName), limit: 64 << 20)
        return try CairnJSON.decoder().decode(BackupManifest.self, from: data)
    }

    /// Stores `manifest` as is (compact JSON, no validation) over the backup's `MANIFEST`.
    public static func writeManifest(_ manifest: BackupManifest, to storage: any BackupStorage, shard: KeyspaceShard) async throws {
        let repository = BackupRepository(storage: storage, logger: testLogger)
        try await storage.writeAll(key: repository.key(shard, manifest.backupName, BackupManifest.fileName),
                                   data: try CairnJSON.encoder().encode(manifest))
    }
}
