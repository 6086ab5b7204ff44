public import Foundation

/// What a restore should reach.
public enum RestoreTarget: Sendable, Hashable, CustomStringConvertible {
    /// The newest backed-up position.
    case latest
    /// Exactly the position of the named backup.
    case backup(String)
    /// Every transaction with a timestamp before this instant (to the second).
    case time(Date)
    /// Every transaction up to and including this position.
    case position(ReplicationPosition)

    public var description: String {
        switch self {
        case .latest: "the latest backup"
        case .backup(let name): "backup \(name)"
        case .time(let t): "time \(UTCTime.rfc3339(t, fractional: false))"
        case .position(let p): "position \(p)"
        }
    }
}

/// A full backup and the incrementals to apply on it, in order.
public struct RestorePlan: Sendable, Hashable {
    public var full: BackupManifest
    public var incrementals: [BackupManifest]
    public var target: RestoreTarget
    /// Apply binlog events only up to and including this position (position targets).
    public var stopPosition: ReplicationPosition?
    /// Apply only transactions with a timestamp before this instant (time targets).
    public var stopTime: Date?
    /// Archived binary log segments to replay after the incrementals, in order.
    public var segments: [ArchiveSegmentManifest] = []
    /// The position the segments reach (with `segments` not empty).
    public var archiveReach: ReplicationPosition? = nil

    /// The position the restore reaches when it is known in advance (not for time targets).
    public var expectedPosition: ReplicationPosition? {
        switch target {
        case .time: nil
        case .position(let p): p
        default: archiveReach ?? (incrementals.last ?? full).position
        }
    }

    /// The position the backups (without segments) reach.
    public var chainEnd: ReplicationPosition { (incrementals.last ?? full).position }

    public var backups: [BackupManifest] { [full] + incrementals }

    /// The deltas to apply on the full backup, in order: the chain's links
    /// before its first binary log incremental.
    public var deltas: [BackupManifest] { Array(incrementals.prefix(while: \.isDelta)) }

    /// The binary log incrementals to replay after the deltas, in order.
    public var binlogIncrementals: [BackupManifest] { Array(incrementals.drop(while: \.isDelta)) }

    /// The position the data files reach (the full backup, or its last
    /// delta): where the binary log replay starts.
    public var snapshotPosition: ReplicationPosition { (deltas.last ?? full).position }
}

/// Chooses what to restore: pure, so every rule is unit-tested without I/O.
public enum RestorePlanner {
    public static func plan(backups: [BackupManifest], target: RestoreTarget) throws -> RestorePlan {
        let chains = BackupChains(backups)
        guard !chains.fullBackups.isEmpty else {
            throw CairnError(.chain, "there is no complete full backup to restore from; take a full backup first")
        }
        switch target {
        case .latest:
            guard let newest = chains.backups.last else {
                throw CairnError(.chain, "there is no complete backup to restore")
            }
            if let broken = chains.brokenLink(of: newest) {
                throw CairnError(.chain, "cannot restore the latest backup \(newest.backupName): \(broken); \(rangeSentence(chains)) Restore an earlier point with --to-time, --to-position or --backup")
            }
            return planFromChain(chains.chain(to: newest)!, target: target)

        case .backup(let name):
            guard let backup = chains.backup(named: name) else {
                let known = chains.backups.suffix(5).map(\.backupName).joined(separator: ", ")
                throw CairnError(.notFound, "there is no complete backup named \(clip(name)); list them with `cairn backups` (newest: \(known))")
            }
            if let broken = chains.brokenLink(of: backup) {
                throw CairnError(.chain, "cannot restore backup \(name): \(broken); \(rangeSentence(chains))")
            }
            return planFromChain(chains.chain(to: backup)!, target: target)

        case .position(let goal):
            // The newest snapshot (full backup or delta) at or before the goal,
            // then the fewest binary log incrementals after it that reach it.
            for base in chains.snapshots(where: { goal.contains($0.position) }) {
                if let plan = plan(from: base, chains: chains, target: target, reaches: { $0.position.contains(goal) }) {
                    return plan
                }
            }
            throw explainUnreachable(chains: chains, target: target,
                                     isCovered: { $0.position.contains(goal) },
                                     isBeforeAllFulls: !chains.fullBackups.contains { goal.contains($0.position) })

        case .time(let time):
            // A snapshot that finished before the time holds nothing after it.
            for base in chains.snapshots(where: { $0.finishTime < time }) {
                if let plan = plan(from: base, chains: chains, target: target, reaches: { $0.reachesTime(time) }) {
                    return plan
                }
            }
            throw explainUnreachable(chains: chains, target: target,
                                     isCovered: { $0.reachesTime(time) },
                                     isBeforeAllFulls: !chains.fullBackups.contains { $0.finishTime < time })
        }
    }

