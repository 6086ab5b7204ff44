import CairnCore
import Foundation

extension ClusterAPI {
    /// `GET /api/v1/status`: every shard ctld knows, whether it is protected
    /// and what is wrong (`cairn status`, the console's overview).
    public struct FleetStatus: Codable, Sendable {
        public var generatedAt: Date
        /// How old a shard's newest restorable commit may be while it counts as protected.
        public var maximumAgeSeconds: Double
        public var shards: [ShardStatus]

        enum CodingKeys: String, CodingKey {
            case generatedAt = "generated_at"
            case maximumAgeSeconds = "maximum_age_seconds"
            case shards
        }
    }

    public struct ShardStatus: Codable, Sendable {
        public var keyspace: String
        public var shard: String
        /// nil until ctld has listed the shard's backups once.
        public var protected: Bool?
        public var lastBackup: ShardProtection.LastBackup?
        public var lastBackupAgeSeconds: Double?
        public var window: ShardProtection.RestorableWindow?
        public var completeBackups: Int?
        public var lastDrill: DrillStatus?
        public var tablets: Int
        public var healthyTablets: Int
        public var runningJob: Int64?
        public var nextBackup: Date?
        public var listedAt: Date?
        /// One sentence per thing that is wrong; empty when all is well.
        public var problems: [String]
        /// The archive lease holder's archive lag from its last heartbeat (issue 11):
        /// seconds its oldest received but not yet stored transaction has waited;
        /// nil when no tablet of the shard archives its binary log.
        public var archiveLagSeconds: Double? = nil

        public var id: String { "\(keyspace)/\(shard)" }

        enum CodingKeys: String, CodingKey {
            case keyspace, shard, protected
            case lastBackup = "last_backup"
            case lastBackupAgeSeconds = "last_backup_age_seconds"
            case window
            case completeBackups = "complete_backups"
            case lastDrill = "last_drill"
            case tablets
            case healthyTablets = "healthy_tablets"
            case runningJob = "running_job"
            case nextBackup = "next_backup"
            case listedAt = "listed_at"
            case problems
            case archiveLagSeconds = "archive_lag_seconds"
        }
    }

    public struct DrillStatus: Codable, Sendable {
        public var finishedAt: Date
        public var passed: Bool
        public var restoreSeconds: Double
        public var detail: String?

        enum CodingKeys: String, CodingKey {
            case finishedAt = "finished_at"
            case passed
            case restoreSeconds = "restore_seconds"
            case detail
        }
    }
}

/// Builds the fleet status from what ctld holds in memory and one read of
/// the tablets: pure, so each rule is unit-tested.
enum FleetStatusBuilder {
    static func build(shards: [KeyspaceShard], inventory: [String: ShardInventory.Entry], tablets: [ClusterAPI.Tablet],
                      schedule: [String: Date], now: Date, heartbeatTimeout: TimeInterval, maximumAge: TimeInterval) -> ClusterAPI.FleetStatus {
        let tabletsByShard = Dictionary(grouping: tablets, by: \.shardID)
        let result = shards.map { shard -> ClusterAPI.ShardStatus in
            let id = shard.description
            let entry = inventory[id]
            let shardTablets = tabletsByShard[id] ?? []
            let healthy = shardTablets.filter { t in
                t.healthy && (t.lastHeartbeat.map { now.timeIntervalSince($0) < heartbeatTimeout } ?? false)
            }
            var problems: [String] = []
            let protection = entry?.protection
            var protected: Bool? = nil
            if let protection {
                protected = protection.isProtected(now: now, maximumAge: maximumAge)
                problems += protection.problems
                if let window = protection.window, protected == false {
                    problems.append("the newest restorable commit is \(ageText(now.timeIntervalSince(window.end))) old, more than the \(ageText(maximumAge)) allowed")
                }
            } else if entry?.listingError == nil {
                problems.append("ctld has not listed its backups yet")
            }
            if let error = entry?.listingError {
                problems.append("listing its backups failed: \(error)")
            }
            if let end = entry?.lastJobEnd, end.result == .failed {
                problems.append("the last \(end.kind.rawValue) job (\(end.id)) failed: \(end.error ?? "no reason given")")
            }
            if !shardTablets.contains(where: { $0.type == .primary }) {
                problems.append("no primary tablet is registered")
            }
            for t in shardTablets where !healthy.contains(where: { $0.alias == t.alias }) {
                problems.append("tablet \(t.alias) (\(t.type.rawValue)) is not healthy")
            }
            if let drill = entry?.lastDrill, !drill.passed {
                problems.append("the last restore drill failed\(drill.detail.map { ": \($0)" } ?? "")")
            }
            let running = shardTablets.compactMap(\.currentJob).first
            return ClusterAPI.ShardStatus(
                keyspace: shard.keyspace, shard: shard.shard, protected: protected,
                lastBackup: protection?.lastBackup,
                lastBackupAgeSeconds: protection?.lastBackup.map { max(0, now.timeIntervalSince($0.finishTime)) },
                window: protection?.window, completeBackups: protection?.completeBackups,
                lastDrill: entry?.lastDrill.map { ClusterAPI.DrillStatus(finishedAt: $0.finishedAt, passed: $0.passed, restoreSeconds: $0.restoreSeconds, detail: $0.detail) },
                tablets: shardTablets.count, healthyTablets: healthy.count, runningJob: running,
                nextBackup: schedule[id], listedAt: entry?.listedAt, problems: problems,
                archiveLagSeconds: entry?.archiveLagSeconds)
        }
        return ClusterAPI.FleetStatus(generatedAt: now, maximumAgeSeconds: maximumAge, shards: result)
    }

    /// `45s`, `12m`, `3h10m`, `2d4h`: short enough for a table column.
    static func ageText(_ seconds: TimeInterval) -> String {
        let s = max(0, Int(seconds))
        if s < 60 { return "\(s)s" }
        if s < 3600 { return "\(s / 60)m" }
        if s < 86_400 { return "\(s / 3600)h" + (s % 3600 >= 60 ? "\((s % 3600) / 60)m" : "") }
        return "\(s / 86_400)d" + (s % 86_400 >= 3600 ? "\((s % 86_400) / 3600)h" : "")
    }
}
