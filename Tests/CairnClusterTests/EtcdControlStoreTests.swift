import CairnCore
import CairnEtcd
import CairnTestSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

@testable import CairnCluster

/// What only the etcd store does: claiming a prefix, refusing one that is
/// not its own, refusing to start without etcd, migrating a SQLite store,
/// and staying readable (but refusing writes) without quorum.
@Suite("ctld's store on etcd: prefixes, migration, lost quorum", .serialized)
struct EtcdControlStoreTests {
    static func topology(_ etcd: EtcdCluster, _ prefix: String) throws -> EtcdTopology {
        try EtcdTopology(parsing: etcd.topo(prefix: prefix))
    }

    /// A real etcd cluster of `members` for `body`, removed afterwards.
    func withEtcd(members: Int = 1, _ body: (EtcdCluster) async throws -> Void) async throws {
        let etcd = try await EtcdCluster.start(members: members)
        do {
            try await body(etcd)
        } catch {
            await etcd.remove()
            throw error
        }
        await etcd.remove()
    }

    @Test("a prefix with another program's keys, or another Cairn cluster's, is refused; this cluster's is opened again with its data")
    func prefixes() async throws {
        try await withEtcd { etcd in
            let raw = try EtcdClient(endpoints: etcd.endpoints, logger: testLogger)
            try await raw.put("/vitess/global/keyspaces/commerce", Data("x".utf8))
            await raw.shutdown()
            do {
                _ = try await EtcdControlStore.open(try Self.topology(etcd, "vitess"), storage: "s3://backups", logger: testLogger)
                Issue.record("a prefix with foreign keys was accepted")
            } catch let error as CairnError {
                #expect(error.message.contains("already holds keys that are not a Cairn cluster's"), "\(error.message)")
            }

            let first = try await EtcdControlStore.open(try Self.topology(etcd, "cairn/prod"), storage: "s3://backups", logger: testLogger)
            try await ControlStoreConformanceTests.register(first, "zone1-100", "ks/0")
            await first.close()
            do {
                _ = try await EtcdControlStore.open(try Self.topology(etcd, "cairn/prod"), storage: "s3://other-backups", logger: testLogger)
                Issue.record("a prefix of a cluster with other storage was accepted")
            } catch let error as CairnError {
                #expect(error.message.contains("holds the Cairn cluster whose backups are in s3://backups, not s3://other-backups"), "\(error.message)")
            }
            // The same cluster (a restarted or second ctld) sees its data; a trailing slash is the same storage.
            let again = try await EtcdControlStore.open(try Self.topology(etcd, "cairn/prod"), storage: "s3://backups/", logger: testLogger)
            #expect(try await again.tablets().map(\.alias) == ["zone1-100"])
            await again.close()
            // A prefix that only starts like another one is its own.
            let sibling = try await EtcdControlStore.open(try Self.topology(etcd, "cairn/prod2"), storage: "s3://other-backups", logger: testLogger)
            #expect(try await sibling.tablets().isEmpty)
            await sibling.close()
        }
    }

    @Test("two ctlds on one prefix grant one archive lease per shard: the holder renews through either, another primary is refused by both")
    func archiveLeaseAcrossCtlds() async throws {
        try await withEtcd { etcd in
            let first = try await EtcdControlStore.open(try Self.topology(etcd, "cairn/leases"), storage: "s3://backups", logger: testLogger)
            let second = try await EtcdControlStore.open(try Self.topology(etcd, "cairn/leases"), storage: "s3://backups", logger: testLogger)
            #expect(first.keepsArchiveLeases && second.keepsArchiveLeases)
            let shard = try KeyspaceShard(parsing: "commerce/0")
            let rule = ArchiveLeaseRule(duration: 10, graceUntil: nil)
            @Sendable func beat(_ store: EtcdControlStore, _ tablet: String, at now: Date) async throws -> Bool {
                try await store.updateArchiveLease(shard) { lease in
                    let outcome = rule.heartbeat(lease, tablet: tablet, primary: true, healthy: true, archiving: true, now: now)
                    lease = outcome.lease
                    return outcome.heldUntil != nil
                }
            }
            let t0 = Date()
            #expect(try await beat(first, "zone1-100", at: t0))
            #expect(!(try await beat(second, "zone1-200", at: t0.addingTimeInterval(1))))
            #expect(try await beat(second, "zone1-100", at: t0.addingTimeInterval(2)))
            #expect(!(try await beat(first, "zone1-200", at: t0.addingTimeInterval(9))))
            #expect(try await second.archiveLease(shard)?.holder == "zone1-100")
            // The holder went silent: once its lease expires, either ctld grants it to the other primary.
            #expect(try await beat(first, "zone1-200", at: t0.addingTimeInterval(13)))
            #expect(try await second.archiveLease(shard)?.holder == "zone1-200")
            await first.close()
            await second.close()
        }
    }

