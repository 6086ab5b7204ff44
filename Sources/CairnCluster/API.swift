import CairnCore
import CairnEngine
import Foundation

/// The control server's and tablet agents' HTTP/JSON API: paths and the
/// request and response bodies, defined once and used by both the servers
/// and ``ClusterClient``.
public enum ClusterAPI {
    public static let prefix = "/api/v1"

    public enum TabletType: String, Codable, Sendable, CaseIterable {
        case primary
        case replica
        case rdonly
    }

    /// A replica's replication, as its tablet reports it.
    public struct ReplicationStatus: Codable, Sendable, Hashable {
        public var running: Bool
        public var lagSeconds: Int?
        public var source: String?
        /// Why replication is not running, when it is deliberately off.
        public var note: String?

        public init(running: Bool, lagSeconds: Int?, source: String?, note: String?) {
            self.running = running
            self.lagSeconds = lagSeconds
            self.source = source
            self.note = note
        }

        enum CodingKeys: String, CodingKey {
            case running
            case lagSeconds = "lag_seconds"
            case source, note
        }
    }

    /// What a tablet tells ctld when it starts.
    public struct TabletRegistration: Codable, Sendable {
        public var alias: String
        public var keyspace: String
        public var shard: String
        public var type: TabletType
        /// Where the tablet's own API listens, e.g. `http://127.0.0.1:16100`.
        public var agentURL: String
        public var mysqlHost: String?
        public var mysqlPort: Int?
        public var hostname: String
        /// Take the alias over even while another agent holds it (`cairn tablet --replace`).
        public var replace: Bool?

        public init(alias: String, keyspace: String, shard: String, type: TabletType, agentURL: String,
                    mysqlHost: String?, mysqlPort: Int?, hostname: String, replace: Bool? = nil) {
            self.alias = alias
            self.keyspace = keyspace
            self.shard = shard
            self.type = type
            self.agentURL = agentURL
            self.mysqlHost = mysqlHost
            self.mysqlPort = mysqlPort
            self.hostname = hostname
            self.replace = replace
        }

        enum CodingKeys: String, CodingKey {
            case alias, keyspace, shard, type
            case agentURL = "agent_url"
            case mysqlHost = "mysql_host"
            case mysqlPort = "mysql_port"
            case hostname, replace
        }
    }

    /// A tablet's periodic report of its health.
    public struct Heartbeat: Codable, Sendable {
        public var alias: String
        public var type: TabletType
        /// mysqld answers.
        public var healthy: Bool
        /// Healthy and not being restored.
        public var serving: Bool
        public var replication: ReplicationStatus?
        public var position: String?
        /// The job the tablet is running now.
        public var currentJob: Int64?
        /// Final states of jobs ctld may have missed.
        public var finishedJobs: [JobUpdate]

        public init(alias: String, type: TabletType, healthy: Bool, serving: Bool, replication: ReplicationStatus?,
                    position: String?, currentJob: Int64?, finishedJobs: [JobUpdate]) {
            self.alias = alias
            self.type = type
            self.healthy = healthy
            self.serving = serving
            self.replication = replication
            self.position = position
            self.currentJob = currentJob
            self.finishedJobs = finishedJobs
        }

        enum CodingKeys: String, CodingKey {
            case alias, type, healthy, serving, replication, position
            case currentJob = "current_job"
            case finishedJobs = "finished_jobs"
        }
    }

    /// A tablet as ctld knows it.
    public struct Tablet: Codable, Sendable {
        public var alias: String
        public var keyspace: String
        public var shard: String
        public var type: TabletType
        public var agentURL: String
        public var mysqlHost: String?
        public var mysqlPort: Int?
        public var hostname: String
        public var healthy: Bool
        public var serving: Bool
        public var replication: ReplicationStatus?
        public var position: String?
        public var currentJob: Int64?
        public var lastHeartbeat: Date?

        public init(registration r: TabletRegistration) {
            alias = r.alias
            keyspace = r.keyspace
            shard = r.shard
            type = r.type
            agentURL = r.agentURL
            mysqlHost = r.mysqlHost
            mysqlPort = r.mysqlPort
            hostname = r.hostname
            healthy = false
            serving = false
        }

        public var shardID: String { "\(keyspace)/\(shard)" }

        enum CodingKeys: String, CodingKey {
            case alias, keyspace, shard, type
            case agentURL = "agent_url"
            case mysqlHost = "mysql_host"
            case mysqlPort = "mysql_port"
            case hostname, healthy, serving, replication, position
            case currentJob = "current_job"
            case lastHeartbeat = "last_heartbeat"
        }
    }

