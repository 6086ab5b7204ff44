public import Foundation

/// What storage holds for one backup directory.
public enum StoredBackupState: Sendable, Hashable {
    /// A readable `MANIFEST`.
    case complete(BackupManifest)
    /// No `MANIFEST`: the backup failed, was interrupted, is still running,
    /// or is being removed.
    case incomplete
    /// A `MANIFEST` exists but cannot be used; the text says why.
    case unreadable(String)

    public var manifest: BackupManifest? {
        if case .complete(let m) = self { return m }
        return nil
    }
}

/// One backup directory as retention sees it.
public struct RetentionCandidate: Sendable, Hashable {
    /// The directory's name, `<YYYY-MM-DD.HHMMSS>.<tablet alias>`.
    public var name: String
    /// When it started, from its name.
    public var nameTime: Date?
    /// The newest modification of any of its objects.
    public var lastModified: Date?
    /// A removal already began (a `REMOVING` marker): every reader treats it as gone.
    public var removalStarted: Bool
    public var state: StoredBackupState

    public init(name: String, nameTime: Date?, lastModified: Date?, removalStarted: Bool = false, state: StoredBackupState) {
        self.name = name
        self.nameTime = nameTime
        self.lastModified = lastModified
        self.removalStarted = removalStarted
        self.state = state
    }

    public var manifest: BackupManifest? { state.manifest }

    /// Whether a backup may still be writing this directory: its start (its
    /// name's time, unknown counting as recent) or its last write is more
    /// recent than `incompleteAfter`. A running backup writes `STARTED` first
    /// and each data file only when it is finished, so neither alone shows it
    /// has stopped.
    public func mayBeRunning(now: Date, incompleteAfter: ConfigDuration) -> Bool {
        guard let started = nameTime else { return true }
        let written = lastModified ?? started
        let limit = incompleteAfter.timeInterval
        return now.timeIntervalSince(started) < limit || now.timeIntervalSince(written) < limit
    }
}

/// Which rule a decision comes from; stable names for `--json`.
public enum RetentionRule: String, Sendable, Hashable, Codable, CaseIterable {
    // Why a backup is kept.
    /// One of the newest `min_count` complete full backups.
    case minCount = "min_count"
    /// Younger than `min_age`.
    case minAge = "min_age"
    /// The newest restorable point and its chain (always kept).
    case latest
    /// Needed to keep a second of the PITR window restorable.
    case pitrWindow = "pitr_window"
    case keepDaily = "keep_daily"
    case keepWeekly = "keep_weekly"
    case keepMonthly = "keep_monthly"
    /// A kept incremental continues it.
    case chain
    /// Its `MANIFEST` cannot be read: reported, never removed by a prune.
    case unreadable
    /// It may be part of the chain of a backup whose `MANIFEST` cannot be
    /// read: it continues that backup, or started before it.
    case unreadableChain = "unreadable_chain"
    /// Incomplete, and a backup may still be writing it.
    case mayBeRunning = "may_be_running"

    // Why a backup is removed.
    /// No rule keeps it.
    case notNeeded = "not_needed"
    /// Its chain is broken: it cannot be restored.
    case brokenChain = "broken_chain"
    /// Incomplete for longer than `incomplete_after`.
    case incompleteAfter = "incomplete_after"
    /// An earlier removal of it was interrupted.
    case removalInterrupted = "removal_interrupted"
    /// Kept: `object_lock` still locks its objects in the store, which
    /// would refuse to delete them (``ObjectLockConfig``).
    case objectLock = "object_lock"
    /// Kept: with archived binary log segments it restores a point that
    /// would otherwise no longer restore (`ArchiveRetention`).
    case binlogArchive = "binlog_archive"
}

/// One reason behind a decision: the rule and a phrase a person can check.
public struct RetentionReason: Sendable, Hashable, CustomStringConvertible {
    public var rule: RetentionRule
    public var detail: String

    public init(_ rule: RetentionRule, _ detail: String) {
        self.rule = rule
        self.detail = detail
    }

    public var description: String { "\(rule.rawValue): \(detail)" }
}

/// Keep or remove one backup, and why.
public struct RetentionDecision: Sendable, Hashable {
    public enum Action: String, Sendable, Hashable, Codable {
        case keep
        case remove
    }

    public enum Kind: String, Sendable, Hashable, Codable {
        case full
        case delta
        case incremental
        case incomplete
        case unreadable
    }

