import CairnCore
import CairnEngine
import CairnStorage
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// What the scheduler plans per shard, for `cairn jobs`.
final class SchedulerState: Sendable {
    struct Entry: Sendable {
        var run: BackupScheduleRule.Run?
        var computedAt: Date
        var note: String?
    }
    let entries = Mutex<[String: Entry]>([:])

    func set(_ shard: String, _ entry: Entry) { entries.withLock { $0[shard] = entry } }
    func get(_ shard: String) -> Entry? { entries.withLock { $0[shard] } }
    /// Forget a shard's plan so the next tick recomputes it (after a job ends).
    func invalidate(_ shard: String) { entries.withLock { $0[shard] = nil } }
    /// Forget every plan: another ctld may have led (and run them) since they were made.
    func invalidateAll() { entries.withLock { $0.removeAll() } }

    func summary(_ only: KeyspaceShard?) -> [ClusterAPI.ShardSchedule] {
        entries.withLock { entries in
            entries.sorted { $0.key < $1.key }.filter { only == nil || $0.key == only?.description }.map { shard, e in
                ClusterAPI.ShardSchedule(shard: shard, nextRun: e.run?.at, nextKind: e.run?.kind, note: e.note ?? e.run?.reason)
            }
        }
    }
}

/// Marks tablets unhealthy when their heartbeats stop, and fails the jobs
/// they were running: a killed tablet never leaves a job "running" forever.
struct HeartbeatMonitor: Service {
    let server: ControlServer
    /// Judges no tablet before this time. A ctld that has just become the
    /// leader of several (``LeaderServices``) gives every tablet one
    /// heartbeat timeout to reach it first: heartbeats that failed while no
    /// ctld led, or while etcd had no quorum, do not make a tablet silent.
    var judgeAfter: Date? = nil
    /// How often it looks. On SQLite a pass reads only silent tablets (an
    /// index); on etcd it reads every tablet's record, so it looks every
    /// fifth of the heartbeat timeout instead (2 s by default).
    var interval: Duration = .milliseconds(500)

    func run() async throws {
        // Stopping at a graceful shutdown is the normal end, not an error.
        try? await cancelWhenGracefulShutdown {
            let chore = PeriodicChore(interval: interval, logger: server.logger,
                                      failure: "could not check the tablets' heartbeats; no tablet is marked unhealthy until a check succeeds",
                                      recovery: "the tablets' heartbeats are checked again")
            try await chore.run { try await check() }
        }
    }

    func check() async throws {
        let now = Date()
        if let judgeAfter, now < judgeAfter { return }
        let cutoff = now.addingTimeInterval(-server.options.heartbeatTimeout)
        for tablet in try await server.store.silentTablets(heartbeatBefore: cutoff) {
            let silent = tablet.lastHeartbeat.map { Int(now.timeIntervalSince($0)) }
            let silentText = silent.map { "none for \($0)s" } ?? "none since it registered"
            if tablet.healthy {
                server.logger.warning("tablet stopped sending heartbeats", metadata: ["tablet": "\(tablet.alias)", "silent_seconds": "\(silent.map(String.init) ?? "-")"])
                try await server.store.updateTablet(tablet.alias) { t in
                    // A heartbeat that arrived since the query wins.
                    guard (t.lastHeartbeat ?? .distantPast) < cutoff else { return }
                    t.healthy = false
                    t.serving = false
                    t.currentJob = nil
                }
            }
            for job in tablet.unfinishedJobs {
                try await server.failJob(job.id, "tablet \(tablet.alias) stopped sending heartbeats (\(silentText)) while running the job; it was lost, check the tablet and retry")
                server.schedulerState.invalidate(job.shard.description)
            }
        }
    }
}

/// The built-in scheduler: for every shard with tablets, the configured
/// full/incremental strategy, one job per shard at a time, missed slots run
/// once, shards spread apart.
///
/// Each tick reads all shards' state in one query and queues the shards that
/// are due or need a new plan; `concurrency` workers take them in order,
/// list storage and hand jobs to tablets. A shard whose storage listing or
/// tablet is slow keeps only its worker waiting, and ticks leave a queued
/// shard alone until its worker is done with it.
struct Scheduler: Service {
    let server: ControlServer
    static let tick: Duration = .milliseconds(500)
    /// How many shards are planned or started at once.
    static let concurrency = 16

