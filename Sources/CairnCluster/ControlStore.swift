import CairnCore
import Foundation

/// Where ctld keeps the topology (tablets) and the job history: SQLite
/// under `--data-dir` on one machine (``CtldStore``), or etcd shared by
/// several ctlds (``EtcdControlStore``, `--topo`). Both keep the same rules:
/// at most one unfinished job per shard, job ids that only grow, a finished
/// job that never changes again, and retention that removes only finished
/// jobs. The scheduler's plans are published for display only: every
/// leader computes them again from storage and the job history.
protocol ControlStore: Sendable {
    // MARK: Tablets

    /// Registers a tablet, or replaces its record.
    func saveTablet(_ tablet: ClusterAPI.Tablet) async throws
    func tablet(_ alias: String) async throws -> ClusterAPI.Tablet?
    /// Every tablet, by keyspace, shard and alias.
    func tablets() async throws -> [ClusterAPI.Tablet]
    /// One shard's tablets, by alias.
    func tablets(_ shard: KeyspaceShard) async throws -> [ClusterAPI.Tablet]
    /// Changes one registered tablet atomically; false when it is not registered.
    /// `change` may run more than once (a store that retries a conflict).
    @discardableResult
    func updateTablet(_ alias: String, _ change: @escaping @Sendable (inout ClusterAPI.Tablet) -> Void) async throws -> Bool
    /// A heartbeat's change of its tablet (as ``updateTablet(_:_:)``), and
    /// the ids of the unfinished jobs the store has on that tablet, read in
    /// the same transaction; nil when it is not registered.
    func heartbeatTablet(_ alias: String, _ change: @escaping @Sendable (inout ClusterAPI.Tablet) -> Void) async throws -> [Int64]?
    /// The shards that have tablets, in order, each with whether a job runs on it.
    func knownShards() async throws -> [KnownShard]
    /// Tablets with no heartbeat since `cutoff` that are still marked healthy
    /// or still have unfinished jobs, the longest silent first.
    func silentTablets(heartbeatBefore cutoff: Date) async throws -> [SilentTablet]

    // MARK: Jobs

    /// Creates a job unless one is already running on the shard, which is an error.
    func createJob(shard: KeyspaceShard, tablet: String, scheduled: Bool,
                   _ fill: @escaping @Sendable (inout ClusterAPI.Job) -> Void) async throws -> ClusterAPI.Job
    /// Changes one unfinished job atomically and returns it (a finished one
    /// unchanged; nil when there is none). `change` may run more than once.
    @discardableResult
    func updateJob(_ id: Int64, _ change: @escaping @Sendable (inout ClusterAPI.Job) -> Void) async throws -> ClusterAPI.Job?
    func job(_ id: Int64) async throws -> ClusterAPI.Job?
    /// Newest first.
    func jobs(shard: KeyspaceShard?, limit: Int) async throws -> [ClusterAPI.Job]
    /// Whether a job runs on the shard.
    func isBusy(_ shard: KeyspaceShard) async throws -> Bool
    /// The newest job the scheduler started on each of the shards (that has one), by shard.
    func lastScheduledJobs(_ shards: [KeyspaceShard]) async throws -> [KeyspaceShard: ClusterAPI.Job]

    // MARK: Job history

    /// Removes the shard's finished jobs that ``JobRetention`` does not keep; returns how many.
    func pruneJobs(_ shard: KeyspaceShard, retention: JobRetention, now: Date) async throws -> Int
    /// Prunes every shard's job history, shard by shard; stops between shards when the task is cancelled.
    func pruneJobs(retention: JobRetention, now: Date) async throws -> Int

    // MARK: Archive leases

    /// Whether archive leases outlive this ctld's process (so a restarted
    /// ctld needs no grace period before it grants one; see ``ArchiveLeaseRule``).
    var keepsArchiveLeases: Bool { get }
    /// The shard's archive lease as stored (it may have expired).
    func archiveLease(_ shard: KeyspaceShard) async throws -> ArchiveLeaseRule.Lease?
    /// Applies `change` to the shard's archive lease atomically, for every
    /// ctld sharing the store, stores the result when it differs (nil
    /// removes it), and returns what `change` returned. `change` may run
    /// more than once.
    func updateArchiveLease<T: Sendable>(_ shard: KeyspaceShard,
                                         _ change: @escaping @Sendable (inout ArchiveLeaseRule.Lease?) -> T) async throws -> T

    // MARK: The scheduler's plans

    /// Stores the leading ctld's plans (what `cairn jobs` shows) so that
    /// every ctld sharing the store can show them: `changed` replaces those
    /// shards' plans and `removed` names shards that no longer have one.
    func publishSchedule(changed: [ClusterAPI.ShardSchedule], removed: [String]) async throws
    /// The plans the leader published, by shard.
    func publishedSchedule() async throws -> [ClusterAPI.ShardSchedule]

    /// Releases connections; the store is not used afterwards.
    func close() async
}

/// A shard that has tablets, and whether a job runs on it.
struct KnownShard: Sendable, Hashable {
    var shard: KeyspaceShard
    var busy: Bool
}

/// A tablet whose heartbeats stopped, and what it was running.
struct SilentTablet: Sendable, Equatable {
    var alias: String
    var healthy: Bool
    var lastHeartbeat: Date?
    var unfinishedJobs: [JobReference]
}

struct JobReference: Sendable, Equatable {
    var id: Int64
    var shard: KeyspaceShard
}

extension ControlStore {
    /// The message of the one-job-per-shard rule, the same from every store.
    static func shardBusyError(_ shard: KeyspaceShard) -> CairnError {
        CairnError(.cluster, "a job is already running on \(shard); wait for it (see `cairn jobs \(shard)`) and retry")
    }
}