    /// The chain to the snapshot `base`, then the shortest run of its own
    /// binary log incrementals to the first that `reaches` the target (none
    /// when `base` itself does); nil when none does.
    static func plan(from base: BackupManifest, chains: BackupChains, target: RestoreTarget,
                     reaches: (BackupManifest) -> Bool) -> RestorePlan? {
        guard let chain = chains.chain(to: base) else { return nil }
        var run: [BackupManifest] = []
        if !reaches(base) {
            guard let end = chains.binlogRun(of: base).first(where: reaches) else { return nil }
            run = Array(chains.ancestry(of: end).backups.prefix { $0.backupName != base.backupName }.reversed())
        }
        var plan = planFromChain(chain + run, target: target)
        switch target {
        case .position(let goal): plan.stopPosition = run.isEmpty ? nil : goal
        case .time(let time): plan.stopTime = time
        default: break
        }
        return plan
    }

    static func planFromChain(_ chain: [BackupManifest], target: RestoreTarget) -> RestorePlan {
        RestorePlan(full: chain[0], incrementals: Array(chain.dropFirst()), target: target, stopPosition: nil, stopTime: nil)
    }

    static func explainUnreachable(chains: BackupChains, target: RestoreTarget,
                                   isCovered: (BackupManifest) -> Bool, isBeforeAllFulls: Bool) -> CairnError {
        let range = rangeSentence(chains)
        if isBeforeAllFulls {
            return CairnError(.chain, "\(target) is before the earliest full backup; \(range)")
        }
        // Something covers the target but no whole chain reaches it: a gap.
        if let broken = chains.backups.filter(isCovered).lazy.compactMap({ chains.brokenLink(of: $0) }).first {
            return CairnError(.chain, "cannot restore to \(target): the chain is broken, \(broken); \(range)")
        }
        if !chains.backups.contains(where: isCovered) {
            return CairnError(.chain, "\(target) is past the newest backed-up transaction; \(range) Take an incremental backup to extend it")
        }
        return CairnError(.chain, "no unbroken chain of backups reaches \(target); \(range)")
    }

    /// One sentence naming what can be restored.
    public static func rangeSentence(_ chains: BackupChains) -> String {
        let restorable = chains.restorable
        guard let earliestFull = restorable.first(where: { !$0.incremental }),
              let newest = restorable.max(by: { $0.startTime < $1.startTime }) else {
            return "nothing is restorable."
        }
        var s = "restorable positions run from \(earliestFull.position) (backup \(earliestFull.backupName)) to \(newest.position) (backup \(newest.backupName))"
        let incrementals = restorable.filter { $0.method == .binlog }
        if let firstFullTime = restorable.filter({ !$0.incremental }).map(\.finishTime).min(),
           let lastCover = incrementals.map(\.coversUntil).max(), lastCover > firstFullTime {
            s += ", restorable times from after \(UTCTime.rfc3339(firstFullTime, fractional: false)) to \(UTCTime.rfc3339(lastCover, fractional: false))"
        }
        return s + "."
    }
}
