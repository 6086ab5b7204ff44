public import Foundation

/// One instant across every shard of a keyspace: each shard's GTID position
/// read while commits were blocked on all of the keyspace's primaries at
/// once, so no shard's position holds a commit that happened after a
/// commit another shard's position leaves out.
public struct RestorePoint: Codable, Sendable, Hashable {
    /// One shard's part of the point.
    public struct ShardPoint: Codable, Sendable, Hashable {
        public var position: ReplicationPosition
        /// The primary tablet whose position this is.
        public var tablet: String
        /// How long this primary held its commits (from the block to its release).
        public var blockedMilliseconds: Int

        public init(position: ReplicationPosition, tablet: String, blockedMilliseconds: Int) {
            self.position = position
            self.tablet = tablet
            self.blockedMilliseconds = blockedMilliseconds
        }

        enum CodingKeys: String, CodingKey {
            case position, tablet
            case blockedMilliseconds = "blocked_ms"
        }
    }

    public static let formatVersion = 1

    public var formatVersion: Int = RestorePoint.formatVersion
    public var name: String
    public var keyspace: String
    /// When commits were released.
    public var createdAt: Date
    /// The longest any one primary held its commits blocked.
    public var blockedMilliseconds: Int
    /// Keyed by shard name (`-80`, `80-`).
    public var shards: [String: ShardPoint]

    public init(name: String, keyspace: String, createdAt: Date, blockedMilliseconds: Int, shards: [String: ShardPoint]) {
        self.name = name
        self.keyspace = keyspace
        self.createdAt = createdAt
        self.blockedMilliseconds = blockedMilliseconds
        self.shards = shards
    }

    enum CodingKeys: String, CodingKey {
        case formatVersion = "format_version"
        case name, keyspace, shards
        case createdAt = "created_at"
        case blockedMilliseconds = "blocked_ms"
    }

    /// A point's name: letters, digits, '.', '_' and '-', at most 64, not starting with '.'.
    public static func validateName(_ name: String) throws {
        let allowed = !name.isEmpty && name.count <= 64 && !name.hasPrefix(".")
            && name.unicodeScalars.allSatisfy { isWordScalar($0) || $0 == "-" || $0 == "." }
        guard allowed else {
            throw CairnError(.usage, "invalid restore point name \"\(clip(name))\": use letters, digits, '.', '_' and '-' (at most 64 characters, not starting with '.'), e.g. before-migration")
        }
    }

    /// The position of `shard` at this point, or a sentence naming the shards it has.
    public func position(of shard: KeyspaceShard) throws -> ReplicationPosition {
        guard shard.keyspace == keyspace, let point = shards[shard.shard] else {
            throw CairnError(.notFound, "restore point \(name) of keyspace \(keyspace) has no position for \(shard); it covers \(shards.keys.sorted().map { "\(keyspace)/\($0)" }.joined(separator: ", "))")
        }
        return point.position
    }

    /// Decodes a stored point, checking that it is the one asked for.
    public static func decode(_ data: Data, name: String, keyspace: String) throws -> RestorePoint {
        let point: RestorePoint
        do {
            point = try CairnJSON.decoder().decode(RestorePoint.self, from: data)
        } catch {
            throw CairnError(.manifest, "restore point \(name) of keyspace \(keyspace) is unreadable (\(error)); remove it from storage and create it again")
        }
        guard point.formatVersion <= RestorePoint.formatVersion else {
            throw CairnError(.manifest, "restore point \(name) has format \(point.formatVersion), newer than this Cairn reads (\(RestorePoint.formatVersion)); upgrade Cairn")
        }
        guard point.name == name, point.keyspace == keyspace else {
            throw CairnError(.manifest, "the stored restore point \(name) of keyspace \(keyspace) describes \(point.keyspace) point \(point.name); it was tampered with or misplaced")
        }
        return point
    }
}

/// The wait for and hold of a keyspace-wide commit block, as a pure phase
/// machine: ctld drives it with what the primaries answer and the clock.
public struct CommitBlockRound: Sendable {
    public enum Outcome: Sendable, Equatable {
        /// Still waiting for some primaries to block.
        case waiting
        /// Every primary holds its block: release them all and record the point.
        case allBlocked
        /// Release whatever holds and record nothing.
        case abandon(String)
    }

    public let shards: [String]
    public let maximumBlock: Duration
    public let started: ContinuousClock.Instant
    public private(set) var blocked: [String: RestorePoint.ShardPoint] = [:]
    public private(set) var outcome: Outcome = .waiting

    public init(shards: [String], maximumBlock: Duration, started: ContinuousClock.Instant) {
        self.shards = shards
        self.maximumBlock = maximumBlock
        self.started = started
    }

    /// A primary answered with its position while blocked.
    public mutating func blocked(_ shard: String, _ point: RestorePoint.ShardPoint, at now: ContinuousClock.Instant) {
        guard outcome == .waiting else { return }
        blocked[shard] = point
        if now - started > maximumBlock {
            outcome = .abandon("waiting for every primary to block commits took longer than the maximum block of \(describe(maximumBlock)); retry when the keyspace is less busy, or raise --max-block")
        } else if blocked.count == shards.count {
            outcome = .allBlocked
        }
    }

