import CairnCore
import Foundation
import Logging

/// What storage holds for one backup directory.
public struct StoredBackup: Sendable {
    public enum State: Sendable {
        /// `MANIFEST` present and readable.
        case complete(BackupManifest)
        /// No `MANIFEST`: the backup failed, was interrupted, is still running,
        /// or is being removed (``StoredBackup/removalStarted``).
        case incomplete
        /// A `MANIFEST` exists but cannot be used; the reason says why.
        case unreadable(String)
    }

    public var name: String
    public var parsedName: BackupName?
    public var state: State
    /// Every object of the backup, `MANIFEST` included.
    public var objects: [StorageObject]
    /// A removal of it began (a `REMOVING` marker is present): it is
    /// incomplete whatever else is left, and the next prune finishes removing it.
    public var removalStarted: Bool = false

    public var manifest: BackupManifest? {
        if case .complete(let m) = state { return m }
        return nil
    }

    public var isComplete: Bool { manifest != nil }

    public var storedBytes: Int64 { objects.reduce(0) { $0 + $1.size } }

    /// The newest modification of any of its objects: how recently it was written to.
    public var lastModified: Date? { objects.compactMap(\.lastModified).max() }

    /// When it started: from the manifest, else from its name.
    public var startTime: Date? { manifest?.startTime ?? parsedName?.time }
}

/// The storage layout of the spec, on any backend:
/// `<root>/<keyspace>/<shard>/<YYYY-MM-DD.HHMMSS>.<tablet-alias>/{MANIFEST,<data files>}`.
public struct BackupRepository: Sendable {
    public let storage: any BackupStorage
    let logger: Logger

    public init(storage: any BackupStorage, logger: Logger) {
        self.storage = storage
        self.logger = logger
    }

    public func key(_ shard: KeyspaceShard, _ backup: String, _ file: String) -> String {
        "\(shard.keyspace)/\(shard.shard)/\(backup)/\(file)"
    }

    /// Every backup directory of `shard`, complete or not, oldest first.
    public func list(_ shard: KeyspaceShard) async throws -> [StoredBackup] {
        let prefix = shard.storagePrefix
        let objects = try await storage.list(prefix: prefix)
        var groups: [String: [StorageObject]] = [:]
        for object in objects {
            let rest = object.key.dropFirst(prefix.count)
            guard let slash = rest.firstIndex(of: "/") else { continue }
            groups[String(rest[..<slash]), default: []].append(object)
        }
        var result: [StoredBackup] = []
        for (name, files) in groups {
            let parsed = try? BackupName(parsing: name)
            if parsed == nil {
                logger.debug("ignoring a directory that is not a backup", metadata: ["name": "\(name)", "shard": "\(shard)"])
                continue
            }
            let manifestKey = key(shard, name, BackupManifest.fileName)
            let removingKey = key(shard, name, BackupRepository.removingMarker)
            let removing = files.contains { $0.key == removingKey }
            var state = StoredBackup.State.incomplete
            if !removing, let manifestObject = files.first(where: { $0.key == manifestKey }) {
                do {
                    let data = try await readManifest(manifestObject)
                    let manifest = try BackupManifest.decode(data, name: name)
                    if manifest.backupName != name || manifest.keyspace != shard.keyspace || manifest.shard != shard.shard {
                        state = .unreadable("its MANIFEST describes \(manifest.keyspace)/\(manifest.shard) backup \(manifest.backupName), not this directory")
                    } else {
                        state = .complete(manifest)
                    }
                } catch let error as CairnError where error.code == .manifest {
                    state = .unreadable(error.message)
                } catch let error as CairnError where error.code == .notFound {
                    // Deleted between listing and reading: treat as gone.
                    continue
                } catch let error as CairnError where error.code == .storage {
                    // This one object cannot be read (listing worked): report it, keep the others usable.
                    logger.warning("a MANIFEST cannot be read", metadata: ["shard": "\(shard)", "backup": "\(name)", "error": "\(error.message)"])
                    state = .unreadable("its MANIFEST cannot be read: \(error.message)")
                }
            }
            result.append(StoredBackup(name: name, parsedName: parsed, state: state, objects: files, removalStarted: removing))
        }
        return result.sorted { ($0.parsedName!, $0.name) < ($1.parsedName!, $1.name) }
    }

    /// The complete backups of `shard`, oldest first.
    public func completeManifests(_ shard: KeyspaceShard) async throws -> [BackupManifest] {
        try await list(shard).compactMap(\.manifest)
    }

    /// The keyspace/shard pairs that have anything stored.
    public func shards() async throws -> [KeyspaceShard] {
        let objects = try await storage.list(prefix: "")
        var result: Set<KeyspaceShard> = []
        for object in objects {
            let parts = object.key.split(separator: "/")
            if parts.count >= 4, let s = try? KeyspaceShard(keyspace: String(parts[0]), shard: String(parts[1])) {
                result.insert(s)
            }
        }
        return result.sorted()
    }

    /// Writes the manifest: the last step of a backup, the one that makes it complete.
    public func commit(_ manifest: BackupManifest, shard: KeyspaceShard) async throws {
        let data = try manifest.encoded()
        try await storage.writeAll(key: key(shard, manifest.backupName, BackupManifest.fileName), data: data)
    }

    /// The object that marks a backup whose removal began. While it is
    /// there the backup is incomplete to every reader, whatever else is left.
    public static let removingMarker = "REMOVING"

    /// Deletes one backup so that, stopped at any point, it leaves either the
    /// whole backup or one that is plainly incomplete and marked for removal:
    /// first the `REMOVING` marker (from then on nothing uses the backup),
    /// then `MANIFEST` (so even a reader that ignores the marker sees it
    /// incomplete), then the data files, and the marker last.
    public func delete(_ backup: StoredBackup, shard: KeyspaceShard) async throws {
        let manifestKey = key(shard, backup.name, BackupManifest.fileName)
        let markerKey = key(shard, backup.name, Self.removingMarker)
        if !backup.removalStarted {
            let text = """
                {"backup_name": "\(backup.name)", "removal_started": "\(UTCTime.rfc3339(Date()))"}

                """
            try await storage.writeAll(key: markerKey, data: Data(text.utf8))
        }
        if backup.objects.contains(where: { $0.key == manifestKey }) {
            try await storage.delete(keys: [manifestKey])
        }
        let rest = backup.objects.map(\.key).filter { $0 != manifestKey && $0 != markerKey }
        if !rest.isEmpty { try await storage.delete(keys: rest) }
        try await storage.delete(keys: [markerKey])
    }
}
