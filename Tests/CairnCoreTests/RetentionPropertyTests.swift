import CairnCore
import Foundation
import PropertyBased
import Testing

/// Random histories, random policies: the plan must keep every promise,
/// checked with the restore planner on what is left.
@Suite("Retention properties")
struct RetentionPropertyTests {
    /// One step of a generated history: what happens (`kind`, 0-99), after
    /// how many minutes (`gap`), which earlier backup it continues (`pick`),
    /// and how long it takes (`duration`, minutes).
    typealias Step = (kind: Int, gap: Int, pick: Int, duration: Int)

    static let steps = zip(Gen.int(in: 0...99), Gen.int(in: 1...3000), Gen.int(in: 0...99), Gen.int(in: 1...180))
        .map { Step(kind: $0.0, gap: $0.1, pick: $0.2, duration: $0.3) }
        .array(of: 0...45)

    /// min_count, min_age (minutes; small values mean none), pitr_window
    /// (minutes; small values mean none), keep_daily, keep_weekly,
    /// keep_monthly, incomplete_after (hours).
    static let policies = zip(Gen.int(in: 1...4), Gen.int(in: 0...6000), Gen.int(in: 0...30000), Gen.int(in: 0...8),
                              Gen.int(in: 0...5), Gen.int(in: 0...3), Gen.int(in: 1...72))
        .map { minCount, minAge, window, daily, weekly, monthly, incompleteHours in
            RetentionPolicy(minCount: minCount, minAge: ConfigDuration(seconds: minAge < 3000 ? 0 : Int64(minAge) * 60),
                            pitrWindow: window < 5000 ? nil : ConfigDuration(seconds: Int64(window) * 60),
                            keepDaily: daily, keepWeekly: weekly, keepMonthly: monthly,
                            incompleteAfter: ConfigDuration(seconds: Int64(incompleteHours) * 3600))
        }

    /// Minutes between the last step and now.
    static let tails = Gen.int(in: 0...20000)

    @Test("every promise holds on random histories")
    func invariants() async {
        await propertyCheck(count: 400, input: Self.steps, Self.policies, Self.tails) { steps, policy, tail in
            let (candidates, now) = History.build(steps, tail: tail)
            let plan = RetentionPlanner.plan(candidates, policy: policy, now: now)
            Invariants.check(candidates: candidates, policy: policy, now: now, plan: plan)
        }
    }

    /// `object_lock` days; 0 means none.
    static let lockDays = Gen.int(in: 0...12)

    @Test("with object_lock, nothing the store still locks is removed, every other promise holds, and a second prune removes nothing more")
    func objectLock() async {
        await propertyCheck(count: 300, input: Self.steps, Self.policies, Self.tails, Self.lockDays) { steps, policy, tail, days in
            let (candidates, now) = History.build(steps, tail: tail)
            let lock = days == 0 ? nil : ObjectLockConfig(mode: days % 2 == 0 ? .compliance : .governance, days: days)
            let plan = RetentionPlanner.plan(candidates, policy: policy, now: now, objectLock: lock)
            Invariants.check(candidates: candidates, policy: policy, now: now, plan: plan)
            let removed = Set(plan.removalOrder)
            if let lock {
                for c in candidates {
                    // The store's own reckoning: every object was uploaded by the latest time the backup shows, and stays locked `days` from its upload.
                    let written = [c.manifest?.startTime, c.manifest?.finishTime, c.lastModified, c.nameTime].compactMap { $0 }.max()!
                    if now < written.addingTimeInterval(TimeInterval(days) * 86_400) {
                        #expect(!removed.contains(c.name), "\(c.name), written \(UTCTime.rfc3339(written)), is still locked at \(UTCTime.rfc3339(now)) (\(lock)) and was removed")
                    }
                }
            }
            let kept = Set(plan.kept.map(\.name))
            let again = RetentionPlanner.plan(candidates.filter { kept.contains($0.name) }, policy: policy, now: now, objectLock: lock)
            #expect(again.removed.map(\.name) == [], "a second prune removes \(again.removed.map { "\($0.name) (\($0.reasons))" })")
        }
    }

    @Test("a prune of what a prune kept removes nothing more")
    func idempotent() async {
        await propertyCheck(count: 300, input: Self.steps, Self.policies, Self.tails) { steps, policy, tail in
            let (candidates, now) = History.build(steps, tail: tail)
            let plan = RetentionPlanner.plan(candidates, policy: policy, now: now)
            let kept = Set(plan.kept.map(\.name))
            let again = RetentionPlanner.plan(candidates.filter { kept.contains($0.name) }, policy: policy, now: now)
            #expect(again.removed.map(\.name) == [], "a second prune removes \(again.removed.map { "\($0.name) (\($0.reasons))" })")
        }
    }
}

/// Builds a history from generated steps: full backups, deltas (continuing
/// the newest full backup or delta), incrementals (mostly continuing the
/// newest backup, sometimes an older one, a few broken), incomplete ones
/// (some half-removed) and unreadable ones.
enum History {
    static let base = UTCTime.parseRFC3339("2026-01-01T00:00:00Z")!
    static let alias = TabletAlias(cell: "zone1", uid: 100)

