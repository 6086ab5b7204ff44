import CairnCore
import CairnEngine
import CairnStorage
import CairnTestSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing
@testable import CairnCluster
import GRDB
import NIOFoundationEssentialsCompat

/// A control server on a temporary data directory and file storage, its
/// routes called through Hummingbird's router test framework: no sockets.
struct ControlServerHarness {
    static let token = "route-test-token-0123456789"
    /// The tablets' credential: registration, heartbeats and job reports take only it.
    static let tabletToken = "route-test-tablet-token-0123456789"

    /// The credential a route takes: the tablet token for the tablets' own calls, else the client token.
    static func token(for method: HTTPRequest.Method, _ path: String) -> String {
        let tabletRoute = method == .post && (path == "/tablets" || path.hasSuffix("/heartbeat") || path.hasSuffix("/progress"))
        return tabletRoute ? tabletToken : token
    }
    let directory: TemporaryDirectory
    let server: ControlServer
    let shard = try! KeyspaceShard(keyspace: "commerce", shard: "0")

    init() throws {
        directory = try TemporaryDirectory(prefix: "cairn-ctld-routes")
        try FileManager.default.createDirectory(atPath: directory.file("backups"), withIntermediateDirectories: true)
        var configuration = CairnConfiguration()
        configuration.bucket = "file://\(directory.file("backups"))"
        var options = ControlServerOptions(dataDirectory: directory.file("ctld"), configuration: configuration,
                                           authToken: ControlServerHarness.token, schedulerEnabled: false)
        options.tabletToken = ControlServerHarness.tabletToken
        // A tablet that heartbeat in this test stays live however slowly a loaded machine runs it.
        options.heartbeatTimeout = 3600
        server = try ControlServer(options: options, logger: testLogger)
    }

    var storage: any BackupStorage { FileStorage(root: directory.file("backups")) }

    /// Runs `body` against the server's router.
    func test(_ body: @Sendable (any TestClientProtocol) async throws -> Void) async throws {
        defer { directory.remove() }
        try await Application(router: server.buildRouter()).test(.router, body)
    }

    static func registration(_ alias: String = "zone1-100", type: ClusterAPI.TabletType = .primary) -> ClusterAPI.TabletRegistration {
        ClusterAPI.TabletRegistration(alias: alias, keyspace: "commerce", shard: "0", type: type, agentURL: "http://127.0.0.1:9",
                                      mysqlHost: "127.0.0.1", mysqlPort: 3306, hostname: "test-host")
    }
}

extension TestClientProtocol {
    /// A call with a bearer token and a JSON body: by default the credential
    /// the route takes; `token: nil` sends none.
    func call(_ method: HTTPRequest.Method, _ path: String, token: String?? = .none,
              json: (any Encodable & Sendable)? = nil, raw: String? = nil) async throws -> TestResponse {
        var headers: HTTPFields = [:]
        let bearer: String? = token ?? ControlServerHarness.token(for: method, path)
        if let bearer { headers[.authorization] = "Bearer \(bearer)" }
        var body: ByteBuffer? = nil
        if let json { body = ByteBuffer(data: try CairnJSON.encoder().encode(json)) }
        if let raw { body = ByteBuffer(string: raw) }
        if body != nil { headers[.contentType] = "application/json" }
        return try await execute(uri: ClusterAPI.prefix + path, method: method, headers: headers, body: body)
    }
}

extension TestResponse {
    func decode<T: Decodable>(_ type: T.Type) throws -> T {
        try CairnJSON.decoder().decode(type, from: Data(String(buffer: body).utf8))
    }

    var json: Any? { try? JSONSerialization.jsonObject(with: Data(String(buffer: body).utf8)) }

    var errorMessage: String? { (try? decode(ClusterAPI.ErrorBody.self))?.error.message }
}

