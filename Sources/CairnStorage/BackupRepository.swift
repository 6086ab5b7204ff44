import CairnCore
import CairnSystem
import Foundation
import Logging

/// What storage holds for one backup directory.
public struct StoredBackup: Sendable {
    public var name: String
    public var parsedName: BackupName?
    public var state: StoredBackupState
    /// Every object of the backup, `MANIFEST` included.
    public var objects: [StorageObject]
    /// A removal of it began (a `REMOVING` marker is present): it is
    /// incomplete whatever else is left, and the next prune finishes removing it.
    public var removalStarted: Bool = false

    public var manifest: BackupManifest? { state.manifest }

    public var isComplete: Bool { manifest != nil }

    public var storedBytes: Int64 { objects.reduce(0) { $0 + $1.size } }

    /// The newest modification of any of its objects: how recently it was written to.
    public var lastModified: Date? { objects.compactMap(\.lastModified).max() }

    /// When it started: from the manifest, else from its name.
    public var startTime: Date? { manifest?.startTime ?? parsedName?.time }
}

/// One listing of a shard: every backup directory, complete or not, oldest
/// first. A backup lists its shard once and plans with this value: the
/// strategy's decision, its name (``uniqueName(startingAt:alias:)``) and,
/// with the backup it committed added (``add(_:)``), the prune after it.
public struct ShardListing: Sendable, RandomAccessCollection {
    public let shard: KeyspaceShard
    public private(set) var backups: [StoredBackup]
    /// Every directory name under the shard, backups or not: names a new backup must not take.
    private var directoryNames: Set<String>
    /// The objects of the shard's binary log archive, from the same listing
    /// (``BackupRepository/listArchive(_:objects:include:)`` reads their manifests).
    public let archiveObjects: [StorageObject]
    /// The objects of the shard's restore drills (``DrillRepository``), from the same listing.
    public let drillObjects: [StorageObject]

    init(shard: KeyspaceShard, backups: [StoredBackup], directoryNames: Set<String>, archiveObjects: [StorageObject] = [],
         drillObjects: [StorageObject] = []) {
        self.shard = shard
        self.backups = backups
        self.directoryNames = directoryNames
        self.archiveObjects = archiveObjects
        self.drillObjects = drillObjects
    }

    /// The key of the shard's newest drill record, if it has one.
    public var newestDrillKey: String? { DrillRepository.recordKeys(shard, in: drillObjects).last }

    public var startIndex: Int { backups.startIndex }
    public var endIndex: Int { backups.endIndex }
    public subscript(position: Int) -> StoredBackup { backups[position] }

    /// The complete backups, oldest first.
    public var manifests: [BackupManifest] { backups.compactMap(\.manifest) }

    /// A name no other directory of the shard has: the start second, moved
    /// on by a second while taken.
    public func uniqueName(startingAt start: Date, alias: TabletAlias) -> BackupName {
        var time = start
        while true {
            let name = BackupName(time: time, tabletAlias: alias)
            if !directoryNames.contains(name.description) { return name }
            time = time.addingTimeInterval(1)
        }
    }

    /// Adds (or replaces) a backup written since the listing was taken, keeping the order.
    public mutating func add(_ backup: StoredBackup) {
        backups.removeAll { $0.name == backup.name }
        backups.append(backup)
        backups.sort(by: BackupRepository.listingOrder)
        directoryNames.insert(backup.name)
    }
}

/// A backup that has begun: its name is taken and its `STARTED` marker written.
public struct StartedBackup: Sendable {
    public let shard: KeyspaceShard
    public let name: BackupName
    public let startTime: Date
    /// The `STARTED` marker as stored.
    let marker: StorageObject
}

/// The storage layout of the spec, on any backend, and the one place that knows it:
/// `<root>/<keyspace>/<shard>/<YYYY-MM-DD.HHMMSS>.<tablet-alias>/{STARTED,<data files>,MANIFEST}`.
/// Starting a backup, listing, committing and removing all go through it.
public struct BackupRepository: Sendable {
    public let storage: any BackupStorage
    let logger: Logger
    /// Where ``list(_:)`` finds manifests it decoded before (ctld, which
    /// lists every shard again and again); nil reads every one each time.
    let manifestCache: ManifestCache?

