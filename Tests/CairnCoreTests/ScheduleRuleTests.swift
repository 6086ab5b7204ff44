import CairnCore
import Foundation
import Testing

@Suite("Scheduling rule")
struct ScheduleRuleTests {
    let strategy = BackupStrategyConfig(fullBackupInterval: ConfigDuration(seconds: 86400),
                                        incrementalBackupInterval: ConfigDuration(seconds: 3600))

    @Test("a shard without a chain gets a full backup now, within its spread offset")
    func firstRun() {
        let now = Date()
        let run = BackupScheduleRule.nextRun(shard: "commerce/0", backups: [], strategy: strategy, lastAttempt: nil, now: now)
        #expect(run.kind == "full")
        #expect(run.at >= now && run.at < now.addingTimeInterval(BackupScheduleRule.spreadWindow(strategy)))
    }

    @Test("incrementals fall due an interval after the newest backup; the full one after its interval")
    func dueTimes() {
        var b = ChainBuilder()
        let f = b.full(at: 0, seq: 100)
        let i = b.incremental(after: f, at: 60, seq: 200)
        let run = BackupScheduleRule.nextRun(shard: "s", backups: b.backups, strategy: strategy, lastAttempt: nil, now: b.time(61))
        #expect(run.kind == "incremental" && run.at == i.startTime.addingTimeInterval(3600))
        // With an incremental at 23h30m, the next one (24h30m) would come after the full backup is due (24h).
        b.incremental(after: i, at: 23 * 60 + 30, seq: 300)
        let late = BackupScheduleRule.nextRun(shard: "s", backups: b.backups, strategy: strategy, lastAttempt: nil, now: b.time(23 * 60 + 31))
        #expect(late.kind == "full" && late.at == f.startTime.addingTimeInterval(86400))
    }

    @Test("slots missed while ctld was down run once, not once per missed slot")
    func noBurst() {
        var b = ChainBuilder()
        let f = b.full(at: 0, seq: 100)
        // Down for five hours: five incremental slots missed.
        let now = b.time(5 * 60)
        let run = BackupScheduleRule.nextRun(shard: "s", backups: b.backups, strategy: strategy, lastAttempt: nil, now: now)
        #expect(run.at >= now && run.at < now.addingTimeInterval(300))
        // After that one run (an incremental started now), the next is an interval later.
        b.incremental(after: f, at: 5 * 60, seq: 300)
        let next = BackupScheduleRule.nextRun(shard: "s", backups: b.backups, strategy: strategy, lastAttempt: nil, now: now.addingTimeInterval(60))
        #expect(next.at == now.addingTimeInterval(3600))
    }

    @Test("an attempt that found nothing new moves the next incremental on; a failed one waits before retrying")
    func attempts() {
        var b = ChainBuilder()
        b.full(at: 0, seq: 100)
        let attemptTime = b.time(61)
        let idle = BackupScheduleRule.nextRun(shard: "s", backups: b.backups, strategy: strategy,
                                              lastAttempt: .init(started: attemptTime, ended: attemptTime, failed: false), now: b.time(62))
        #expect(idle.at == attemptTime.addingTimeInterval(3600))
        let failed = BackupScheduleRule.nextRun(shard: "s", backups: [], strategy: strategy,
                                                lastAttempt: .init(started: attemptTime, ended: attemptTime, failed: true), now: b.time(62))
        #expect(failed.at == attemptTime.addingTimeInterval(BackupScheduleRule.retryDelay(strategy)))
    }

    @Test("shards get different, stable offsets inside the window")
    func spread() {
        let a = BackupScheduleRule.offset(for: "commerce/-80", window: 100)
        let b = BackupScheduleRule.offset(for: "commerce/80-", window: 100)
        #expect(a != b)
        #expect(a == BackupScheduleRule.offset(for: "commerce/-80", window: 100))
        #expect((0..<100).contains(a) && (0..<100).contains(b))
    }

