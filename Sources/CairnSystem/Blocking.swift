import NIOPosix

/// Runs blocking work (libmariadb calls, libzstd, file and pipe I/O,
/// `waitpid`) on a dedicated pool of threads, never on Swift's cooperative
/// pool. The pool is large because some calls block for a long time (reading
/// a pipe until a child process writes).
public enum Blocking {
    static let pool: NIOThreadPool = {
        let pool = NIOThreadPool(numberOfThreads: 48)
        pool.start()
        return pool
    }()

    /// Runs `body` on the blocking pool and returns its result.
    public static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await pool.runIfActive(body)
    }
}