    /// A shard handed to a worker.
    struct Work: Sendable {
        var shard: KeyspaceShard
        /// List storage and compute a new plan first.
        var replan: Bool
        var lastScheduled: ClusterAPI.Job?
    }

    func run() async throws {
        guard server.options.schedulerEnabled, let strategy = server.options.configuration.backupStrategy, server.storage != nil else {
            // Nothing to schedule; a service that returns would stop ctld.
            try? await gracefulShutdown()
            return
        }
        // Plans of an earlier term of leadership are stale: another ctld may have run them.
        server.schedulerState.invalidateAll()
        server.logger.info("scheduler on", metadata: ["full_backup_interval": "\(strategy.fullBackupInterval)",
                                                      "incremental_backup_interval": "\(strategy.incrementalBackupInterval?.description ?? "none")"])
        let queued = ShardsInFlight()
        let (queue, enqueue) = AsyncStream.makeStream(of: Work.self)
        // Stopping at a graceful shutdown is the normal end, not an error.
        let interrupted = await cancelWhenGracefulShutdown {
            await withDiscardingTaskGroup { ticks in
                ticks.addTask {
                    while !Task.isCancelled {
                        do {
                            try await Task.sleep(for: Scheduler.tick)
                            for work in try await pass(queued: queued) { enqueue.yield(work) }
                        } catch {
                            if !Task.isCancelled {
                                server.logger.warning("scheduler pass failed; the next tick retries", metadata: ["error": "\(error)"])
                            }
                        }
                    }
                    enqueue.finish()
                }
                // At most `concurrency` shards at once, in the order queued; ends when this task is cancelled.
                await withTaskGroup(of: Void.self) { workers in
                    var running = 0
                    for await work in queue {
                        if running == Scheduler.concurrency {
                            await workers.next()
                            running -= 1
                        }
                        workers.addTask {
                            await perform(work, strategy: strategy)
                            // A shard cut short by the stop stays counted as interrupted.
                            if !Task.isCancelled { queued.remove(work.shard.description) }
                        }
                        running += 1
                    }
                }
                return queued.count
            }
        }
        server.logger.info("scheduler stopped", metadata: ["interrupted_shards": "\(interrupted)"])
    }

    /// One tick: the shards that are due, then those that need a new plan,
    /// from one query (and one more for the last scheduled jobs of the latter),
    /// each marked queued.
    func pass(queued: ShardsInFlight) async throws -> [Work] {
        let now = Date()
        var due: [KeyspaceShard] = []
        var stale: [KeyspaceShard] = []
        for known in try await server.store.knownShards() {
            let id = known.shard.description
            guard !queued.contains(id) else { continue }
            if known.busy {
                // The plan is recomputed once the job ends.
                server.schedulerState.set(id, .init(run: nil, computedAt: now, note: "a job is running"))
                continue
            }
            switch ShardSchedulePlanner.step(jobRunning: false, plan: server.schedulerState.get(id), now: now) {
            case .start: due.append(known.shard)
            case .replan: stale.append(known.shard)
            case .wait, .busy: break
            }
        }
        let lastScheduled = try await server.store.lastScheduledJobs(stale)
        // Due shards first: they are late already.
        let work = due.map { Work(shard: $0, replan: false, lastScheduled: nil) }
            + stale.map { Work(shard: $0, replan: true, lastScheduled: lastScheduled[$0]) }
        for item in work { queued.insert(item.shard.description) }
        return work
    }

    func perform(_ work: Work, strategy: BackupStrategyConfig) async {
        do {
            try await consider(work.shard, replan: work.replan, lastScheduled: work.lastScheduled, strategy: strategy)
        } catch {
            // Cancellation (ctld stopping) is not the shard's failure; `run` says it once.
            guard !Task.isCancelled else { return }
            server.logger.warning("scheduler could not plan a shard", metadata: ["shard": "\(work.shard)", "error": "\(error)"])
            server.schedulerState.set(work.shard.description, .init(run: nil, computedAt: Date(), note: "\(error)"))
        }
    }

