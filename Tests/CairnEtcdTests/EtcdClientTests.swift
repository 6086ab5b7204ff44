import CairnCore
import CairnEtcd
import CairnTestSupport
import Foundation
import Synchronization
import Testing

/// The etcd client and leader election against a real three-member etcd
/// cluster on loopback (Debian's etcd-server).
@Suite("etcd: client, transactions, leases, leadership, lost members", .serialized)
struct EtcdClientTests {
    /// A fresh three-member cluster and a client of it for `body`; both are stopped afterwards, also when `body` throws.
    func withEtcd(_ body: (EtcdCluster, EtcdClient) async throws -> Void) async throws {
        let etcd = try await EtcdCluster.start()
        let client: EtcdClient
        do {
            client = try EtcdClient(endpoints: etcd.endpoints, logger: testLogger)
        } catch {
            await etcd.remove()
            throw error
        }
        do {
            try await body(etcd, client)
        } catch {
            await client.shutdown()
            await etcd.remove()
            throw error
        }
        await client.shutdown()
        await etcd.remove()
    }

    @Test("compaction forgets the versions before a revision; compacting there again is no error")
    func compaction() async throws {
        try await withEtcd { etcd, client in
            try await client.put("/c/k", Data("1".utf8))
            let old = try await client.currentRevision()
            try await client.put("/c/k", Data("2".utf8))
            let now = try await client.currentRevision()
            #expect(now > old)
            #expect(try await client.get("/c/k", revision: old)?.text == "1")
            try await client.compact(revision: now)
            await #expect(throws: CairnError.self, "the old version is gone") { try await client.get("/c/k", revision: old) }
            try await client.compact(revision: old)
            try await client.compact(revision: now)
            #expect(try await client.get("/c/k")?.text == "2")
        }
    }

    @Test("a listing longer than a page comes whole and in order, from a start key too, and stops at the prefix's end")
    func pagedListing() async throws {
        try await withEtcd { etcd, client in
            let count = EtcdClient.listPageSize * 2 + 345
            let keys = (0..<count).map { String(format: "/p/%05d", $0) }
            for start in stride(from: 0, to: count, by: 100) {
                let chunk = keys[start..<min(start + 100, count)]
                #expect(try await client.transaction(if: [], then: chunk.map { .put($0, Data($0.utf8)) }).succeeded)
            }
            try await client.put("/q/after", Data())
            let listed = try await client.list(prefix: "/p/")
            #expect(listed.map(\.key) == keys)
            #expect(listed.allSatisfy { $0.text == $0.key })
            #expect(try await client.list(prefix: "/p/", from: keys[1_500], keysOnly: true).map(\.key) == Array(keys[1_500...]))
            #expect(try await client.list(prefix: "/p/", limit: 10).count == 10)
        }
    }

