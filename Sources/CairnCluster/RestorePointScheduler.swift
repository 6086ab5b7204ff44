import CairnCore
import CairnStorage
import Foundation
import Logging
import ServiceLifecycle

/// Creates a restore point of every keyspace with tablets each
/// `backup_strategy.restore_point_interval` (the newest point of each
/// keyspace, read from storage once, sets the pace). A failed point is
/// logged and retried a minute later; it never blocks backups.
struct RestorePointScheduler: Service {
    let server: ControlServer
    static let tick: Duration = .seconds(5)
    static let maximumBlockMilliseconds = 2000

    func run() async throws {
        guard server.options.schedulerEnabled, let interval = server.options.configuration.backupStrategy?.restorePointInterval,
              let storage = server.storage else {
            // Nothing to schedule; a service that returns would stop ctld.
            try? await gracefulShutdown()
            return
        }
        server.logger.info("restore points scheduled", metadata: ["restore_point_interval": "\(interval)"])
        let points = RestorePointRepository(storage: storage, logger: server.logger)
        try? await cancelWhenGracefulShutdown {
            var newest: [String: Date] = [:]
            var lastFailure: [String: Date] = [:]
            while !Task.isCancelled {
                try await Task.sleep(for: RestorePointScheduler.tick)
                let keyspaces: [String]
                do {
                    // A keyspace with a job running waits: a physical backup holds its primary's
                    // backup stage, and the point could not be prepared until it ends.
                    let shards = try await server.store.knownShards()
                    let busy = Set(shards.filter(\.busy).map(\.shard.keyspace))
                    keyspaces = Set(shards.map(\.shard.keyspace)).subtracting(busy).sorted()
                } catch {
                    server.logger.warning("cannot read the topology for restore points; the next tick retries", metadata: ["error": "\(error)"])
                    continue
                }
                for keyspace in keyspaces {
                    if newest[keyspace] == nil, lastFailure[keyspace] == nil {
                        newest[keyspace] = (try? await points.list(keyspace: keyspace))?.last?.createdAt ?? .distantPast
                    }
                    let now = Date()
                    let known = newest[keyspace] == .distantPast ? nil : newest[keyspace]
                    guard now >= RestorePointSchedule.nextDue(newest: known, lastFailure: lastFailure[keyspace], interval: interval) else { continue }
                    let request = ClusterAPI.RestorePointRequest(keyspace: keyspace, name: RestorePointSchedule.automaticName(at: now),
                                                                 maximumBlockMilliseconds: RestorePointScheduler.maximumBlockMilliseconds)
                    do {
                        let point = try await server.createRestorePoint(request)
                        newest[keyspace] = point.createdAt
                        lastFailure[keyspace] = nil
                    } catch {
                        lastFailure[keyspace] = now
                        server.logger.warning("a scheduled restore point failed; retrying in a minute", metadata: [
                            "keyspace": "\(keyspace)", "error": "\((error as? CairnError)?.message ?? "\(error)")"])
                    }
                }
            }
        }
    }
}
