import CairnCore
import CairnTestSupport
import Foundation
import GRDB
import Synchronization
import Testing

@testable import CairnCluster

/// ctld's queries against a real SQLite file: each returns exactly the rows
/// the heartbeat, the monitor, the scheduler and the pruner act on.
@Suite("ctld's store")
struct CtldStoreTests {
    let directory: TemporaryDirectory
    let store: CtldStore

    init() throws {
        directory = try TemporaryDirectory(prefix: "cairn-ctld-store")
        store = try CtldStore(path: directory.file("ctld.sqlite"))
    }

    static func shard(_ text: String) throws -> KeyspaceShard { try KeyspaceShard(parsing: text) }

    @discardableResult
    func register(_ alias: String, _ shard: String, healthy: Bool = true, lastHeartbeat: Date? = Date()) async throws -> ClusterAPI.Tablet {
        try await ControlStoreConformanceTests.register(store, alias, shard, healthy: healthy, lastHeartbeat: lastHeartbeat)
    }

    func job(_ shard: String, on tablet: String, scheduled: Bool = true, finished: Bool) async throws -> Int64 {
        let job = try await store.createJob(shard: try Self.shard(shard), tablet: tablet, scheduled: scheduled) { $0.backupType = .auto }
        if finished {
            try await store.updateJob(job.id) { $0.apply(.init(id: job.id, report: .init(phase: .completed, result: .completed))) }
        }
        return job.id
    }