    public var name: String
    public var kind: Kind
    public var action: Action
    /// At least one; the first is the main one.
    public var reasons: [RetentionReason]
    /// The backup it continues (complete incrementals).
    public var parent: String?
    public var startTime: Date?

    public var isKept: Bool { action == .keep }
}

/// Every backup's decision, and the order to remove in.
public struct RetentionPlan: Sendable, Hashable {
    public var now: Date
    public var policy: RetentionPolicy
    /// One per candidate, oldest first.
    public var decisions: [RetentionDecision]
    /// The backups to remove, in a safe order: newest first, and every
    /// dependent before the backup it depends on.
    public var removalOrder: [String]
    /// The start of the PITR window, when the policy has one.
    public var windowStart: Date?
    /// The store's Object Lock the plan respected, when one is configured.
    public var objectLock: ObjectLockConfig? = nil

    public var kept: [RetentionDecision] { decisions.filter(\.isKept) }
    public var removed: [RetentionDecision] { decisions.filter { !$0.isKept } }
    /// Backups with an unreadable `MANIFEST`: kept, and to be looked at.
    public var problems: [RetentionDecision] { decisions.filter { $0.kind == .unreadable } }

    public func decision(for name: String) -> RetentionDecision? { decisions.first { $0.name == name } }
}

/// Decides, for every backup of a shard, keep or remove and why: pure, so
/// every rule is tested without storage. docs/RETENTION.md is the prose
/// version of this type.
public enum RetentionPlanner {
    /// With `objectLock`, no backup whose objects the store still locks at
    /// `now` is removed: each is kept (rule `object_lock`, with the lock's
    /// end), and so is the chain it continues, so that what is kept restores.
    public static func plan(_ candidates: [RetentionCandidate], policy: RetentionPolicy, now: Date,
                            objectLock: ObjectLockConfig? = nil) -> RetentionPlan {
        var planner = Planning(candidates: candidates, policy: policy, now: now, objectLock: objectLock)
        return planner.run()
    }

    /// Until when `objectLock` locks the objects of `candidate`, when that
    /// is after `now`: counted from the latest of its manifest's finish time
    /// and the newest write its listing shows (a `MANIFEST` rewritten by a
    /// key rotation is a new, newly locked version), or, without a
    /// manifest, from that newest write or else its name's time.
    public static func lockEnd(of candidate: RetentionCandidate, objectLock: ObjectLockConfig, now: Date) -> Date? {
        let times = [candidate.manifest.map { max($0.startTime, $0.finishTime) }, candidate.lastModified, candidate.nameTime]
        guard let written = times.compactMap({ $0 }).max() else { return nil }
        return objectLock.lockEnd(writtenBy: written, now: now)
    }

    /// The complete backups that depend on `name`: every backup whose chain
    /// of parents, followed by name, passes through it. Newest first, so
    /// removing them in this order removes dependents before their parents.
    public static func dependents(of name: String, among manifests: [BackupManifest]) -> [BackupManifest] {
        BackupChains(manifests).descendants(of: name)
            .sorted { ($0.startTime, $0.backupName) > ($1.startTime, $1.backupName) }
    }

    /// `names` ordered so that each backup comes after every backup in
    /// `names` that continues it (children before parents), newest first
    /// otherwise. `times` gives the start of backups without a manifest.
    public static func dependentsFirst(_ names: [String], manifests: [BackupManifest], times: [String: Date] = [:]) -> [String] {
        let chains = BackupChains(manifests)
        let wanted = Set(names)
        var children: [String: [String]] = [:]
        for name in wanted {
            children[name] = chains.children(of: name).map(\.backupName).filter { wanted.contains($0) }
        }
        func key(_ n: String) -> (Date, String) { (chains.backup(named: n)?.startTime ?? times[n] ?? .distantPast, n) }
        let newestFirst = names.sorted { key($0) > key($1) }
        var emitted: Set<String> = []
        var inProgress: Set<String> = []
        var order: [String] = []
        func visit(_ n: String) {
            guard !emitted.contains(n), inProgress.insert(n).inserted else { return }
            for c in (children[n] ?? []).sorted(by: { key($0) > key($1) }) { visit(c) }
            inProgress.remove(n)
            emitted.insert(n)
            order.append(n)
        }
        for n in newestFirst { visit(n) }
        return order
    }
}

