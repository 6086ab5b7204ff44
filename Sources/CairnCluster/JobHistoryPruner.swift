import Foundation
import Logging
import ServiceLifecycle

/// How much finished-job history ctld keeps (`cairn jobs`). A finished job
/// stays while it is one of its shard's newest `keepPerShard` finished jobs
/// or younger than `keepYoungerThan`; unfinished jobs always stay.
public struct JobRetention: Sendable, Hashable {
    public var keepPerShard: Int
    /// Seconds, counted from the job's creation.
    public var keepYoungerThan: TimeInterval

    public init(keepPerShard: Int = 100, keepYoungerThan: TimeInterval = 7 * 86_400) {
        self.keepPerShard = keepPerShard
        self.keepYoungerThan = keepYoungerThan
    }
}

/// Removes finished jobs the retention does not keep: at start and then
/// every `interval`, shard by shard in small transactions so heartbeats and
/// the scheduler never wait long. A graceful shutdown lets the current
/// shard's transaction finish and stops.
struct JobHistoryPruner: Service {
    let store: any ControlStore
    let retention: JobRetention
    let logger: Logger
    var interval: Duration = .seconds(600)

    func run() async throws {
        // Stopping at a graceful shutdown is the normal end, not an error.
        try? await cancelWhenGracefulShutdown {
            let chore = PeriodicChore(interval: interval, logger: logger,
                                      failure: "job history could not be pruned; the next round retries, and `cairn jobs` keeps older jobs until one succeeds",
                                      recovery: "job history is pruned again")
            try await chore.run {
                let removed = try await store.pruneJobs(retention: retention, now: Date())
                if removed > 0 {
                    logger.info("job history pruned", metadata: ["removed_jobs": "\(removed)", "keep_per_shard": "\(retention.keepPerShard)",
                                                                 "keep_days": "\(retention.keepYoungerThan / 86_400)"])
                }
            }
        }
    }
}
