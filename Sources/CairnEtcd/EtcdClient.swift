import AsyncHTTPClient
import CairnCore
import Foundation
import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
import Synchronization

/// A key and its value as etcd stores them.
public struct EtcdKeyValue: Sendable, Hashable {
    public var key: String
    public var value: Data
    public var createRevision: Int64
    public var modRevision: Int64
    public var version: Int64
    public var lease: Int64

    public var text: String { String(decoding: value, as: UTF8.self) }
}

/// A client of etcd's v3 API through its JSON gateway (`/v3/...`), on
/// AsyncHTTPClient: the key-value calls, transactions, leases and the
/// member status Cairn's control plane needs. Requests go to the first
/// endpoint that answers; an endpoint that cannot be reached is passed over
/// for the next, so the client follows a cluster that loses a member.
///
/// Why the gateway and not gRPC: the calls are few and unary (a lease is
/// kept alive by one keep-alive request at a time), so generated code and a
/// second HTTP/2 stack buy nothing here; the gateway is part of every etcd
/// since 3.4. docs/CLUSTER.md records the decision.
public final class EtcdClient: Sendable {
    public let endpoints: [String]
    let http: HTTPClient
    let ownsHTTPClient: Bool
    let logger: Logger
    /// The endpoint that answered last: tried first next time.
    private let preferred = Mutex(0)
    /// How long one request may take; etcd itself gives up on a write
    /// without quorum after about 7 s, which this leaves room for.
    public var requestTimeout: TimeAmount { .seconds(12) }

    /// `endpoints`: `host:port` of each member's client URL (plain HTTP on loopback or a private network).
    public init(endpoints: [String], logger: Logger, httpClient: HTTPClient? = nil) throws {
        guard !endpoints.isEmpty else {
            throw CairnError(.configuration, "no etcd endpoint given; pass --topo etcd://HOST:PORT[,HOST:PORT...]/PREFIX")
        }
        self.endpoints = endpoints
        self.logger = logger
        if let httpClient {
            self.http = httpClient
            self.ownsHTTPClient = false
        } else {
            var configuration = HTTPClient.Configuration()
            configuration.timeout = .init(connect: .seconds(2), read: .seconds(15))
            configuration.connectionPool = .init(idleTimeout: .seconds(30))
            // A member that refuses connections fails its request at once, so the
            // next endpoint is tried; by default the pool would retry the connection
            // until the request's deadline (12 s) before letting it fail over.
            configuration.connectionPool.retryConnectionEstablishment = false
            self.http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
            self.ownsHTTPClient = true
        }
    }

    public func shutdown() async {
        if ownsHTTPClient { try? await http.shutdown() }
    }

    // MARK: - Key-value

    /// The value at `key`, or nil. `serializable` reads the answering
    /// member's copy, which answers without quorum and may be a little behind.
    /// `waitForLeader: false` fails at once when etcd has no leader instead
    /// of waiting out an election (see ``electionWindow``).
    public func get(_ key: String, serializable: Bool = false, revision: Int64? = nil, waitForLeader: Bool = true) async throws -> EtcdKeyValue? {
        var body: [String: any Sendable] = ["key": Self.base64(key), "serializable": serializable]
        // The key as it was at `revision` (an error once that is compacted).
        if let revision { body["revision"] = String(revision) }
        let response = try await call("/v3/kv/range", body, waitForLeader: waitForLeader)
        return try Self.keyValues(response["kvs"]).first
    }

    /// The keys under `prefix`, from `start` on (a key under the prefix; by
    /// default its first), in key order: at most `limit` when given (with
    /// `descending`, the last keys first), in one request. Without a limit,
    /// in pages of ``listPageSize`` keys, every page read at the first page's
    /// revision, so that the whole listing is one consistent snapshot and no
    /// answer grows with the cluster. `keysOnly` leaves the values out.
    public func list(prefix: String, from start: String? = nil, limit: Int? = nil, descending: Bool = false, keysOnly: Bool = false,
                     serializable: Bool = false, waitForLeader: Bool = true) async throws -> [EtcdKeyValue] {
        var body: [String: any Sendable] = ["key": Self.base64(start ?? prefix), "range_end": Self.base64(Self.prefixEnd(prefix)),
                                            "serializable": serializable]
        if keysOnly { body["keys_only"] = true }
        if limit != nil || descending {
            if let limit { body["limit"] = String(limit) }
            if descending {
                body["sort_order"] = "DESCEND"
                body["sort_target"] = "KEY"
            }
            let response = try await call("/v3/kv/range", body, waitForLeader: waitForLeader)
            return try Self.keyValues(response["kvs"])
        }
        body["limit"] = String(Self.listPageSize)
        var result: [EtcdKeyValue] = []
        while true {
            let response = try await call("/v3/kv/range", body, waitForLeader: waitForLeader)
            let page = try Self.keyValues(response["kvs"])
            result += page
            guard (response["more"] as? Bool) == true, let last = page.last else { return result }
            if body["revision"] == nil { body["revision"] = String(Self.revision(response)) }
            // The next page starts just after the last key of this one.
            body["key"] = Self.base64(last.key + "\u{0}")
        }
    }

