import Foundation
import Synchronization

/// Bytes moved by a running backup or restore, shared between the work and
/// whoever reports it (a terminal line, a tablet's job record).
public final class TransferProgress: Sendable {
    private let raw = Atomic<Int64>(0)
    private let stored = Atomic<Int64>(0)
    private let phaseText = Mutex<String>("starting")
    public let started = Date()

    public init() {}

    public func add(raw bytes: Int64) { raw.add(bytes, ordering: .relaxed) }
    public func add(stored bytes: Int64) { stored.add(bytes, ordering: .relaxed) }

    /// Uncompressed bytes read or restored so far.
    public var rawBytes: Int64 { raw.load(ordering: .relaxed) }
    /// Stored (compressed) bytes written or read so far.
    public var storedBytes: Int64 { stored.load(ordering: .relaxed) }

    /// What the work is doing now, in a few words.
    public var phase: String {
        get { phaseText.withLock { $0 } }
    }

    public func setPhase(_ text: String) { phaseText.withLock { $0 = text } }

    /// Raw bytes per second since the start.
    public var rate: Double {
        let elapsed = Date().timeIntervalSince(started)
        return elapsed > 0 ? Double(rawBytes) / elapsed : 0
    }
}

/// `1.5 GiB`, `12.0 MiB`, `512 B`.
public func formatBytes(_ bytes: Int64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"]
    var value = Double(bytes)
    var unit = 0
    while value >= 1024 && unit < units.count - 1 {
        value /= 1024
        unit += 1
    }
    return unit == 0 ? "\(bytes) B" : String(format: "%.1f ", value) + units[unit]
}