    /// A primary could not block (or could not be reached).
    public mutating func failed(_ shard: String, _ reason: String) {
        guard outcome == .waiting else { return }
        outcome = .abandon("shard \(shard) could not block its commits: \(reason)")
    }

    /// A primary answered the release: how long it held its commits, or nil
    /// when it held nothing any more (its block was lost: the connection
    /// died, the tablet restarted or released it on its own). A point is
    /// recorded only when every primary held its block until the release.
    public mutating func released(_ shard: String, blockedMilliseconds: Int?) {
        if let blockedMilliseconds {
            blocked[shard]?.blockedMilliseconds = blockedMilliseconds
            return
        }
        guard outcome == .allBlocked || outcome == .waiting else { return }
        outcome = .abandon("shard \(shard)'s commit block was lost before the round ended (its tablet held nothing when released), so its position may hold commits made after the others blocked; retry")
    }

    /// The clock passed the maximum block while some primaries had not answered.
    public mutating func timedOut(at now: ContinuousClock.Instant) {
        guard outcome == .waiting, now - started > maximumBlock else { return }
        let missing = shards.filter { blocked[$0] == nil }
        outcome = .abandon("shard\(missing.count == 1 ? "" : "s") \(missing.joined(separator: ", ")) did not block commits within the maximum block of \(describe(maximumBlock)); retry when the keyspace is less busy, or raise --max-block")
    }

    func describe(_ d: Duration) -> String {
        let ms = d.milliseconds
        return ms % 1000 == 0 ? "\(ms / 1000)s" : "\(ms)ms"
    }
}

extension Duration {
    /// Whole milliseconds, rounded down.
    public var milliseconds: Int {
        Int(components.seconds) * 1000 + Int(components.attoseconds / 1_000_000_000_000_000)
    }
}

/// Which restore points a shard's prune removes: pure, so each rule is
/// unit-tested without storage.
///
/// A point inside the PITR window is kept (the window keeps its chains
/// restorable); one older than the window goes, and its chains are left to
/// the backup policy. Without a window, a point goes once it can never be
/// restored again: the shard's kept backups already pass its position, yet
/// no kept chain reaches it (its chain was pruned; a kept full backup
/// without its incrementals does not help). A point the backups have not
/// reached yet stays. Nothing younger than `min_age` goes.
public enum RestorePointRetention {
    public struct Removal: Sendable, Hashable {
        public var name: String
        public var reason: String
    }

    /// `keptManifests`: the shard's complete backups that the prune keeps;
    /// `archive`: its archived binary log segments (those the prune removes
    /// are ones every kept full backup holds, so they reach no point the
    /// kept backups do not).
    /// `objectLock`: a point the store still locks (counted from its creation) stays.
    public static func removals(_ points: [RestorePoint], shard: String, keptManifests: [BackupManifest],
                                archive: ArchiveTimeline = ArchiveTimeline([]), policy: RetentionPolicy, now: Date,
                                objectLock: ObjectLockConfig? = nil) -> [Removal] {
        points.compactMap { point -> Removal? in
            guard let part = point.shards[shard] else { return nil }
            guard now.timeIntervalSince(point.createdAt) >= policy.minAge.timeInterval else { return nil }
            if let objectLock, objectLock.lockEnd(writtenBy: point.createdAt, now: now) != nil { return nil }
            if let window = policy.pitrWindow {
                guard point.createdAt < now.addingTimeInterval(-window.timeInterval) else { return nil }
                return Removal(name: point.name, reason: "older than the PITR window (\(window))")
            }
            let passed = keptManifests.contains { $0.position.contains(part.position) }
            guard passed, (try? RestorePlanner.plan(backups: keptManifests, archive: archive, target: .position(part.position))) == nil else { return nil }
            return Removal(name: point.name, reason: "the kept backups of shard \(shard) pass its position but no kept chain reaches it, so it can no longer be restored")
        }
    }
}

/// When ctld creates the next restore point of a keyspace
/// (`backup_strategy.restore_point_interval`).
public enum RestorePointSchedule {
    /// Automatic points are named for the second they were planned at.
    public static func automaticName(at time: Date) -> String {
        "auto-\(UTCTime.nameStamp(time))"
    }

    /// Due `interval` after the newest point, at once when there is none;
    /// after a failure, again after `retry` (never later than the interval).
    public static func nextDue(newest: Date?, lastFailure: Date?, interval: ConfigDuration,
                               retry: TimeInterval = 60) -> Date {
        var due = newest.map { $0.addingTimeInterval(interval.timeInterval) } ?? .distantPast
        if let lastFailure {
            due = max(due, lastFailure.addingTimeInterval(min(retry, interval.timeInterval)))
        }
        return due
    }
}
