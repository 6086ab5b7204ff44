internal import CCairnSystem
import CairnCore
import Foundation
import Glibc
import NIOPosix
import Synchronization

/// Runs blocking work (libmariadb calls, libzstd, file and pipe I/O,
/// `waitpid`) on a dedicated pool of threads, never on Swift's cooperative
/// pool. The pool is large because some calls block for a long time (reading
/// a pipe until a child process writes).
public enum Blocking {
    static let pool: NIOThreadPool = {
        // malloc is tuned before the pool's threads first allocate (see
        // MallocTuning); a process that chose a tuning earlier keeps it.
        MallocTuning.select(.throughput)
        let pool = NIOThreadPool(numberOfThreads: 48)
        pool.start()
        return pool
    }()

    /// Runs `body` on the blocking pool and returns its result.
    ///
    /// Once submitted, `body` runs even when the calling task is cancelled:
    /// callers rely on it (a `waitpid` that reaps a killed child, a `close`),
    /// and NIO's cancellable `runIfActive` silently skipped queued work, which
    /// left zombies behind and reported a child's exit it had never seen.
    /// Cancellation reaches blocking work the way it always did: by the caller
    /// killing the child or closing the descriptor that `body` waits on.
    public static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            pool.submit { state in
                switch state {
                case .active:
                    continuation.resume(with: Result(catching: body))
                case .cancelled:
                    continuation.resume(throwing: CairnError(.internal, "the blocking thread pool has stopped; the process is shutting down"))
                }
            }
        }
    }

    /// Runs `body` on the blocking pool, but stops waiting for it when the
    /// calling task is cancelled: the caller gets a `CancellationError` at
    /// once and `body` finishes (or, still queued, is skipped) with nobody
    /// waiting for its result. Only for work whose result may be dropped and
    /// whose state stays consistent when it is, such as compressing a chunk
    /// of a backup being cancelled: at level 15 on a starved core one zstd
    /// call can take many seconds, longer than a tablet's shutdown may wait.
    public static func runAbandoningOnCancel<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        let waiter = AbandonableWaiter<T>()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
                guard waiter.start(continuation) else { return }
                pool.submit { state in
                    guard state == .active, waiter.isWaiting else {
                        waiter.finish(.failure(CancellationError()))
                        return
                    }
                    waiter.finish(Result(catching: body))
                }
            }
        } onCancel: {
            waiter.finish(.failure(CancellationError()))
        }
    }

    /// Runs `body` on a thread of its own, for work that blocks for as long
    /// as something outside Cairn decides (waiting for a child to exit,
    /// draining its output until it closes it). Such waits on the shared
    /// pool would hold its threads for a server's whole life: with enough
    /// servers running, every thread waits and short work queues behind them.
    public static func runOnOwnThread<T: Sendable>(name: String, _ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { (continuation: CheckedContinuation<T, Never>) in
            let thread = Thread {
                continuation.resume(returning: body())
            }
            thread.name = name
            // Waiting threads need little stack.
            thread.stackSize = 256 * 1024
            thread.start()
        }
    }
}

/// The one continuation of ``Blocking/runAbandoningOnCancel(_:)``, resumed
/// by whichever comes first: the work's result or the task's cancellation.
private final class AbandonableWaiter<T: Sendable>: Sendable {
    private enum State {
        case notStarted
        case waiting(CheckedContinuation<T, any Error>)
        case finished
    }
    private let state = Mutex(State.notStarted)

    /// Stores the continuation; false (and resumed) when cancellation came first.
    func start(_ continuation: CheckedContinuation<T, any Error>) -> Bool {
        let cancelledFirst = state.withLock { s -> Bool in
            if case .finished = s { return true }
            s = .waiting(continuation)
            return false
        }
        if cancelledFirst { continuation.resume(throwing: CancellationError()) }
        return !cancelledFirst
    }

    var isWaiting: Bool {
        state.withLock { if case .waiting = $0 { true } else { false } }
    }

    func finish(_ result: Result<T, any Error>) {
        let continuation = state.withLock { s -> CheckedContinuation<T, any Error>? in
            defer { s = .finished }
            if case .waiting(let c) = s { return c }
            return nil
        }
        continuation?.resume(with: result)
    }
}
