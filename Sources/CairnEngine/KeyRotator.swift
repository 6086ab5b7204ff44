import CairnCore
import CairnStorage
import Foundation
import Logging

/// `cairn rotate-key`: re-wraps the data key of every backup and archived
/// segment of a shard that is not yet under the keyring's current master
/// key, opening it with the previous keys. Only the small manifests are
/// rewritten, never data: the data keys themselves do not change.
///
/// Each manifest is replaced in one atomic write (a file renamed into
/// place, an S3 PUT), so a rotation stopped anywhere leaves every backup
/// under either its old key or the new one, never neither; running it again
/// finishes the work.
public struct KeyRotator: Sendable {
    public let storage: any BackupStorage
    public let keyring: MasterKeyring
    public let logger: Logger

    public init(storage: any BackupStorage, keyring: MasterKeyring, logger: Logger) {
        self.storage = storage
        self.keyring = keyring
        self.logger = logger
    }

    /// What one shard's rotation did.
    public struct Report: Sendable, Codable {
        public var shard: String
        public var keyID: String
        /// Backups whose data key is now wrapped by the current key.
        public var rewrappedBackups: [String] = []
        /// Archived segments (manifest names) likewise.
        public var rewrappedSegments: [String] = []
        /// Encrypted backups and segments already under the current key.
        public var alreadyCurrent = 0
        /// Backups and segments stored in the clear: rotation does not encrypt them.
        public var unencrypted = 0

        enum CodingKeys: String, CodingKey {
            case shard
            case keyID = "key_id"
            case rewrappedBackups = "rewrapped_backups"
            case rewrappedSegments = "rewrapped_segments"
            case alreadyCurrent = "already_current"
            case unencrypted
        }
    }

    /// Stops before the manifest with this index is written; for tests that
    /// simulate a rotation killed midway.
    public var stopAfter: Int? = nil

    public func rotate(_ shard: KeyspaceShard) async throws -> Report {
        let repository = BackupRepository(storage: storage, logger: logger)
        let current = keyring.current
        var report = Report(shard: shard.description, keyID: current.id)
        var written = 0
        func mayWrite() throws {
            if let stopAfter, written >= stopAfter {
                throw CairnError(.cancelled, "the rotation of \(shard) stopped after \(written) manifests, as asked; run it again to finish")
            }
            written += 1
        }
        let listing = try await repository.list(shard)
        for manifest in listing.manifests {
            guard manifest.encryption != EncryptionScheme.none else { report.unencrypted += 1; continue }
            guard manifest.keyID != current.id else { report.alreadyCurrent += 1; continue }
            guard let dataKey = try MasterKeyring.dataKey(of: manifest, keyring: keyring) else { continue }
            var rotated = manifest
            rotated.keyID = current.id
            rotated.wrappedKey = try DataKeyWrapping.wrap(dataKey.key, with: current.key, keyID: current.id)
            // A backup removed since the listing stays removed: no manifest is written back for it.
            let key = repository.key(shard, manifest.backupName, BackupManifest.fileName)
            guard try await storage.exists(key: key),
                  !(try await storage.exists(key: repository.key(shard, manifest.backupName, BackupRepository.removingMarker))) else { continue }
            try mayWrite()
            try await repository.commit(rotated, shard: shard)
            logger.info("re-wrapped a backup's data key", metadata: ["shard": "\(shard)", "backup": "\(manifest.backupName)",
                                                                    "from_key": "\(manifest.keyID ?? "")", "to_key": "\(current.id)"])
            report.rewrappedBackups.append(manifest.backupName)
        }
        let archive = try await repository.listArchive(shard, objects: listing.archiveObjects)
        for segment in archive.segments {
            guard segment.encryption != EncryptionScheme.none else { report.unencrypted += 1; continue }
            guard segment.keyID != current.id else { report.alreadyCurrent += 1; continue }
            guard let dataKey = try MasterKeyring.dataKey(of: segment, keyring: keyring) else { continue }
            var rotated = segment
            rotated.keyID = current.id
            rotated.wrappedKey = try DataKeyWrapping.wrap(dataKey.key, with: current.key, keyID: current.id)
            guard try await storage.exists(key: repository.archiveKey(shard, segment.manifestName)) else { continue }
            try mayWrite()
            try await repository.commitSegment(rotated, shard: shard)
            logger.info("re-wrapped a segment's data key", metadata: ["shard": "\(shard)", "segment": "\(segment.manifestName)",
                                                                     "from_key": "\(segment.keyID ?? "")", "to_key": "\(current.id)"])
            report.rewrappedSegments.append(segment.manifestName)
        }
        return report
    }
}