/// UTC calendar periods for the grandfather-father-son rules.
enum RetentionCalendar {
    static let calendar: Calendar = {
        var c = Calendar(identifier: .gregorian)
        c.timeZone = TimeZone(identifier: "UTC")!
        c.firstWeekday = 2  // Monday
        c.minimumDaysInFirstWeek = 4
        return c
    }()

    enum Period: String { case day, week, month }

    /// The start of the period that holds `date`.
    static func start(of period: Period, containing date: Date) -> Date {
        let component: Calendar.Component = switch period {
        case .day: .day
        case .week: .weekOfYear
        case .month: .month
        }
        return calendar.dateInterval(of: component, for: date)!.start
    }

    /// The last `count` periods up to and including the one holding `now`, newest first, as half-open ranges.
    static func last(_ count: Int, _ period: Period, now: Date) -> [Range<Date>] {
        guard count > 0 else { return [] }
        var result: [Range<Date>] = []
        var periodStart = start(of: period, containing: now)
        for _ in 0..<count {
            let next: Date
            switch period {
            case .day: next = calendar.date(byAdding: .day, value: 1, to: periodStart)!
            case .week: next = calendar.date(byAdding: .day, value: 7, to: periodStart)!
            case .month: next = calendar.date(byAdding: .month, value: 1, to: periodStart)!
            }
            result.append(periodStart..<next)
            switch period {
            case .day: periodStart = calendar.date(byAdding: .day, value: -1, to: periodStart)!
            case .week: periodStart = calendar.date(byAdding: .day, value: -7, to: periodStart)!
            case .month: periodStart = calendar.date(byAdding: .month, value: -1, to: periodStart)!
            }
        }
        return result
    }

    static func label(_ period: Period, _ start: Date) -> String {
        let c = calendar.dateComponents([.year, .month, .day, .weekOfYear, .yearForWeekOfYear], from: start)
        switch period {
        case .day: return String(format: "%04d-%02d-%02d", c.year!, c.month!, c.day!)
        case .week: return String(format: "%04d-W%02d", c.yearForWeekOfYear!, c.weekOfYear!)
        case .month: return String(format: "%04d-%02d", c.year!, c.month!)
        }
    }
}

/// One planning run.
private struct Planning {
    let candidates: [RetentionCandidate]
    let policy: RetentionPolicy
    let now: Date
    let chains: BackupChains
    let objectLock: ObjectLockConfig?
    var reasons: [String: [RetentionReason]] = [:]

    init(candidates: [RetentionCandidate], policy: RetentionPolicy, now: Date, objectLock: ObjectLockConfig?) {
        self.candidates = candidates.sorted { ($0.nameTime ?? .distantPast, $0.name) < ($1.nameTime ?? .distantPast, $1.name) }
        self.policy = policy
        self.now = now
        self.objectLock = objectLock
        self.chains = BackupChains(candidates.compactMap(\.manifest))
    }

    mutating func keep(_ name: String, _ reason: RetentionReason) {
        if !(reasons[name]?.contains(reason) ?? false) { reasons[name, default: []].append(reason) }
    }

    mutating func keepChain(to backup: BackupManifest, _ rule: RetentionRule, _ detail: String) {
        for b in chains.ancestry(of: backup).backups {
            keep(b.backupName, RetentionReason(rule, detail))
        }
    }

    func ago(_ date: Date) -> String {
        let seconds = now.timeIntervalSince(date)
        guard seconds >= 0 else { return "in the future (\(UTCTime.rfc3339(date, fractional: false)))" }
        return "\(ConfigDuration(seconds: Int64(seconds.rounded(.down)))) ago"
    }

    func time(_ date: Date) -> String { UTCTime.rfc3339(date, fractional: false) }

