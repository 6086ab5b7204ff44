import CairnCore
import Foundation
import Testing

/// Handmade histories whose right answer is written out: each rule alone,
/// then the rules together.
@Suite("Retention planning")
struct RetentionPlannerTests {
    func candidates(_ b: ChainBuilder) -> [RetentionCandidate] {
        b.backups.map { RetentionCandidate(name: $0.backupName, nameTime: $0.startTime, lastModified: $0.finishTime, state: .complete($0)) }
    }

    func kept(_ plan: RetentionPlan) -> Set<String> { Set(plan.kept.map(\.name)) }

    func rules(_ plan: RetentionPlan, _ name: String) -> [RetentionRule] {
        plan.decision(for: name)?.reasons.map(\.rule) ?? []
    }

    /// Three daily chains: F1 (day 0) + 3 incrementals, F2 (day 1) + 3, F3 (day 2) + 3,
    /// incrementals at +6h, +12h, +18h of each day.
    func threeChains() -> (ChainBuilder, [[BackupManifest]]) {
        var b = ChainBuilder()
        var chains: [[BackupManifest]] = []
        var seq: UInt64 = 100
        for day in 0..<3 {
            let base = Double(day) * 24 * 60
            var chain = [b.full(at: base, seq: seq)]
            for h in [6.0, 12, 18] {
                seq += 100
                chain.append(b.incremental(after: chain.last!, at: base + h * 60, seq: seq))
            }
            seq += 100
            chains.append(chain)
        }
        return (b, chains)
    }

    @Test("min_count alone keeps the newest full backups and the newest chain; the rest goes, each with its reason")
    func minCountAndLatest() {
        let (b, c) = threeChains()
        let now = b.time(10 * 24 * 60)
        let one = RetentionPlanner.plan(candidates(b), policy: RetentionPolicy(minCount: 1), now: now)
        #expect(kept(one) == Set(c[2].map(\.backupName)))
        #expect(rules(one, c[2][0].backupName).contains(.minCount))
        #expect(rules(one, c[2][3].backupName) == [.latest])
        #expect(rules(one, c[1][0].backupName) == [.notNeeded])
        #expect(one.decision(for: c[0][1].backupName)?.reasons.first?.detail.contains("its full backup \(c[0][0].backupName) is removed") == true)

        let two = RetentionPlanner.plan(candidates(b), policy: RetentionPolicy(minCount: 2), now: now)
        // The second full backup stays restorable on its own; its incrementals are not needed.
        #expect(kept(two) == Set(c[2].map(\.backupName) + [c[1][0].backupName]))
        #expect(two.decision(for: c[1][1].backupName)?.isKept == false)
    }

    @Test("min_age keeps young backups and, for a young incremental, its whole chain")
    func minAge() {
        let (b, c) = threeChains()
        // Now is day 2, 20:00: min_age 1d10h keeps everything that finished after day 1, 10:00.
        let now = b.time(2 * 24 * 60 + 20 * 60)
        let plan = RetentionPlanner.plan(candidates(b), policy: RetentionPolicy(minCount: 1, minAge: ConfigDuration(seconds: 34 * 3600)), now: now)
        #expect(kept(plan) == Set(c[2].map(\.backupName) + c[1].map(\.backupName)))
        #expect(rules(plan, c[1][2].backupName) == [.minAge])
        // F2 (day 1, 00:01) is older than 1d10h but a young incremental continues it.
        #expect(rules(plan, c[1][0].backupName) == [.chain])
        #expect(rules(plan, c[1][1].backupName) == [.chain])
    }