    /// Keys per answer of a listing without a limit.
    public static let listPageSize = 1_000

    /// The store's current revision (one linearizable read of no key).
    public func currentRevision() async throws -> Int64 {
        let response = try await call("/v3/kv/range", ["key": Self.base64("\u{0}"), "keys_only": true, "count_only": true])
        return Self.revision(response)
    }

    /// Forgets every key's history before `revision` (etcd keeps each
    /// version of each key until compacted, and its database has a size
    /// quota). Compacting to a revision already compacted is not an error:
    /// etcd's own `--auto-compaction-retention` may have got there first.
    public func compact(revision: Int64) async throws {
        do {
            _ = try await call("/v3/kv/compaction", ["revision": String(revision)])
        } catch let error as CairnError where error.message.contains("required revision has been compacted") {
            return
        }
    }

    @discardableResult
    public func put(_ key: String, _ value: Data, lease: Int64? = nil) async throws -> Int64 {
        var body: [String: any Sendable] = ["key": Self.base64(key), "value": value.base64EncodedString()]
        if let lease { body["lease"] = String(lease) }
        let response = try await call("/v3/kv/put", body)
        return Self.revision(response)
    }

    /// Deletes `key`; returns how many keys went (0 or 1).
    @discardableResult
    public func delete(_ key: String) async throws -> Int {
        let response = try await call("/v3/kv/deleterange", ["key": Self.base64(key)])
        return Int(Self.int64(response["deleted"]))
    }

    /// Deletes every key starting with `prefix`.
    @discardableResult
    public func delete(prefix: String) async throws -> Int {
        let response = try await call("/v3/kv/deleterange", ["key": Self.base64(prefix), "range_end": Self.base64(Self.prefixEnd(prefix))])
        return Int(Self.int64(response["deleted"]))
    }

    // MARK: - Transactions

    /// A condition of a transaction.
    public enum Compare: Sendable {
        /// The key does not exist.
        case absent(String)
        /// The key was last changed at this revision (it exists and nobody wrote it since it was read).
        case modRevision(String, Int64)
        /// The key holds exactly this value.
        case value(String, Data)

        var json: [String: any Sendable] {
            switch self {
            case .absent(let key):
                return ["key": EtcdClient.base64(key), "result": "EQUAL", "target": "CREATE", "create_revision": "0"]
            case .modRevision(let key, let revision):
                return ["key": EtcdClient.base64(key), "result": "EQUAL", "target": "MOD", "mod_revision": String(revision)]
            case .value(let key, let value):
                return ["key": EtcdClient.base64(key), "result": "EQUAL", "target": "VALUE", "value": value.base64EncodedString()]
            }
        }
    }

    /// An operation of a transaction.
    public enum Operation: Sendable {
        case put(String, Data, lease: Int64? = nil)
        case delete(String)
        case get(String)
        /// Every key under a prefix (its keys only, without values, when `keysOnly`).
        case range(prefix: String, keysOnly: Bool)

        var json: [String: any Sendable] {
            switch self {
            case .put(let key, let value, let lease):
                var put: [String: any Sendable] = ["key": EtcdClient.base64(key), "value": value.base64EncodedString()]
                if let lease { put["lease"] = String(lease) }
                return ["request_put": put]
            case .delete(let key):
                return ["request_delete_range": ["key": EtcdClient.base64(key)] as [String: any Sendable]]
            case .get(let key):
                return ["request_range": ["key": EtcdClient.base64(key)] as [String: any Sendable]]
            case .range(let prefix, let keysOnly):
                return ["request_range": ["key": EtcdClient.base64(prefix), "range_end": EtcdClient.base64(EtcdClient.prefixEnd(prefix)),
                                          "keys_only": keysOnly] as [String: any Sendable]]
            }
        }
    }