    mutating func run() -> RetentionPlan {
        let manifests = chains.backups
        let fulls = chains.fullBackups

        // min_age: nothing younger goes. A complete backup's age counts from when it finished.
        for m in manifests {
            let completed = max(m.startTime, m.finishTime)
            if now.timeIntervalSince(completed) < policy.minAge.timeInterval || completed > now {
                keep(m.backupName, RetentionReason(.minAge, "finished \(ago(completed)), younger than min_age (\(policy.minAge))"))
            }
        }

        // object_lock: the store keeps what it still locks (a delete only hides it), so
        // those backups stay, and (below) the chains they continue.
        if let objectLock {
            for c in candidates {
                if let m = c.manifest, let until = RetentionPlanner.lockEnd(of: c, objectLock: objectLock, now: now) {
                    keep(m.backupName, RetentionReason(.objectLock, objectLock.reason(until: until)))
                }
            }
        }

        // min_count: the newest full backups.
        for (i, full) in fulls.reversed().prefix(policy.minCount).enumerated() {
            keep(full.backupName, RetentionReason(.minCount, i == 0 ? "the newest full backup (min_count \(policy.minCount))"
                                                           : "one of the \(policy.minCount) newest full backups (min_count)"))
        }

        // The newest restorable point, always.
        if let newest = chains.newestRestorable {
            keepChain(to: newest, .latest, "the chain of the newest restorable backup \(newest.backupName)")
        }

        // A backup whose MANIFEST cannot be read may be repaired (or be a newer
        // Cairn's format), and nobody can tell which chain it belongs to: what
        // continues it stays, and so does everything older, its possible ancestors.
        let unreadable = candidates.filter { if case .unreadable = $0.state { true } else { false } }
        if !unreadable.isEmpty {
            let unreadableNames = Set(unreadable.map(\.name))
            for m in manifests {
                if let later = unreadable.first(where: { ($0.nameTime ?? .distantFuture) > m.startTime }) {
                    keep(m.backupName, RetentionReason(.unreadableChain, "backup \(later.name), which started after it, has an unreadable MANIFEST and may continue its chain; kept until that is resolved"))
                }
                if case .missingParent(let parent) = chains.ancestry(of: m).end, unreadableNames.contains(parent) {
                    keep(m.backupName, RetentionReason(.unreadableChain, "its chain goes through backup \(parent), whose MANIFEST cannot be read; kept until that is resolved"))
                }
            }
        }

        // Grandfather-father-son points: the newest full backup of each period.
        for (period, count, rule, name) in [(RetentionCalendar.Period.day, policy.keepDaily, RetentionRule.keepDaily, "keep_daily"),
                                            (.week, policy.keepWeekly, .keepWeekly, "keep_weekly"),
                                            (.month, policy.keepMonthly, .keepMonthly, "keep_monthly")] {
            for range in RetentionCalendar.last(count, period, now: now) {
                if let newest = fulls.last(where: { range.contains($0.startTime) }) {
                    keep(newest.backupName, RetentionReason(rule, "the newest full backup of \(period.rawValue) \(RetentionCalendar.label(period, range.lowerBound)) (\(name) \(count))"))
                }
            }
        }

        // The PITR window last, so the chains other rules keep anyway count first.
        var windowStart: Date? = nil
        if let window = policy.pitrWindow {
            let start = now.addingTimeInterval(-window.timeInterval)
            windowStart = start
            keepWindow(from: start, alreadyKept: closure(of: Set(reasons.keys)).kept)
        }

        // A kept backup keeps its whole chain back to its full backup.
        let ruleKept = Set(reasons.keys)
        let (_, keptChildren) = closure(of: ruleKept)
        for (parent, children) in keptChildren where !ruleKept.contains(parent) {
            let list = children.sorted()
            let detail = list.count == 1 ? "kept backup \(list[0]) continues it"
                                         : "kept backups \(list.joined(separator: ", ")) continue it"
            keep(parent, RetentionReason(.chain, detail))
        }

        // Decide.
        var decisions: [RetentionDecision] = []
        var removals: [String] = []
        var incompleteRemovals: [String] = []
        for c in candidates {
            switch c.state {
            case .complete(let m):
                let kind: RetentionDecision.Kind = m.isDelta ? .delta : (m.incremental ? .incremental : .full)
                if let why = reasons[m.backupName] {
                    decisions.append(RetentionDecision(name: c.name, kind: kind, action: .keep, reasons: why,
                                                       parent: m.parentBackup, startTime: m.startTime))
                } else {
                    decisions.append(RetentionDecision(name: c.name, kind: kind, action: .remove, reasons: [removalReason(m)],
                                                       parent: m.parentBackup, startTime: m.startTime))
                    removals.append(c.name)
                }
            case .unreadable(let why):
                decisions.append(RetentionDecision(name: c.name, kind: .unreadable, action: .keep,
                                                   reasons: [RetentionReason(.unreadable, "\(why); a prune never removes it")],
                                                   parent: nil, startTime: c.nameTime))
            case .incomplete:
                let (action, reason) = incompleteDecision(c)
                decisions.append(RetentionDecision(name: c.name, kind: .incomplete, action: action, reasons: [reason],
                                                   parent: nil, startTime: c.nameTime))
                if action == .remove { incompleteRemovals.append(c.name) }
            }
        }
        var times: [String: Date] = [:]
        for c in candidates { times[c.name] = c.nameTime }
        let order = RetentionPlanner.dependentsFirst(incompleteRemovals + removals, manifests: manifests, times: times)
        return RetentionPlan(now: now, policy: policy, decisions: decisions, removalOrder: order, windowStart: windowStart,
                             objectLock: objectLock)
    }