    @Test("keys, prefixes and deletes round-trip; a transaction on an absent key lets exactly one of many racers win")
    func keyValueAndTransactions() async throws {
        try await withEtcd { etcd, client in
            try await client.put("/t/a", Data("one".utf8))
            try await client.put("/t/b", Data("two".utf8))
            try await client.put("/u/c", Data("three".utf8))
            #expect(try await client.get("/t/a")?.text == "one")
            #expect(try await client.get("/t/missing") == nil)
            #expect(try await client.list(prefix: "/t/").map(\.key) == ["/t/a", "/t/b"])
            #expect(try await client.delete(prefix: "/t/") == 2)
            #expect(try await client.list(prefix: "/t/").isEmpty)
            #expect(try await client.get("/u/c")?.text == "three")

            // One job per shard: eight claims at once, one wins.
            let winners = try await withThrowingTaskGroup(of: Bool.self, returning: Int.self) { group in
                for i in 0..<8 {
                    group.addTask {
                        try await client.transaction(if: [.absent("/running/commerce/0")],
                                                     then: [.put("/running/commerce/0", Data("\(i)".utf8))]).succeeded
                    }
                }
                return try await group.reduce(0) { $0 + ($1 ? 1 : 0) }
            }
            #expect(winners == 1)
            // Compare-and-swap on the revision read: a stale writer loses.
            let read = try #require(try await client.get("/running/commerce/0"))
            #expect(try await client.transaction(if: [.modRevision("/running/commerce/0", read.modRevision)],
                                                 then: [.delete("/running/commerce/0")]).succeeded)
            #expect(try await !client.transaction(if: [.modRevision("/running/commerce/0", read.modRevision)],
                                                  then: [.put("/running/commerce/0", Data("late".utf8))]).succeeded)
            #expect(try await client.get("/running/commerce/0") == nil)
        }
    }

    @Test("one candidate leads; when its lease is not renewed the other takes over within the TTL, and a resign hands over at once")
    func leadership() async throws {
        let etcd = try await EtcdCluster.start()
        let clientA = try EtcdClient(endpoints: etcd.endpoints, logger: testLogger)
        let clientB = try EtcdClient(endpoints: etcd.endpoints, logger: testLogger)
        let a = EtcdLeadership(client: clientA, key: "/cairn/leader", identity: "ctld-a", ttl: 6, logger: testLogger)
        let b = EtcdLeadership(client: clientB, key: "/cairn/leader", identity: "ctld-b", ttl: 6, logger: testLogger)
        do {
            // A campaigns first: it leads after its first rounds (a round can fail on a busy machine, as in
            // production, where a ctld campaigns every TTL/3).
            let campaign = ContinuousClock.now
            while !(await a.tick()), ContinuousClock.now - campaign < .seconds(30) {
                try await Task.sleep(for: .seconds(1))
            }
            #expect(await !b.tick())
            // A's next round renews it: on a busy machine B's round can outlast the two thirds of
            // the TTL after which a leader that has not renewed stops calling itself leader.
            #expect(await a.tick())
            #expect(a.isLeader && !b.isLeader)
            #expect(try await b.leader() == "ctld-a")

            // A stops renewing (a killed ctld): B leads within the TTL, and A knows it no longer leads.
            let stopped = ContinuousClock.now
            while !(await b.tick()) {
                try await Task.sleep(for: .milliseconds(500))
                // The TTL (6 s) and a few rounds of a busy machine.
                #expect(ContinuousClock.now - stopped < .seconds(20), "B did not take over")
                if ContinuousClock.now - stopped > .seconds(20) { break }
            }
            #expect(b.isLeader)
            #expect(!a.isLeader)
            #expect(try await a.leader() == "ctld-b")
            #expect(await !a.tick())

            // A clean stop hands over without waiting for the TTL.
            await b.resign()
            let resigned = ContinuousClock.now
            while !(await a.tick()), ContinuousClock.now - resigned < .seconds(5) {
                try await Task.sleep(for: .milliseconds(200))
            }
            // Within 5 s, less than the 6 s TTL: the resign, not the expiry, handed over.
            #expect(a.isLeader)
            #expect(try await b.leader() == "ctld-a")
        } catch {
            await clientA.shutdown()
            await clientB.shutdown()
            await etcd.remove()
            throw error
        }
        await clientA.shutdown()
        await clientB.shutdown()
        await etcd.remove()
    }

    @Test("with one member lost everything works; with two, writes fail with a sentence about quorum and reads may still answer; with them back, writes work")
    func quorum() async throws {
        try await withEtcd { etcd, client in
            try await client.put("/q/before", Data("1".utf8))
            // The member the client used first goes away: the client moves on. When that
            // member led, the two left elect another; the client waits out an election
            // (EtcdClient.electionWindow), but on a loaded machine one can take longer,
            // so the write is tried again, within a minute, only while etcd says it has no quorum.
            await etcd.kill("m0")
            let deadline = ContinuousClock.now + .seconds(60)
            while true {
                do {
                    try await client.put("/q/one-lost", Data("2".utf8))
                    break
                } catch let error as CairnError where error.message.contains("quorum") && ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(500))
                }
            }
            #expect(try await client.get("/q/one-lost")?.text == "2")

            await etcd.kill("m1")
            do {
                try await client.put("/q/no-quorum", Data("3".utf8))
                Issue.record("a write without quorum succeeded")
            } catch let error as CairnError {
                #expect(error.message.contains("quorum"), "\(error.message)")
            }
            // A serializable read answers from the member that is left.
            #expect(try await client.get("/q/before", serializable: true)?.text == "1")

            try etcd.launch("m0")
            try etcd.launch("m1")
            try await etcd.waitForQuorum()
            try await client.put("/q/back", Data("4".utf8))
            #expect(try await client.get("/q/back")?.text == "4")
            // The refused write's outcome was unknown, not "not written": a member that
            // still led when it took the write keeps it in its log, and etcd commits it once
            // the others are back (when the member had stepped down, it is never written).
            let refused = try await client.get("/q/no-quorum")
            #expect(refused == nil || refused?.text == "3")
        }
    }

    @Test("every member unreachable is one sentence that names the endpoints")
    func unreachable() async throws {
        let ports = try FreePorts.take(2)
        let client = try EtcdClient(endpoints: ports.map { "127.0.0.1:\($0)" }, logger: testLogger)
        do {
            _ = try await client.get("/x")
            Issue.record("a read from no etcd succeeded")
        } catch let error as CairnError {
            #expect(error.message.contains("etcd is unreachable at 127.0.0.1:\(ports[0]), 127.0.0.1:\(ports[1])"), "\(error.message)")
        }
        await client.shutdown()
    }

    @Test("--topo parses endpoints and a prefix, and names what is wrong")
    func topology() throws {
        let topo = try EtcdTopology(parsing: "etcd://127.0.0.1:2379,10.0.0.2:2379/cairn/prod")
        #expect(topo.endpoints == ["127.0.0.1:2379", "10.0.0.2:2379"])
        #expect(topo.prefix == "/cairn/prod/")
        #expect(topo.description == "etcd://127.0.0.1:2379,10.0.0.2:2379/cairn/prod")
        for bad in ["http://127.0.0.1:2379/x", "etcd://127.0.0.1/x", "etcd://127.0.0.1:2379", "etcd://127.0.0.1:2379/../x", "etcd:///x"] {
            #expect(throws: CairnError.self, "\(bad)") { try EtcdTopology(parsing: bad) }
        }
    }
}
