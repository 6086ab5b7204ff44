import Foundation

/// What kind of backup was asked for on the command line or by the scheduler.
public enum RequestedBackupType: String, Sendable, Hashable, CaseIterable, Codable {
    case auto
    case full
    case incremental
}

/// What the strategy decided to take.
public enum BackupDecision: Sendable, Hashable {
    case full(reason: String)
    /// An incremental continuing `parent`, the newest backup of the latest chain.
    case incremental(parent: BackupManifest, reason: String)

    public var isIncremental: Bool {
        if case .incremental = self { return true }
        return false
    }

    public var reason: String {
        switch self {
        case .full(let r), .incremental(_, let r): r
        }
    }
}

/// When the next backups are due under the configured strategy.
public struct BackupSchedule: Sendable, Hashable {
    public var nextFull: Date?
    public var nextIncremental: Date?
}

/// The full/incremental strategy: pure, driven by the list of complete backups.
public enum BackupStrategy {
    public static func decide(requested: RequestedBackupType, backups: [BackupManifest],
                              strategy: BackupStrategyConfig?, now: Date) throws -> BackupDecision {
        let chains = BackupChains(backups)
        let latestFull = chains.restorable.last { !$0.incremental }
        // The newest backup that continues the latest full backup's chain.
        let chainEnd: BackupManifest? = latestFull.flatMap { full in
            chains.restorable.last { b in
                b.startTime >= full.startTime && (chains.chain(to: b)?.first?.backupName == full.backupName)
            }
        }
        switch requested {
        case .full:
            return .full(reason: "a full backup was requested")
        case .incremental:
            guard let parent = chainEnd else {
                throw CairnError(.chain, "there is no complete full backup to continue with an incremental; take a full backup first (--type full)")
            }
            return .incremental(parent: parent, reason: "an incremental backup was requested")
        case .auto:
            guard let full = latestFull, let parent = chainEnd else {
                return .full(reason: "no complete chain exists")
            }
            if let strategy {
                let age = now.timeIntervalSince(full.startTime)
                if age >= strategy.fullBackupInterval.timeInterval {
                    return .full(reason: "the last full backup \(full.backupName) is older than full_backup_interval (\(strategy.fullBackupInterval))")
                }
            }
            return .incremental(parent: parent, reason: "the chain of \(full.backupName) is current")
        }
    }

    /// When the next full and incremental backups are due.
    public static func schedule(backups: [BackupManifest], strategy: BackupStrategyConfig?, now: Date) -> BackupSchedule {
        guard let strategy else { return BackupSchedule(nextFull: nil, nextIncremental: nil) }
        let chains = BackupChains(backups)
        guard let full = chains.restorable.last(where: { !$0.incremental }) else {
            return BackupSchedule(nextFull: now, nextIncremental: nil)
        }
        let nextFull = full.startTime.addingTimeInterval(strategy.fullBackupInterval.timeInterval)
        var nextIncremental: Date? = nil
        if let interval = strategy.incrementalBackupInterval, let newest = chains.newestRestorable {
            let due = newest.startTime.addingTimeInterval(interval.timeInterval)
            nextIncremental = due < nextFull ? due : nil
        }
        return BackupSchedule(nextFull: nextFull, nextIncremental: nextIncremental)
    }
}
