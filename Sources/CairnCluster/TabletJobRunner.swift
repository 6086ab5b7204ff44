import CairnCore
import CairnEngine
import Foundation
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// A tablet's jobs between ctld handing them over and ctld acknowledging
/// their end: one at a time, fed to the ``TabletJobRunner`` in order.
final class JobQueue: Sendable {
    struct State {
        /// The job accepted and not yet ended.
        var current: Int64?
        /// No job is taken any more: the tablet is shutting down.
        var closed = false
        /// Final reports ctld has not acknowledged yet.
        var unacknowledged: [ClusterAPI.JobUpdate] = []
    }
    let state = Mutex(State())
    let jobs: AsyncStream<ClusterAPI.Job>
    private let continuation: AsyncStream<ClusterAPI.Job>.Continuation

    init() {
        (jobs, continuation) = AsyncStream.makeStream(of: ClusterAPI.Job.self)
    }

    /// Queues `job`, or refuses when one is running or the queue is closed.
    func accept(_ job: ClusterAPI.Job, tablet: String) throws {
        try state.withLock { s in
            if s.closed {
                throw CairnError(.cluster, "tablet \(tablet) is shutting down and takes no new jobs; retry once it is back")
            }
            if let current = s.current {
                throw CairnError(.cluster, "tablet \(tablet) is busy with job \(current)")
            }
            s.current = job.id
            // Under the lock, so a job is either queued before the queue closes or refused.
            continuation.yield(job)
        }
    }

    /// Takes no more jobs; those queued still come out of ``jobs``.
    func close() {
        state.withLock { s in
            s.closed = true
            continuation.finish()
        }
    }

    var isClosed: Bool { state.withLock { $0.closed } }

    /// Records a job's end; its report is kept until ctld acknowledges it.
    func ended(_ update: ClusterAPI.JobUpdate) {
        state.withLock { s in
            if s.current == update.id { s.current = nil }
            s.unacknowledged.append(update)
        }
    }

    func acknowledged(_ ids: [Int64]) {
        let ids = Set(ids)
        state.withLock { s in s.unacknowledged.removeAll { ids.contains($0.id) } }
    }

    /// What a heartbeat carries: the job running now and the unacknowledged ends.
    func forHeartbeat() -> (current: Int64?, finished: [ClusterAPI.JobUpdate]) {
        state.withLock { ($0.current, $0.unacknowledged) }
    }
}

/// A job's phase as its phase machine last set it, read by the progress reporter.
final class JobPhaseCell: Sendable {
    private let phase = Mutex(ClusterAPI.JobPhase.pending)
    func set(_ new: ClusterAPI.JobPhase) { phase.withLock { $0 = new } }
    func get() -> ClusterAPI.JobPhase { phase.withLock { $0 } }
}

/// Runs a tablet's jobs, one at a time, in the order ctld handed them over,
/// for as long as the tablet runs. At a graceful shutdown it takes no new job
/// and cancels the running one: the cancellation reaches the engine, which
/// kills its child processes and aborts its uploads, so nothing is committed.
/// The job is reported failed ("cancelled: the tablet is shutting down")
/// before the runner returns.
struct TabletJobRunner: Service {
    static let shutdownMessage = "cancelled: the tablet is shutting down"
    /// How long the final report of a job, and then the goodbye heartbeat
    /// that carries it if the report failed, may each take at shutdown: room
    /// for a ctld slowed by a busy disk.
    static let shutdownReportTimeout: TimeAmount = .seconds(8)
    static let reportInterval: Duration = .seconds(1)

    let agent: TabletAgent

    var queue: JobQueue { agent.jobs }
    var logger: Logger { agent.logger }

    func run() async {
        await withGracefulShutdownHandler {
            for await job in queue.jobs {
                await execute(job)
            }
        } onGracefulShutdown: {
            queue.close()
        }
    }

