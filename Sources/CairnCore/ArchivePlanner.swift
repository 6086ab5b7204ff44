public import Foundation

/// What a shard can be restored to: from the earliest full backup to the
/// furthest point backups and archived segments reach together, and the
/// gaps inside that no backup bridges.
public struct RestoreWindow: Sendable, Hashable, Codable {
    public var fromPosition: ReplicationPosition
    /// Time targets need a moment after the earliest full backup finished.
    public var fromTime: Date
    public var fromBackup: String
    public var toPosition: ReplicationPosition
    /// The newest transaction time a time target reaches, when known.
    public var toTime: Date?
    /// The newest backup the window's end builds on.
    public var toBackup: String
    /// How many archived segments the end of the window replays.
    public var segmentsApplied: Int
    public var gaps: [ArchiveGap]

    enum CodingKeys: String, CodingKey {
        case fromPosition = "from_position"
        case fromTime = "from_time"
        case fromBackup = "from_backup"
        case toPosition = "to_position"
        case toTime = "to_time"
        case toBackup = "to_backup"
        case segmentsApplied = "segments_applied"
        case gaps
    }

    public var sentence: String {
        var s = "restorable from \(fromPosition) (after \(UTCTime.rfc3339(fromTime, fractional: false)), backup \(fromBackup)) to \(toPosition)"
        if let toTime { s += " (\(UTCTime.rfc3339(toTime, fractional: false)))" }
        if !gaps.isEmpty { s += "; " + gaps.map(\.description).joined(separator: "; ") }
        return s + "."
    }
}

extension RestorePlanner {
    /// Plans a restore from full backups, incrementals and archived
    /// segments: the backups as ``plan(backups:target:)`` chooses them, then
    /// the segments that continue from where they end. Pure.
    public static func plan(backups: [BackupManifest], archive: ArchiveTimeline, target: RestoreTarget) throws -> RestorePlan {
        if archive.isEmpty { return try plan(backups: backups, target: target) }
        let chains = BackupChains(backups)
        guard !chains.fullBackups.isEmpty else {
            throw CairnError(.chain, "there is no complete full backup to restore from; take a full backup first (archived binary logs need one to start from)")
        }
        let window = window(backups: backups, archive: archive)
        let range = window.map { "the shard is " + $0.sentence } ?? RestorePlanner.rangeSentence(chains)
        switch target {
        case .backup:
            return try plan(backups: backups, target: target)

        case .latest:
            var base = try plan(backups: backups, target: .latest)
            let ext = archive.extend(from: base.chainEnd)
            if let gap = ext.blockedBy {
                throw CairnError(.chain, "cannot restore everything archived: \(gap); restore up to the gap with --to-position \(ext.reached.gtidText), or take a full backup so that later points are restorable again")
            }
            if !ext.segments.isEmpty {
                base.segments = ext.segments
                base.archiveReach = ext.reached
            }
            return base

        case .position(let goal):
            if let p = try? plan(backups: backups, target: target) { return p }
            var blocking: ArchiveGap? = nil
            for base in chains.snapshots(where: { goal.contains($0.position) }) {
                let ends = ([base] + chains.binlogRun(of: base)).filter { goal.contains($0.position) }
                for (rank, end) in ends.reversed().enumerated() {
                    guard let chain = chains.chain(to: end) else { continue }
                    let ext = archive.extend(from: end.position, until: { $0.position.contains(goal) })
                    if ext.reached.contains(goal) {
                        var p = RestorePlan(full: chain[0], incrementals: Array(chain.dropFirst()), target: target,
                                            stopPosition: goal, stopTime: nil)
                        p.segments = ext.segments
                        p.archiveReach = ext.reached
                        return p
                    }
                    // The gap that stops the furthest chain end is the one to name.
                    if rank == 0, blocking == nil, let gap = ext.blockedBy { blocking = gap }
                }
            }
            if !chains.fullBackups.contains(where: { goal.contains($0.position) }) {
                throw CairnError(.chain, "\(target) is before the earliest full backup; \(range)")
            }
            if let gap = blocking {
                throw CairnError(.chain, "cannot restore to \(target): it lies past \(gap); restore a point before the gap, or one after a full backup taken after it")
            }
            throw CairnError(.chain, "\(target) is past the newest archived transaction; \(range)")

        case .time(let time):
            if let p = try? plan(backups: backups, target: target) { return p }
            var blocking: ArchiveGap? = nil
            for base in chains.snapshots(where: { $0.finishTime < time }) {
                let ends = [base] + chains.binlogRun(of: base).filter { $0.coversUntil < time }
                for (rank, end) in ends.reversed().enumerated() {
                    guard let chain = chains.chain(to: end) else { continue }
                    let ext = archive.extend(from: end.position, until: { $0.lastEventTime >= time })
                    if let last = ext.segments.last, last.lastEventTime >= time {
                        var p = RestorePlan(full: chain[0], incrementals: Array(chain.dropFirst()), target: target,
                                            stopPosition: nil, stopTime: time)
                        p.segments = ext.segments
                        p.archiveReach = ext.reached
                        return p
                    }
                    if rank == 0, blocking == nil, let gap = ext.blockedBy, gap.afterTime < time { blocking = gap }
                }
            }
            if !chains.fullBackups.contains(where: { $0.finishTime < time }) {
                throw CairnError(.chain, "\(target) is before the earliest full backup finished; \(range)")
            }
            if let gap = blocking {
                throw CairnError(.chain, "cannot restore to \(target): it lies past \(gap); restore a time before the gap, or one after a full backup taken after it")
            }
            throw CairnError(.chain, "\(target) is past the newest archived transaction; \(range) Restore the latest state, or an earlier time")
        }
    }

    /// The restorable window of a shard, or nil when nothing is restorable. Pure.
    public static func window(backups: [BackupManifest], archive: ArchiveTimeline) -> RestoreWindow? {
        let chains = BackupChains(backups)
        let restorable = chains.restorable
        guard let earliest = restorable.filter({ !$0.incremental }).min(by: { $0.finishTime < $1.finishTime }),
              let newest = chains.newestRestorable else { return nil }
        let ext = archive.extend(from: newest.position)
        var toTime: Date? = restorable.filter { $0.method == .binlog }.map(\.coversUntil).max()
        if let last = ext.segments.last { toTime = max(toTime ?? last.lastEventTime, last.lastEventTime) }
        // A gap matters unless a restorable chain starts before it and ends after it.
        func bridged(_ gap: ArchiveGap) -> Bool {
            restorable.contains { b in
                guard b.position.contains(gap.before), let first = chains.ancestry(of: b).backups.last else { return false }
                return gap.after.contains(first.position)
            }
        }
        var gaps = archive.gaps.filter { !earliest.position.contains($0.before) && !bridged($0) }
        if let gap = ext.blockedBy, !gaps.contains(where: { $0.before == gap.before }) { gaps.append(gap) }
        return RestoreWindow(fromPosition: earliest.position, fromTime: earliest.finishTime, fromBackup: earliest.backupName,
                             toPosition: ext.reached, toTime: toTime, toBackup: newest.backupName,
                             segmentsApplied: ext.segments.count, gaps: gaps)
    }
}
