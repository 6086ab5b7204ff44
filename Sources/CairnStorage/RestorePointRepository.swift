import CairnCore
import Foundation
import Logging

/// Where a keyspace's restore points live in storage, and whether each
/// shard can restore them.
///
/// One small JSON object per point: `<keyspace>/restore-points/<name>.json`,
/// written whole (visible only once complete). `restore-points` holds a
/// `-` and is no key range, so it can never be a shard's directory.
public struct RestorePointRepository: Sendable {
    public let storage: any BackupStorage
    let logger: Logger

    public init(storage: any BackupStorage, logger: Logger) {
        self.storage = storage
        self.logger = logger
    }

    public static let directory = "restore-points"

    public static func prefix(keyspace: String) -> String {
        "\(keyspace)/\(directory)/"
    }

    public static func key(keyspace: String, name: String) -> String {
        "\(prefix(keyspace: keyspace))\(name).json"
    }

    /// Stores a new point; a point of that name must not exist.
    public func save(_ point: RestorePoint) async throws {
        try RestorePoint.validateName(point.name)
        let key = Self.key(keyspace: point.keyspace, name: point.name)
        guard try await !storage.exists(key: key) else {
            throw CairnError(.alreadyExists, "restore point \(point.name) already exists in keyspace \(point.keyspace); choose another name")
        }
        try await storage.writeAll(key: key, data: try CairnJSON.encoder(pretty: true).encode(point))
    }

    /// The point named `name`, or an error that says how to list them.
    public func load(keyspace: String, name: String) async throws -> RestorePoint {
        try RestorePoint.validateName(name)
        let data: Data
        do {
            data = try await storage.readAll(key: Self.key(keyspace: keyspace, name: name), limit: 1 << 20)
        } catch let error as CairnError where error.code == .notFound {
            throw CairnError(.notFound, "there is no restore point \(name) in keyspace \(keyspace); list them with `cairn restore-points \(keyspace)`")
        }
        return try RestorePoint.decode(data, name: name, keyspace: keyspace)
    }

    /// Every readable point of `keyspace`, oldest first; an unreadable one is logged and left out.
    public func list(keyspace: String) async throws -> [RestorePoint] {
        let prefix = Self.prefix(keyspace: keyspace)
        var points: [RestorePoint] = []
        for object in try await storage.list(prefix: prefix) where object.key.hasSuffix(".json") {
            let name = String(object.key.dropFirst(prefix.count).dropLast(".json".count))
            guard !name.contains("/"), (try? RestorePoint.validateName(name)) != nil else { continue }
            do {
                points.append(try await load(keyspace: keyspace, name: name))
            } catch let error as CairnError {
                logger.warning("a restore point cannot be read", metadata: ["keyspace": "\(keyspace)", "point": "\(name)", "error": "\(error.message)"])
            }
        }
        return points.sorted { ($0.createdAt, $0.name) < ($1.createdAt, $1.name) }
    }

    /// Applies ``RestorePointRetention`` for one shard after its prune, and
    /// (unless `dryRun`) deletes what it removes. Returns the removals.
    /// Points `objectLock` still locks are not removed.
    public func prune(shard: KeyspaceShard, keptManifests: [BackupManifest], archive: ArchiveTimeline, policy: RetentionPolicy,
                      now: Date, dryRun: Bool, objectLock: ObjectLockConfig? = nil) async throws -> [RestorePointRetention.Removal] {
        let points = try await list(keyspace: shard.keyspace)
        guard !points.isEmpty else { return [] }
        let removals = RestorePointRetention.removals(points, shard: shard.shard, keptManifests: keptManifests, archive: archive,
                                                      policy: policy, now: now, objectLock: objectLock)
        guard !dryRun, !removals.isEmpty else { return removals }
        try await storage.delete(keys: removals.map { Self.key(keyspace: shard.keyspace, name: $0.name) })
        for removal in removals {
            logger.info("removed a restore point", metadata: ["keyspace": "\(shard.keyspace)", "point": "\(removal.name)", "reason": "\(removal.reason)"])
        }
        return removals
    }

    /// Each point with, for each of its shards, whether the shard's stored
    /// backups reach its position (nil) or why not.
    public func statuses(keyspace: String) async throws -> [RestorePointStatus] {
        let points = try await list(keyspace: keyspace)
        let repository = BackupRepository(storage: storage, logger: logger)
        var manifests: [String: [BackupManifest]] = [:]
        var archives: [String: ArchiveTimeline] = [:]
        for shard in Set(points.flatMap(\.shards.keys)) {
            let listing = try await repository.list(try KeyspaceShard(keyspace: keyspace, shard: shard))
            manifests[shard] = listing.manifests
            archives[shard] = try await repository.listArchive(listing.shard, objects: listing.archiveObjects).timeline
        }
        return points.map { point in
            var unreachable: [String: String] = [:]
            for (shard, part) in point.shards {
                do {
                    _ = try RestorePlanner.plan(backups: manifests[shard] ?? [], archive: archives[shard] ?? ArchiveTimeline([]),
                                                target: .position(part.position))
                } catch let error as CairnError {
                    unreachable[shard] = error.message
                } catch {
                    unreachable[shard] = "\(error)"
                }
            }
            return RestorePointStatus(point: point, unreachable: unreachable)
        }
    }
}

/// A restore point and whether every shard can restore it yet.
public struct RestorePointStatus: Codable, Sendable {
    public var point: RestorePoint
    /// Shards whose backups do not reach the point yet, with the planner's reason.
    public var unreachable: [String: String]

    public var restorable: Bool { unreachable.isEmpty }

    public init(point: RestorePoint, unreachable: [String: String]) {
        self.point = point
        self.unreachable = unreachable
    }

    enum CodingKeys: String, CodingKey {
        case point, unreachable, restorable
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(point, forKey: .point)
        try c.encode(unreachable, forKey: .unreachable)
        try c.encode(restorable, forKey: .restorable)
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        point = try c.decode(RestorePoint.self, forKey: .point)
        unreachable = try c.decode([String: String].self, forKey: .unreachable)
    }
}
