internal import CCairnSystem
import Glibc
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
        // MiB for a 360 MB backup, and ran no slower. A fixed mmap threshold
        // of 4 MiB gives the big buffers (S3 ranges and parts, decompressed
        // pieces) back to the system when freed; glibc's default threshold
        // rises after the first such free and then keeps them in the heap.
        // Measured: S3 restore at download concurrency 4, 167 -> 107 MiB;
        // file backup of 1.2 GiB, 123 -> 108 MiB; no slower.
        _ = ccairn_tune_malloc(2, 4 << 20)
        let pool = NIOThreadPool(numberOfThreads: 48)
        pool.start()
        return pool
    }()

    /// Runs `body` on the blocking pool and returns its result.
    public static func run<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
        try await pool.runIfActive(body)
    }
}