    @Test("tablet changes arriving together are written in groups, each applied once and in order; an unknown tablet is reported")
    func groupedTabletWrites() async throws {
        try await register("zone1-100", "commerce/0")
        let count = 300
        let store = self.store
        try await withThrowingTaskGroup(of: Bool.self) { group in
            for _ in 0..<count {
                group.addTask { try await store.updateTablet("zone1-100") { $0.currentJob = ($0.currentJob ?? 0) + 1 } }
            }
            for try await updated in group { #expect(updated) }
        }
        #expect(try await store.tablet("zone1-100")?.currentJob == Int64(count))
        #expect(try await store.updateTablet("zone1-999") { $0.healthy = false } == false)
    }

    @Test("the write group: one writer at a time, later changes join the next group, and a failed group fails each of its changes")
    func writeGroupProtocol() async throws {
        struct DiskFull: Error {}
        final class GroupSizes: Sendable { let sizes = Mutex<[Int]>([]) }
        let writes = TabletWriteGroup<Bool>()
        let recorded = GroupSizes()
        let count = 200
        try await withThrowingTaskGroup(of: Bool.self) { group in
            for index in 0..<count {
                group.addTask {
                    try await writes.update("t\(index)", { _ in }) { batch in
                        recorded.sizes.withLock { $0.append(batch.count) }
                        // A transaction takes a while: changes arriving meanwhile wait for the next group.
                        try await Task.sleep(for: .milliseconds(5))
                        return batch.map { _ in .success(true) }
                    }
                }
            }
            for try await updated in group { #expect(updated) }
        }
        let sizes = recorded.sizes.withLock { $0 }
        #expect(sizes.reduce(0, +) == count)
        #expect(sizes.count < count)

        await #expect(throws: DiskFull.self) {
            try await writes.update("t0", { _ in }) { _ in throw DiskFull() }
        }
    }

    @Test("the shards with tablets, each once, with whether a job runs on it")
    func knownShards() async throws {
        defer { directory.remove() }
        try await register("zone1-100", "ks/0")
        try await register("zone1-101", "ks/0")
        try await register("zone1-200", "ks/1")
        try await register("zone1-300", "other/0")
        _ = try await job("ks/0", on: "zone1-100", finished: true)
        _ = try await job("ks/0", on: "zone1-101", finished: false)
        _ = try await job("ks/1", on: "zone1-200", finished: true)
        // A shard whose tablets are gone is not known, even with a running job.
        _ = try await job("gone/0", on: "zone1-900", finished: false)

        let known = try await store.knownShards()
        #expect(known == [
            .init(shard: try Self.shard("ks/0"), busy: true),
            .init(shard: try Self.shard("ks/1"), busy: false),
            .init(shard: try Self.shard("other/0"), busy: false),
        ])
        #expect(try await store.isBusy(try Self.shard("ks/0")))
        #expect(try await !store.isBusy(try Self.shard("ks/1")))
        #expect(try await store.tablets(try Self.shard("ks/0")).map(\.alias) == ["zone1-100", "zone1-101"])
    }

    @Test("a tablet's unfinished jobs are its own, not its shard's or finished ones")
    func tabletJobs() async throws {
        defer { directory.remove() }
        try await register("zone1-100", "ks/0")
        try await register("zone1-101", "ks/0")
        _ = try await job("ks/0", on: "zone1-100", finished: true)
        let running = try await job("ks/0", on: "zone1-100", finished: false)
        #expect(try await store.heartbeatTablet("zone1-100") { _ in } == [running])
        #expect(try await store.heartbeatTablet("zone1-101") { _ in } == [])
        // Once it finishes, the tablet has none.
        try await store.updateJob(running) { $0.apply(.init(id: running, report: .init(phase: .failed, result: .failed, error: "x"))) }
        #expect(try await store.heartbeatTablet("zone1-100") { _ in } == [])
    }

    @Test("silent tablets: those past the cutoff still marked healthy or still holding a job, with their jobs")
    func silentTablets() async throws {
        defer { directory.remove() }
        let now = Date()
        let old = now.addingTimeInterval(-60)
        try await register("zone1-100", "ks/0", healthy: true, lastHeartbeat: old)      // silent, still healthy
        try await register("zone1-200", "ks/1", healthy: true, lastHeartbeat: now)      // heartbeating
        try await register("zone1-300", "ks/2", healthy: false, lastHeartbeat: old)     // silent, already handled
        try await register("zone1-400", "ks/3", healthy: false, lastHeartbeat: old)     // silent, a job left
        try await register("zone1-500", "ks/4", healthy: true, lastHeartbeat: nil)      // never heard from
        _ = try await job("ks/1", on: "zone1-200", finished: false)
        _ = try await job("ks/2", on: "zone1-300", finished: true)
        let lost = try await job("ks/3", on: "zone1-400", finished: false)

        let silent = try await store.silentTablets(heartbeatBefore: now.addingTimeInterval(-10))
        #expect(silent.map(\.alias) == ["zone1-500", "zone1-100", "zone1-400"])
        #expect(silent.first { $0.alias == "zone1-400" }?.unfinishedJobs == [.init(id: lost, shard: try Self.shard("ks/3"))])
        #expect(silent.first { $0.alias == "zone1-100" }?.healthy == true)
        #expect(silent.first { $0.alias == "zone1-500" }?.lastHeartbeat == nil)
        let recorded = try #require(silent.first { $0.alias == "zone1-100" }?.lastHeartbeat)
        #expect(abs(recorded.timeIntervalSince(old)) < 0.001)

        // A heartbeat, recorded through updateTablet, takes the tablet off the list.
        #expect(try await store.updateTablet("zone1-100") { $0.lastHeartbeat = now })
        #expect(try await !store.updateTablet("zone1-999") { $0.lastHeartbeat = now })
        #expect(try await store.silentTablets(heartbeatBefore: now.addingTimeInterval(-10)).map(\.alias) == ["zone1-500", "zone1-400"])
    }

    @Test("the last scheduled job of each asked shard, in one query; manual jobs and other shards do not count")
    func lastScheduledJobs() async throws {
        defer { directory.remove() }
        _ = try await job("ks/0", on: "zone1-100", finished: true)
        let newest = try await job("ks/0", on: "zone1-100", finished: true)
        _ = try await job("ks/0", on: "zone1-100", scheduled: false, finished: true)
        _ = try await job("ks/1", on: "zone1-200", scheduled: false, finished: true)
        let other = try await job("ks/2", on: "zone1-300", finished: false)

        let last = try await store.lastScheduledJobs([try Self.shard("ks/0"), try Self.shard("ks/1"), try Self.shard("ks/9")])
        #expect(last.mapValues(\.id) == [try Self.shard("ks/0"): newest])
        #expect(try await store.lastScheduledJobs([try Self.shard("ks/2")]).mapValues(\.id) == [try Self.shard("ks/2"): other])
        #expect(try await store.lastScheduledJobs([]).isEmpty)
    }

    @Test("job retention keeps each shard's newest finished jobs and every young one, and removes the rest")
    func retention() async throws {
        defer { directory.remove() }
        let now = Date()
        // ks/0: 130 finished jobs, the oldest 120 eight days old; then one unfinished, also old.
        var ids: [Int64] = []
        for _ in 0..<130 { ids.append(try await job("ks/0", on: "zone1-100", finished: true)) }
        let running = try await job("ks/0", on: "zone1-100", finished: false)
        // ks/1: 5 finished jobs, all old: fewer than the shard's quota.
        var few: [Int64] = []
        for _ in 0..<5 { few.append(try await job("ks/1", on: "zone1-200", finished: true)) }
        let eightDaysAgo = now.addingTimeInterval(-8 * 86_400).timeIntervalSince1970
        let lastOld = ids[119]
        try await store.database.write { db in
            try db.execute(sql: "UPDATE job SET created_at = ? WHERE id <= ? OR id = ? OR keyspace = 'ks' AND shard = '1'",
                           arguments: [eightDaysAgo, lastOld, running])
        }

        let removed = try await store.pruneJobs(retention: JobRetention(keepPerShard: 100, keepYoungerThan: 7 * 86_400), now: now)
        #expect(removed == 30)
        let kept = try await store.jobs(shard: try Self.shard("ks/0"), limit: 1000).map(\.id)
        #expect(kept == ([running] + ids.suffix(100)).sorted(by: >))
        #expect(try await store.jobs(shard: try Self.shard("ks/1"), limit: 1000).map(\.id) == few.reversed())
        // Running again removes nothing more.
        #expect(try await store.pruneJobs(retention: JobRetention(), now: now) == 0)

        // Keeping none by count leaves the young and the unfinished.
        #expect(try await store.pruneJobs(retention: JobRetention(keepPerShard: 0, keepYoungerThan: 7 * 86_400), now: now) == 95)
        #expect(try await store.jobs(shard: nil, limit: 1000).map(\.id) == ([running] + ids.suffix(10)).sorted(by: >))
    }

    @Test("a database written by the v1 schema migrates with its tablets and jobs, and the new queries see them")
    func migrationFromV1() async throws {
        defer { directory.remove() }
        let path = directory.file("v1.sqlite")
        let heartbeat = Date(timeIntervalSince1970: 1_800_000_000)
        var tablet = ClusterAPI.Tablet(registration: .init(alias: "zone1-100", keyspace: "ks", shard: "0", type: .primary,
                                                           agentURL: "http://127.0.0.1:1", mysqlHost: nil, mysqlPort: nil, hostname: "old"))
        tablet.healthy = true
        tablet.lastHeartbeat = heartbeat
        var scheduledJob = ClusterAPI.Job(id: 1, keyspace: "ks", shard: "0", tablet: "zone1-100", kind: .backup, scheduled: true, createdAt: heartbeat)
        scheduledJob.report.result = .completed
        scheduledJob.report.backupName = "2027-01-15.080000.zone1-100"
        let scheduled = scheduledJob
        let tabletBody = try CtldStore.encode(tablet)
        let running = ClusterAPI.Job(id: 2, keyspace: "ks", shard: "0", tablet: "zone1-100", kind: .backup, scheduled: false, createdAt: heartbeat)
        do {
            // Exactly what a ctld of schema v1 left on disk.
            let v1 = try DatabaseQueue(path: path)
            try await v1.write { db in
                try db.execute(sql: """
                    CREATE TABLE grdb_migrations (identifier TEXT NOT NULL PRIMARY KEY);
                    INSERT INTO grdb_migrations VALUES ('v1');
                    CREATE TABLE tablet (alias TEXT PRIMARY KEY, keyspace TEXT NOT NULL, shard TEXT NOT NULL, body TEXT NOT NULL);
                    CREATE TABLE job (
                        id INTEGER PRIMARY KEY AUTOINCREMENT, keyspace TEXT NOT NULL, shard TEXT NOT NULL, tablet TEXT NOT NULL,
                        scheduled INTEGER NOT NULL, finished INTEGER NOT NULL, created_at REAL NOT NULL, body TEXT NOT NULL);
                    CREATE INDEX job_shard ON job (keyspace, shard, id);
                    """)
                try db.execute(sql: "INSERT INTO tablet VALUES (?, ?, ?, ?)", arguments: ["zone1-100", "ks", "0", tabletBody])
                for (job, finished) in [(scheduled, true), (running, false)] {
                    try db.execute(sql: "INSERT INTO job VALUES (?, 'ks', '0', 'zone1-100', ?, ?, ?, ?)",
                                   arguments: [job.id, job.scheduled, finished, heartbeat.timeIntervalSince1970, try CtldStore.encode(job)])
                }
            }
            try v1.close()
        }

        let migrated = try CtldStore(path: path)
        #expect(try await migrated.tablets().map(\.alias) == ["zone1-100"])
        #expect(try await migrated.jobs(shard: nil, limit: 10).map(\.id) == [2, 1])
        #expect(try await migrated.knownShards() == [.init(shard: try Self.shard("ks/0"), busy: true)])
        #expect(try await migrated.heartbeatTablet("zone1-100") { _ in } == [2])
        #expect(try await migrated.lastScheduledJobs([try Self.shard("ks/0")])[try Self.shard("ks/0")]?.backupName == scheduled.backupName)
        // The heartbeat column was filled from the stored tablet: silent after its last heartbeat, not before.
        #expect(try await migrated.silentTablets(heartbeatBefore: heartbeat.addingTimeInterval(1)).map(\.alias) == ["zone1-100"])
        #expect(try await migrated.silentTablets(heartbeatBefore: heartbeat.addingTimeInterval(-1)).isEmpty)
        // New jobs continue the old ids.
        let next = try await migrated.createJob(shard: try Self.shard("ks/1"), tablet: "zone1-200", scheduled: false) { _ in }
        #expect(next.id == 3)
    }
}
