import CairnCore
import CairnSystem
import Foundation
import GRDB

/// ctld's state on disk: the topology and the job history, in SQLite under
/// `--data-dir`, so a restart loses nothing. Backups themselves are never
/// recorded here; storage stays their source of truth.
final class CtldStore: Sendable {
    let database: DatabaseQueue

    init(path: String) throws {
        // Created 0600 before SQLite opens it (SQLite would make it 0644); its journals copy that mode.
        try FileSystem.ensurePrivateFile(path)
        do {
            database = try DatabaseQueue(path: path)
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
        try migrator.migrate(database)
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
            try db.execute(sql: "INSERT OR REPLACE INTO tablet (alias, keyspace, shard, body) VALUES (?, ?, ?, ?)",
                           arguments: [tablet.alias, tablet.keyspace, tablet.shard, body])
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

    /// Changes one tablet under the database's lock.
    func updateTablet(_ alias: String, _ change: @escaping @Sendable (inout ClusterAPI.Tablet) -> Void) async throws {
        try await database.write { db in
            guard let body = try String.fetchOne(db, sql: "SELECT body FROM tablet WHERE alias = ?", arguments: [alias]) else { return }
            var tablet = try Self.decode(ClusterAPI.Tablet.self, body)
            change(&tablet)
            try db.execute(sql: "UPDATE tablet SET body = ? WHERE alias = ?", arguments: [try Self.encode(tablet), alias])
        }
    }

    // MARK: Jobs

    /// Creates a job unless one is already running on the shard, which is an error.
    func createJob(shard: KeyspaceShard, tablet: String, scheduled: Bool,
                   _ fill: @escaping @Sendable (inout ClusterAPI.Job) -> Void) async throws -> ClusterAPI.Job {
        try await database.write { db in
            let running = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM job WHERE keyspace = ? AND shard = ? AND finished = 0",
                                           arguments: [shard.keyspace, shard.shard]) ?? 0
            guard running == 0 else {
                throw CairnError(.cluster, "a job is already running on \(shard); wait for it (see `cairn jobs \(shard)`) and retry")
            }
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

    func unfinishedJobs() async throws -> [ClusterAPI.Job] {
        let bodies = try await database.read { db in
            try String.fetchAll(db, sql: "SELECT body FROM job WHERE finished = 0 ORDER BY id")
        }
        return try bodies.map { try Self.decode(ClusterAPI.Job.self, $0) }
    }

    /// The newest job the scheduler started on the shard.
    func lastScheduledJob(_ shard: KeyspaceShard) async throws -> ClusterAPI.Job? {
        let body = try await database.read { db in
            try String.fetchOne(db, sql: "SELECT body FROM job WHERE keyspace = ? AND shard = ? AND scheduled = 1 ORDER BY id DESC LIMIT 1",
                                arguments: [shard.keyspace, shard.shard])
        }
        return try body.map { try Self.decode(ClusterAPI.Job.self, $0) }
    }
}
