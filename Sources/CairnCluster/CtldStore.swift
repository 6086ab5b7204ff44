import CairnCore
import CairnSystem
import Foundation
import GRDB
import Synchronization

/// ctld's state on disk: the topology and the job history, in SQLite under
/// `--data-dir`, so a restart loses nothing. Backups themselves are never
/// recorded here; storage stays their source of truth.
final class CtldStore: ControlStore {
    /// WAL mode: the scheduler's and monitor's reads do not wait for
    /// heartbeats' writes, and a commit does not sync the disk (a crash of
    /// ctld loses nothing; a crash of the machine at most the last commits).
    let database: DatabasePool
    let tabletWrites = TabletWriteGroup<[Int64]?>()
    /// Archive leases, by shard: in memory, as one ctld serves this store
    /// (a restarted ctld waits out a grace period, see ``ArchiveLeaseRule``).
    let leases = Mutex<[KeyspaceShard: ArchiveLeaseRule.Lease]>([:])

    init(path: String) throws {
        // Created 0600 before SQLite opens it (SQLite would make it 0644); its journals copy that mode.
        try FileSystem.ensurePrivateFile(path)
        var configuration = Configuration()
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = NORMAL")
        }
        do {
            database = try DatabasePool(path: path, configuration: configuration)
        } catch {
            throw CairnError(.fileSystem, "cannot open ctld's database \(path): \(error); check --data-dir")
        }
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(sql: """
                CREATE TABLE tablet (
                    alias TEXT PRIMARY KEY,
                    keyspace TEXT NOT NULL,
                    shard TEXT NOT NULL,
                    body TEXT NOT NULL
                );
                CREATE TABLE job (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    keyspace TEXT NOT NULL,
                    shard TEXT NOT NULL,
                    tablet TEXT NOT NULL,
                    scheduled INTEGER NOT NULL,
                    finished INTEGER NOT NULL,
                    created_at REAL NOT NULL,
                    body TEXT NOT NULL
                );
                CREATE INDEX job_shard ON job (keyspace, shard, id);
                """)
        }
        // What the queries that run on every heartbeat and every scheduler
        // tick need, so that their cost follows the rows they return, not the
        // fleet or the job history.
        migrator.registerMigration("v2") { db in
            try db.execute(sql: """
                ALTER TABLE tablet ADD COLUMN healthy INTEGER NOT NULL DEFAULT 0;
                ALTER TABLE tablet ADD COLUMN last_heartbeat REAL NOT NULL DEFAULT 0;
                CREATE INDEX tablet_shard ON tablet (keyspace, shard);
                CREATE INDEX tablet_last_heartbeat ON tablet (last_heartbeat);
                CREATE INDEX job_unfinished_tablet ON job (tablet) WHERE finished = 0;
                CREATE INDEX job_unfinished_shard ON job (keyspace, shard) WHERE finished = 0;
                CREATE INDEX job_scheduled ON job (keyspace, shard, id) WHERE scheduled = 1;
                """)
            for row in try Row.fetchAll(db, sql: "SELECT alias, body FROM tablet") {
                let alias: String = row["alias"]
                let tablet = try Self.decode(ClusterAPI.Tablet.self, row["body"])
                try db.execute(sql: "UPDATE tablet SET healthy = ?, last_heartbeat = ? WHERE alias = ?",
                               arguments: [tablet.healthy, Self.heartbeatColumn(tablet), alias])
            }
        }
        try migrator.migrate(database)
    }

    /// `tablet.last_heartbeat`: seconds since 1970, 0 for never.
    static func heartbeatColumn(_ tablet: ClusterAPI.Tablet) -> Double {
        tablet.lastHeartbeat?.timeIntervalSince1970 ?? 0
    }

    static func encode<T: Encodable>(_ value: T) throws -> String {
        String(decoding: try CairnJSON.encoder().encode(value), as: UTF8.self)
    }

    static func decode<T: Decodable>(_ type: T.Type, _ text: String) throws -> T {
        try CairnJSON.decoder().decode(type, from: Data(text.utf8))
    }

    // MARK: Tablets

    func saveTablet(_ tablet: ClusterAPI.Tablet) async throws {
        let body = try Self.encode(tablet)
        try await database.write { db in
            try db.execute(sql: """
                INSERT OR REPLACE INTO tablet (alias, keyspace, shard, body, healthy, last_heartbeat) VALUES (?, ?, ?, ?, ?, ?)
                """, arguments: [tablet.alias, tablet.keyspace, tablet.shard, body, tablet.healthy, Self.heartbeatColumn(tablet)])
        }
    }

    func tablet(_ alias: String) async throws -> ClusterAPI.Tablet? {
        let body = try await database.read { db in
            try String.fetchOne(db, sql: "SELECT body FROM tablet WHERE alias = ?", arguments: [alias])
        }
        return try body.map { try Self.decode(ClusterAPI.Tablet.self, $0) }
    }

    func tablets() async throws -> [ClusterAPI.Tablet] {
        let bodies = try await database.read { db in
            try String.fetchAll(db, sql: "SELECT body FROM tablet ORDER BY keyspace, shard, alias")
        }
        return try bodies.map { try Self.decode(ClusterAPI.Tablet.self, $0) }
    }

    /// One shard's tablets.
    func tablets(_ shard: KeyspaceShard) async throws -> [ClusterAPI.Tablet] {
        let bodies = try await database.read { db in
            try String.fetchAll(db, sql: "SELECT body FROM tablet WHERE keyspace = ? AND shard = ? ORDER BY alias",
                                arguments: [shard.keyspace, shard.shard])
        }
        return try bodies.map { try Self.decode(ClusterAPI.Tablet.self, $0) }
    }

    /// Changes one tablet under the database's lock; false when it is not registered.
    @discardableResult
    func updateTablet(_ alias: String, _ change: @escaping @Sendable (inout ClusterAPI.Tablet) -> Void) async throws -> Bool {
        try await heartbeatTablet(alias, change) != nil
    }

    /// Changes one tablet and reads the ids of its unfinished jobs, in the
    /// same transaction; nil when it is not registered.
    ///
    /// Heartbeats arrive hundreds a second in a large fleet, and each was a
    /// write transaction of its own. Changes are now written in groups
    /// (``TabletWriteGroup``): those that arrive while one transaction is
    /// being written go together into the next, in the order they came, so
    /// the cost per heartbeat falls as the rate rises and none waits for more
    /// than the transaction ahead of its own. The tablet's running jobs are
    /// read inside that transaction (an indexed lookup), not in a read of
    /// their own: each such read was one more hop to a reader connection's
    /// thread per heartbeat. The three statements are prepared once per
    /// connection (GRDB's statement cache), not parsed and authorized again
    /// for every tablet.
    func heartbeatTablet(_ alias: String, _ change: @escaping @Sendable (inout ClusterAPI.Tablet) -> Void) async throws -> [Int64]? {
        try await tabletWrites.update(alias, change) { batch in
            try await self.database.write { db in
                batch.map { item in
                    Result {
                        let read = try db.cachedStatement(sql: "SELECT body FROM tablet WHERE alias = ?")
                        guard let body = try String.fetchOne(read, arguments: [item.alias]) else { return nil }
                        var tablet = try Self.decode(ClusterAPI.Tablet.self, body)
                        item.change(&tablet)
                        let update = try db.cachedStatement(sql: "UPDATE tablet SET body = ?, healthy = ?, last_heartbeat = ? WHERE alias = ?")
                        try update.execute(arguments: [try Self.encode(tablet), tablet.healthy, Self.heartbeatColumn(tablet), item.alias])
                        let running = try db.cachedStatement(sql: "SELECT id FROM job WHERE tablet = ? AND finished = 0 ORDER BY id")
                        return try Int64.fetchAll(running, arguments: [item.alias])
                    }
                }
            }
        }
    }

    /// The shards that have tablets, in order, each with whether a job runs on it: one query.
    func knownShards() async throws -> [KnownShard] {
        try await database.read { db in
            try Row.fetchAll(db, sql: """
                SELECT t.keyspace, t.shard,
                       EXISTS (SELECT 1 FROM job WHERE job.keyspace = t.keyspace AND job.shard = t.shard AND job.finished = 0) AS busy
                FROM (SELECT DISTINCT keyspace, shard FROM tablet) AS t
                ORDER BY t.keyspace, t.shard
                """).map { row in
                KnownShard(shard: try KeyspaceShard(keyspace: row["keyspace"], shard: row["shard"]), busy: row["busy"])
            }
        }
    }

    /// Tablets with no heartbeat since `cutoff` that are still marked healthy
    /// or still have unfinished jobs, the longest silent first: one query,
    /// over silent tablets only.
    func silentTablets(heartbeatBefore cutoff: Date) async throws -> [SilentTablet] {
        try await database.read { db in
            let rows = try Row.fetchCursor(db, sql: """
                SELECT t.alias, t.healthy, t.last_heartbeat, j.id, j.keyspace, j.shard
                FROM tablet AS t LEFT JOIN job AS j ON j.tablet = t.alias AND j.finished = 0
                WHERE t.last_heartbeat < ? AND (t.healthy = 1 OR j.id IS NOT NULL)
                ORDER BY t.last_heartbeat, t.alias, j.id
                """, arguments: [cutoff.timeIntervalSince1970])
            var silent: [SilentTablet] = []
            while let row = try rows.next() {
                let alias: String = row["alias"]
                if silent.last?.alias != alias {
                    let seconds: Double = row["last_heartbeat"]
                    silent.append(SilentTablet(alias: alias, healthy: row["healthy"],
                                               lastHeartbeat: seconds > 0 ? Date(timeIntervalSince1970: seconds) : nil, unfinishedJobs: []))
                }
                if let id: Int64 = row["id"] {
                    silent[silent.count - 1].unfinishedJobs.append(
                        JobReference(id: id, shard: try KeyspaceShard(keyspace: row["keyspace"], shard: row["shard"])))
                }
            }
            return silent
        }
    }

    // MARK: Jobs

    /// Creates a job unless one is already running on the shard, which is an error.
    func createJob(shard: KeyspaceShard, tablet: String, scheduled: Bool,
                   _ fill: @escaping @Sendable (inout ClusterAPI.Job) -> Void) async throws -> ClusterAPI.Job {
        try await database.write { db in
            let running = try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM job WHERE keyspace = ? AND shard = ? AND finished = 0)",
                                            arguments: [shard.keyspace, shard.shard]) ?? false
            guard !running else { throw Self.shardBusyError(shard) }
            let now = Date()
            try db.execute(sql: "INSERT INTO job (keyspace, shard, tablet, scheduled, finished, created_at, body) VALUES (?, ?, ?, ?, 0, ?, '{}')",
                           arguments: [shard.keyspace, shard.shard, tablet, scheduled, now.timeIntervalSince1970])
            let id = db.lastInsertedRowID
            var job = ClusterAPI.Job(id: id, keyspace: shard.keyspace, shard: shard.shard, tablet: tablet,
                                     kind: .backup, scheduled: scheduled, createdAt: now)
            fill(&job)
            try db.execute(sql: "UPDATE job SET body = ? WHERE id = ?", arguments: [try Self.encode(job), id])
            return job
        }
    }

    /// Changes one job under the database's lock and returns it.
    @discardableResult
    func updateJob(_ id: Int64, _ change: @escaping @Sendable (inout ClusterAPI.Job) -> Void) async throws -> ClusterAPI.Job? {
        try await database.write { db in
            guard let body = try String.fetchOne(db, sql: "SELECT body FROM job WHERE id = ?", arguments: [id]) else { return nil }
            var job = try Self.decode(ClusterAPI.Job.self, body)
            guard !job.isFinished else { return job }
            change(&job)
            try db.execute(sql: "UPDATE job SET body = ?, finished = ? WHERE id = ?",
                           arguments: [try Self.encode(job), job.isFinished, id])
            return job
        }
    }

    func job(_ id: Int64) async throws -> ClusterAPI.Job? {
        let body = try await database.read { db in
            try String.fetchOne(db, sql: "SELECT body FROM job WHERE id = ?", arguments: [id])
        }
        return try body.map { try Self.decode(ClusterAPI.Job.self, $0) }
    }

    /// Newest first.
    func jobs(shard: KeyspaceShard?, limit: Int) async throws -> [ClusterAPI.Job] {
        let bodies = try await database.read { db -> [String] in
            if let shard {
                return try String.fetchAll(db, sql: "SELECT body FROM job WHERE keyspace = ? AND shard = ? ORDER BY id DESC LIMIT ?",
                                           arguments: [shard.keyspace, shard.shard, limit])
            }
            return try String.fetchAll(db, sql: "SELECT body FROM job ORDER BY id DESC LIMIT ?", arguments: [limit])
        }
        return try bodies.map { try Self.decode(ClusterAPI.Job.self, $0) }
    }

    /// Whether a job runs on the shard.
    func isBusy(_ shard: KeyspaceShard) async throws -> Bool {
        try await database.read { db in
            try Bool.fetchOne(db, sql: "SELECT EXISTS (SELECT 1 FROM job WHERE keyspace = ? AND shard = ? AND finished = 0)",
                              arguments: [shard.keyspace, shard.shard]) ?? false
        }
    }

    /// The newest job the scheduler started on each of the shards (that has one), by shard: one query.
    func lastScheduledJobs(_ shards: [KeyspaceShard]) async throws -> [KeyspaceShard: ClusterAPI.Job] {
        guard !shards.isEmpty else { return [:] }
        let list = String(decoding: try JSONEncoder().encode(shards.map { [$0.keyspace, $0.shard] }), as: UTF8.self)
        let bodies = try await database.read { db in
            try String.fetchAll(db, sql: """
                SELECT j.body FROM json_each(?) AS s
                JOIN job AS j ON j.id = (SELECT MAX(id) FROM job
                                         WHERE keyspace = s.value ->> 0 AND shard = s.value ->> 1 AND scheduled = 1)
                """, arguments: [list])
        }
        var jobs: [KeyspaceShard: ClusterAPI.Job] = [:]
        for body in bodies {
            let job = try Self.decode(ClusterAPI.Job.self, body)
            jobs[try KeyspaceShard(keyspace: job.keyspace, shard: job.shard)] = job
        }
        return jobs
    }

    // MARK: Job history

    /// Removes the shard's finished jobs that ``JobRetention`` does not keep,
    /// in small transactions; returns how many.
    func pruneJobs(_ shard: KeyspaceShard, retention: JobRetention, now: Date) async throws -> Int {
        let cutoff = now.addingTimeInterval(-retention.keepYoungerThan).timeIntervalSince1970
        var removed = 0
        while true {
            let batch = try await database.write { db -> Int in
                // The oldest of the newest `keepPerShard` finished jobs; none when the shard has fewer.
                guard let oldestKept = try Int64.fetchOne(db, sql: """
                    SELECT id FROM job WHERE keyspace = ? AND shard = ? AND finished = 1 ORDER BY id DESC LIMIT 1 OFFSET ?
                    """, arguments: [shard.keyspace, shard.shard, max(retention.keepPerShard - 1, 0)]) else { return 0 }
                try db.execute(sql: """
                    DELETE FROM job WHERE id IN (
                        SELECT id FROM job WHERE keyspace = ? AND shard = ? AND id < ? AND finished = 1 AND created_at < ? LIMIT 500)
                    """, arguments: [shard.keyspace, shard.shard, retention.keepPerShard > 0 ? oldestKept : oldestKept + 1, cutoff])
                return db.changesCount
            }
            removed += batch
            if batch < 500 || Task.isCancelled { return removed }
        }
    }

    /// Every shard with jobs, one at a time: the next one after `shard` in order.
    func shardWithJobs(after shard: KeyspaceShard?) async throws -> KeyspaceShard? {
        try await database.read { db -> KeyspaceShard? in
            let row = if let shard {
                try Row.fetchOne(db, sql: "SELECT keyspace, shard FROM job WHERE (keyspace, shard) > (?, ?) ORDER BY keyspace, shard LIMIT 1",
                                 arguments: [shard.keyspace, shard.shard])
            } else {
                try Row.fetchOne(db, sql: "SELECT keyspace, shard FROM job ORDER BY keyspace, shard LIMIT 1")
            }
            return try row.map { try KeyspaceShard(keyspace: $0["keyspace"], shard: $0["shard"]) }
        }
    }

    /// Prunes every shard's job history, shard by shard; stops between shards when the task is cancelled.
    func pruneJobs(retention: JobRetention, now: Date) async throws -> Int {
        var removed = 0
        var shard: KeyspaceShard? = nil
        while !Task.isCancelled, let next = try await shardWithJobs(after: shard) {
            removed += try await pruneJobs(next, retention: retention, now: now)
            shard = next
        }
        return removed
    }

    /// The pool closes when the store is released.
    // MARK: Archive leases

    var keepsArchiveLeases: Bool { false }

    func archiveLease(_ shard: KeyspaceShard) async throws -> ArchiveLeaseRule.Lease? {
        leases.withLock { $0[shard] }
    }

    func updateArchiveLease<T: Sendable>(_ shard: KeyspaceShard,
                                         _ change: @escaping @Sendable (inout ArchiveLeaseRule.Lease?) -> T) async throws -> T {
        leases.withLock { change(&$0[shard]) }
    }

    // MARK: The scheduler's plans

    /// One ctld serves SQLite, so its plans need only its memory.
    let schedule = Mutex<[String: ClusterAPI.ShardSchedule]>([:])

    func publishSchedule(changed: [ClusterAPI.ShardSchedule], removed: [String]) async throws {
        schedule.withLock { schedule in
            for entry in changed { schedule[entry.shard] = entry }
            for shard in removed { schedule[shard] = nil }
        }
    }

    func publishedSchedule() async throws -> [ClusterAPI.ShardSchedule] {
        schedule.withLock { $0.values.sorted { $0.shard < $1.shard } }
    }

    func close() async {}

    // MARK: Migration

    /// Everything `--migrate-from-sqlite` copies: every tablet, every job with
    /// whether the scheduler started it, and the id the next job would get.
    struct MigrationSnapshot: Sendable {
        struct JobRow: Sendable {
            var job: ClusterAPI.Job
            var scheduled: Bool
        }
        var tablets: [ClusterAPI.Tablet]
        var jobs: [JobRow]
        var nextJobID: Int64
    }

    func migrationSnapshot() async throws -> MigrationSnapshot {
        let (tabletBodies, jobRows, sequence) = try await database.read { db in
            let tablets = try String.fetchAll(db, sql: "SELECT body FROM tablet ORDER BY alias")
            let jobs = try Row.fetchAll(db, sql: "SELECT scheduled, body FROM job ORDER BY id").map { row -> (Bool, String) in
                (row["scheduled"], row["body"])
            }
            // AUTOINCREMENT never reuses an id, also of pruned jobs.
            let sequence = try Int64.fetchOne(db, sql: "SELECT seq FROM sqlite_sequence WHERE name = 'job'") ?? 0
            return (tablets, jobs, sequence)
        }
        let jobs = try jobRows.map { MigrationSnapshot.JobRow(job: try Self.decode(ClusterAPI.Job.self, $0.1), scheduled: $0.0) }
        return MigrationSnapshot(tablets: try tabletBodies.map { try Self.decode(ClusterAPI.Tablet.self, $0) }, jobs: jobs,
                                 nextJobID: max(sequence, jobs.last?.job.id ?? 0) + 1)
    }
}
