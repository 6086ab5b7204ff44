import Foundation
import Synchronization

/// Samples of one quantity (seconds), summarized as percentiles.
final class SampleSet: Sendable {
    private let samples = Mutex<[Double]>([])

    func add(_ value: Double) { samples.withLock { $0.append(value) } }

    var count: Int { samples.withLock { $0.count } }

    func count(over limit: Double) -> Int { samples.withLock { $0.filter { $0 > limit }.count } }

    struct Summary: Codable, Sendable {
        var count: Int
        var p50: Double
        var p99: Double
        var max: Double
    }

    func summary() -> Summary {
        let sorted = samples.withLock { $0 }.sorted()
        guard !sorted.isEmpty else { return Summary(count: 0, p50: 0, p99: 0, max: 0) }
        func percentile(_ p: Double) -> Double {
            sorted[min(sorted.count - 1, Int((Double(sorted.count) * p).rounded(.up)) - 1)]
        }
        return Summary(count: sorted.count, p50: percentile(0.50), p99: percentile(0.99), max: sorted.last ?? 0)
    }
}

/// CPU time and resident memory of one process, read from /proc.
struct ProcessUsage: Sendable {
    /// User plus system CPU seconds since the process started.
    var cpuSeconds: Double
    var residentBytes: Int64

    static let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))

    static func read(pid: Int32) -> ProcessUsage? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        // The command name (field 2) may hold spaces; the fields after its closing parenthesis are fixed.
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return nil }
        var rss: Int64 = 0
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            if parts.count >= 2, let kib = Int64(parts[1]) { rss = kib * 1024 }
        }
        return ProcessUsage(cpuSeconds: (user + system) / ticksPerSecond, residentBytes: rss)
    }
}
