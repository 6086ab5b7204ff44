import AsyncHTTPClient
import CairnCore
import CairnEngine
import CairnStorage
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOFoundationEssentialsCompat
import Synchronization

/// A typed client of the cluster API, for the command line, for tablets
/// talking to ctld, and for ctld talking to tablets. Every call carries the
/// bearer token.
public struct ClusterClient: Sendable {
    /// `http://host:port` of each address, in the order given: a call goes
    /// to the one that answered last and fails over along the list.
    public let baseURLs: [String]
    let token: String
    /// What the server is, for messages: "the control server", "tablet zone1-100".
    let peer: String
    /// What is wrong and what to do when the server refuses the token.
    let tokenAdvice: String
    /// The index in `baseURLs` that answered last (shared by copies of this client).
    private let preferred: Preferred

    /// `address`: `host:port`, or several separated by commas (ctlds that
    /// share one etcd topology): each call fails over along them.
    public init(address: String, token: String, peer: String = "the control server",
                tokenAdvice: String = "the auth token is missing or wrong; pass that server's token with --auth-token-file or CAIRN_AUTH_TOKEN") {
        self.baseURLs = Self.baseURLs(address)
        self.token = token
        self.peer = peer
        self.tokenAdvice = tokenAdvice
        self.preferred = Preferred()
    }

    /// The address tried first: the one that answered last.
    public var baseURL: String { baseURLs[preferred.index.withLock { $0 } % baseURLs.count] }

    /// Every address of a comma-separated list as `http://host:port`.
    static func baseURLs(_ addresses: String) -> [String] {
        let urls = addresses.split(separator: ",").map { item -> String in
            var url = item.trimmingCharacters(in: .whitespaces)
            if !url.hasPrefix("http://") && !url.hasPrefix("https://") { url = "http://" + url }
            while url.hasSuffix("/") { url.removeLast() }
            return url
        }.filter { $0 != "http://" && $0 != "https://" }
        return urls.isEmpty ? ["http://" + addresses] : urls
    }

    final class Preferred: Sendable {
        let index = Mutex(0)
    }

    // MARK: - Control server calls

    public func register(_ registration: ClusterAPI.TabletRegistration) async throws {
        let _: Empty = try await send(.POST, "/tablets", body: registration)
    }

    /// Reports a tablet's health; the answer says whether it holds its shard's archive lease.
    @discardableResult
    public func heartbeat(_ heartbeat: ClusterAPI.Heartbeat, timeout: TimeAmount? = nil) async throws -> ClusterAPI.HeartbeatAnswer {
        try await send(.POST, "/tablets/\(heartbeat.alias)/heartbeat", body: heartbeat, timeout: timeout)
    }

    public func tablets() async throws -> [ClusterAPI.Tablet] {
        try await send(.GET, "/tablets", body: Optional<Empty>.none)
    }

    /// Every shard's protection, for `cairn status`.
    public func status() async throws -> ClusterAPI.FleetStatus {
        try await send(.GET, "/status", body: Optional<Empty>.none)
    }

    public func startBackup(_ request: ClusterAPI.BackupRequest) async throws -> ClusterAPI.Job {
        try await send(.POST, "/backups", body: request)
    }

    public func startRestore(_ request: ClusterAPI.RestoreRequest) async throws -> ClusterAPI.RestoreResponse {
        try await send(.POST, "/restores", body: request)
    }

    public func startDrill(_ request: ClusterAPI.DrillRequest) async throws -> ClusterAPI.Job {
        try await send(.POST, "/drills", body: request)
    }

    public func job(_ id: Int64) async throws -> ClusterAPI.Job {
        try await send(.GET, "/jobs/\(id)", body: Optional<Empty>.none)
    }

    public func jobs(shard: KeyspaceShard?, limit: Int) async throws -> ClusterAPI.JobsResponse {
        var query = "?limit=\(limit)"
        if let shard { query += "&keyspace=\(shard.keyspace)&shard=\(shard.shard)" }
        return try await send(.GET, "/jobs" + query, body: Optional<Empty>.none)
    }

    /// `timeout`: how long the call may take (default 30 s).
    public func reportJob(_ update: ClusterAPI.JobUpdate, timeout: TimeAmount? = nil) async throws {
        let _: Empty = try await send(.POST, "/jobs/\(update.id)/progress", body: update, timeout: timeout)
    }