    @Test("the PITR window keeps the chains that cover it, from the chain the window starts in")
    func pitrWindow() throws {
        let (b, c) = threeChains()
        let now = b.time(2 * 24 * 60 + 20 * 60)
        // Window from day 1, 03:00: inside F2's chain (F2 finished 00:01, its incrementals reach 18:00).
        let window = RetentionPolicy(minCount: 1, pitrWindow: ConfigDuration(seconds: (24 + 17) * 3600))
        let plan = RetentionPlanner.plan(candidates(b), policy: window, now: now)
        #expect(kept(plan) == Set(c[2].map(\.backupName) + c[1].map(\.backupName)))
        #expect(rules(plan, c[1][3].backupName) == [.pitrWindow])
        #expect(plan.windowStart == b.time(24 * 60 + 3 * 60))
        // Window from day 1, 20:00: F2's chain ends at 18:00 and F3 has not finished: a gap; only F3's chain is needed.
        let gap = RetentionPolicy(minCount: 1, pitrWindow: ConfigDuration(seconds: 24 * 3600))
        let later = RetentionPlanner.plan(candidates(b), policy: gap, now: now)
        #expect(kept(later) == Set(c[2].map(\.backupName)))
        // Every second from the window's start to F3's last incremental restores from what is kept.
        let keptManifests = b.backups.filter { kept(plan).contains($0.backupName) }
        var t = plan.windowStart!
        while t <= c[2][3].startTime {
            let before = (try? RestorePlanner.plan(backups: b.backups, target: .time(t))) != nil
            let after = (try? RestorePlanner.plan(backups: keptManifests, target: .time(t))) != nil
            #expect(before == after, "time \(UTCTime.rfc3339(t))")
            t = t.addingTimeInterval(60)
        }
    }

    @Test("a chain the window needs only in part is cut where the next chain takes over")
    func overlappingChains() {
        var b = ChainBuilder()
        let f1 = b.full(at: 0, seq: 100)
        let i1 = b.incremental(after: f1, at: 60, seq: 200)
        let i2 = b.incremental(after: i1, at: 120, seq: 300)
        let i3 = b.incremental(after: i2, at: 240, seq: 400)
        // A second full backup finished at 101m, its own chain reaching 300m.
        let f2 = b.full(at: 100, seq: 250)
        let j1 = b.incremental(after: f2, at: 300, seq: 450)
        let plan = RetentionPlanner.plan(candidates(b), policy: RetentionPolicy(minCount: 1, pitrWindow: ConfigDuration(seconds: 290 * 60)),
                                         now: b.time(300))
        // Window from 10m: F1's chain covers (1m, 240m], F2's (101m, 300m]. F1 is needed up to 101m, so through I2 (120m) only.
        #expect(kept(plan) == Set([f1, i1, i2, f2, j1].map(\.backupName)))
        #expect(plan.decision(for: i3.backupName)?.isKept == false)
    }

    @Test("keep_daily, keep_weekly and keep_monthly keep the newest full backup of each recent UTC day, ISO week and month")
    func grandfatherFatherSon() throws {
        var b = ChainBuilder()
        // 2026-11-01 is a Sunday. Full backups at 01:00 and 13:00 every day for 40 days.
        var fulls: [BackupManifest] = []
        for day in 0..<40 {
            for hour in [1.0, 13.0] {
                fulls.append(b.full(at: Double(day) * 1440 + hour * 60, seq: UInt64(fulls.count + 1) * 100))
            }
        }
        let now = b.time(39 * 1440 + 20 * 60)  // 2026-12-10 (a Thursday) 20:00
        func newest(onDay day: Int) -> String { fulls[day * 2 + 1].backupName }
        let daily = RetentionPlanner.plan(candidates(b), policy: RetentionPolicy(minCount: 1, keepDaily: 3), now: now)
        #expect(kept(daily) == Set([newest(onDay: 39), newest(onDay: 38), newest(onDay: 37)]))
        #expect(daily.decision(for: newest(onDay: 38))?.reasons.first?.detail.contains("day 2026-12-09") == true)

        // ISO weeks: this week began Monday 2026-12-07 (day 36); before it 11-30 (29), 11-23 (22).
        // The newest full backup of a past week is its Sunday's: days 35, 28.
        let weekly = RetentionPlanner.plan(candidates(b), policy: RetentionPolicy(minCount: 1, keepWeekly: 3), now: now)
        #expect(kept(weekly) == Set([newest(onDay: 39), newest(onDay: 35), newest(onDay: 28)]))
        #expect(weekly.decision(for: newest(onDay: 35))?.reasons.first?.detail.contains("week 2026-W49") == true)

        // Months: December (newest: day 39) and November (its last day is day 29).
        let monthly = RetentionPlanner.plan(candidates(b), policy: RetentionPolicy(minCount: 1, keepMonthly: 5), now: now)
        #expect(kept(monthly) == Set([newest(onDay: 39), newest(onDay: 29)]))
        #expect(rules(monthly, newest(onDay: 29)) == [.keepMonthly])
    }