    @Test("two ctlds creating jobs at once on one prefix never give one id twice; each takes its ids in blocks from the counter")
    func jobIDsAcrossCtlds() async throws {
        try await withEtcd { etcd in
            let first = try await EtcdControlStore.open(try Self.topology(etcd, "cairn/ids"), storage: "s3://backups", logger: testLogger)
            let second = try await EtcdControlStore.open(try Self.topology(etcd, "cairn/ids"), storage: "s3://backups", logger: testLogger)
            let ids = try await withThrowingTaskGroup(of: Int64.self, returning: [Int64].self) { group in
                for i in 0..<120 {
                    let store = i.isMultiple(of: 2) ? first : second
                    group.addTask {
                        try await store.createJob(shard: try KeyspaceShard(parsing: "ks/\(i)"), tablet: "zone1-\(100 + i)", scheduled: true) { _ in }.id
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(Set(ids).count == 120)
            #expect(try await first.jobs(shard: nil, limit: 1000).count == 120)
            // 120 jobs took far fewer than 120 changes of the counter: blocks of ids, one compare-and-swap each.
            let counter = try #require(try await first.client.get(first.nextJobIDKey))
            #expect(counter.version < 30, "the counter changed \(counter.version) times for 120 jobs")
            await first.close()
            await second.close()
        }
    }

    @Test("reserved job ids are given out smallest first, each once, and not after the block's lifetime")
    func jobIDReservations() {
        var reservations = JobIDReservations()
        let t0 = ContinuousClock.now
        #expect(reservations.take(now: t0) == nil)
        reservations.add(40..<43, now: t0)
        reservations.add(10..<12, now: t0)
        #expect([reservations.take(now: t0), reservations.take(now: t0), reservations.take(now: t0)] == [10, 11, 40])
        // Past the lifetime the rest of a block is dropped, so ids stay in order of creation across ctlds.
        #expect(reservations.take(now: t0 + JobIDReservations.lifetime + .milliseconds(1)) == nil)
        reservations.add(50..<51, now: t0)
        #expect(reservations.take(now: t0) == 50)
        #expect(reservations.take(now: t0) == nil)
    }

    static func shownSchedule(_ client: any TestClientProtocol, _ query: String = "") async throws -> [ClusterAPI.ShardSchedule] {
        let response = try await client.call(.get, "/jobs" + query)
        #expect(response.status == .ok)
        return try response.decode(ClusterAPI.JobsResponse.self).schedule
    }

    @Test("a ctld that does not lead shows the plans the leader published: new, changed and removed ones; the leader shows its own")
    func scheduleThroughFollower() async throws {
        try await withEtcd { etcd in
            let directory = try TemporaryDirectory(prefix: "cairn-etcd-schedule")
            defer { directory.remove() }
            let leaderStore = try await EtcdControlStore.open(try Self.topology(etcd, "cairn/plans"), storage: nil, logger: testLogger)
            let followerStore = try await EtcdControlStore.open(try Self.topology(etcd, "cairn/plans"), storage: nil, logger: testLogger)
            var options = ControlServerOptions(dataDirectory: directory.file("ctld"), configuration: CairnConfiguration(),
                                               authToken: ControlServerHarness.token, schedulerEnabled: false)
            options.tabletToken = ControlServerHarness.tabletToken
            // Never campaigns, so it does not lead.
            let notLeading = EtcdLeadership(client: followerStore.client, key: followerStore.leaderKey, identity: "follower", logger: testLogger)
            let follower = try ControlServer(options: options, logger: testLogger, leadership: notLeading) { _ in followerStore }

            let plans = SchedulerState()
            let publisher = SchedulePublisher(state: plans, store: leaderStore, logger: testLogger)
            let at = Date(timeIntervalSince1970: 1_800_000_000)
            plans.set("commerce/0", .init(run: .init(at: at, kind: "full", reason: "no backup yet"), computedAt: at))
            plans.set("commerce/1", .init(run: .init(at: at.addingTimeInterval(60), kind: "incremental", reason: "interval"), computedAt: at))
            let first = try await publisher.publish(over: [:])
            try await Application(router: follower.buildRouter()).test(.router) { client in
                let all = try await Self.shownSchedule(client)
                #expect(all == plans.summary(nil))
                let one = try await Self.shownSchedule(client, "?keyspace=commerce&shard=1")
                #expect(one.map(\.nextKind) == ["incremental"])
            }

            // A plan changes, one goes, one comes: the next round writes just that.
            plans.set("commerce/0", .init(run: nil, computedAt: at, note: "a job is running"))
            plans.invalidate("commerce/1")
            plans.set("customer/0", .init(run: .init(at: at, kind: "full", reason: "no backup yet"), computedAt: at))
            let stored = try await publisher.publish(over: first)
            try await Application(router: follower.buildRouter()).test(.router) { client in
                let all = try await Self.shownSchedule(client)
                #expect(all == plans.summary(nil))
                #expect(all.map(\.shard) == ["commerce/0", "customer/0"])
            }
            // A publisher of a new term reads what is stored and rewrites nothing that did not change.
            #expect(stored == SchedulePublisher.byShard(try await followerStore.publishedSchedule()))
            await leaderStore.close()
            await followerStore.close()
        }
    }

    @Test("the leader's compactor forgets etcd's history older than one interval, and stops when cancelled")
    func compactor() async throws {
        try await withEtcd { etcd in
            let client = try EtcdClient(endpoints: etcd.endpoints, logger: testLogger)
            do {
                try await client.put("/compact/k", Data("first".utf8))
                let first = try await client.currentRevision()
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await EtcdCompactor(client: client, logger: testLogger, interval: .milliseconds(200)).run() }
                    // Writes go on meanwhile, as heartbeats do.
                    var compacted = false
                    for round in 0..<100 where !compacted {
                        try await client.put("/compact/k", Data("\(round)".utf8))
                        try await Task.sleep(for: .milliseconds(100))
                        do { _ = try await client.get("/compact/k", revision: first) } catch { compacted = true }
                    }
                    #expect(compacted, "revision \(first) is still readable after 10 s")
                    // One interval of history stays: the revision just written is readable at once.
                    let recent = try await client.currentRevision()
                    #expect(try await client.get("/compact/k", revision: recent) != nil)
                    group.cancelAll()
                    try await group.waitForAll()
                }
            } catch {
                await client.shutdown()
                throw error
            }
            await client.shutdown()
        }
    }

    @Test("the marker's storage: spellings of one place are one cluster, other places are not")
    func storageIdentity() {
        let id = EtcdControlStore.storageIdentity
        #expect(id("file:///var/backups/") == id("file:///var/backups"))
        #expect(id("file:///var/./backups") == id("file:///var/backups"))
        #expect(id("s3://backups/prod/") == id("s3://backups/prod"))
        #expect(id("s3://backups/prod") != id("s3://backups/test"))
        #expect(id("s3://backups") != id("gs://backups"))
        #expect(id(nil) == "none")
    }

    @Test("etcd unreachable at start is one sentence naming the endpoints")
    func unreachable() async throws {
        let ports = try FreePorts.take(2)
        let topology = try EtcdTopology(parsing: "etcd://127.0.0.1:\(ports[0]),127.0.0.1:\(ports[1])/cairn")
        do {
            _ = try await EtcdControlStore.open(topology, storage: nil, logger: testLogger)
            Issue.record("a store without etcd opened")
        } catch let error as CairnError {
            #expect(error.code == .unavailable)
            #expect(error.message.contains("etcd is unreachable at 127.0.0.1:\(ports[0]), 127.0.0.1:\(ports[1])"), "\(error.message)")
        }
    }

    @Test("--migrate-from-sqlite copies tablets, jobs, the running job's claim, the scheduler's history and the id counter; a non-empty prefix is refused")
    func migration() async throws {
        let directory = try TemporaryDirectory(prefix: "cairn-migrate")
        defer { directory.remove() }
        let path = directory.file("ctld.sqlite")
        let sqlite = try CtldStore(path: path)
        try await ControlStoreConformanceTests.register(sqlite, "zone1-100", "ks/0")
        try await ControlStoreConformanceTests.register(sqlite, "zone1-200", "ks/1", healthy: false)
        let scheduled = try await ControlStoreConformanceTests.job(sqlite, "ks/0", on: "zone1-100", scheduled: true, finished: true)
        let pruned = try await ControlStoreConformanceTests.job(sqlite, "ks/1", on: "zone1-200", scheduled: false, finished: true)
        let running = try await ControlStoreConformanceTests.job(sqlite, "ks/0", on: "zone1-100", scheduled: false, finished: false)
        // The newest job removed: its id is never given again.
        let removed = try await ControlStoreConformanceTests.job(sqlite, "ks/1", on: "zone1-200", scheduled: false, finished: true)
        #expect(try await sqlite.pruneJobs(try KeyspaceShard(parsing: "ks/1"), retention: JobRetention(keepPerShard: 0, keepYoungerThan: 0),
                                           now: Date().addingTimeInterval(1)) == 2)
        _ = pruned

