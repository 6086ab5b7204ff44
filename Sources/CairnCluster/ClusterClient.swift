import AsyncHTTPClient
import CairnCore
import CairnEngine
import CairnStorage
import Foundation
import NIOCore
import NIOHTTP1
import NIOFoundationEssentialsCompat

/// A typed client of the cluster API, for the command line, for tablets
/// talking to ctld, and for ctld talking to tablets. Every call carries the
/// bearer token.
public struct ClusterClient: Sendable {
    /// `http://host:port`.
    public let baseURL: String
    let token: String
    /// What the server is, for messages: "the control server", "tablet zone1-100".
    let peer: String
    /// What is wrong and what to do when the server refuses the token.
    let tokenAdvice: String

    public init(address: String, token: String, peer: String = "the control server",
                tokenAdvice: String = "the auth token is missing or wrong; pass that server's token with --auth-token-file or CAIRN_AUTH_TOKEN") {
        var url = address
        if !url.hasPrefix("http://") && !url.hasPrefix("https://") { url = "http://" + url }
        while url.hasSuffix("/") { url.removeLast() }
        self.baseURL = url
        self.token = token
        self.peer = peer
        self.tokenAdvice = tokenAdvice
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

    func send<Body: Encodable & Sendable, Result: Decodable>(_ method: HTTPMethod, _ path: String, body: Body?,
                                                             timeout: TimeAmount? = nil) async throws -> Result {
        var request = HTTPClientRequest(url: baseURL + ClusterAPI.prefix + path)
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        request.headers.add(name: "Accept", value: "application/json")
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(data: try CairnJSON.encoder().encode(body)))
        }
        let response: HTTPClientResponse
        do {
            response = try await HTTPClient.shared.execute(request, timeout: timeout ?? .seconds(30))
        } catch {
            throw CairnError(.cluster, "cannot reach \(peer) at \(baseURL): \(ClusterClient.describe(error)); check that it is running and the address is right")
        }
        let data = try await response.body.collect(upTo: 64 * 1024 * 1024)
        let bytes = Data(buffer: data)
        guard (200..<300).contains(response.status.code) else {
            if response.status == .unauthorized {
                throw CairnError(.unauthorized, "\(peer) at \(baseURL) refused the request: \(tokenAdvice)")
            }
            if let body = try? CairnJSON.decoder().decode(ClusterAPI.ErrorBody.self, from: bytes) {
                throw CairnError(CairnError.Code(body.error.code), body.error.message)
            }
            throw CairnError(.cluster, "\(peer) at \(baseURL) answered \(response.status.code) to \(method.rawValue) \(path)")
        }
        if Result.self == Empty.self { return Empty() as! Result }
        do {
            return try CairnJSON.decoder().decode(Result.self, from: bytes)
        } catch {
            if let unknown = WireEnumError.from("\(peer) at \(baseURL)", error) { throw unknown }
            throw CairnError(.cluster, "\(peer) at \(baseURL) sent an answer this client cannot read; check that both run the same Cairn version")
        }
    }

    static func describe(_ error: any Error) -> String {
        let text = "\(error)"
        if text.contains("connectionRefused") || text.contains("Connection refused") { return "connection refused" }
        if text.contains("Timeout") || text.contains("timeout") { return "timed out" }
        return text
    }
}
