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
}
