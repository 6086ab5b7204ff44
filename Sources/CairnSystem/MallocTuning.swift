internal import CCairnSystem
import Synchronization

/// How glibc's malloc is tuned in this process. The setting is process-wide,
/// so a process chooses once, as early as it can (before threads allocate):
/// the first ``select(_:)`` holds and later ones are ignored. The blocking
/// pool selects ``throughput`` when it starts, so a process that chose
/// nothing gets that.
public enum MallocTuning: Sendable, Hashable {
    /// Backups and restores: buffers of 1-8 MiB handed between dozens of
    /// threads. Two heaps instead of glibc's eight per core: each keeps the
    /// buffers freed into it, with dozens of pool threads that is memory
    /// nobody uses (a 360 MB backup peaked at 120 MiB instead of 165 MiB, no
    /// slower). A fixed mmap threshold of 4 MiB gives the big buffers (S3
    /// ranges and parts, decompressed pieces) back to the system when freed;
    /// glibc's default threshold rises after the first such free and then
    /// keeps them in the heap (S3 restore at download concurrency 4, 167 ->
    /// 107 MiB; file backup of 1.2 GiB, 123 -> 108 MiB; no slower). The top
    /// of a heap keeps up to four thresholds free (16 MiB), so a chunk freed
    /// there is not handed back only to be faulted in again.
    case throughput
    /// A long-running service with a small, steady working set: `cairn
    /// archive` (docs/BENCHMARKS.md, issue 11). One heap; every block of 256
    /// KiB or more (segment buffers, compressed segments, zstd's tables) is
    /// a mapping of its own, returned to the system when freed; the heap's
    /// top is trimmed beyond 1 MiB free. What the process holds is then what
    /// it uses, not the high-water mark of what it once freed.
    case compact

    var arenas: Int32 { self == .throughput ? 2 : 1 }
    var mmapThreshold: Int32 { self == .throughput ? 4 << 20 : 256 << 10 }
    var trimThreshold: Int32 { self == .throughput ? 16 << 20 : 1 << 20 }

    private static let selected = Mutex<MallocTuning?>(nil)

    /// The tuning in effect; nil before any was selected.
    public static var current: MallocTuning? { selected.withLock { $0 } }

    /// Applies `tuning` unless one was selected before (that one stays).
    public static func select(_ tuning: MallocTuning) {
        selected.withLock { chosen in
            guard chosen == nil else { return }
            chosen = tuning
            _ = ccairn_tune_malloc(tuning.arenas, tuning.mmapThreshold, tuning.trimThreshold)
        }
    }
}
