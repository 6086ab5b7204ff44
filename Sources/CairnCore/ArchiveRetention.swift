public import Foundation

/// Retention with a binary log archive. Pure.
///
/// Segments belong to the chain they continue: a segment is removed only
/// when every kept full backup already holds all of it (no restore from a
/// kept backup would replay it). And the backup plan, which knows only
/// backups, is corrected where segments matter: a backup it would remove
/// is kept when, with the segments, it restores the latest point or a point
/// of the PITR window that would otherwise no longer restore.
public enum ArchiveRetention {
    public struct Plan: Sendable, Hashable {
        /// The backup plan, with the backups the archive needs turned to keep.
        public var backups: RetentionPlan
        /// Backups the backup plan removed and the archive keeps.
        public var keptForArchive: [String]
        /// Segments to remove, oldest first.
        public var removableSegments: [ArchiveSegmentManifest]
        /// Segments no kept backup needs any more that stay because the
        /// plan's `object_lock` still locks them, oldest first, with the lock's end.
        public var lockedSegments: [LockedSegment] = []
    }

    /// A segment kept only because the store still locks it.
    public struct LockedSegment: Sendable, Hashable {
        public var segment: ArchiveSegmentManifest
        public var lockedUntil: Date
        /// `locked until ... (object_lock compliance, 30 days)`.
        public var reason: String
    }

    /// Until when `objectLock` locks a segment's objects, when that is after
    /// `now`: counted from the time it was archived (its manifest, written last).
    public static func lockEnd(of segment: ArchiveSegmentManifest, objectLock: ObjectLockConfig, now: Date) -> Date? {
        objectLock.lockEnd(writtenBy: max(segment.archivedTime, segment.lastEventTime), now: now)
    }

    public static func plan(_ backupPlan: RetentionPlan, backups: [BackupManifest], archive: ArchiveTimeline) -> Plan {
        guard !archive.isEmpty else { return Plan(backups: backupPlan, keptForArchive: [], removableSegments: [], lockedSegments: []) }
        var keptNames = Set(backupPlan.kept.map(\.name))
        var keptForArchive: [String] = []
        func kept() -> [BackupManifest] { backups.filter { keptNames.contains($0.backupName) } }
        func protect(_ plan: RestorePlan) {
            for b in plan.backups where keptNames.insert(b.backupName).inserted { keptForArchive.append(b.backupName) }
        }

        // The latest point stays where it is.
        if let latest = try? RestorePlanner.plan(backups: backups, archive: archive, target: .latest) {
            let after = try? RestorePlanner.plan(backups: kept(), archive: archive, target: .latest)
            if after?.expectedPosition != latest.expectedPosition { protect(latest) }
        }

        // The PITR window: where what restores can change, at the window's
        // start, just after each full backup finished, and just after each
        // gap. Between those points the same segments carry on.
        if let start = backupPlan.windowStart {
            var points: Set<Date> = [start]
            for b in backups where b.isSnapshot && b.finishTime >= start { points.insert(b.finishTime.addingTimeInterval(1)) }
            for gap in archive.gaps where gap.beforeTime >= start { points.insert(gap.beforeTime.addingTimeInterval(1)) }
            for t in points.sorted() {
                guard let before = try? RestorePlanner.plan(backups: backups, archive: archive, target: .time(t)) else { continue }
                if (try? RestorePlanner.plan(backups: kept(), archive: archive, target: .time(t))) == nil { protect(before) }
            }
        }

        var plan = backupPlan
        if !keptForArchive.isEmpty {
            let protected = Set(keptForArchive)
            for i in plan.decisions.indices where protected.contains(plan.decisions[i].name) {
                plan.decisions[i].action = .keep
                plan.decisions[i].reasons.insert(RetentionReason(.binlogArchive, "with the archived binary log it restores a point that would otherwise be lost"), at: 0)
            }
            plan.removalOrder.removeAll { protected.contains($0) }
        }

        let keptFulls = kept().filter { !$0.incremental }
        let unneeded = keptFulls.isEmpty ? [] : archive.segments.filter { segment in
            keptFulls.allSatisfy { $0.position.contains(segment.position) }
        }
        // The store keeps what it still locks (a delete only hides it): those stay, and are reported.
        var removable: [ArchiveSegmentManifest] = []
        var locked: [LockedSegment] = []
        for segment in unneeded {
            if let lock = backupPlan.objectLock, let until = lockEnd(of: segment, objectLock: lock, now: backupPlan.now) {
                locked.append(LockedSegment(segment: segment, lockedUntil: until, reason: lock.reason(until: until)))
            } else {
                removable.append(segment)
            }
        }
        return Plan(backups: plan, keptForArchive: keptForArchive, removableSegments: removable, lockedSegments: locked)
    }
}
