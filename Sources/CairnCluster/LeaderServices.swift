import CairnEtcd
import Logging
import ServiceLifecycle

/// Runs the leader's services on the one ctld that holds the etcd lease:
/// campaigns every third of the lease's TTL, starts the services in their
/// own service group on becoming leader, and shuts them down gracefully
/// when the lease cannot be kept (etcd lost its quorum, or this ctld was
/// cut off). A ctld that stops resigns, so the next leads without waiting
/// for the TTL. A leader that cannot renew stops its services (they drain)
/// at two thirds of the TTL after its last successful renewal, so two ctlds run them at once only for as long as a
/// drain takes plus the clock skew between them (``EtcdLeadership``), and
/// even then they cannot start two jobs on one shard: job creation is an
/// etcd transaction.
struct LeaderServices: Service {
    let leadership: EtcdLeadership
    let logger: Logger
    /// Fresh services for each term of leadership.
    let services: @Sendable () -> [any Service]

    var round: Duration { .milliseconds(max(leadership.ttl, 1) * 1000 / 3) }

    enum TermEnd: Sendable {
        /// The services' group ended.
        case servicesEnded
        /// The renewal or the watch was cancelled (the term is ending).
        case cancelled
        /// ctld is stopping: the services drain before the term ends.
        case stopping
        /// The lease could not be kept.
        case leadershipLost
    }

    /// How often a term checks that it still leads: the lease's freshness
    /// is a clock reading, so this is cheap.
    static let leadershipCheck: Duration = .milliseconds(250)

    func run() async throws {
        do {
            while !Task.isShuttingDownGracefully, !Task.isCancelled {
                if await leadership.tick() {
                    try await lead()
                } else {
                    // Stopping at a graceful shutdown is the normal end, not an error.
                    try? await cancelWhenGracefulShutdown { try await Task.sleep(for: round) }
                }
            }
        } catch {
            await leadership.resign()
            throw error
        }
        await leadership.resign()
    }

    /// One term: the services run until ctld stops or the lease is lost.
    /// The lease is renewed every round by a task of its own, also while
    /// the services drain; leadership is judged by when the lease was last
    /// renewed (``EtcdLeadership/isLeader``), never by waiting for a renewal
    /// that etcd may be slow to answer: a leader that cannot renew stops
    /// its services at two thirds of the lease, before another can lead.
    func lead() async throws {
        let group = ServiceGroup(services: services(), logger: logger)
        try await withThrowingTaskGroup(of: TermEnd.self) { tasks in
            // The group also shuts down gracefully when ctld does (it follows its parent's shutdown).
            tasks.addTask {
                try await group.run()
                return .servicesEnded
            }
            tasks.addTask {
                // Renews until the term ends (cancelled below).
                while !Task.isCancelled {
                    try? await Task.sleep(for: round)
                    if Task.isCancelled { break }
                    await leadership.tick()
                }
                return .cancelled
            }
            tasks.addTask {
                while !Task.isCancelled {
                    let stopped = (try? await cancelWhenGracefulShutdown { try await Task.sleep(for: Self.leadershipCheck) }) == nil
                    if Task.isCancelled { break }
                    if stopped { return .stopping }
                    if !leadership.isLeader {
                        logger.warning("this ctld lost its leadership; its scheduler, heartbeat monitor and pruners stop")
                        await group.triggerGracefulShutdown()
                        return .leadershipLost
                    }
                }
                return .cancelled
            }
            switch try await tasks.next() {
            case .leadershipLost, .stopping:
                // Let the services drain (the group's task ends next), then stop renewing.
                while let end = try await tasks.next(), end != .servicesEnded {}
                tasks.cancelAll()
                while try await tasks.next() != nil {}
            case .servicesEnded, .cancelled, nil:
                tasks.cancelAll()
                while try await tasks.next() != nil {}
            }
        }
    }
}