@Suite("Control server routes")
struct ControlServerRouteTests {
    @Test("every route refuses a request without the right token")
    func unauthorized() async throws {
        try await ControlServerHarness().test { client in
            for token in [nil, "wrong-token-wrong-token"] {
                let response = try await client.call(.get, "/tablets", token: token)
                #expect(response.status == .unauthorized)
                #expect(try response.decode(ClusterAPI.ErrorBody.self).error.code == "unauthorized")
            }
        }
    }

    @Test("a tablet registers and heartbeats; GET /tablets lists it with flat keys")
    func registerAndHeartbeat() async throws {
        try await ControlServerHarness().test { client in
            #expect(try await client.call(.post, "/tablets", json: ControlServerHarness.registration()).status == .ok)
            let beat = ClusterAPI.Heartbeat(alias: "zone1-100", type: .primary, healthy: true, serving: true, replication: nil,
                                            position: "0-100-5", currentJob: nil, finishedJobs: [])
            #expect(try await client.call(.post, "/tablets/zone1-100/heartbeat", json: beat).status == .ok)

            let response = try await client.call(.get, "/tablets")
            let tablets = try #require(response.json as? [[String: Any]])
            let tablet = try #require(tablets.first)
            #expect(tablets.count == 1)
            #expect(tablet["alias"] as? String == "zone1-100" && tablet["keyspace"] as? String == "commerce")
            #expect(tablet["agent_url"] as? String == "http://127.0.0.1:9" && tablet["mysql_port"] as? Int == 3306)
            #expect(tablet["healthy"] as? Bool == true && tablet["position"] as? String == "0-100-5")
            #expect(tablet["registration"] == nil)

            // A live alias does not move to another agent unless the registration says to replace it.
            var moved = ControlServerHarness.registration()
            moved.agentURL = "http://127.0.0.1:10"
            #expect(try await client.call(.post, "/tablets", json: moved).status == .conflict)
            // Registering again with replace changes what was registered and keeps the health.
            moved.replace = true
            #expect(try await client.call(.post, "/tablets", json: moved).status == .ok)
            let again = try await client.call(.get, "/tablets").decode([ClusterAPI.Tablet].self)
            #expect(again.first?.agentURL == "http://127.0.0.1:10" && again.first?.healthy == true)
        }
    }

    @Test("the heartbeat answer grants one primary the archive lease; ctld keeps its archive report for tablets, backups and metrics")
    func archiveLease() async throws {
        try await ControlServerHarness().test { client in
            for (alias, type) in [("zone1-100", ClusterAPI.TabletType.primary), ("zone1-101", .primary), ("zone1-102", .replica)] {
                #expect(try await client.call(.post, "/tablets", json: ControlServerHarness.registration(alias, type: type)).status == .ok)
            }
            func beat(_ alias: String, _ type: ClusterAPI.TabletType, running: Bool) async throws -> ClusterAPI.HeartbeatAnswer {
                let report = ClusterAPI.ArchiveReport(running: running, connected: running, lagSeconds: running ? 0.75 : 0,
                                                      archivedPosition: running ? "MariaDB/0-100-5" : nil, lastEventTime: nil,
                                                      lastSegmentTime: nil, segmentsWritten: running ? 3 : 0, error: nil)
                let heartbeat = ClusterAPI.Heartbeat(alias: alias, type: type, healthy: true, serving: true, replication: nil,
                                                     position: "0-100-5", currentJob: nil, finishedJobs: [], archive: report)
                let response = try await client.call(.post, "/tablets/\(alias)/heartbeat", json: heartbeat)
                #expect(response.status == .ok)
                return try response.decode(ClusterAPI.HeartbeatAnswer.self)
            }
            // Just started, ctld grants only to a primary already archiving (the holder from before its restart).
            #expect(try await beat("zone1-101", .primary, running: false).archiveLeaseSeconds == nil)
            // The lease runs the heartbeat timeout, to a whole second at or before it.
            #expect(try await beat("zone1-100", .primary, running: true).archiveLeaseSeconds.map { $0 > 3598 && $0 <= 3600 } == true)
            #expect(try await beat("zone1-101", .primary, running: false).archiveLeaseSeconds == nil)
            #expect(try await beat("zone1-102", .replica, running: false).archiveLeaseSeconds == nil)
            // The lease runs the heartbeat timeout, to a whole second at or before it.
            #expect(try await beat("zone1-100", .primary, running: true).archiveLeaseSeconds.map { $0 > 3598 && $0 <= 3600 } == true)

            let tablets = try await client.call(.get, "/tablets").decode([ClusterAPI.Tablet].self)
            #expect(tablets.first { $0.alias == "zone1-100" }?.archive?.lagSeconds == 0.75)
            let listing = try await client.call(.get, "/backups/commerce/0").decode(BackupListing.self)
            #expect(listing.archiver?.tablet == "zone1-100" && listing.archiver?.running == true && listing.archiver?.lagSeconds == 0.75)
            let metrics = String(buffer: try await client.execute(uri: "/metrics", method: .get,
                                                                  headers: [.authorization: "Bearer \(ControlServerHarness.token)"]).body)
            let lagLine = metrics.split(separator: "\n").first { $0.hasPrefix("cairn_shard_archive_lag_seconds{") }
            #expect(lagLine?.contains(#"shard="0""#) == true && lagLine?.hasSuffix(" 0.75") == true, "\(metrics)")
        }
    }

