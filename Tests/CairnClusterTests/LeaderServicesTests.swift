import CairnCore
import CairnEtcd
import CairnTestSupport
import Foundation
import ServiceLifecycle
import Synchronization
import Testing

@testable import CairnCluster

/// Which candidates run their leader's services right now.
final class RunningServices: Sendable {
    private let names = Mutex<Set<String>>([])
    var current: Set<String> { names.withLock { $0 } }
    func insert(_ name: String) { _ = names.withLock { $0.insert(name) } }
    func remove(_ name: String) { _ = names.withLock { $0.remove(name) } }
}

/// Stands for the scheduler and the monitor: says it runs until it is shut down.
struct MarkerService: Service {
    let name: String
    let running: RunningServices

    func run() async throws {
        running.insert(name)
        try? await gracefulShutdown()
        running.remove(name)
    }
}

/// `LeaderServices` of two ctlds on one real three-member etcd cluster.
@Suite("ctld leadership: the leader's services run on one ctld at a time", .serialized)
struct LeaderServicesTests {
    static func waitUntil(_ what: String, timeout: Duration = .seconds(90), _ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + timeout
        while !condition() {
            guard ContinuousClock.now < deadline else { throw TestSupportError("timed out waiting until \(what)") }
            try await Task.sleep(for: .milliseconds(200))
        }
    }

    @Test("one of two ctlds runs them; when it stops the other does; without quorum none does, and with it back the leader runs them again")
    func handover() async throws {
        let etcd = try await EtcdCluster.start()
        let running = RunningServices()
        var clients: [EtcdClient] = []
        var groups: [String: ServiceGroup] = [:]
        do {
            for name in ["a", "b"] {
                let client = try EtcdClient(endpoints: etcd.endpoints, logger: testLogger)
                clients.append(client)
                let leadership = EtcdLeadership(client: client, key: "/cairn/leader", identity: name, ttl: 3, logger: testLogger)
                let service = LeaderServices(leadership: leadership, logger: testLogger,
                                             services: { [MarkerService(name: name, running: running)] })
                groups[name] = ServiceGroup(services: [service], logger: testLogger)
            }
            let all = groups
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                for group in all.values { tasks.addTask { try await group.run() } }
                do {
                    try await Self.waitUntil("one ctld leads") { running.current.count == 1 }
                    let first = try #require(running.current.first)
                    let second = first == "a" ? "b" : "a"
                    // Never both.
                    #expect(running.current == [first])

                    // The leader stops: the other leads.
                    await all[first]?.triggerGracefulShutdown()
                    try await Self.waitUntil("the other ctld leads") { running.current == [second] }

                    // Quorum lost: the leader cannot renew its lease and stops its services.
                    await etcd.kill("m0")
                    await etcd.kill("m1")
                    try await Self.waitUntil("the services stop without quorum") { running.current.isEmpty }
                    // Quorum back: it leads again.
                    try etcd.launch("m0")
                    try etcd.launch("m1")
                    try await etcd.waitForQuorum()
                    try await Self.waitUntil("the leader's services run again") { running.current == [second] }
                } catch {
                    for group in all.values { await group.triggerGracefulShutdown() }
                    throw error
                }
                for group in all.values { await group.triggerGracefulShutdown() }
                try await tasks.waitForAll()
            }
            #expect(running.current.isEmpty)
        } catch {
            for client in clients { await client.shutdown() }
            await etcd.remove()
            throw error
        }
        for client in clients { await client.shutdown() }
        await etcd.remove()
    }
}
