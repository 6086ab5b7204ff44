import CairnEtcd
import Logging
import ServiceLifecycle

/// Runs the leader's services on the one ctld that holds the etcd lease:
/// campaigns every third of the lease's TTL, starts the services in their
/// own service group on becoming leader, and shuts them down gracefully
/// when the lease cannot be kept (etcd lost its quorum, or this ctld was
/// cut off). A ctld that stops resigns, so the next leads without waiting
/// for the TTL. Two ctlds believe they lead at once for at most the clock
/// skew between them (``EtcdLeadership``), and even then they cannot start
/// two jobs on one shard: job creation is an etcd transaction.
struct LeaderServices: Service {
    let leadership: EtcdLeadership
    let logger: Logger
    /// Fresh services for each term of leadership.
    let services: @Sendable () -> [any Service]

    var round: Duration { .milliseconds(max(leadership.ttl, 1) * 1000 / 3) }

    enum TermEnd: Sendable {
        /// The services' group ended: ctld is stopping.
        case servicesEnded
        /// The lease could not be kept.
        case leadershipLost
    }

    func run() async throws {
        while !Task.isShuttingDownGracefully, !Task.isCancelled {
            if await leadership.tick() {
                try await lead()
            } else {
                // Stopping at a graceful shutdown is the normal end, not an error.
                try? await cancelWhenGracefulShutdown { try await Task.sleep(for: round) }
            }
        }
        await leadership.resign()
    }

    /// One term: the services run until ctld stops or the lease is lost.
    func lead() async throws {
        let group = ServiceGroup(services: services(), logger: logger)
        try await withThrowingTaskGroup(of: TermEnd.self) { tasks in
            // The group also shuts down gracefully when ctld does (it follows its parent's shutdown).
            tasks.addTask {
                try await group.run()
                return .servicesEnded
            }
            tasks.addTask {
                while !Task.isCancelled {
                    let stopped = (try? await cancelWhenGracefulShutdown { try await Task.sleep(for: round) }) == nil
                    if stopped || Task.isCancelled { return .servicesEnded }
                    guard await leadership.tick() else { break }
                }
                logger.warning("this ctld lost its leadership; its scheduler, heartbeat monitor and pruners stop")
                await group.triggerGracefulShutdown()
                return .leadershipLost
            }
            switch try await tasks.next() {
            case .leadershipLost:
                // Let the services drain.
                _ = try await tasks.next()
            case .servicesEnded, nil:
                tasks.cancelAll()
                while try await tasks.next() != nil {}
            }
        }
    }
}