    /// Plans the shard from storage when `replan`, then starts its backup when it is due.
    func consider(_ shard: KeyspaceShard, replan: Bool, lastScheduled last: ClusterAPI.Job?, strategy: BackupStrategyConfig) async throws {
        let shardText = shard.description
        var now = Date()
        if replan {
            let cached = server.schedulerState.get(shardText)
            let repository = BackupRepository(storage: try server.requireStorage(), logger: server.logger, manifestCache: server.manifestCache)
            let listing = try await repository.list(shard)
            let manifests = listing.manifests
            await server.observe(shard, listing: listing, repository: repository)
            let attempt = last.map {
                BackupScheduleRule.Attempt(started: $0.startedAt ?? $0.createdAt, ended: $0.endedAt, failed: $0.result == .failed)
            }
            now = Date()
            // The run planned before stays due once its time has come (see BackupScheduleRule.nextRun).
            let run = BackupScheduleRule.nextRun(shard: shardText, backups: manifests, strategy: strategy, lastAttempt: attempt,
                                                 previous: cached?.run, now: now)
            server.schedulerState.set(shardText, .init(run: run, computedAt: now, note: nil))
        }
        guard case .start(let run) = ShardSchedulePlanner.step(jobRunning: false, plan: server.schedulerState.get(shardText), now: now) else {
            return
        }
        server.logger.info("scheduled backup due", metadata: ["shard": "\(shardText)", "kind": "\(run.kind)", "reason": "\(run.reason)"])
        server.schedulerState.invalidate(shardText)
        do {
            _ = try await server.startBackup(ClusterAPI.BackupRequest(keyspace: shard.keyspace, shard: shard.shard, tablet: nil,
                                                                      tabletType: server.options.scheduledTabletType,
                                                                      type: .auto, engine: nil), scheduled: true)
        } catch let error as CairnError {
            guard !Task.isCancelled else { throw CancellationError() }
            // Recorded as a failed scheduled attempt so the rule backs off.
            server.logger.warning("scheduled backup could not start", metadata: ["shard": "\(shardText)", "error": "\(error.message)"])
            server.schedulerState.set(shardText, ShardSchedulePlanner.retry(run, after: error, strategy: strategy, now: now))
        }
    }
}

/// The shards queued for the scheduler's workers or being worked on.
final class ShardsInFlight: Sendable {
    private let shards = Mutex<Set<String>>([])

    var count: Int { shards.withLock { $0.count } }
    func contains(_ shard: String) -> Bool { shards.withLock { $0.contains(shard) } }
    func insert(_ shard: String) { _ = shards.withLock { $0.insert(shard) } }
    func remove(_ shard: String) { _ = shards.withLock { $0.remove(shard) } }
}

/// The scheduler's decision for one shard at one moment, from what it knows
/// (a job running, the plan it computed last) and the time, without I/O.
enum ShardSchedulePlanner {
    /// How long a computed plan is trusted before storage is listed again.
    static let refresh: TimeInterval = 60

    enum Step: Equatable {
        /// A job runs on the shard: nothing starts, the plan is recomputed once it ends.
        case busy
        /// No plan, or one too old: list storage and plan again.
        case replan
        /// The planned run is not due yet (or nothing is planned).
        case wait
        /// The planned run is due: start it.
        case start(BackupScheduleRule.Run)
    }

    static func step(jobRunning: Bool, plan: SchedulerState.Entry?, now: Date) -> Step {
        if jobRunning { return .busy }
        guard let plan, let run = plan.run, now.timeIntervalSince(plan.computedAt) <= refresh else { return .replan }
        return run.at <= now ? .start(run) : .wait
    }

    /// The plan after `run` could not start: the same kind again after the strategy's retry delay.
    static func retry(_ run: BackupScheduleRule.Run, after error: CairnError, strategy: BackupStrategyConfig, now: Date) -> SchedulerState.Entry {
        SchedulerState.Entry(run: BackupScheduleRule.Run(at: now.addingTimeInterval(BackupScheduleRule.retryDelay(strategy)),
                                                         kind: run.kind, reason: "retrying: \(error.message)"),
                             computedAt: now, note: nil)
    }
}
