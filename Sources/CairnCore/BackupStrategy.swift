public import Foundation

/// What kind of backup was asked for on the command line or by the scheduler.
public enum RequestedBackupType: String, Sendable, Hashable, CaseIterable, Codable {
    case auto
    case full
    case incremental
    /// A physical delta: the pages changed since the chain's newest full backup or delta.
    case delta
}

/// What the strategy decided to take.
public enum BackupDecision: Sendable, Hashable {
    case full(reason: String)
    /// An incremental continuing `parent`, the newest backup of the latest chain.
    case incremental(parent: BackupManifest, reason: String)
    /// A physical delta continuing `parent`, the newest full backup or delta
    /// of the latest chain (never a binary log incremental: the delta holds
    /// every page changed since `parent`, and the incrementals after it
    /// continue from the delta's position).
    case delta(parent: BackupManifest, reason: String)

    public var isIncremental: Bool {
        if case .incremental = self { return true }
        return false
    }

    public var reason: String {
        switch self {
        case .full(let r), .incremental(_, let r), .delta(_, let r): r
        }
    }
}

/// When the next backups are due under the configured strategy: the one
/// computation behind both `cairn backups` (next full and incremental) and
/// the scheduler (``next``, what it runs), so the two cannot disagree.
public struct BackupSchedule: Sendable, Hashable {
    /// One backup falling due.
    public struct Due: Sendable, Hashable {
        public var at: Date
        /// `.full` or `.incremental`.
        public var type: RequestedBackupType
        public var reason: String
    }

    public var nextFull: Date?
    public var nextIncremental: Date?
    /// When `delta_backup_interval` next falls due (before the next full backup).
    public var nextDelta: Date? = nil
    /// The backup due first, nil without a strategy.
    public var next: Due?
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
        // The newest snapshot of that chain: what a delta continues.
        let chainBase = chainEnd.flatMap { chains.ancestry(of: $0).backups.first(where: \.isSnapshot) }
        switch requested {
        case .full:
            return .full(reason: "a full backup was requested")
        case .incremental:
            guard let parent = chainEnd else {
                throw CairnError(.chain, "there is no complete full backup to continue with an incremental; take a full backup first (--type full)")
            }
            return .incremental(parent: parent, reason: "an incremental backup was requested")
        case .delta:
            guard let base = chainBase else {
                throw CairnError(.chain, "there is no complete full backup for a delta to continue; take a full backup first (--type full)")
            }
            if let why = deltaParentProblem(base) { throw CairnError(.chain, why) }
            return .delta(parent: base, reason: "a delta backup was requested")
        case .auto:
            guard let full = latestFull, let parent = chainEnd else {
                return .full(reason: noChainReason)
            }
            if let strategy {
                let age = now.timeIntervalSince(full.startTime)
                if age >= strategy.fullBackupInterval.timeInterval {
                    return .full(reason: "the last full backup \(full.backupName) is older than full_backup_interval (\(strategy.fullBackupInterval))")
                }
                if let interval = strategy.deltaBackupInterval, let base = chainBase,
                   now.timeIntervalSince(base.startTime) >= interval.timeInterval {
                    // A chain that cannot take a delta (a logical full backup, or one taken
                    // before Cairn recorded its LSN) goes on with incrementals until its next full backup.
                    if deltaParentProblem(base) == nil {
                        return .delta(parent: base, reason: "the chain's newest full backup or delta \(base.backupName) is older than delta_backup_interval (\(interval))")
                    }
                }
            }
            return .incremental(parent: parent, reason: "the chain of \(full.backupName) is current")
        }
    }

    /// Why `base` cannot be a delta's parent, as a sentence saying what to do, or nil.
    public static func deltaParentProblem(_ base: BackupManifest) -> String? {
        guard base.method == .physical else {
            return "the chain's newest full backup \(base.backupName) is a \(base.method.rawValue) backup and a delta continues only a physical one; take a physical full backup (--type full --engine physical)"
        }
        guard base.toLSN != nil else {
            return "backup \(base.backupName) records no InnoDB checkpoint LSN (it was taken before Cairn recorded one), so a delta cannot continue it; take a full backup (--type full)"
        }
        return nil
    }

    /// When the next full and incremental backups are due. An incremental is
    /// due an interval after the newest restorable backup, or after
    /// `lastAttempt` (a scheduled attempt that did not fail, even one that
    /// found nothing new, so an idle shard is not retried every tick), unless
    /// the full backup is due first. Without a chain a full backup is due `now`.
    public static func schedule(backups: [BackupManifest], strategy: BackupStrategyConfig?, now: Date,
                                lastAttempt: Date? = nil) -> BackupSchedule {
        guard let strategy else { return BackupSchedule(nextFull: nil, nextIncremental: nil, next: nil) }
        let chains = BackupChains(backups)
        guard let full = chains.restorable.last(where: { !$0.incremental }), let newest = chains.newestRestorable else {
            return BackupSchedule(nextFull: now, nextIncremental: nil,
                                  next: .init(at: now, type: .full, reason: noChainReason))
        }
        let nextFull = full.startTime.addingTimeInterval(strategy.fullBackupInterval.timeInterval)
        var schedule = BackupSchedule(nextFull: nextFull, nextIncremental: nil,
                                      next: .init(at: nextFull, type: .full, reason: "full_backup_interval after \(full.backupName)"))
        if let interval = strategy.deltaBackupInterval,
           let base = chains.ancestry(of: newest).backups.first(where: \.isSnapshot), deltaParentProblem(base) == nil {
            let due = base.startTime.addingTimeInterval(interval.timeInterval)
            if due < nextFull {
                schedule.nextDelta = due
                schedule.next = .init(at: due, type: .delta, reason: "delta_backup_interval after \(base.backupName)")
            }
        }
        if let interval = strategy.incrementalBackupInterval {
            var base = newest.startTime
            if let lastAttempt, lastAttempt > base { base = lastAttempt }
            let due = base.addingTimeInterval(interval.timeInterval)
            if due < nextFull {
                schedule.nextIncremental = due
                if due < schedule.next?.at ?? nextFull {
                    schedule.next = .init(at: due, type: .incremental, reason: "incremental_backup_interval after \(newest.backupName)")
                }
            }
        }
        return schedule
    }

    /// Why a full backup is due at once.
    public static let noChainReason = "no complete chain exists"
}
