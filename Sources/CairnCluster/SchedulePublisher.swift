import Logging
import ServiceLifecycle

/// The leader's side of showing the schedule through every ctld: every
/// `interval` it writes the scheduler's plans that changed since the last
/// round into the store (etcd), where a ctld that does not lead reads them
/// for `cairn jobs`, `cairn status` and the console (docs/CLUSTER.md,
/// "Several ctlds"). A leader shows its own plans from memory.
struct SchedulePublisher: Service {
    let state: SchedulerState
    let store: any ControlStore
    let logger: Logger
    var interval: Duration = .seconds(2)

    func run() async throws {
        // Stopping at a graceful shutdown is the normal end, not an error.
        try? await cancelWhenGracefulShutdown {
            // What the store holds, from this term or an earlier one (of any ctld); nil until read.
            var published: [String: ClusterAPI.ShardSchedule]? = nil
            let chore = PeriodicChore(interval: interval, logger: logger,
                                      failure: "could not publish the scheduler's plans; ctlds that do not lead show older ones until this succeeds",
                                      recovery: "the scheduler's plans are published again")
            try await chore.run {
                let stored: [String: ClusterAPI.ShardSchedule]
                if let published { stored = published } else { stored = Self.byShard(try await store.publishedSchedule()) }
                published = try await publish(over: stored)
            }
        }
    }

    /// Writes what differs between `stored` and the plans now; returns what is stored afterwards.
    func publish(over stored: [String: ClusterAPI.ShardSchedule]) async throws -> [String: ClusterAPI.ShardSchedule] {
        let current = Self.byShard(state.summary(nil))
        let changed = current.values.filter { stored[$0.shard] != $0 }.sorted { $0.shard < $1.shard }
        let removed = stored.keys.filter { current[$0] == nil }.sorted()
        if !changed.isEmpty || !removed.isEmpty {
            try await store.publishSchedule(changed: changed, removed: removed)
        }
        return current
    }

    static func byShard(_ entries: [ClusterAPI.ShardSchedule]) -> [String: ClusterAPI.ShardSchedule] {
        Dictionary(entries.map { ($0.shard, $0) }, uniquingKeysWith: { first, _ in first })
    }
}