    static func pos(_ seq: UInt64) -> ReplicationPosition {
        ReplicationPosition(mariadb: MariaDBGTIDList([MariaDBGTID(domain: 0, server: 1, sequence: seq)]))
    }

    static func build(_ steps: [RetentionPropertyTests.Step], tail: Int) -> ([RetentionCandidate], Date) {
        var result: [RetentionCandidate] = []
        var complete: [BackupManifest] = []
        var t = base
        var seq: UInt64 = 1
        func manifest(start: Date, finish: Date, incremental: Bool, parent: String?, from: ReplicationPosition?,
                      delta: Bool = false) -> BackupManifest {
            seq += 10
            return BackupManifest(backupName: BackupName(time: start, tabletAlias: alias).description, keyspace: "commerce", shard: "0",
                                  tabletAlias: alias.description, hostname: "h", method: incremental && !delta ? .binlog : .physical,
                                  incremental: incremental, parentBackup: parent, fromPosition: from, position: pos(seq),
                                  purgedPosition: pos(0), startTime: start, finishTime: finish, firstEventTime: nil,
                                  lastEventTime: nil, serverID: 1, serverVersion: "10.11", flavor: .mariadb,
                                  compression: .none, encryption: "none", files: [])
        }
        for step in steps {
            t = t.addingTimeInterval(Double(step.gap) * 60)
            let duration = Double(step.duration) * 60
            switch step.kind {
            case 0..<25:
                let m = manifest(start: t, finish: t.addingTimeInterval(duration), incremental: false, parent: nil, from: nil)
                complete.append(m)
                result.append(RetentionCandidate(name: m.backupName, nameTime: m.startTime, lastModified: m.finishTime, state: .complete(m)))
                t = m.finishTime
            case 70..<78 where complete.contains(where: \.isSnapshot):
                // A delta continuing the newest full backup or delta (a chain link, as `--type delta` takes).
                let parent = complete.last(where: \.isSnapshot)!
                let start = max(t, parent.finishTime.addingTimeInterval(60))
                let m = manifest(start: start, finish: start.addingTimeInterval(min(duration, 600)), incremental: true,
                                 parent: parent.backupName, from: parent.position, delta: true)
                complete.append(m)
                result.append(RetentionCandidate(name: m.backupName, nameTime: m.startTime, lastModified: m.finishTime, state: .complete(m)))
                t = m.finishTime
            case 25..<82 where !complete.isEmpty:
                // Mostly the newest backup; sometimes any earlier one (a branch).
                let parent = step.pick < 80 ? complete.last! : complete[step.pick % complete.count]
                let start = max(t, parent.finishTime.addingTimeInterval(60))
                var from: ReplicationPosition? = parent.position
                var parentName: String? = parent.backupName
                if step.kind >= 78 {
                    // Broken: starts at the wrong position, or continues a backup that does not exist.
                    if step.pick % 2 == 0 { from = pos(999_999) } else { parentName = "2020-01-01.000000.zone1-100" }
                }
                let m = manifest(start: start, finish: start.addingTimeInterval(min(duration, 600)), incremental: true,
                                 parent: parentName, from: from)
                complete.append(m)
                result.append(RetentionCandidate(name: m.backupName, nameTime: m.startTime, lastModified: m.finishTime, state: .complete(m)))
                t = m.finishTime
            case 82..<92:
                // Incomplete: started at t, last written `duration` later; some with a removal begun.
                let name = BackupName(time: t, tabletAlias: alias).description
                result.append(RetentionCandidate(name: name, nameTime: t, lastModified: t.addingTimeInterval(duration),
                                                 removalStarted: step.kind >= 90, state: .incomplete))
            case 92..<94:
                let name = BackupName(time: t, tabletAlias: alias).description
                result.append(RetentionCandidate(name: name, nameTime: t, lastModified: t, state: .unreadable("the MANIFEST cannot be read")))
            default:
                // An incremental continuing an incomplete or unreadable backup, when there is one.
                guard let other = result.last(where: { $0.manifest == nil }) else { continue }
                let start = t.addingTimeInterval(60)
                let m = manifest(start: start, finish: start.addingTimeInterval(60), incremental: true, parent: other.name, from: pos(1))
                complete.append(m)
                result.append(RetentionCandidate(name: m.backupName, nameTime: m.startTime, lastModified: m.finishTime, state: .complete(m)))
                t = m.finishTime
            }
        }
        return (result, t.addingTimeInterval(Double(tail) * 60))
    }
}

/// The promises of a retention plan, each checked independently of how the
/// planner reached it, and restorability checked with `RestorePlanner`.
enum Invariants {
    static func restorable(_ backups: [BackupManifest], _ target: RestoreTarget) -> RestorePlan? {
        try? RestorePlanner.plan(backups: backups, target: target)
    }

