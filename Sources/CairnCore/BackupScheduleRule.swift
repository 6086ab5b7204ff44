public import Foundation

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
        /// When to start it.
        public var at: Date
        /// `full`, `delta` or `incremental`: what the strategy is expected to take.
        public var kind: String
        public var reason: String
        /// When it fell due: the strategy's time (moved on by a failed
        /// attempt's back-off), or, without a chain, when it was first planned.
        /// `at` is later when the run was overdue and spread by the shard's offset.
        public var due: Date

        public init(at: Date, kind: String, reason: String, due: Date? = nil) {
            self.at = at
            self.kind = kind
            self.reason = reason
            self.due = due ?? at
        }

        /// Whether `other` plans the same backup: the same kind, for the same reason, due at the same time.
        func isSameRun(as other: Run) -> Bool {
            kind == other.kind && reason == other.reason && due == other.due
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
                           strategy.incrementalBackupInterval?.timeInterval ?? .infinity,
                           strategy.deltaBackupInterval?.timeInterval ?? .infinity)
        return min(shortest / 4, 300)
    }

    /// How long to wait after a failed attempt before trying again.
    public static func retryDelay(_ strategy: BackupStrategyConfig) -> TimeInterval {
        min(strategy.incrementalBackupInterval?.timeInterval ?? strategy.fullBackupInterval.timeInterval, 300)
    }

    /// The shard's next run. `previous` is the plan made for it last time
    /// (nil at first): a run already due stays due when it is planned again,
    /// rather than moving on with `now`, so re-planning (the scheduler does
    /// every minute) never pushes it later.
    public static func nextRun(shard: String, backups: [BackupManifest], strategy: BackupStrategyConfig,
                               lastAttempt: Attempt?, previous: Run? = nil, now: Date) -> Run {
        let succeeded = lastAttempt.flatMap { $0.failed ? nil : $0.started }
        let schedule = BackupStrategy.schedule(backups: backups, strategy: strategy, now: now, lastAttempt: succeeded)
        // With a strategy there is always a next backup.
        let next = schedule.next ?? .init(at: now, type: .full, reason: BackupStrategy.noChainReason)
        var run = Run(at: next.at, kind: next.type.rawValue, reason: next.reason)
        // Without a chain the run is due from the moment it was first planned, not from each `now`.
        if next.reason == BackupStrategy.noChainReason, let previous, previous.kind == run.kind,
           previous.reason.hasPrefix(BackupStrategy.noChainReason), previous.due < run.due {
            run.due = previous.due
        }
        if let lastAttempt, lastAttempt.failed {
            let retry = (lastAttempt.ended ?? lastAttempt.started).addingTimeInterval(retryDelay(strategy))
            // `>=`: a run anchored at an earlier plan's retry time is still that retry.
            if retry >= run.due {
                run.due = retry
                run.reason += "; retrying after the failed attempt"
            }
        }
        run.at = run.due
        // Overdue (first run, or slots missed while ctld was down): run once,
        // soon, at this shard's offset, rather than all shards at once. Planned
        // again, it keeps the time it got when it first fell overdue.
        if run.due <= now {
            if let previous, previous.isSameRun(as: run) {
                run.at = previous.at
            } else {
                run.at = now.addingTimeInterval(offset(for: shard, window: spreadWindow(strategy)))
            }
        }
        return run
    }
}