    public init(storage: any BackupStorage, logger: Logger, manifestCache: ManifestCache? = nil) {
        self.storage = storage
        self.logger = logger
        self.manifestCache = manifestCache
    }

    /// The prefix of every object of `shard`'s backups, relative to the storage root.
    public static func prefix(_ shard: KeyspaceShard) -> String {
        "\(shard.keyspace)/\(shard.shard)/"
    }

    public func key(_ shard: KeyspaceShard, _ backup: String, _ file: String) -> String {
        "\(Self.prefix(shard))\(backup)/\(file)"
    }

    static func listingOrder(_ a: StoredBackup, _ b: StoredBackup) -> Bool {
        (a.parsedName!, a.name) < (b.parsedName!, b.name)
    }

    /// Every backup directory of `shard`, complete or not, oldest first: one
    /// listing of the prefix and one read of each `MANIFEST` (none for those
    /// the manifest cache holds unchanged).
    public func list(_ shard: KeyspaceShard) async throws -> ShardListing {
        let prefix = Self.prefix(shard)
        let objects = try await storage.list(prefix: prefix)
        var groups: [String: [StorageObject]] = [:]
        var directoryNames: Set<String> = []
        for object in objects {
            let rest = object.key.dropFirst(prefix.count)
            guard let slash = rest.firstIndex(of: "/") else { continue }
            let name = String(rest[..<slash])
            directoryNames.insert(name)
            groups[name, default: []].append(object)
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
            var state = StoredBackupState.incomplete
            if !removing, let manifestObject = files.first(where: { $0.key == manifestKey }) {
                do {
                    let manifest: BackupManifest
                    if let cached = manifestCache?.manifest(for: manifestObject, group: prefix) {
                        manifest = cached
                    } else {
                        manifest = try BackupManifest.decode(try await readManifest(manifestObject), name: name)
                        manifestCache?.store(manifest, for: manifestObject, group: prefix)
                    }
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
        // Manifests of backups no longer stored (pruned, removed) leave the cache.
        manifestCache?.retain(group: prefix, keys: Set(objects.lazy.map(\.key).filter { $0.hasSuffix("/" + BackupManifest.fileName) }))
        return ShardListing(shard: shard, backups: result.sorted(by: Self.listingOrder), directoryNames: directoryNames,
                            archiveObjects: groups[ArchiveSegmentManifest.directoryName] ?? [],
                            drillObjects: groups[DrillRepository.directory] ?? [])
    }

    /// The complete backups of `shard`, oldest first.
    public func completeManifests(_ shard: KeyspaceShard) async throws -> [BackupManifest] {
        try await list(shard).manifests
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

    // MARK: - Writing a backup

    /// The object that makes a backup's directory visible from its first
    /// moment: who started it and when. It is not a data file.
    public static let startedMarker = "STARTED"

    /// What the `STARTED` marker says.
    public struct StartedMarker: Codable, Sendable, Hashable {
        public var backupName: String
        public var startTime: Date
        public var hostname: String
        public var pid: Int32

        public init(backupName: String, startTime: Date, hostname: String, pid: Int32) {
            self.backupName = backupName
            self.startTime = startTime
            self.hostname = hostname
            self.pid = pid
        }

        enum CodingKeys: String, CodingKey {
            case backupName = "backup_name"
            case startTime = "start_time"
            case hostname, pid
        }
    }

    /// Begins a backup of the shard of `listing`: discards what an earlier,
    /// interrupted backup left half-uploaded, takes a name no directory in
    /// `listing` has, and writes the `STARTED` marker, so that from here on
    /// an interrupted backup is listed as incomplete rather than not at all.
    /// The backup starts at `now()` once the leftovers are gone.
    public func start(in listing: ShardListing, alias: TabletAlias,
                      now: () -> Date = { Date() }) async throws -> StartedBackup {
        let shard = listing.shard
        // Pending multipart uploads and temporary files are not objects: the listing cannot show them.
        let discarded = try await storage.discardUnfinishedUploads(prefix: Self.prefix(shard))
        if discarded > 0 {
            logger.info("discarded unfinished uploads of an earlier backup", metadata: ["count": "\(discarded)"])
        }
        let start = now()
        let name = listing.uniqueName(startingAt: start, alias: alias)
        let marker = StartedMarker(backupName: name.description, startTime: start, hostname: FileSystem.hostname, pid: getpid())
        let data = try Self.markerData(marker)
        let key = key(shard, name.description, Self.startedMarker)
        try await storage.writeAll(key: key, data: data)
        return StartedBackup(shard: shard, name: name, startTime: start,
                             marker: StorageObject(key: key, size: Int64(data.count), lastModified: start))
    }

    /// Writes the manifest: the last step of a backup, the one that makes it complete.
    public func commit(_ manifest: BackupManifest, shard: KeyspaceShard) async throws {
        _ = try await writeManifest(manifest, shard: shard)
    }

    /// Commits `started` with its manifest, and returns the backup as a
    /// listing would now show it, for ``ShardListing/add(_:)``.
    public func commit(_ manifest: BackupManifest, of started: StartedBackup) async throws -> StoredBackup {
        let shard = started.shard
        let manifestObject = try await writeManifest(manifest, shard: shard)
        let files = manifest.files.map {
            StorageObject(key: key(shard, manifest.backupName, $0.name), size: $0.storedSize, lastModified: manifest.finishTime)
        }
        return StoredBackup(name: manifest.backupName, parsedName: started.name, state: .complete(manifest),
                            objects: [started.marker] + files + [manifestObject])
    }

    private func writeManifest(_ manifest: BackupManifest, shard: KeyspaceShard) async throws -> StorageObject {
        let data = try manifest.encoded()
        let key = key(shard, manifest.backupName, BackupManifest.fileName)
        try await storage.writeAll(key: key, data: data)
        return StorageObject(key: key, size: Int64(data.count), lastModified: manifest.finishTime)
    }

    // MARK: - Removing a backup

    /// The object that marks a backup whose removal began. While it is
    /// there the backup is incomplete to every reader, whatever else is left.
    public static let removingMarker = "REMOVING"

    /// What the `REMOVING` marker says.
    public struct RemovingMarker: Codable, Sendable, Hashable {
        public var backupName: String
        public var removalStarted: Date

        public init(backupName: String, removalStarted: Date) {
            self.backupName = backupName
            self.removalStarted = removalStarted
        }

        enum CodingKeys: String, CodingKey {
            case backupName = "backup_name"
            case removalStarted = "removal_started"
        }
    }

    /// Deletes one backup so that, stopped at any point, it leaves either the
    /// whole backup or one that is plainly incomplete and marked for removal:
    /// first the `REMOVING` marker (from then on nothing uses the backup),
    /// then `MANIFEST` (so even a reader that ignores the marker sees it
    /// incomplete), then the data files, and the marker last.
    public func delete(_ backup: StoredBackup, shard: KeyspaceShard) async throws {
        let manifestKey = key(shard, backup.name, BackupManifest.fileName)
        let markerKey = key(shard, backup.name, Self.removingMarker)
        if !backup.removalStarted {
            let data = try Self.markerData(RemovingMarker(backupName: backup.name, removalStarted: Date()))
            try await storage.writeAll(key: markerKey, data: data)
        }
        if backup.objects.contains(where: { $0.key == manifestKey }) {
            try await storage.delete(keys: [manifestKey])
        }
        let rest = backup.objects.map(\.key).filter { $0 != manifestKey && $0 != markerKey }
        if !rest.isEmpty { try await storage.delete(keys: rest) }
        try await storage.delete(keys: [markerKey])
    }

    /// A marker's bytes: one line of JSON.
    static func markerData<Marker: Encodable>(_ marker: Marker) throws -> Data {
        var data = try CairnJSON.encoder().encode(marker)
        data.append(UInt8(ascii: "\n"))
        return data
    }

    /// Reads a marker's bytes, as this or an earlier Cairn wrote them.
    public static func decodeMarker<Marker: Decodable>(_ type: Marker.Type, from data: Data) throws -> Marker {
        try CairnJSON.decoder().decode(type, from: data)
    }
}