    public enum JobKind: String, Codable, Sendable {
        case backup
        case restore
    }

    public enum JobResult: String, Codable, Sendable {
        case completed
        case nothingToDo = "nothing_to_do"
        case failed
    }

    /// What a restore job restores.
    public struct RestoreParameters: Codable, Sendable, Hashable {
        public var backup: String?
        public var toTime: Date?
        public var toPosition: String?

        public init(backup: String? = nil, toTime: Date? = nil, toPosition: String? = nil) {
            self.backup = backup
            self.toTime = toTime
            self.toPosition = toPosition
        }

        /// The parameters that ask for `target`; ``target()`` gives it back.
        public init(_ target: RestoreTarget) {
            switch target {
            case .latest: self.init()
            case .backup(let name): self.init(backup: name)
            case .time(let t): self.init(toTime: t)
            case .position(let p): self.init(toPosition: p.description)
            }
        }

        /// The planner's target.
        public func target() throws -> RestoreTarget {
            if let backup { return .backup(backup) }
            if let toTime { return .time(toTime) }
            if let toPosition { return .position(try ReplicationPosition(parsing: toPosition)) }
            return .latest
        }

        public var isPointInTime: Bool { backup != nil || toTime != nil || toPosition != nil }

        enum CodingKeys: String, CodingKey {
            case backup
            case toTime = "to_time"
            case toPosition = "to_position"
        }
    }

    /// One backup or restore run by a tablet.
    public struct Job: Codable, Sendable {
        public var id: Int64
        public var keyspace: String
        public var shard: String
        public var tablet: String
        public var kind: JobKind
        /// Backups: auto, full or incremental.
        public var backupType: RequestedBackupType?
        public var engine: FullBackupEngine?
        public var restore: RestoreParameters?
        /// Started by the scheduler rather than a client.
        public var scheduled: Bool
        public var phase: String
        public var bytesDone: Int64
        public var storedBytes: Int64
        /// Bytes per second.
        public var rate: Double
        public var createdAt: Date
        public var startedAt: Date?
        public var endedAt: Date?
        public var result: JobResult?
        public var error: String?
        public var backupName: String?
        public var position: String?
        /// A sentence for the operator, e.g. that replication stays off after a point-in-time restore.
        public var note: String?

        public var isFinished: Bool { result != nil }
        public var shardID: String { "\(keyspace)/\(shard)" }

        public init(id: Int64, keyspace: String, shard: String, tablet: String, kind: JobKind, scheduled: Bool, createdAt: Date) {
            self.id = id
            self.keyspace = keyspace
            self.shard = shard
            self.tablet = tablet
            self.kind = kind
            self.scheduled = scheduled
            self.phase = "pending"
            self.bytesDone = 0
            self.storedBytes = 0
            self.rate = 0
            self.createdAt = createdAt
        }

        /// Applies a tablet's report.
        public mutating func apply(_ update: JobUpdate) {
            phase = update.phase
            bytesDone = update.bytesDone
            storedBytes = update.storedBytes
            rate = update.rate
            if let s = update.startedAt { startedAt = s }
            if let r = update.result {
                result = r
                endedAt = update.endedAt ?? Date()
            }
            if let e = update.error { error = e }
            if let b = update.backupName { backupName = b }
            if let p = update.position { position = p }
            if let n = update.note { note = n }
        }

        enum CodingKeys: String, CodingKey {
            case id, keyspace, shard, tablet, kind
            case backupType = "backup_type"
            case engine, restore, scheduled, phase
            case bytesDone = "bytes_done"
            case storedBytes = "stored_bytes"
            case rate
            case createdAt = "created_at"
            case startedAt = "started_at"
            case endedAt = "ended_at"
            case result, error
            case backupName = "backup_name"
            case position, note
        }
    }

    /// A tablet's report on one of its jobs.
    public struct JobUpdate: Codable, Sendable {
        public var id: Int64
        public var phase: String
        public var bytesDone: Int64
        public var storedBytes: Int64
        public var rate: Double
        public var startedAt: Date?
        public var endedAt: Date?
        public var result: JobResult?
        public var error: String?
        public var backupName: String?
        public var position: String?
        public var note: String?