    public struct TransactionResult: Sendable {
        /// Whether every comparison held (the `success` operations ran).
        public var succeeded: Bool
        /// What each `get` of the branch that ran found, in order.
        public var found: [EtcdKeyValue?]
        /// What each `range` of the branch that ran found, in order.
        public var ranges: [[EtcdKeyValue]]
        public var revision: Int64
    }

    /// Runs `success` if every comparison holds, else `failure`, atomically.
    public func transaction(if compares: [Compare], then success: [Operation], else failure: [Operation] = [],
                            waitForLeader: Bool = true) async throws -> TransactionResult {
        let response = try await call("/v3/kv/txn", [
            "compare": compares.map(\.json),
            "success": success.map(\.json),
            "failure": failure.map(\.json),
        ], waitForLeader: waitForLeader)
        let succeeded = (response["succeeded"] as? Bool) ?? false
        var found: [EtcdKeyValue?] = []
        var ranges: [[EtcdKeyValue]] = []
        // One response per operation of the branch that ran, in order.
        for (operation, item) in zip(succeeded ? success : failure, (response["responses"] as? [Any]) ?? []) {
            guard let item = item as? [String: Any] else { continue }
            let kvs = (item["response_range"] as? [String: Any])?["kvs"]
            switch operation {
            case .get: found.append(try Self.keyValues(kvs).first)
            case .range: ranges.append(try Self.keyValues(kvs))
            case .put, .delete: break
            }
        }
        return TransactionResult(succeeded: succeeded, found: found, ranges: ranges, revision: Self.revision(response))
    }

    // MARK: - Leases

    /// Grants a lease of `ttl` seconds; keys put with it go when it expires.
    public func grantLease(ttl: Int) async throws -> Int64 {
        let response = try await call("/v3/lease/grant", ["TTL": String(ttl)])
        let id = Self.int64(response["ID"])
        guard id != 0 else { throw CairnError(.cluster, "etcd granted no lease; check the etcd cluster's health") }
        return id
    }

    /// Renews `lease`; returns the seconds it has left, 0 when it has expired (its keys are gone).
    public func keepAlive(_ lease: Int64) async throws -> Int {
        let response = try await call("/v3/lease/keepalive", ["ID": String(lease)])
        let result = (response["result"] as? [String: Any]) ?? response
        return Int(Self.int64(result["TTL"]))
    }

    public func revokeLease(_ lease: Int64) async throws {
        _ = try await call("/v3/lease/revoke", ["ID": String(lease)])
    }

    // MARK: - Status

    /// The cluster id as the answering member reports it: the same for
    /// every member of one cluster.
    public func clusterID() async throws -> String {
        let response = try await call("/v3/maintenance/status", [:])
        guard let header = response["header"] as? [String: Any], let id = header["cluster_id"] as? String else {
            throw CairnError(.cluster, "etcd's status had no cluster id; is \(endpoints.joined(separator: ",")) an etcd 3.4 or newer?")
        }
        return id
    }

    /// Whether the answering member knows a leader now (its status, which
    /// answers without quorum): false while etcd elects one or has no quorum.
    public func hasLeader() async throws -> Bool {
        let response = try await call("/v3/maintenance/status", [:], waitForLeader: false)
        // A member id is an unsigned 64-bit number (a JSON string), often past Int64's range; 0 or absent: none.
        switch response["leader"] {
        case let text as String: return !text.isEmpty && text != "0"
        case let number as NSNumber: return number.uint64Value != 0
        default: return false
        }
    }

    // MARK: - Transport

    /// How long a request is retried while etcd answers that it has no
    /// leader or quorum: an election after a lost member takes a moment,
    /// and a caller should not see it. Longer than that is a lost quorum.
    /// A timed-out write may still have been applied, so a retried
    /// transaction can find its own earlier effect: callers compare on
    /// values they wrote (the leadership checks the holder's lease).
    public static let electionWindow: Duration = .seconds(8)

    /// The largest answer read from etcd.
    static let maximumAnswer = 64 << 20

    /// POSTs `body` to `path` on the first endpoint that answers; while etcd
    /// is between leaders, again until ``electionWindow`` has passed.
    func call(_ path: String, _ body: [String: any Sendable], waitForLeader: Bool = true) async throws -> [String: Any] {
        let payload = try JSONSerialization.data(withJSONObject: body, options: [])
        let start = ContinuousClock.now
        while true {
            do {
                return try await callOnce(path, payload)
            } catch let error as QuorumLost {
                guard waitForLeader, ContinuousClock.now - start < Self.electionWindow else { throw error.error }
                logger.debug("etcd has no leader yet; retrying", metadata: ["error": "\(error.error.message)"])
                try await Task.sleep(for: .milliseconds(500))
            }
        }
    }