    func removalReason(_ m: BackupManifest) -> RetentionReason {
        if let broken = chains.brokenLink(of: m) {
            return RetentionReason(.brokenChain, "it cannot be restored: \(broken)")
        }
        if m.incremental {
            let full = chains.chain(to: m)?.first
            if let full, reasons[full.backupName] == nil {
                return RetentionReason(.notNeeded, "its full backup \(full.backupName) is removed, and no kept point needs its chain")
            }
            var detail = "no kept point needs it: it is not in the newest chain"
            if let window = policy.pitrWindow { detail += " and no second of the PITR window (\(window)) needs it" }
            return RetentionReason(.notNeeded, detail)
        }
        var rules = [policy.minCount == 1 ? "not the newest full backup (min_count 1)" : "not one of the \(policy.minCount) newest full backups (min_count)"]
        if let window = policy.pitrWindow { rules.append("not needed for the PITR window (\(window))") }
        if policy.keepDaily + policy.keepWeekly + policy.keepMonthly > 0 { rules.append("not the newest full backup of a kept day, week or month") }
        if policy.minAge.seconds > 0 { rules.append("older than min_age (\(policy.minAge))") }
        return RetentionReason(.notNeeded, rules.joined(separator: ", "))
    }

    /// An incomplete backup is kept while it may still be running
    /// (``RetentionCandidate/mayBeRunning(now:incompleteAfter:)``), and while
    /// the store still locks its objects.
    func incompleteDecision(_ c: RetentionCandidate) -> (RetentionDecision.Action, RetentionReason) {
        let (action, reason) = unlockedIncompleteDecision(c)
        if action == .remove, let objectLock, let until = RetentionPlanner.lockEnd(of: c, objectLock: objectLock, now: now) {
            let what = c.removalStarted ? "an earlier removal of it was interrupted, but its objects are" : "incomplete, and its objects are"
            return (.keep, RetentionReason(.objectLock, "\(what) \(objectLock.reason(until: until))"))
        }
        return (action, reason)
    }

    func unlockedIncompleteDecision(_ c: RetentionCandidate) -> (RetentionDecision.Action, RetentionReason) {
        if c.removalStarted {
            return (.remove, RetentionReason(.removalInterrupted, "an earlier removal of it was interrupted; finishing it"))
        }
        guard let started = c.nameTime else {
            return (.keep, RetentionReason(.mayBeRunning, "its start time is unknown, so it may still be running"))
        }
        let written = c.lastModified ?? started
        if c.mayBeRunning(now: now, incompleteAfter: policy.incompleteAfter) {
            return (.keep, RetentionReason(.mayBeRunning, "incomplete, started \(ago(started)) and last written \(ago(written)); a backup may still be writing it until both are older than incomplete_after (\(policy.incompleteAfter))"))
        }
        let latest = max(started, written)
        if now.timeIntervalSince(latest) < policy.minAge.timeInterval {
            return (.keep, RetentionReason(.minAge, "last written \(ago(latest)), younger than min_age (\(policy.minAge))"))
        }
        return (.remove, RetentionReason(.incompleteAfter, "incomplete, started \(ago(started)) and last written \(ago(written)), longer ago than incomplete_after (\(policy.incompleteAfter))"))
    }

    /// `names` and every complete backup they continue, back to their full
    /// backups (followed by parent name); and, for each parent reached, the
    /// backups in the result that continue it.
    func closure(of names: Set<String>) -> (kept: Set<String>, children: [String: Set<String>]) {
        var kept = names
        var children: [String: Set<String>] = [:]
        var walked: Set<String> = []
        for name in names {
            guard let m = chains.backup(named: name) else { continue }
            let path = chains.ancestry(of: m).backups
            for (child, parent) in zip(path, path.dropFirst()) {
                // From a backup already walked, the rest of the way is known.
                guard walked.insert(child.backupName).inserted else { break }
                children[parent.backupName, default: []].insert(child.backupName)
                kept.insert(parent.backupName)
            }
        }
        return (kept, children)
    }