    static func check(candidates: [RetentionCandidate], policy: RetentionPolicy, now: Date, plan: RetentionPlan) {
        // One decision per backup, each with a reason.
        #expect(plan.decisions.count == candidates.count)
        #expect(Set(plan.decisions.map(\.name)) == Set(candidates.map(\.name)))
        for d in plan.decisions { #expect(!d.reasons.isEmpty, "\(d.name) has no reason") }
        let keptNames = Set(plan.kept.map(\.name))
        let removedNames = Set(plan.removed.map(\.name))
        #expect(Set(plan.removalOrder) == removedNames)
        #expect(plan.removalOrder.count == removedNames.count)

        let before = candidates.compactMap(\.manifest)
        let after = before.filter { keptNames.contains($0.backupName) }
        let byName = Dictionary(before.map { ($0.backupName, $0) }, uniquingKeysWith: { a, _ in a })

        // A kept incremental keeps its whole chain (as far as it exists).
        for m in after where m.incremental {
            var current = m
            var seen: Set<String> = []
            while current.incremental, let p = current.parentBackup, let parent = byName[p], seen.insert(p).inserted {
                #expect(keptNames.contains(p), "kept \(m.backupName) depends on removed \(p)")
                current = parent
            }
        }

        // Dependents are removed before what they depend on.
        let order = Dictionary(plan.removalOrder.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
        for m in before where m.incremental {
            if let p = m.parentBackup, let mine = order[m.backupName], let theirs = order[p] {
                #expect(mine < theirs, "\(m.backupName) is removed after its parent \(p)")
            }
        }

        // Unreadable backups are never removed, nor anything older than one, nor what continues one.
        let unreadable = candidates.filter { if case .unreadable = $0.state { true } else { false } }
        for u in unreadable {
            #expect(keptNames.contains(u.name))
            for m in before where m.startTime < u.nameTime! {
                #expect(keptNames.contains(m.backupName), "\(m.backupName) is older than unreadable \(u.name) and was removed")
            }
        }

        // Nothing younger than min_age goes (a backup whose removal began is already gone to every reader).
        for c in candidates where removedNames.contains(c.name) && !c.removalStarted {
            let completed = c.manifest.map { max($0.startTime, $0.finishTime) } ?? max(c.nameTime!, c.lastModified!)
            #expect(now.timeIntervalSince(completed) >= policy.minAge.timeInterval, "\(c.name) is younger than min_age")
        }

        // An incomplete backup that may still be running stays.
        for c in candidates where c.manifest == nil && !c.removalStarted && removedNames.contains(c.name) {
            if case .incomplete = c.state {
                #expect(now.timeIntervalSince(c.nameTime!) >= policy.incompleteAfter.timeInterval)
                #expect(now.timeIntervalSince(c.lastModified!) >= policy.incompleteAfter.timeInterval)
            }
        }

        // min_count: the newest full backups stay.
        let fulls = before.filter { !$0.incremental }.sorted { ($0.startTime, $0.backupName) < ($1.startTime, $1.backupName) }
        for f in fulls.suffix(policy.minCount) {
            #expect(keptNames.contains(f.backupName), "full backup \(f.backupName) is among the \(policy.minCount) newest")
        }

        // The latest point restores as before.
        if let latest = restorable(before, .latest) {
            #expect(restorable(after, .latest)?.backups.map(\.backupName) == latest.backups.map(\.backupName))
        }

        // Every second of the PITR window that restored before restores after.
        if let window = policy.pitrWindow {
            let start = now.addingTimeInterval(-window.timeInterval)
            var points: Set<Date> = [start]
            for m in before {
                for t in [m.startTime, m.finishTime] {
                    for delta in [-1.0, 0, 1] { points.insert(t.addingTimeInterval(delta)) }
                }
            }
            for t in points.sorted() where t >= start {
                if restorable(before, .time(t)) != nil {
                    #expect(restorable(after, .time(t)) != nil, "time \(UTCTime.rfc3339(t)) in the window no longer restores")
                }
            }
        }

        // Each grandfather-father-son point stays restorable. Computed here
        // from whole days since the epoch: weeks start on Monday (the epoch
        // was a Thursday), months from the calendar.
        let calendar: Calendar = {
            var c = Calendar(identifier: .gregorian)
            c.timeZone = TimeZone(identifier: "UTC")!
            return c
        }()
        func day(_ d: Date) -> Int { Int((d.timeIntervalSince1970 / 86400).rounded(.down)) }
        func week(_ d: Date) -> Int { Int((Double(day(d) + 3) / 7).rounded(.down)) }
        func month(_ d: Date) -> Int {
            let c = calendar.dateComponents([.year, .month], from: d)
            return c.year! * 12 + c.month! - 1
        }
        for (count, period) in [(policy.keepDaily, day), (policy.keepWeekly, week), (policy.keepMonthly, month)] as [(Int, (Date) -> Int)] {
            let current = period(now)
            for n in 0..<count {
                if let newest = fulls.last(where: { period($0.startTime) == current - n }) {
                    #expect(keptNames.contains(newest.backupName), "GFS point \(newest.backupName) was removed")
                    #expect(restorable(after, .backup(newest.backupName)) != nil)
                }
            }
        }
    }
}