    public func backups(_ shard: KeyspaceShard) async throws -> BackupListing {
        try await send(.GET, "/backups/\(shard.keyspace)/\(shard.shard)", body: Optional<Empty>.none)
    }

    public func removeBackup(_ shard: KeyspaceShard, name: String, force: Bool, dryRun: Bool) async throws -> BackupRemoval {
        try await send(.DELETE, "/backups/\(shard.keyspace)/\(shard.shard)/\(name)?force=\(force)&dry_run=\(dryRun)", body: Optional<Empty>.none)
    }

    /// Creates a restore point of a keyspace.
    public func createRestorePoint(_ request: ClusterAPI.RestorePointRequest) async throws -> RestorePoint {
        // Preparing may wait 10 s, blocking up to the maximum block, releasing 10 s more.
        try await send(.POST, "/restore-points", body: request, timeout: .milliseconds(Int64(request.maximumBlockMilliseconds) + 30_000))
    }

    /// A keyspace's restore points, and whether each shard can restore them.
    public func restorePoints(keyspace: String) async throws -> [RestorePointStatus] {
        try await send(.GET, "/restore-points/\(keyspace)", body: Optional<Empty>.none)
    }

    // MARK: - Tablet agent calls

    /// Asks a primary tablet to take its backup stage up to BLOCK_DDL (commits still flow).
    public func prepareCommitBlock(_ request: ClusterAPI.CommitBlockRequest, timeout: TimeAmount) async throws {
        let _: Empty = try await send(.POST, "/commit-blocks", body: request, timeout: timeout)
    }

    /// Asks a prepared primary to block its commits; it answers with its position once they are blocked.
    public func blockCommits(_ request: ClusterAPI.CommitBlockRequest, timeout: TimeAmount) async throws -> ClusterAPI.CommitBlockHeld {
        try await send(.POST, "/commit-blocks/\(request.id)/block", body: request, timeout: timeout)
    }

    /// Releases a primary's commit block (also one not held yet, which then lets go at once).
    public func releaseCommits(id: String) async throws -> ClusterAPI.CommitBlockReleased {
        try await send(.DELETE, "/commit-blocks/\(id)", body: Optional<Empty>.none, timeout: .seconds(10))
    }

    /// Hands a job to a tablet; a busy tablet refuses.
    public func assign(_ job: ClusterAPI.Job) async throws {
        let _: Empty = try await send(.POST, "/jobs", body: job)
    }

    // MARK: - Transport

    struct Empty: Codable, Sendable {}

    /// One call. Each address is tried in turn, starting with the one that
    /// answered last. The call moves on to the next address when one cannot
    /// be connected to, or answers 503 (a ctld that lost its topology store);
    /// a GET also moves on when an address stops answering. Any other call
    /// that was sent and not answered is not repeated, since it may have
    /// been carried out. When a round ends and some address refused with 503,
    /// that refusal is the error; when none could be reached, rounds repeat
    /// until `timeout` (default 30 s) has passed, so a restarting server is
    /// waited for.
    func send<Body: Encodable & Sendable, Result: Decodable>(_ method: HTTPMethod, _ path: String, body: Body?,
                                                             timeout: TimeAmount? = nil) async throws -> Result {
        let payload = try body.map { try CairnJSON.encoder().encode($0) }
        let timeout = timeout ?? .seconds(30)
        let deadline = NIODeadline.now() + timeout
        let first = preferred.index.withLock { $0 }
        var failures: [String: String] = [:]
        var refusal: CairnError?
        var attempt = 0
        while true {
            let index = (first + attempt) % baseURLs.count
            let baseURL = baseURLs[index]
            attempt += 1
            let outcome = await sendOnce(method, baseURL + ClusterAPI.prefix + path, payload: payload, deadline: deadline)
            switch outcome {
            case .answered(let status, let bytes):
                if status == .serviceUnavailable, baseURLs.count > 1 {
                    refusal = Self.refusal(status: status, bytes: bytes, peer: peer, baseURL: baseURL, method: method, path: path, tokenAdvice: tokenAdvice)
                    failures[baseURL] = "answered 503"
                    if attempt % baseURLs.count != 0 { continue }
                    break
                }
                preferred.index.withLock { $0 = index }
                guard (200..<300).contains(status.code) else {
                    throw Self.refusal(status: status, bytes: bytes, peer: peer, baseURL: baseURL, method: method, path: path, tokenAdvice: tokenAdvice)
                }
                if Result.self == Empty.self { return Empty() as! Result }
                do {
                    return try CairnJSON.decoder().decode(Result.self, from: bytes)
                } catch {
                    if let unknown = WireEnumError.from("\(peer) at \(baseURL)", error) { throw unknown }
                    throw CairnError(.cluster, "\(peer) at \(baseURL) sent an answer this client cannot read; check that both run the same Cairn version")
                }
            case .unreachable(let error):
                try Task.checkCancellation()
                failures[baseURL] = Self.describe(error)
                if !Self.neverArrived(error) && method != .GET {
                    throw CairnError(.cluster, "\(peer) at \(baseURL) did not answer \(method.rawValue) \(path): \(Self.describe(error)); it may still have done it, so check before trying again")
                }
                if attempt % baseURLs.count != 0 { continue }
            }
            // A whole round failed. A ctld that refused (503) said why: that is the answer.
            if let refusal { throw refusal }
            // None could be reached: wait a little and go round again, until the deadline.
            if NIODeadline.now() + .milliseconds(500) >= deadline {
                let tried = baseURLs.map { "\($0) (\(failures[$0] ?? "not tried"))" }.joined(separator: ", ")
                throw CairnError(.cluster, baseURLs.count == 1
                    ? "cannot reach \(peer) at \(baseURLs[0]): \(failures[baseURLs[0]] ?? "no answer"); check that it is running and the address is right"
                    : "cannot reach \(peer) at any of \(tried); check that one is running and the addresses are right")
            }
            try await Task.sleep(for: .milliseconds(500))
        }
    }