    @Test("an incomplete backup goes only when both its start and its last write are older than incomplete_after")
    func incomplete() {
        var b = ChainBuilder()
        b.full(at: 0, seq: 100)
        let now = b.time(10 * 1440)
        func incomplete(_ name: String, startedHoursAgo: Double, writtenHoursAgo: Double, removing: Bool = false) -> RetentionCandidate {
            RetentionCandidate(name: name, nameTime: now.addingTimeInterval(-startedHoursAgo * 3600),
                               lastModified: now.addingTimeInterval(-writtenHoursAgo * 3600), removalStarted: removing, state: .incomplete)
        }
        let list = candidates(b) + [
            incomplete("young", startedHoursAgo: 2, writtenHoursAgo: 2),
            incomplete("recently-written", startedHoursAgo: 50, writtenHoursAgo: 3),
            incomplete("abandoned", startedHoursAgo: 50, writtenHoursAgo: 49),
            incomplete("half-removed", startedHoursAgo: 1, writtenHoursAgo: 0, removing: true),
        ]
        let plan = RetentionPlanner.plan(list, policy: RetentionPolicy(minCount: 1), now: now)
        #expect(rules(plan, "young") == [.mayBeRunning])
        #expect(rules(plan, "recently-written") == [.mayBeRunning])
        #expect(rules(plan, "abandoned") == [.incompleteAfter])
        #expect(plan.decision(for: "abandoned")?.isKept == false)
        #expect(rules(plan, "half-removed") == [.removalInterrupted])
        #expect(Set(plan.removalOrder) == ["abandoned", "half-removed"])
        // min_age holds for incomplete backups too.
        let aged = RetentionPlanner.plan(list, policy: RetentionPolicy(minCount: 1, minAge: ConfigDuration(seconds: 60 * 3600)), now: now)
        #expect(rules(aged, "abandoned") == [.minAge])
    }

    @Test("an unreadable MANIFEST is reported and kept, and so are what continues it and what is older; a broken chain is removed with its reason")
    func unreadableAndBroken() {
        var b = ChainBuilder()
        let f = b.full(at: 0, seq: 100)
        let i1 = b.incremental(after: f, at: 60, seq: 200)
        let i2 = b.incremental(after: i1, at: 120, seq: 300)
        let i3 = b.incremental(after: i2, at: 180, seq: 400)
        let f2 = b.full(at: 2000, seq: 500)
        b.remove(i1)
        var list = candidates(b)
        list.append(RetentionCandidate(name: i1.backupName, nameTime: i1.startTime, lastModified: i1.finishTime,
                                       state: .unreadable("the MANIFEST of backup \(i1.backupName) cannot be read")))
        // An incremental whose parent vanished.
        var orphan = BackupManifest(backupName: BackupName(time: b.time(2100), tabletAlias: TabletAlias(cell: "zone1", uid: 100)).description,
                                    keyspace: "commerce", shard: "0", tabletAlias: "zone1-100", hostname: "h", method: .binlog,
                                    incremental: true, parentBackup: "2026-11-02.000000.zone1-100", fromPosition: ChainBuilder.pos(450),
                                    position: ChainBuilder.pos(600), purgedPosition: ChainBuilder.pos(0), startTime: b.time(2100),
                                    finishTime: b.time(2101), firstEventTime: nil, lastEventTime: nil, serverID: 1, serverVersion: "10.11",
                                    flavor: .mariadb, compression: .none, encryption: "none", files: [])
        orphan.hostname = "h"
        list.append(RetentionCandidate(name: orphan.backupName, nameTime: orphan.startTime, lastModified: orphan.finishTime, state: .complete(orphan)))
        let plan = RetentionPlanner.plan(list, policy: RetentionPolicy(minCount: 1), now: b.time(5000))
        #expect(rules(plan, i1.backupName) == [.unreadable])
        #expect(plan.problems.map(\.name) == [i1.backupName])
        #expect(rules(plan, i2.backupName) == [.unreadableChain])
        #expect(rules(plan, i3.backupName) == [.unreadableChain])
        // F started before I1: it may be I1's ancestor.
        #expect(rules(plan, f.backupName) == [.unreadableChain])
        #expect(rules(plan, orphan.backupName) == [.brokenChain])
        #expect(plan.decision(for: orphan.backupName)?.isKept == false)
        #expect(plan.decision(for: f2.backupName)?.isKept == true)
    }

