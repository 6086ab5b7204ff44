import AsyncHTTPClient
import CairnCore
import CairnTestSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import NIOCore
import NIOFoundationEssentialsCompat
import Testing
@testable import CairnCluster

/// `--server` and `--ctld` take a comma-separated list of ctlds (issue 16):
/// the client fails over along it. Real servers on loopback sockets.
@Suite("Cluster client failover")
struct ClusterClientFailoverTests {
    /// A server that answers every call 503 with a ctld's error body, as a
    /// ctld does whose topology store has lost quorum.
    static func unavailableServer() -> Application<RouterResponder<BasicRequestContext>> {
        let router = Router()
        router.get("**") { _, _ in try unavailable() }
        router.post("**") { _, _ in try unavailable() }
        return Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
    }

    static func unavailable() throws -> Response {
        let body = try CairnJSON.encoder().encode(ClusterAPI.ErrorBody(code: "cluster", message: "etcd has no quorum; writes are refused"))
        return Response(status: .serviceUnavailable, headers: [.contentType: "application/json"],
                        body: .init(byteBuffer: ByteBuffer(data: body)))
    }

    @Test("a call that never reached a server is told from one that may have: by the error's type")
    func neverArrived() {
        #expect(ClusterClient.neverArrived(HTTPClientError.connectTimeout))
        #expect(ClusterClient.neverArrived(HTTPClientError.getConnectionFromPoolTimeout))
        #expect(ClusterClient.neverArrived(IOError(errnoCode: ECONNREFUSED, reason: "connect")))
        #expect(ClusterClient.neverArrived(ChannelError.connectTimeout(.seconds(3))))
        // Sent, and then no answer: it may have been carried out.
        #expect(!ClusterClient.neverArrived(HTTPClientError.readTimeout))
        #expect(!ClusterClient.neverArrived(HTTPClientError.deadlineExceeded))
        #expect(!ClusterClient.neverArrived(ChannelError.ioOnClosedChannel))
        #expect(!ClusterClient.neverArrived(IOError(errnoCode: ECONNRESET, reason: "read")))
    }

    @Test("A dead address first in the list: calls reach the live ctld, and later calls go there first")
    func deadAddressFirst() async throws {
        let harness = try ControlServerHarness()
        defer { harness.directory.remove() }
        let dead = try FreePorts.take(1)[0]
        let app = Application(router: harness.server.buildRouter(), configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { live in
            let port = try #require(live.port)
            let tablets = ClusterClient(address: "127.0.0.1:\(dead), 127.0.0.1:\(port)", token: ControlServerHarness.tabletToken)
            try await tablets.register(ControlServerHarness.registration())
            #expect(tablets.baseURL == "http://127.0.0.1:\(port)")
            let client = ClusterClient(address: "127.0.0.1:\(dead),127.0.0.1:\(port)", token: ControlServerHarness.token)
            #expect(client.baseURLs == ["http://127.0.0.1:\(dead)", "http://127.0.0.1:\(port)"])
            let listed = try await client.tablets()
            #expect(listed.map(\.alias) == ["zone1-100"])
            #expect(client.baseURL == "http://127.0.0.1:\(port)")
        }
    }

    @Test("A ctld that answers 503 is passed over; when none is better, its sentence is the error")
    func unavailablePassedOver() async throws {
        let harness = try ControlServerHarness()
        defer { harness.directory.remove() }
        let dead = try FreePorts.take(1)[0]
        let app = Application(router: harness.server.buildRouter(), configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await Self.unavailableServer().test(.live) { refusing in
            let refusingPort = try #require(refusing.port)
            try await app.test(.live) { live in
                let port = try #require(live.port)
                let client = ClusterClient(address: "127.0.0.1:\(refusingPort),127.0.0.1:\(port)", token: ControlServerHarness.token)
                #expect(try await client.tablets().isEmpty)
                #expect(client.baseURL == "http://127.0.0.1:\(port)")
            }
            let stranded = ClusterClient(address: "127.0.0.1:\(refusingPort),127.0.0.1:\(dead)", token: ControlServerHarness.tabletToken)
            let beat = ClusterAPI.Heartbeat(alias: "zone1-100", type: .primary, healthy: true, serving: true, replication: nil,
                                            position: nil, currentJob: nil, finishedJobs: [])
            let error = await #expect(throws: CairnError.self) {
                try await stranded.heartbeat(beat, timeout: .seconds(2))
            }
            #expect(error?.message == "etcd has no quorum; writes are refused")
        }
    }

    @Test("Every address unreachable: the error names each one and what it did")
    func allUnreachable() async throws {
        let ports = try FreePorts.take(2)
        let client = ClusterClient(address: "127.0.0.1:\(ports[0]),127.0.0.1:\(ports[1])", token: "t")
        let beat = ClusterAPI.Heartbeat(alias: "zone1-100", type: .primary, healthy: true, serving: true, replication: nil,
                                        position: nil, currentJob: nil, finishedJobs: [])
        let error = await #expect(throws: CairnError.self) {
            try await client.heartbeat(beat, timeout: .seconds(2))
        }
        let message = try #require(error?.message)
        #expect(message.contains("cannot reach the control server at any of"))
        #expect(message.contains("http://127.0.0.1:\(ports[0]) (connection refused)"))
        #expect(message.contains("http://127.0.0.1:\(ports[1]) (connection refused)"))
    }

    @Test("The list is read as host:port items; blanks and trailing slashes do not count")
    func parsing() {
        #expect(ClusterClient.baseURLs("a:1, b:2/,") == ["http://a:1", "http://b:2"])
        #expect(ClusterClient.baseURLs("https://c:3") == ["https://c:3"])
        #expect(ClusterClient.baseURLs("localhost:15999") == ["http://localhost:15999"])
    }
}