    /// etcd's answer that it has no leader or quorum now.
    struct QuorumLost: Error {
        var error: CairnError
    }

    func callOnce(_ path: String, _ payload: Data) async throws -> [String: Any] {
        let start = preferred.withLock { $0 }
        var unreachable: [String] = []
        for offset in 0..<endpoints.count {
            let index = (start + offset) % endpoints.count
            let endpoint = endpoints[index]
            var request = HTTPClientRequest(url: "http://\(endpoint)\(path)")
            request.method = .POST
            request.headers.add(name: "content-type", value: "application/json")
            request.body = .bytes(ByteBuffer(data: payload))
            let response: HTTPClientResponse
            let data: Data
            do {
                response = try await http.execute(request, timeout: requestTimeout)
                data = Data(buffer: try await response.body.collect(upTo: Self.maximumAnswer))
            } catch is NIOTooManyBytesError {
                // It answered: only too much. Another member would answer the same.
                throw CairnError(.cluster, "etcd at \(endpoint) answered \(path) with more than \(Self.maximumAnswer >> 20) MiB; this is a bug in ctld's paging of etcd reads, report it")
            } catch {
                try Task.checkCancellation()
                // Not reachable (or it stopped answering): the next member may be.
                logger.debug("etcd endpoint did not answer", metadata: ["endpoint": "\(endpoint)", "error": "\(error)"])
                unreachable.append(endpoint)
                continue
            }
            preferred.withLock { $0 = index }
            let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] ?? [:]
            guard response.status == .ok else {
                let error = Self.failure(status: response.status, object: object, endpoint: endpoint)
                if error.message.hasPrefix("etcd has no quorum") { throw QuorumLost(error: error) }
                throw error
            }
            return object
        }
        throw CairnError(.unavailable, "etcd is unreachable at \(unreachable.joined(separator: ", ")); start it, or fix the endpoints in --topo")
    }

    static func failure(status: HTTPResponseStatus, object: [String: Any], endpoint: String) -> CairnError {
        let message = (object["message"] as? String) ?? (object["error"] as? String) ?? "HTTP \(status.code)"
        let quorumLost = ["request timed out", "leader changed", "no leader", "unhealthy cluster", "timed out", "deadline exceeded",
                          "proposal dropped"]
        if quorumLost.contains(where: { message.contains($0) }) {
            return CairnError(.unavailable, "etcd has no quorum (\(endpoint) says: \(clip(message))); writes are refused until a majority of its members is back")
        }
        return CairnError(.cluster, "etcd at \(endpoint) refused the request: \(clip(message))")
    }

    // MARK: - Encoding

    static func base64(_ key: String) -> String { Data(key.utf8).base64EncodedString() }

    /// The end of the range of keys starting with `prefix`: the prefix with its last byte plus one.
    /// The first key after every key that starts with `prefix`.
    public static func prefixEnd(_ prefix: String) -> String {
        var bytes = Array(prefix.utf8)
        while let last = bytes.last {
            if last < 0xff {
                bytes[bytes.count - 1] = last + 1
                return String(decoding: bytes, as: UTF8.self)
            }
            bytes.removeLast()
        }
        return "\0"
    }

    /// Int64 values come as JSON strings (proto3's mapping), absent when zero.
    static func int64(_ value: Any?) -> Int64 {
        if let s = value as? String { return Int64(s) ?? 0 }
        if let n = value as? NSNumber { return n.int64Value }
        return 0
    }

    static func revision(_ response: [String: Any]) -> Int64 {
        int64((response["header"] as? [String: Any])?["revision"])
    }

    static func keyValues(_ value: Any?) throws -> [EtcdKeyValue] {
        guard let items = value as? [[String: Any]] else { return [] }
        return try items.map { item in
            guard let key = (item["key"] as? String).flatMap({ Data(base64Encoded: $0) }) else {
                throw CairnError(.cluster, "etcd answered a key that is not base64; is this an etcd v3 gateway?")
            }
            let value = (item["value"] as? String).flatMap { Data(base64Encoded: $0) } ?? Data()
            return EtcdKeyValue(key: String(decoding: key, as: UTF8.self), value: value, createRevision: int64(item["create_revision"]),
                                modRevision: int64(item["mod_revision"]), version: int64(item["version"]), lease: int64(item["lease"]))
        }
    }
}
