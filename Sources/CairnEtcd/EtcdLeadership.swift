import CairnCore
import Foundation
import Logging
import Synchronization

/// Where a control plane keeps its state in etcd: `--topo etcd://HOST:PORT[,HOST:PORT...]/PREFIX`.
public struct EtcdTopology: Sendable, Hashable, CustomStringConvertible {
    public var endpoints: [String]
    /// Every key of this cluster starts with it; it ends with `/`.
    public var prefix: String

    public init(parsing text: String) throws {
        guard text.hasPrefix("etcd://") else {
            throw CairnError(.usage, "--topo \(clip(text)) is not an etcd address; write etcd://HOST:PORT[,HOST:PORT...]/PREFIX")
        }
        let rest = text.dropFirst("etcd://".count)
        let slash = rest.firstIndex(of: "/")
        let hosts = slash.map { rest[..<$0] } ?? rest
        let path = slash.map { rest[rest.index(after: $0)...] } ?? ""
        let endpoints = hosts.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }
        guard !endpoints.isEmpty, endpoints.allSatisfy({ e in
            guard let colon = e.lastIndex(of: ":"), let port = Int(e[e.index(after: colon)...]), (1...65535).contains(port) else { return false }
            return colon > e.startIndex
        }) else {
            throw CairnError(.usage, "--topo \(clip(text)) needs HOST:PORT endpoints separated by commas, e.g. etcd://127.0.0.1:2379,127.0.0.1:22379/cairn")
        }
        let trimmed = path.trimmingCharacters(in: CharacterSet(charactersIn: "/"))
        guard !trimmed.isEmpty, trimmed.utf8.allSatisfy({ c in
            (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z"))
                || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) || c == UInt8(ascii: "-") || c == UInt8(ascii: "_")
                || c == UInt8(ascii: "/") || c == UInt8(ascii: ".")
        }), !trimmed.contains("..") else {
            throw CairnError(.usage, "--topo \(clip(text)) needs a prefix after the endpoints (letters, digits, -, _, . and /), e.g. etcd://127.0.0.1:2379/cairn")
        }
        self.endpoints = endpoints
        self.prefix = "/\(trimmed)/"
    }

    public var description: String { "etcd://\(endpoints.joined(separator: ","))\(prefix.dropLast())" }
}

/// One leader among the ctlds of a cluster, through an etcd lease: the
/// leader's key exists only while its lease is kept alive, and a
/// candidate takes it only while it is absent (a transaction). A leader
/// that cannot renew within the lease's TTL stops leading before the lease
/// can expire (it gives up at two thirds of the TTL without a renewal), so
/// two ctlds never both believe they lead for longer than the clock skew
/// between them allows.
public final class EtcdLeadership: Sendable {
    public let client: EtcdClient
    public let key: String
    /// Who this candidate is (a ctld's address), stored as the key's value.
    public let identity: String
    public let ttl: Int
    let logger: Logger

    struct State {
        var lease: Int64?
        var leading = false
        /// When the lease was last renewed (or granted).
        var renewedAt: ContinuousClock.Instant?
    }
    private let state = Mutex(State())

    public init(client: EtcdClient, key: String, identity: String, ttl: Int = 10, logger: Logger) {
        self.client = client
        self.key = key
        self.identity = identity
        self.ttl = ttl
        self.logger = logger
    }

    /// Whether this candidate leads now: it holds the key and renewed its lease recently enough.
    public var isLeader: Bool {
        state.withLock { s in
            guard s.leading, let renewed = s.renewedAt else { return false }
            return ContinuousClock.now - renewed < .seconds(Double(ttl) * 2 / 3)
        }
    }

    /// The current leader's identity, as etcd has it (nil when nobody leads).
    public func leader() async throws -> String? {
        try await client.get(key, serializable: true)?.text
    }

    /// One round: renews the lease and, without a leader, tries to become
    /// it. Call it every `ttl / 3` seconds. Returns whether this candidate leads.
    @discardableResult
    public func tick() async -> Bool {
        do {
            var lease = state.withLock { $0.lease }
            if let current = lease {
                let left = try await client.keepAlive(current)
                if left > 0 {
                    state.withLock { $0.renewedAt = .now }
                } else {
                    // Expired: its key is gone, and with it any leadership.
                    logger.warning("the ctld's etcd lease expired; it stops leading and campaigns again")
                    state.withLock { $0 = State() }
                    lease = nil
                }
            }
            if lease == nil {
                let granted = try await client.grantLease(ttl: ttl)
                state.withLock {
                    $0.lease = granted
                    $0.renewedAt = .now
                }
                lease = granted
            }
            guard let lease else { return false }
            let result = try await client.transaction(
                if: [.absent(key)], then: [.put(key, Data(identity.utf8), lease: lease)], else: [.get(key)])
            let holder = result.succeeded ? nil : result.found.first ?? nil
            let leading = result.succeeded || (holder?.lease == lease)
            let was = state.withLock { s in
                let was = s.leading
                s.leading = leading
                return was
            }
            if leading != was {
                logger.notice(leading ? "this ctld leads: it runs the scheduler and the heartbeat monitor" : "this ctld no longer leads",
                              metadata: ["identity": "\(identity)"])
            }
            return leading
        } catch {
            if isLeaderExpired() {
                logger.warning("this ctld cannot reach etcd to renew its leadership; it stops leading", metadata: ["error": "\(error)"])
                state.withLock { $0.leading = false }
            }
            return isLeader
        }
    }

    private func isLeaderExpired() -> Bool {
        state.withLock { s in
            guard s.leading else { return false }
            guard let renewed = s.renewedAt else { return true }
            return ContinuousClock.now - renewed >= .seconds(Double(ttl) * 2 / 3)
        }
    }

    /// Gives leadership up at once (a clean stop): the next candidate need not wait for the TTL.
    public func resign() async {
        let lease = state.withLock { s in
            let lease = s.lease
            s = State()
            return lease
        }
        if let lease { try? await client.revokeLease(lease) }
    }
}