        try await withEtcd { etcd in
            let topology = try Self.topology(etcd, "cairn")
            let store = try await EtcdControlStore.open(topology, storage: "file:///b", migratingFrom: path, logger: testLogger)
            #expect(try await store.tablets().map(\.alias) == ["zone1-100", "zone1-200"])
            #expect(try await store.tablet("zone1-200")?.healthy == false)
            #expect(try await store.jobs(shard: nil, limit: 10).map(\.id) == [running, scheduled])
            #expect(try await store.knownShards() == [.init(shard: try KeyspaceShard(parsing: "ks/0"), busy: true),
                                                      .init(shard: try KeyspaceShard(parsing: "ks/1"), busy: false)])
            #expect(try await store.heartbeatTablet("zone1-100") { _ in } == [running])
            #expect(try await store.lastScheduledJobs([try KeyspaceShard(parsing: "ks/0")]).mapValues(\.id)
                    == [try KeyspaceShard(parsing: "ks/0"): scheduled])
            // The rule holds for the migrated job, and new ids continue after every old one.
            await #expect(throws: CairnError.self) {
                _ = try await store.createJob(shard: try KeyspaceShard(parsing: "ks/0"), tablet: "zone1-100", scheduled: false) { _ in }
            }
            let next = try await store.createJob(shard: try KeyspaceShard(parsing: "ks/1"), tablet: "zone1-200", scheduled: false) { _ in }
            #expect(next.id > removed)
            await store.close()

            // Again into the same (now non-empty) prefix: refused, nothing changed.
            do {
                _ = try await EtcdControlStore.open(topology, storage: "file:///b", migratingFrom: path, logger: testLogger)
                Issue.record("a migration into a non-empty prefix was accepted")
            } catch let error as CairnError {
                #expect(error.message.contains("is not empty"), "\(error.message)")
            }
        }
    }

    @Test("without quorum, writes are refused with a sentence about quorum (HTTP 503) and reads still answer; with it back, writes work")
    func lostQuorum() async throws {
        try await withEtcd(members: 3) { etcd in
            let directory = try TemporaryDirectory(prefix: "cairn-etcd-ctld")
            defer { directory.remove() }
            let store = try await EtcdControlStore.open(try Self.topology(etcd, "cairn"), storage: nil, logger: testLogger)
            var options = ControlServerOptions(dataDirectory: directory.file("ctld"), configuration: CairnConfiguration(),
                                               authToken: ControlServerHarness.token, schedulerEnabled: false)
            options.tabletToken = ControlServerHarness.tabletToken
            options.heartbeatTimeout = 3600
            let server = try ControlServer(options: options, logger: testLogger) { _ in store }
            let registration = ControlServerHarness.registration()
            let heartbeat = ClusterAPI.Heartbeat(alias: registration.alias, type: .primary, healthy: true, serving: true, replication: nil,
                                                 position: nil, currentJob: nil, finishedJobs: [])
            try await Application(router: server.buildRouter()).test(.router) { client in
                #expect(try await client.call(.post, "/tablets", json: registration).status == .ok)
                // One member lost: everything works.
                await etcd.kill("m0")
                #expect(try await client.call(.post, "/tablets/zone1-100/heartbeat", json: heartbeat).status == .ok)

                // Two lost: a write is refused clearly, a read still answers.
                await etcd.kill("m1")
                let refused = try await client.call(.post, "/tablets/zone1-100/heartbeat", json: heartbeat)
                #expect(refused.status == .serviceUnavailable)
                #expect(refused.errorMessage?.contains("etcd has no quorum") == true, "\(refused.errorMessage ?? "")")
                let read = try await client.call(.get, "/tablets")
                #expect(read.status == .ok)
                #expect(try read.decode([ClusterAPI.Tablet].self).map(\.alias) == ["zone1-100"])

                try etcd.launch("m0")
                try etcd.launch("m1")
                try await etcd.waitForQuorum()
                #expect(try await client.call(.post, "/tablets/zone1-100/heartbeat", json: heartbeat).status == .ok)
            }
            await store.close()
        }
    }
}
