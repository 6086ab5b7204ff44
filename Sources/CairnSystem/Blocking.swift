import CCairnSystem
import NIOPosix

/// Runs blocking work (libmariadb calls, libzstd, file and pipe I/O,
/// `waitpid`) on a dedicated pool of threads, never on Swift's cooperative
/// pool. The pool is large because some calls block for a long time (reading
/// a pipe until a child process writes).
public enum Blocking {
    static let pool: NIOThreadPool = {
        // Each of glibc's per-thread heaps keeps the buffers freed into it;
        // with dozens of pool threads handing 1 MiB chunks around that is
        // memory nobody uses. Two heaps measured 120 MiB peak instead of 165
        // MiB for a 360 MB backup, and ran no slower.
        _ = ccairn_limit_malloc_arenas(2)
        let pool = NIOThreadPool(numberOfThreads: 48)
        pool.start()
        return pool
    }()

    /// Runs `body` on the blocking pool and returns its result.
    public static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await pool.runIfActive(body)
    }
}
