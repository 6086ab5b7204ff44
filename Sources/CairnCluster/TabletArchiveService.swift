import CairnCore
import CairnEngine
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// A tablet's binary log archiving (issue 11 item 2): with
/// `backup_strategy.binlog_archive_interval` set, a primary tablet that holds
/// its shard's archive lease from ctld runs a ``BinlogArchiver`` of its own
/// mysqld; it stops it when the lease ends (another tablet became the
/// primary, or ctld is out of reach for a lease period). The archiver always
/// starts from the newest archived GTID position, so a new primary continues
/// where the old one stopped. A service of the tablet's group: at a graceful
/// shutdown the archiver stores what it has received, then the service ends.
struct TabletArchiveService: Service {
    let agent: TabletAgent

    /// How often the lease and the archiver are looked at.
    static let tick: Duration = .milliseconds(250)

    /// What the loop and the shutdown handler share.
    final class Shared: Sendable {
        let shuttingDown = Atomic<Bool>(false)
        let current = Mutex<Run?>(nil)
    }

    /// One archiver run.
    final class Run: Sendable {
        let archiver: BinlogArchiver
        let ended = Atomic<Bool>(false)
        init(_ archiver: BinlogArchiver) { self.archiver = archiver }
    }

    func run() async throws {
        guard let interval = agent.options.configuration.backupStrategy?.binlogArchiveInterval else {
            // Not configured (the agent then leaves this service out): a service that returns ends its group.
            try? await gracefulShutdown()
            return
        }
        let shared = Shared()
        let agent = self.agent
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Bool.self) { group in
                while true {
                    var running = shared.current.withLock { $0 } != nil
                    if let run = shared.current.withLock({ $0 }), run.ended.load(ordering: .acquiring) {
                        let failed = await group.next() ?? false
                        shared.current.withLock { $0 = nil }
                        running = false
                        agent.archiveEnded(failed: failed)
                    }
                    if shared.shuttingDown.load(ordering: .relaxed) || Task.isCancelled {
                        // Shutting down: the archiver stores what it received; wait for it, not in a polling loop.
                        if running {
                            shared.current.withLock { $0?.archiver.requestStop() }
                            let failed = await group.next() ?? false
                            shared.current.withLock { $0 = nil }
                            agent.archiveEnded(failed: failed)
                        }
                        return
                    }
                    switch agent.archiveAction(running: running, shuttingDown: false) {
                    case .start:
                        let run = Run(agent.makeArchiver(interval: interval))
                        shared.current.withLock { $0 = run }
                        agent.archiveStarted(run.archiver)
                        group.addTask {
                            defer { run.ended.store(true, ordering: .releasing) }
                            do {
                                try await run.archiver.run()
                                return false
                            } catch {
                                agent.archiverFailed(error)
                                return true
                            }
                        }
                    case .stop:
                        shared.current.withLock { $0?.archiver.requestStop() }
                    case .none:
                        break
                    }
                    try? await Task.sleep(for: Self.tick)
                }
            }
        } onGracefulShutdown: {
            shared.shuttingDown.store(true, ordering: .relaxed)
            shared.current.withLock { $0?.archiver.requestStop() }
        }
    }
}

extension TabletAgent {
    /// The state of archiving on this tablet, beside ``TabletAgent/State``.
    struct ArchiveState {
        var supervision = ArchiveSupervision()
        var archiver: BinlogArchiver?
        /// Why the last archiver ended with an error.
        var lastFailure: String?
    }

    var archivingConfigured: Bool { options.configuration.backupStrategy?.binlogArchiveInterval != nil }

    func archiveAction(running: Bool, shuttingDown: Bool) -> ArchiveSupervision.Action {
        archiveState.withLock {
            $0.supervision.decide(configured: archivingConfigured, primary: options.type == .primary, running: running,
                                  shuttingDown: shuttingDown, now: .now)
        }
    }

    func makeArchiver(interval: ConfigDuration) -> BinlogArchiver {
        var compression = CompressionSettings(configuration: options.configuration)
        compression.multithreaded = false
        return BinlogArchiver(settings: .init(shard: options.shard, mysql: options.mysql, storage: storage,
                                              interval: .seconds(interval.seconds), compression: compression, keyring: keyring),
                              logger: logger)
    }

    func archiveStarted(_ archiver: BinlogArchiver) {
        archiveState.withLock { $0.archiver = archiver }
        logger.info("binary log archiving started: this tablet holds the shard's archive lease", metadata: ["shard": "\(options.shard)"])
    }

    func archiverFailed(_ error: any Error) {
        let message = (error as? CairnError)?.message ?? "\(error)"
        archiveState.withLock { $0.lastFailure = message }
        logger.error("the binary log archiver stopped with an error; it starts again", metadata: ["error": "\(message)"])
    }

    func archiveEnded(failed: Bool) {
        archiveState.withLock {
            $0.supervision.archiverEnded(failed: failed, now: .now)
            $0.archiver = nil
            if !failed { $0.lastFailure = nil }
        }
        logger.info("binary log archiving stopped", metadata: ["shard": "\(options.shard)"])
    }

    /// ctld answered a heartbeat sent at `sentAt`.
    func archiveLeaseAnswered(_ answer: ClusterAPI.HeartbeatAnswer?, sentAt: ContinuousClock.Instant) {
        archiveState.withLock { $0.supervision.leaseAnswered(seconds: answer?.archiveLeaseSeconds, sentAt: sentAt) }
    }

    /// What the heartbeat says of archiving; nil when it is not configured.
    func archiveReport() -> ClusterAPI.ArchiveReport? {
        guard archivingConfigured else { return nil }
        let (archiver, failure) = archiveState.withLock { ($0.archiver, $0.lastFailure) }
        guard let archiver else {
            return ClusterAPI.ArchiveReport(running: false, connected: false, lagSeconds: 0, archivedPosition: nil, lastEventTime: nil,
                                            lastSegmentTime: nil, segmentsWritten: 0,
                                            error: options.type == .primary ? failure : nil)
        }
        let status = archiver.status
        return ClusterAPI.ArchiveReport(running: true, connected: status.connected, lagSeconds: status.lagSeconds,
                                        archivedPosition: status.archivedPosition?.description,
                                        lastEventTime: status.lastArchivedEventTime, lastSegmentTime: status.lastSegmentTime,
                                        segmentsWritten: status.segmentsWritten, error: status.lastError ?? failure)
    }
}
