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

    func summary(_ only: KeyspaceShard?) -> [ClusterAPI.ShardSchedule] {
        entries.withLock { entries in
            entries.keys.sorted().filter { only == nil || $0 == only!.description }.map { shard in
                let e = entries[shard]!
                return ClusterAPI.ShardSchedule(shard: shard, nextRun: e.run?.at, nextKind: e.run?.kind, note: e.note ?? e.run?.reason)
            }
        }
    }
}

/// Marks tablets unhealthy when their heartbeats stop, and fails the jobs
/// they were running: a killed tablet never leaves a job "running" forever.
struct HeartbeatMonitor: Service {
    let server: ControlServer

    func run() async throws {
        // Stopping at a graceful shutdown is the normal end, not an error.
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try await Task.sleep(for: .milliseconds(500))
                do {
                    try await check()
                } catch {
                    server.logger.error("heartbeat check failed", metadata: ["error": "\(error)"])
                }
            }
        }
    }

    func check() async throws {
        let now = Date()
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
struct Scheduler: Service {
    let server: ControlServer
    static let tick: Duration = .milliseconds(500)
    /// How long a computed plan is trusted before storage is listed again.
    static let refresh: TimeInterval = 60

    func run() async throws {
        guard server.options.schedulerEnabled, let strategy = server.options.configuration.backupStrategy, server.storage != nil else {
            // Nothing to schedule; a service that returns would stop ctld.
            try? await gracefulShutdown()
            return
        }
        server.logger.info("scheduler on", metadata: ["full_backup_interval": "\(strategy.fullBackupInterval)",
                                                      "incremental_backup_interval": "\(strategy.incrementalBackupInterval?.description ?? "none")"])
        // Stopping at a graceful shutdown is the normal end, not an error.
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try await Task.sleep(for: Scheduler.tick)
                for shard in (try? await server.knownShards()) ?? [] {
                    do {
                        try await consider(shard, strategy: strategy)
                    } catch {
                        server.logger.warning("scheduler could not plan a shard", metadata: ["shard": "\(shard)", "error": "\(error)"])
                        server.schedulerState.set(shard, .init(run: nil, computedAt: Date(), note: "\(error)"))
                    }
                }
            }
        }
    }

    func consider(_ shardText: String, strategy: BackupStrategyConfig) async throws {
        let shard = try KeyspaceShard(parsing: shardText)
        let now = Date()
        let running = try await server.store.isBusy(shard)
        if running {
            // The plan is recomputed once the job ends.
            server.schedulerState.set(shardText, .init(run: nil, computedAt: now, note: "a job is running"))
            return
        }
        var entry = server.schedulerState.get(shardText)
        if entry?.run == nil || now.timeIntervalSince(entry!.computedAt) > Scheduler.refresh {
            let manifests = try await BackupRepository(storage: try server.requireStorage(), logger: server.logger).completeManifests(shard)
            let last = try await server.store.lastScheduledJobs([shard])[shard]
            let attempt = last.map {
                BackupScheduleRule.Attempt(started: $0.startedAt ?? $0.createdAt, ended: $0.endedAt, failed: $0.result == .failed)
            }
            let run = BackupScheduleRule.nextRun(shard: shardText, backups: manifests, strategy: strategy, lastAttempt: attempt, now: now)
            entry = .init(run: run, computedAt: now, note: nil)
            server.schedulerState.set(shardText, entry!)
        }
        guard let run = entry?.run, run.at <= now else { return }
        server.logger.info("scheduled backup due", metadata: ["shard": "\(shardText)", "kind": "\(run.kind)", "reason": "\(run.reason)"])
        server.schedulerState.invalidate(shardText)
        do {
            _ = try await server.startBackup(ClusterAPI.BackupRequest(keyspace: shard.keyspace, shard: shard.shard, tablet: nil,
                                                                      tabletType: server.options.scheduledTabletType,
                                                                      type: .auto, engine: nil), scheduled: true)
        } catch let error as CairnError {
            // Recorded as a failed scheduled attempt so the rule backs off.
            server.logger.warning("scheduled backup could not start", metadata: ["shard": "\(shardText)", "error": "\(error.message)"])
            server.schedulerState.set(shardText, .init(run: BackupScheduleRule.Run(at: now.addingTimeInterval(BackupScheduleRule.retryDelay(strategy)),
                                                                                   kind: run.kind, reason: "retrying: \(error.message)"),
                                                       computedAt: now, note: nil))
        }
    }
}