    @Test("a heartbeat from a tablet ctld does not know is refused with 404")
    func unknownTabletHeartbeat() async throws {
        try await ControlServerHarness().test { client in
            let beat = ClusterAPI.Heartbeat(alias: "zone1-999", type: .replica, healthy: true, serving: true, replication: nil,
                                            position: nil, currentJob: nil, finishedJobs: [])
            let response = try await client.call(.post, "/tablets/zone1-999/heartbeat", json: beat)
            #expect(response.status == .notFound)
            #expect(response.errorMessage?.contains("tablet zone1-999 is not registered") == true)
        }
    }

    @Test("a backup of a shard ctld does not know names the shards it knows")
    func unknownShard() async throws {
        try await ControlServerHarness().test { client in
            _ = try await client.call(.post, "/tablets", json: ControlServerHarness.registration())
            let request = ClusterAPI.BackupRequest(keyspace: "nope", shard: "0", tablet: nil, tabletType: nil, type: .auto, engine: nil)
            let response = try await client.call(.post, "/backups", json: request)
            #expect(response.status == .notFound)
            #expect(response.errorMessage == "ctld does not know keyspace/shard nope/0; known: commerce/0")
            #expect(try await client.call(.get, "/jobs/41").status == .notFound)
        }
    }

    @Test("a tablet's reports move its job to its end, and a finished job takes no later report")
    func jobReports() async throws {
        let harness = try ControlServerHarness()
        let job = try await harness.server.store.createJob(shard: harness.shard, tablet: "zone1-100", scheduled: false) { $0.kind = .backup }
        try await harness.test { client in
            let copying = ClusterAPI.JobUpdate(id: job.id, report: ClusterAPI.JobReport(phase: .copying, bytesDone: 4096, storedBytes: 1000,
                                                                                         rate: 100, startedAt: Date()))
            #expect(try await client.call(.post, "/jobs/\(job.id)/progress", json: copying).status == .ok)
            let running = try await client.call(.get, "/jobs/\(job.id)").decode(ClusterAPI.Job.self)
            #expect(running.phase == .copying && running.bytesDone == 4096 && !running.isFinished)

            let failed = ClusterAPI.JobUpdate(id: job.id, report: ClusterAPI.JobReport(
                phase: .failed, bytesDone: 8192, result: .failed, error: TabletJobRunner.shutdownMessage))
            _ = try await client.call(.post, "/jobs/\(job.id)/progress", json: failed)
            _ = try await client.call(.post, "/jobs/\(job.id)/progress", json: copying)

            let listed = try await client.call(.get, "/jobs").decode(ClusterAPI.JobsResponse.self)
            let ended = try #require(listed.jobs.first { $0.id == job.id })
            #expect(ended.phase == .failed && ended.result == .failed && ended.bytesDone == 8192)
            #expect(ended.error == "cancelled: the tablet is shutting down")
            let raw = try #require(try await client.call(.get, "/jobs/\(job.id)").json as? [String: Any])
            #expect(raw["phase"] as? String == "failed" && raw["result"] as? String == "failed")
        }
    }

