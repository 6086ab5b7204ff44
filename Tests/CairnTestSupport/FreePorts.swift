#if canImport(Glibc)
import Glibc
#endif
import CairnCore
import Synchronization

/// Free loopback ports for servers the tests start, so parallel runs do not collide.
///
/// Ports come from below the kernel's ephemeral range (32768 and up on
/// Linux), where outgoing connections take their local ports: a port handed
/// out here is then not taken by some client's connection in the seconds
/// before its server binds it (a restore runs before the restored tablet's
/// mariadbd listens). Within the test process no port is handed out twice.
public enum FreePorts {
    static let range = 20_000..<32_000
    private static let handedOut = Mutex<Set<Int>>([])

    /// `count` distinct ports, each checked free by binding it, never handed out before in this process.
    public static func take(_ count: Int) throws -> [Int] {
        var ports: [Int] = []
        var attempts = 0
        while ports.count < count {
            attempts += 1
            guard attempts < 10_000 else { throw CairnError(.internal, "no free loopback port left in \(range)") }
            let port = Int.random(in: range)
            let fresh = handedOut.withLock { taken in taken.insert(port).inserted }
            guard fresh else { continue }
            if try isFree(port) { ports.append(port) }
        }
        return ports
    }

    /// The first of `count` consecutive free ports, for programs that number
    /// their ports from a base (`cairn up`'s MariaDB and etcd ports).
    public static func takeConsecutive(_ count: Int) throws -> Int {
        for _ in 0..<1_000 {
            let base = Int.random(in: range.lowerBound..<(range.upperBound - count))
            let block = base..<(base + count)
            let fresh = handedOut.withLock { taken in
                guard block.allSatisfy({ !taken.contains($0) }) else { return false }
                taken.formUnion(block)
                return true
            }
            guard fresh else { continue }
            if try block.allSatisfy(isFree) { return base }
        }
        throw CairnError(.internal, "no \(count) consecutive free loopback ports left in \(range)")
    }

    /// Whether `port` can be bound on 127.0.0.1 now.
    static func isFree(_ port: Int) throws -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw CairnError(.internal, "socket() failed: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        return bound == 0
    }
}
