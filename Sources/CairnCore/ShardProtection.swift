public import Foundation

/// What one shard's complete backups say about its protection: the newest
/// backup, the restorable window, and what is wrong. Pure, computed from
/// the manifests of one storage listing, so ctld's metrics, `cairn status`
/// and the console say the same thing (docs/OBSERVABILITY.md).
public struct ShardProtection: Sendable, Hashable, Codable {
    /// The newest complete backup (by start time), whatever its kind.
    public struct LastBackup: Sendable, Hashable, Codable {
        public var name: String
        /// `full` or `incremental`.
        public var type: String
        public var startTime: Date
        public var finishTime: Date
        public var storedBytes: Int64
        public var duration: TimeInterval { finishTime.timeIntervalSince(startTime) }

        public init(name: String, type: String, startTime: Date, finishTime: Date, storedBytes: Int64) {
            self.name = name
            self.type = type
            self.startTime = startTime
            self.finishTime = finishTime
            self.storedBytes = storedBytes
        }

        enum CodingKeys: String, CodingKey {
            case name, type
            case startTime = "start_time"
            case finishTime = "finish_time"
            case storedBytes = "stored_bytes"
        }
    }

    /// The instants a `--to-time` restore can reach, and the newest point a
    /// restore to the latest backup reaches.
    public struct RestorableWindow: Sendable, Hashable, Codable {
        /// The earliest restorable full backup's finish: nothing before it can be restored to.
        public var start: Date
        /// Every commit before this instant is in a restorable chain: the newest
        /// restorable incremental's start, or, with none after the newest
        /// restorable full backup or delta, that snapshot's start.
        public var end: Date

        public init(start: Date, end: Date) {
            self.start = start
            self.end = end
        }

        enum CodingKeys: String, CodingKey { case start, end }
    }

    public var lastBackup: LastBackup?
    public var lastFullFinish: Date?
    public var window: RestorableWindow?
    /// Complete backups in storage.
    public var completeBackups: Int
    /// Sentences naming what is wrong with the stored backups (not with jobs or tablets).
    public var problems: [String]

    enum CodingKeys: String, CodingKey {
        case lastBackup = "last_backup"
        case lastFullFinish = "last_full_finish"
        case window
        case completeBackups = "complete_backups"
        case problems
    }

    public init(manifests: [BackupManifest]) {
        let chains = BackupChains(manifests)
        completeBackups = chains.backups.count
        problems = []
        if let newest = chains.backups.last {
            lastBackup = LastBackup(name: newest.backupName, type: newest.typeName,
                                    startTime: newest.startTime, finishTime: newest.finishTime, storedBytes: newest.storedSize)
            if let broken = chains.brokenLink(of: newest) {
                problems.append("the newest backup \(newest.backupName) cannot be restored: \(broken)")
            }
        }
        lastFullFinish = chains.fullBackups.map(\.finishTime).max()
        let restorable = chains.restorable
        if let start = restorable.filter({ !$0.incremental }).map(\.finishTime).min() {
            let newestSnapshot = restorable.filter(\.isSnapshot).max { $0.startTime < $1.startTime }!
            // Incrementals continuing any restorable chain extend the window; a full backup's or
            // delta's own snapshot counts from its start.
            let end = max(newestSnapshot.startTime, restorable.filter { $0.method == .binlog }.map(\.coversUntil).max() ?? .distantPast)
            window = RestorableWindow(start: min(start, end), end: end)
        } else {
            window = nil
            if chains.backups.isEmpty {
                problems.append("there is no complete backup")
            } else {
                problems.append("no complete backup can be restored (no whole chain from a full backup)")
            }
        }
    }

    /// Whether the shard counts as protected at `now`: a restorable chain
    /// exists and its newest commit is younger than `maximumAge`.
    public func isProtected(now: Date, maximumAge: TimeInterval) -> Bool {
        guard let window else { return false }
        return now.timeIntervalSince(window.end) <= maximumAge
    }

    /// How old the restorable window's end may grow before a shard is not
    /// protected: twice the shortest backup interval of the strategy (one
    /// missed backup is tolerated), or 48 hours without a strategy.
    public static func maximumAge(strategy: BackupStrategyConfig?) -> TimeInterval {
        guard let strategy else { return 48 * 3600 }
        let shortest = min(strategy.fullBackupInterval, strategy.incrementalBackupInterval ?? strategy.fullBackupInterval)
        return 2 * shortest.timeInterval
    }
}