        public init(id: Int64, phase: String, bytesDone: Int64 = 0, storedBytes: Int64 = 0, rate: Double = 0,
                    startedAt: Date? = nil, endedAt: Date? = nil, result: JobResult? = nil, error: String? = nil,
                    backupName: String? = nil, position: String? = nil, note: String? = nil) {
            self.id = id
            self.phase = phase
            self.bytesDone = bytesDone
            self.storedBytes = storedBytes
            self.rate = rate
            self.startedAt = startedAt
            self.endedAt = endedAt
            self.result = result
            self.error = error
            self.backupName = backupName
            self.position = position
            self.note = note
        }

        enum CodingKeys: String, CodingKey {
            case id, phase
            case bytesDone = "bytes_done"
            case storedBytes = "stored_bytes"
            case rate
            case startedAt = "started_at"
            case endedAt = "ended_at"
            case result, error
            case backupName = "backup_name"
            case position, note
        }
    }

    /// `POST /backups`: back up a shard.
    public struct BackupRequest: Codable, Sendable {
        public var keyspace: String
        public var shard: String
        /// Which tablet: by alias, or the best of a type (default primary).
        public var tablet: String?
        public var tabletType: TabletType?
        public var type: RequestedBackupType
        public var engine: FullBackupEngine?

        public init(keyspace: String, shard: String, tablet: String?, tabletType: TabletType?,
                    type: RequestedBackupType, engine: FullBackupEngine?) {
            self.keyspace = keyspace
            self.shard = shard
            self.tablet = tablet
            self.tabletType = tabletType
            self.type = type
            self.engine = engine
        }

        enum CodingKeys: String, CodingKey {
            case keyspace, shard, tablet
            case tabletType = "tablet_type"
            case type, engine
        }
    }

    /// `POST /restores`: restore a shard's chain into a tablet.
    public struct RestoreRequest: Codable, Sendable {
        public var keyspace: String
        public var shard: String
        public var tablet: String?
        public var parameters: RestoreParameters
        public var dryRun: Bool

        public init(keyspace: String, shard: String, tablet: String?, parameters: RestoreParameters, dryRun: Bool) {
            self.keyspace = keyspace
            self.shard = shard
            self.tablet = tablet
            self.parameters = parameters
            self.dryRun = dryRun
        }

        enum CodingKeys: String, CodingKey {
            case keyspace, shard, tablet, parameters
            case dryRun = "dry_run"
        }
    }

    /// The answer to a restore request: a job, or the plan of a dry run.
    public struct RestoreResponse: Codable, Sendable {
        public var job: Job?
        public var plan: RestorePlanSummary?

        public init(job: Job?, plan: RestorePlanSummary?) {
            self.job = job
            self.plan = plan
        }
    }

    /// What the scheduler will do next for one shard.
    public struct ShardSchedule: Codable, Sendable {
        public var shard: String
        public var nextRun: Date?
        public var nextKind: String?
        public var note: String?

        public init(shard: String, nextRun: Date?, nextKind: String?, note: String?) {
            self.shard = shard
            self.nextRun = nextRun
            self.nextKind = nextKind
            self.note = note
        }

        enum CodingKeys: String, CodingKey {
            case shard
            case nextRun = "next_run"
            case nextKind = "next_kind"
            case note
        }
    }

    /// `GET /jobs`.
    public struct JobsResponse: Codable, Sendable {
        public var jobs: [Job]
        public var schedule: [ShardSchedule]

        public init(jobs: [Job], schedule: [ShardSchedule]) {
            self.jobs = jobs
            self.schedule = schedule
        }
    }

    /// `DELETE /backups/{keyspace}/{shard}/{name}`: what was (or, in a dry run, would be) removed.
    public struct RemoveResponse: Codable, Sendable {
        public var backup: String
        /// Backups that continue its chain, newest first.
        public var dependents: [String]
        /// Removed, dependents first.
        public var removed: [String]
        public var freedBytes: Int64
        public var dryRun: Bool

        public init(backup: String, dependents: [String], removed: [String], freedBytes: Int64, dryRun: Bool) {
            self.backup = backup
            self.dependents = dependents
            self.removed = removed
            self.freedBytes = freedBytes
            self.dryRun = dryRun
        }

        enum CodingKeys: String, CodingKey {
            case backup, dependents, removed
            case freedBytes = "freed_bytes"
            case dryRun = "dry_run"
        }
    }

    /// The body of every error response.
    public struct ErrorBody: Codable, Sendable {
        public struct Detail: Codable, Sendable {
            public var code: String
            public var message: String
        }
        public var error: Detail

        public init(code: String, message: String) {
            error = Detail(code: code, message: message)
        }
    }
}