    @Test("removals come dependents first")
    func removalOrder() {
        let (b, c) = threeChains()
        let plan = RetentionPlanner.plan(candidates(b), policy: RetentionPolicy(minCount: 1), now: b.time(10 * 1440))
        let order = plan.removalOrder
        #expect(Set(order) == Set((c[0] + c[1]).map(\.backupName)))
        for chain in [c[0], c[1]] {
            let positions = chain.map { order.firstIndex(of: $0.backupName)! }
            #expect(positions == positions.sorted(by: >), "\(chain.map(\.backupName)) removed in order \(order)")
        }
    }

    @Test("dependents of a backup are every backup whose chain goes through it, newest first")
    func dependents() {
        let (b, c) = threeChains()
        #expect(RetentionPlanner.dependents(of: c[1][1].backupName, among: b.backups).map(\.backupName) == [c[1][3], c[1][2]].map(\.backupName))
        #expect(RetentionPlanner.dependents(of: c[1][3].backupName, among: b.backups).isEmpty)
        #expect(RetentionPlanner.dependents(of: c[0][0].backupName, among: b.backups).count == 3)
    }
}

@Suite("Retention configuration")
struct RetentionConfigurationTests {
    func parse(_ json: String) throws -> CairnConfiguration {
        try CairnConfiguration.parse(Data(json.utf8), source: "test.json")
    }

    @Test("a retention policy with every key")
    func everyKey() throws {
        let c = try parse("""
            {"bucket": "file:///b", "retention": {"min_count": 2, "min_age": "1d", "pitr_window": "7d", "keep_daily": 7,
              "keep_weekly": 4, "keep_monthly": 12, "incomplete_after": "36h"}}
            """)
        let r = try #require(c.retention)
        #expect(r == RetentionPolicy(minCount: 2, minAge: ConfigDuration(seconds: 86400), pitrWindow: ConfigDuration(seconds: 7 * 86400),
                                     keepDaily: 7, keepWeekly: 4, keepMonthly: 12, incompleteAfter: ConfigDuration(seconds: 36 * 3600)))
    }

    @Test("defaults: min_count 1, nothing else kept by age, window or calendar, incomplete_after 24h; no key, no policy")
    func defaults() throws {
        #expect(try parse("{}").retention == nil)
        let r = try #require(try parse(#"{"retention": {}}"#).retention)
        #expect(r.minCount == 1 && r.minAge.seconds == 0 && r.pitrWindow == nil)
        #expect(r.keepDaily == 0 && r.keepWeekly == 0 && r.keepMonthly == 0)
        #expect(r.incompleteAfter.seconds == 86400)
    }

    @Test("bad policies are refused, naming the key", arguments: [
        (#"{"retention": {"min_count": 0}}"#, "retention.min_count"),
        (#"{"retention": {"min_count": -2}}"#, "retention.min_count"),
        (#"{"retention": {"min_count": 1.5}}"#, "retention.min_count"),
        (#"{"retention": {"min_count": "3"}}"#, "retention.min_count"),
        (#"{"retention": {"keep_daily": -1}}"#, "retention.keep_daily"),
        (#"{"retention": {"keep_weekly": -7}}"#, "retention.keep_weekly"),
        (#"{"retention": {"keep_monthly": true}}"#, "retention.keep_monthly"),
        (#"{"retention": {"min_age": "a week"}}"#, "retention.min_age"),
        (#"{"retention": {"min_age": "-1d"}}"#, "retention.min_age"),
        (#"{"retention": {"pitr_window": "7"}}"#, "retention.pitr_window"),
        (#"{"retention": {"pitr_window": "0s"}}"#, "retention.pitr_window"),
        (#"{"retention": {"incomplete_after": "soon"}}"#, "retention.incomplete_after"),
        (#"{"retention": {"incomplete_after": "30m"}}"#, "retention.incomplete_after"),
        (#"{"retention": {"keep_yearly": 3}}"#, "retention.keep_yearly"),
        (#"{"retention": 7}"#, "retention"),
    ])
    func badPolicies(_ json: String, _ key: String) {
        #expect {
            try parse(json)
        } throws: { error in
            guard let e = error as? CairnError else { return false }
            return e.code == .configuration && e.message.contains(key) && e.message.contains("test.json")
        }
    }
}
