import Foundation

/// When the built-in scheduler next backs up one shard: pure, so every rule
/// (due times, no bursts after a restart, spreading shards, backing off
/// after failures) is unit-tested without clocks or servers.
public enum BackupScheduleRule {
    /// The scheduler's last attempt on the shard.
    public struct Attempt: Sendable, Hashable {
        public var started: Date
        public var ended: Date?
        public var failed: Bool

        public init(started: Date, ended: Date?, failed: Bool) {
            self.started = started
            self.ended = ended
            self.failed = failed
        }
    }

    public struct Run: Sendable, Hashable {
        public var at: Date
        /// `full` or `incremental`: what the strategy is expected to take.
        public var kind: String
        public var reason: String

        public init(at: Date, kind: String, reason: String) {
            self.at = at
            self.kind = kind
            self.reason = reason
        }
    }

    /// A stable offset in `[0, window)` for a shard, so shards of a fleet
    /// do not all start at the same instant.
    public static func offset(for shard: String, window: TimeInterval) -> TimeInterval {
        guard window > 0 else { return 0 }
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in shard.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        return Double(hash % 10_000) / 10_000 * window
    }

    /// The spread window for a strategy: a quarter of its shortest interval, at most five minutes.
    public static func spreadWindow(_ strategy: BackupStrategyConfig) -> TimeInterval {
        let shortest = min(strategy.fullBackupInterval.timeInterval,
                           strategy.incrementalBackupInterval?.timeInterval ?? .infinity)
        return min(shortest / 4, 300)
    }

    /// How long to wait after a failed attempt before trying again.
    public static func retryDelay(_ strategy: BackupStrategyConfig) -> TimeInterval {
        min(strategy.incrementalBackupInterval?.timeInterval ?? strategy.fullBackupInterval.timeInterval, 300)
    }

    public static func nextRun(shard: String, backups: [BackupManifest], strategy: BackupStrategyConfig,
                               lastAttempt: Attempt?, now: Date) -> Run {
        let chains = BackupChains(backups)
        let offset = offset(for: shard, window: spreadWindow(strategy))
        var run: Run
        if let full = chains.restorable.last(where: { !$0.incremental }), let newest = chains.newestRestorable {
            let fullDue = full.startTime.addingTimeInterval(strategy.fullBackupInterval.timeInterval)
            run = Run(at: fullDue, kind: "full", reason: "full_backup_interval after \(full.backupName)")
            if let interval = strategy.incrementalBackupInterval {
                // An attempt that found nothing new also counts, so an idle shard is not retried every tick.
                var base = newest.startTime
                if let lastAttempt, !lastAttempt.failed, lastAttempt.started > base { base = lastAttempt.started }
                let incrementalDue = base.addingTimeInterval(interval.timeInterval)
                if incrementalDue < fullDue {
                    run = Run(at: incrementalDue, kind: "incremental", reason: "incremental_backup_interval after \(newest.backupName)")
                }
            }
        } else {
            run = Run(at: now, kind: "full", reason: "no complete chain exists")
        }
        if let lastAttempt, lastAttempt.failed {
            let retry = (lastAttempt.ended ?? lastAttempt.started).addingTimeInterval(retryDelay(strategy))
            if retry > run.at {
                run.at = retry
                run.reason += "; retrying after the failed attempt"
            }
        }
        // Overdue (first run, or slots missed while ctld was down): run once,
        // soon, at this shard's offset, rather than all shards at once.
        if run.at <= now {
            run.at = now.addingTimeInterval(offset)
        }
        return run
    }
}
