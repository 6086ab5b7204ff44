import CairnCore
import Foundation
import Logging
import ServiceLifecycle

/// Runs a restore drill of every shard each `backup_strategy.drill_interval`
/// (``DrillSchedule``), on a replica's host when the shard has a healthy
/// replica. The newest drill of each shard comes from its record in storage
/// (through the shard inventory), so a restarted ctld keeps the pace. A
/// drill is a job of its shard: it waits while a backup runs, and a backup
/// due meanwhile runs once it has ended. A few drills start per tick, so a
/// fleet's drills spread out instead of all restoring at once.
struct DrillScheduler: Service {
    let server: ControlServer
    static let tick: Duration = .seconds(10)
    static let drillsPerTick = 4

    func run() async throws {
        guard server.options.schedulerEnabled, let interval = server.options.configuration.backupStrategy?.drillInterval,
              server.storage != nil else {
            // Nothing to schedule; a service that returns would stop ctld.
            try? await gracefulShutdown()
            return
        }
        server.logger.info("restore drills scheduled", metadata: ["drill_interval": "\(interval)"])
        try? await cancelWhenGracefulShutdown {
            var lastAttempt: [String: Date] = [:]
            while !Task.isCancelled {
                try await Task.sleep(for: DrillScheduler.tick)
                let shards: [KnownShard]
                do {
                    shards = try await server.store.knownShards()
                } catch {
                    server.logger.warning("cannot read the topology for drills; the next tick retries", metadata: ["error": "\(error)"])
                    continue
                }
                var started = 0
                for known in shards where !known.busy && started < DrillScheduler.drillsPerTick {
                    let id = known.shard.description
                    // Drill what is known to be there: a shard is drilled once a listing has shown a complete backup.
                    guard let entry = server.inventory.entry(id), (entry.protection?.completeBackups ?? 0) > 0 else { continue }
                    let now = Date()
                    guard now >= DrillSchedule.nextDue(lastDrill: entry.lastDrill?.finishedAt, lastAttempt: lastAttempt[id], interval: interval) else {
                        continue
                    }
                    lastAttempt[id] = now
                    started += 1
                    do {
                        _ = try await server.startDrill(ClusterAPI.DrillRequest(keyspace: known.shard.keyspace, shard: known.shard.shard,
                                                                                tablet: nil, parameters: .init(randomPoint: false)),
                                                        scheduled: true)
                    } catch {
                        server.logger.warning("a scheduled drill could not start; it is tried again later", metadata: [
                            "shard": "\(id)", "error": "\((error as? CairnError)?.message ?? "\(error)")"])
                    }
                }
            }
        }
    }
}