    /// Keeps every second from `start` on that can be restored now
    /// restorable. A time T is restorable from full backup F when F finished
    /// before T and an incremental linked into F's chain started at or after
    /// T (`RestorePlanner`'s `.time`), so each full backup covers the times
    /// (F.finish, reach], reach being the latest start of an incremental of
    /// its chain. Walking forward from `start`, each point still to cover is
    /// covered by a chain other rules keep anyway when one does, else by
    /// the chain that reaches furthest (greedy, so the fewest chains are
    /// added); each added chain is then cut back to the first incremental
    /// that reaches where the next covering chain takes over.
    mutating func keepWindow(from start: Date, alreadyKept: Set<String>) {
        struct Interval {
            var full: BackupManifest
            /// Incrementals linked into the full backup's chain, by start time.
            var reachable: [BackupManifest]
            /// How far the incrementals already kept reach.
            var keptReach: Date?
            var from: Date { full.finishTime }
            var reach: Date { reachable.last!.startTime }
        }
        var intervals: [Interval] = []
        // Each snapshot (full backup or delta) with the binary log incrementals
        // continuing it: a delta starts its own interval, as the restore planner
        // replays from the newest snapshot before a time.
        for full in chains.backups where full.isSnapshot && (!full.incremental || chains.brokenLink(of: full) == nil) {
            var found = chains.binlogRun(of: full)
            guard !found.isEmpty else { continue }
            found.sort { ($0.startTime, $0.backupName) < ($1.startTime, $1.backupName) }
            // Kept incrementals keep their chain, so a kept one linked here is reachable through kept backups.
            let keptReach = alreadyKept.contains(full.backupName)
                ? found.last(where: { alreadyKept.contains($0.backupName) })?.startTime : nil
            let interval = Interval(full: full, reachable: found, keptReach: keptReach)
            if interval.reach >= start && interval.from < interval.reach { intervals.append(interval) }
        }

        // `point` is the first time still to cover; `inclusive` says whether
        // `point` itself is still needed or only what follows it.
        func covers(_ from: Date, _ reach: Date, _ point: Date, _ inclusive: Bool) -> Bool {
            inclusive ? (from < point && point <= reach) : (from <= point && point < reach)
        }
        struct Segment {
            var interval: Int
            var added: Bool
            var coveredFrom: Date
        }
        var segments: [Segment] = []
        var point = start
        var inclusive = true
        while true {
            let kept = intervals.indices.filter { i in intervals[i].keptReach.map { covers(intervals[i].from, $0, point, inclusive) } ?? false }
            if let best = kept.max(by: { (intervals[$0].keptReach!, intervals[$0].full.backupName) < (intervals[$1].keptReach!, intervals[$1].full.backupName) }) {
                segments.append(Segment(interval: best, added: false, coveredFrom: point))
                point = intervals[best].keptReach!
                inclusive = false
                continue
            }
            let covering = intervals.indices.filter { covers(intervals[$0].from, intervals[$0].reach, point, inclusive) }
            if let best = covering.max(by: { (intervals[$0].reach, intervals[$0].full.backupName) < (intervals[$1].reach, intervals[$1].full.backupName) }) {
                segments.append(Segment(interval: best, added: true, coveredFrom: point))
                point = intervals[best].reach
                inclusive = false
                continue
            }
            // Nothing covers `point`: a gap the backups left. Jump to the next restorable time.
            let later = intervals.indices.filter { inclusive ? intervals[$0].from >= point : intervals[$0].from > point }
            guard let next = later.min(by: { (intervals[$0].from, intervals[$0].full.backupName) < (intervals[$1].from, intervals[$1].full.backupName) }) else { break }
            point = intervals[next].from
            inclusive = false
        }

        for (k, segment) in segments.enumerated() where segment.added {
            let pick = intervals[segment.interval]
            var needed = pick.reach
            if k + 1 < segments.count, intervals[segments[k + 1].interval].from < needed {
                needed = intervals[segments[k + 1].interval].from
            }
            let end = pick.reachable.first { $0.startTime >= needed } ?? pick.reachable.last!
            let detail = "restores the PITR window (\(policy.pitrWindow!)) from \(time(max(segment.coveredFrom, pick.from))) to \(time(end.startTime))"
            keepChain(to: end, .pitrWindow, detail)
        }
    }
}