    @Test("re-planned every minute, 100 new shards on 24h/1h each get a first backup within the spread window plus one tick, spread apart")
    func noStarvation() {
        // The scheduler's loop, on a test clock: a tick every 0.5 s, a shard's plan recomputed when older than 60 s.
        let tick: TimeInterval = 0.5
        let refresh: TimeInterval = 60
        let window = BackupScheduleRule.spreadWindow(strategy)
        let begin = Date(timeIntervalSince1970: 1_700_000_000)
        let shards = (0..<100).map { "commerce/\($0)" }
        var plans: [String: (run: BackupScheduleRule.Run, computedAt: Date)] = [:]
        var started: [String: Date] = [:]
        var now = begin
        while now <= begin.addingTimeInterval(window + 3 * refresh) {
            for shard in shards where started[shard] == nil {
                var plan = plans[shard]
                if plan == nil || now.timeIntervalSince(plan!.computedAt) > refresh {
                    let run = BackupScheduleRule.nextRun(shard: shard, backups: [], strategy: strategy, lastAttempt: nil,
                                                         previous: plan?.run, now: now)
                    plan = (run, now)
                    plans[shard] = plan
                }
                if plan!.run.at <= now { started[shard] = now }
            }
            now = now.addingTimeInterval(tick)
        }
        #expect(started.count == shards.count, "never started: \(shards.filter { started[$0] == nil })")
        let late = started.filter { $0.value > begin.addingTimeInterval(window + tick) }
        #expect(late.isEmpty, "started after the spread window: \(late.keys.sorted())")
        // Spread: at most two shards start in the same tick, and the starts cover most of the window.
        let perTick = Dictionary(grouping: started.values, by: { $0 }).values.map(\.count)
        #expect(perTick.max() ?? 0 <= 2)
        let times = started.values.sorted()
        #expect(times.last!.timeIntervalSince(times.first!) >= window * 0.8)
    }

    @Test("a run that is due stays due when planned again, and a new backup moves it on")
    func dueStaysDue() {
        var b = ChainBuilder()
        let f = b.full(at: 0, seq: 100)
        // ctld comes back five hours later: the incremental is overdue and spread by the shard's offset.
        let now = b.time(5 * 60)
        let first = BackupScheduleRule.nextRun(shard: "commerce/7", backups: b.backups, strategy: strategy, lastAttempt: nil, now: now)
        #expect(first.kind == "incremental" && first.at >= now)
        for minutes in 1...10 {
            let again = BackupScheduleRule.nextRun(shard: "commerce/7", backups: b.backups, strategy: strategy, lastAttempt: nil,
                                                   previous: first, now: now.addingTimeInterval(Double(minutes) * 60))
            #expect(again.at == first.at, "re-planned after \(minutes) min, the run moved from \(first.at) to \(again.at)")
        }
        // A plan made before the run fell due keeps its time once it is due.
        let before = BackupScheduleRule.nextRun(shard: "commerce/7", backups: b.backups, strategy: strategy, lastAttempt: nil, now: b.time(59))
        let after = BackupScheduleRule.nextRun(shard: "commerce/7", backups: b.backups, strategy: strategy, lastAttempt: nil,
                                               previous: before, now: b.time(61))
        #expect(before.at == f.startTime.addingTimeInterval(3600) && after.at == before.at)
        // Once the incremental is taken, the previous plan no longer applies.
        b.incremental(after: f, at: 5 * 60 + 2, seq: 200)
        let next = BackupScheduleRule.nextRun(shard: "commerce/7", backups: b.backups, strategy: strategy, lastAttempt: nil,
                                              previous: first, now: b.time(5 * 60 + 3))
        #expect(next.at == b.time(5 * 60 + 2).addingTimeInterval(3600))
    }

    @Test("the scheduler's next run is the schedule `cairn backups` shows")
    func oneComputation() {
        var b = ChainBuilder()
        let f = b.full(at: 0, seq: 100)
        b.incremental(after: f, at: 60, seq: 200)
        for minutes: Double in [61, 90, 23 * 60 + 59] {
            let now = b.time(minutes)
            let schedule = BackupStrategy.schedule(backups: b.backups, strategy: strategy, now: now)
            let run = BackupScheduleRule.nextRun(shard: "s", backups: b.backups, strategy: strategy, lastAttempt: nil, now: now)
            let shown = schedule.nextIncremental.map { ("incremental", $0) } ?? ("full", schedule.nextFull!)
            #expect(run.kind == shown.0 && run.due == shown.1)
        }
    }
}