    @Test("a report with a phase this ctld does not know is refused with a clear error")
    func unknownPhaseReport() async throws {
        let harness = try ControlServerHarness()
        let job = try await harness.server.store.createJob(shard: harness.shard, tablet: "zone1-100", scheduled: false) { $0.kind = .backup }
        try await harness.test { client in
            let response = try await client.call(.post, "/jobs/\(job.id)/progress",
                                                 raw: #"{"id":\#(job.id),"phase":"encrypting","bytes_done":1,"stored_bytes":1,"rate":1}"#)
            #expect(response.status == .conflict)
            #expect(response.errorMessage?.hasPrefix("the request sent an unknown job phase \"encrypting\"") == true)
            let stored = try await client.call(.get, "/jobs/\(job.id)").decode(ClusterAPI.Job.self)
            #expect(stored.phase == .pending)
        }
    }

    @Test("jobs stored before phases were typed are still listed")
    func storedBeforeTypedPhases() async throws {
        let harness = try ControlServerHarness()
        let job = try await harness.server.store.createJob(shard: harness.shard, tablet: "zone1-100", scheduled: true) { $0.kind = .restore }
        let old = #"{"id":\#(job.id),"keyspace":"commerce","shard":"0","tablet":"zone1-100","kind":"restore","scheduled":false,"phase":"extracting 2024-05-01.100000.zone1-100","bytes_done":10,"stored_bytes":5,"rate":1,"created_at":"2024-05-01T10:00:00Z"}"#
        try await #require(harness.server.store as? CtldStore).database.write { db in
            try db.execute(sql: "UPDATE job SET body = ? WHERE id = ?", arguments: [old, job.id])
        }
        try await harness.test { client in
            let listed = try await client.call(.get, "/jobs?keyspace=commerce&shard=0").decode(ClusterAPI.JobsResponse.self)
            #expect(listed.jobs.map(\.phase) == [.restoring])
        }
    }

    @Test("backups are listed and removed (dry run) through the API")
    func backupsRoutes() async throws {
        let harness = try ControlServerHarness()
        let start = Date(timeIntervalSince1970: 1_714_557_600)
        let full = try await SyntheticBackups.writeComplete(
            SyntheticBackups.manifest(shard: harness.shard, start: start, finish: start.addingTimeInterval(60), parent: nil, seq: 10),
            to: harness.storage, shard: harness.shard)
        let incremental = try await SyntheticBackups.writeComplete(
            SyntheticBackups.manifest(shard: harness.shard, start: start.addingTimeInterval(3600), finish: start.addingTimeInterval(3660),
                                      parent: full, seq: 20),
            to: harness.storage, shard: harness.shard)
        try await harness.test { client in
            let listing = try #require(try await client.call(.get, "/backups/commerce/0").json as? [String: Any])
            let names = (listing["backups"] as? [[String: Any]])?.compactMap { $0["name"] as? String }
            #expect(names?.sorted() == [full.backupName, incremental.backupName].sorted())

            let refused = try await client.call(.delete, "/backups/commerce/0/\(full.backupName)?dry_run=true")
            #expect(refused.status == .conflict)
            let dry = try await client.call(.delete, "/backups/commerce/0/\(full.backupName)?force=true&dry_run=true")
                .decode(BackupRemoval.self)
            #expect(dry.dryRun && dry.dependents == [incremental.backupName])
            #expect(dry.removed == [incremental.backupName, full.backupName])
            // A dry run removes nothing.
            let manifests = try await BackupRepository(storage: harness.storage, logger: testLogger).completeManifests(harness.shard)
            #expect(manifests.count == 2)
        }
    }
}