    /// Runs `job` with a progress reporter beside it, and reports its end.
    func execute(_ job: ClusterAPI.Job) async {
        let progress = TransferProgress()
        let phase = JobPhaseCell()
        let started = Date()
        var report: ClusterAPI.JobReport
        do {
            // The work is cancelled at a graceful shutdown; this task is not, so the end is still reported.
            report = try await cancelWhenGracefulShutdown {
                try await withThrowingTaskGroup(of: Void.self, returning: ClusterAPI.JobReport.self) { group in
                    group.addTask { await reportProgress(of: job, progress: progress, phase: phase, started: started) }
                    defer { group.cancelAll() }
                    return try await agent.perform(job, progress: progress, phase: phase)
                }
            }
        } catch {
            var message = (error as? CairnError)?.message ?? "\(error)"
            if queue.isClosed || Task.isCancelled {
                logger.warning("job \(job.id) cancelled by the tablet's shutdown", metadata: ["error": "\(message)"])
                message = TabletJobRunner.shutdownMessage
            } else {
                logger.error("job \(job.id) failed: \(message)")
            }
            phase.set(.failed)
            report = ClusterAPI.JobReport(phase: .failed, result: .failed, error: message)
        }
        report.startedAt = started
        report.endedAt = Date()
        report.bytesDone = progress.rawBytes
        report.storedBytes = progress.storedBytes
        report.rate = progress.rate
        let final = ClusterAPI.JobUpdate(id: job.id, report: report)
        queue.ended(final)
        agent.metrics.jobEnded(kind: job.kind, report: report)
        // Reported now if ctld is up; otherwise the next heartbeats carry it,
        // or at shutdown the tablet's goodbye (which a cancelled drain does not stop).
        let timeout = queue.isClosed ? TabletJobRunner.shutdownReportTimeout : nil
        if !Task.isCancelled, (try? await agent.ctld.reportJob(final, timeout: timeout)) != nil {
            queue.acknowledged([final.id])
        }
    }

    /// Every ``reportInterval`` until cancelled: the job's phase and bytes, to ctld and the log.
    func reportProgress(of job: ClusterAPI.Job, progress: TransferProgress, phase: JobPhaseCell, started: Date) async {
        while true {
            do {
                try await Task.sleep(for: TabletJobRunner.reportInterval)
            } catch {
                return
            }
            let current = phase.get()
            let report = ClusterAPI.JobReport(phase: current, bytesDone: progress.rawBytes, storedBytes: progress.storedBytes,
                                              rate: progress.rate, startedAt: started)
            let detail = progress.phase == current.rawValue ? "" : " (\(progress.phase))"
            logger.info("job \(job.id) \(job.kind.rawValue): \(current)\(detail), \(formatBytes(progress.rawBytes)) at \(formatBytes(Int64(progress.rate)))/s")
            try? await agent.ctld.reportJob(ClusterAPI.JobUpdate(id: job.id, report: report))
        }
    }
}

extension TabletAgent {
    /// At shutdown, once every service has stopped (drained, or cancelled at
    /// the drain limit): one last heartbeat that says the tablet is going
    /// away (not healthy, no job), so ctld sends it no job, carrying the job
    /// reports ctld has not acknowledged.
    func sayGoodbye() async {
        let finished = jobs.forHeartbeat().finished
        let heartbeat = ClusterAPI.Heartbeat(alias: aliasText, type: options.type, healthy: false, serving: false, replication: nil,
                                             position: nil, currentJob: nil, finishedJobs: finished,
                                             // Its archiver has stopped: the goodbye releases the shard's archive lease.
                                             archive: archiveReport())
        do {
            try await ctld.heartbeat(heartbeat, timeout: TabletJobRunner.shutdownReportTimeout)
            jobs.acknowledged(finished.map(\.id))
        } catch {
            logger.warning("could not tell ctld that the tablet is stopping", metadata: [
                "error": "\(error)", "unreported_jobs": "\(finished.map { String($0.id) }.joined(separator: ","))"])
        }
    }
}