    enum Outcome {
        case answered(HTTPResponseStatus, Data)
        case unreachable(any Error)
    }

    private func sendOnce(_ method: HTTPMethod, _ url: String, payload: Data?, deadline: NIODeadline) async -> Outcome {
        var request = HTTPClientRequest(url: url)
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        request.headers.add(name: "Accept", value: "application/json")
        if let payload {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(data: payload))
        }
        do {
            let response = try await Self.http.execute(request, deadline: deadline)
            let data = try await response.body.collect(upTo: 64 * 1024 * 1024)
            return .answered(response.status, Data(buffer: data))
        } catch {
            return .unreachable(error)
        }
    }

    /// The error a server's refusal stands for.
    static func refusal(status: HTTPResponseStatus, bytes: Data, peer: String, baseURL: String,
                        method: HTTPMethod, path: String, tokenAdvice: String) -> CairnError {
        if status == .unauthorized {
            return CairnError(.unauthorized, "\(peer) at \(baseURL) refused the request: \(tokenAdvice)")
        }
        if let body = try? CairnJSON.decoder().decode(ClusterAPI.ErrorBody.self, from: bytes) {
            return CairnError(CairnError.Code(body.error.code), body.error.message)
        }
        return CairnError(.cluster, "\(peer) at \(baseURL) answered \(status.code) to \(method.rawValue) \(path)")
    }

    /// The client for cluster calls. Unlike `HTTPClient.shared` it does not
    /// retry a failed connection until the request's deadline: the call
    /// fails over to the next address at once instead. It lives as long as
    /// the process, as `HTTPClient.shared` does.
    static let http: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: .seconds(3))
        configuration.connectionPool.retryConnectionEstablishment = false
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }()

    /// Whether a failed call never reached the server: it could not connect.
    /// Decides whether a call other than a GET may go to the next address,
    /// so the error's type decides first; the text is a fallback for
    /// wrappers that hide it.
    static func neverArrived(_ error: any Error) -> Bool {
        switch error {
        case is NIOConnectionError:
            return true
        case let error as HTTPClientError where error == .connectTimeout || error == .getConnectionFromPoolTimeout:
            return true
        case let error as IOError where error.errnoCode == ECONNREFUSED:
            return true
        case let error as ChannelError:
            if case .connectTimeout = error { return true }
            return false
        default:
            let text = "\(error)"
            return ["refused", "connectTimeout", "NIOConnectionError", "connect(", "getConnectionFromPoolTimeout"].contains { text.contains($0) }
        }
    }

    static func describe(_ error: any Error) -> String {
        let text = "\(error)"
        if text.contains("connectionRefused") || text.contains("Connection refused") { return "connection refused" }
        if text.contains("Timeout") || text.contains("timeout") { return "timed out" }
        return text
    }
}
