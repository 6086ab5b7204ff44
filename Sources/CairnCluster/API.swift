import CairnCore
import CairnEngine
import Foundation

/// The control server's and tablet agents' HTTP/JSON API: paths and the
/// request and response bodies, defined once and used by both the servers
/// and ``ClusterClient``.
public enum ClusterAPI {
    public static let prefix = "/api/v1"

    public enum TabletType: String, WireEnum, CaseIterable {
        public static let wireName = "tablet type"
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
    public struct TabletRegistration: Codable, Sendable, Hashable {
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
        /// The tablet's Cairn version (`CairnVersion.current`); nil from tablets older than 0.3.0.
        public var version: String?

        public var shardID: String { "\(keyspace)/\(shard)" }

        public init(alias: String, keyspace: String, shard: String, type: TabletType, agentURL: String,
                    mysqlHost: String?, mysqlPort: Int?, hostname: String, replace: Bool? = nil,
                    version: String? = CairnVersion.current) {
            self.alias = alias
            self.keyspace = keyspace
            self.shard = shard
            self.type = type
            self.agentURL = agentURL
            self.mysqlHost = mysqlHost
            self.mysqlPort = mysqlPort
            self.hostname = hostname
            self.replace = replace
            self.version = version
        }

        enum CodingKeys: String, CodingKey {
            case alias, keyspace, shard, type
            case agentURL = "agent_url"
            case mysqlHost = "mysql_host"
            case mysqlPort = "mysql_port"
            case hostname, replace, version
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
        /// The tablet's binary log archiver, when archiving is configured.
        public var archive: ArchiveReport?

        public init(alias: String, type: TabletType, healthy: Bool, serving: Bool, replication: ReplicationStatus?,
                    position: String?, currentJob: Int64?, finishedJobs: [JobUpdate], archive: ArchiveReport? = nil) {
            self.alias = alias
            self.type = type
            self.healthy = healthy
            self.serving = serving
            self.replication = replication
            self.position = position
            self.currentJob = currentJob
            self.finishedJobs = finishedJobs
            self.archive = archive
        }

        enum CodingKeys: String, CodingKey {
            case alias, type, healthy, serving, replication, position, archive
            case currentJob = "current_job"
            case finishedJobs = "finished_jobs"
        }
    }

    /// ctld's answer to a heartbeat.
    public struct HeartbeatAnswer: Codable, Sendable, Hashable {
        /// The tablet holds its shard's archive lease for this many seconds
        /// from when it sent the heartbeat; absent: it must not archive.
        public var archiveLeaseSeconds: Double?

        public init(archiveLeaseSeconds: Double? = nil) {
            self.archiveLeaseSeconds = archiveLeaseSeconds
        }

        enum CodingKeys: String, CodingKey {
            case archiveLeaseSeconds = "archive_lease_seconds"
        }
    }

    /// A tablet's binary log archiver as its heartbeat reports it (issue 11).
    public struct ArchiveReport: Codable, Sendable, Hashable {
        /// The archiver runs now (the tablet holds the shard's archive lease).
        public var running: Bool
        /// Connected to its mysqld and receiving.
        public var connected: Bool
        /// Seconds the oldest received but not yet stored transaction has waited.
        public var lagSeconds: Double
        /// The position after the newest stored transaction.
        public var archivedPosition: String?
        /// The newest stored transaction's time.
        public var lastEventTime: Date?
        /// When the newest segment was stored.
        public var lastSegmentTime: Date?
        public var segmentsWritten: Int
        /// The last failure, cleared by the next success.
        public var error: String?

        public init(running: Bool, connected: Bool, lagSeconds: Double, archivedPosition: String?, lastEventTime: Date?,
                    lastSegmentTime: Date?, segmentsWritten: Int, error: String?) {
            self.running = running
            self.connected = connected
            self.lagSeconds = lagSeconds
            self.archivedPosition = archivedPosition
            self.lastEventTime = lastEventTime
            self.lastSegmentTime = lastSegmentTime
            self.segmentsWritten = segmentsWritten
            self.error = error
        }

        enum CodingKeys: String, CodingKey {
            case running, connected, error
            case lagSeconds = "lag_seconds"
            case archivedPosition = "archived_position"
            case lastEventTime = "last_event_time"
            case lastSegmentTime = "last_segment_time"
            case segmentsWritten = "segments_written"
        }

        /// One line for `cairn tablets`: "archiving, lag 0.4s, at MariaDB/0-1-250 (2026-...)".
        public var summary: String {
            guard running else { return error.map { "not archiving (\($0))" } ?? "not archiving" }
            var text = connected ? "archiving, lag \((lagSeconds * 10).rounded() / 10)s" : "archiving, disconnected"
            if let archivedPosition { text += ", at \(archivedPosition)" }
            if let lastEventTime { text += " (\(UTCTime.rfc3339(lastEventTime, fractional: false)))" }
            if let error { text += "; last error: \(error)" }
            return text
        }
    }

    /// A tablet as ctld knows it: what it registered, and its health from
    /// its heartbeats. On the wire its fields are flat, as one object.
    @dynamicMemberLookup
    public struct Tablet: Codable, Sendable {
        public var registration: TabletRegistration
        public var healthy: Bool
        public var serving: Bool
        public var replication: ReplicationStatus?
        public var position: String?
        public var currentJob: Int64?
        public var lastHeartbeat: Date?
        /// Its binary log archiver, from its last heartbeat.
        public var archive: ArchiveReport?

        public init(registration: TabletRegistration) {
            self.registration = registration
            healthy = false
            serving = false
        }

        /// The registered fields (`alias`, `keyspace`, `agentURL`, ...) read as the tablet's own.
        public subscript<T>(dynamicMember keyPath: KeyPath<TabletRegistration, T>) -> T {
            registration[keyPath: keyPath]
        }

        enum CodingKeys: String, CodingKey {
            case healthy, serving, replication, position, archive
            case currentJob = "current_job"
            case lastHeartbeat = "last_heartbeat"
        }

        public init(from decoder: any Decoder) throws {
            registration = try TabletRegistration(from: decoder)
            let c = try decoder.container(keyedBy: CodingKeys.self)
            healthy = try c.decode(Bool.self, forKey: .healthy)
            serving = try c.decode(Bool.self, forKey: .serving)
            replication = try c.decodeIfPresent(ReplicationStatus.self, forKey: .replication)
            position = try c.decodeIfPresent(String.self, forKey: .position)
            currentJob = try c.decodeIfPresent(Int64.self, forKey: .currentJob)
            lastHeartbeat = try c.decodeIfPresent(Date.self, forKey: .lastHeartbeat)
            archive = try c.decodeIfPresent(ArchiveReport.self, forKey: .archive)
        }

        public func encode(to encoder: any Encoder) throws {
            try registration.encode(to: encoder)
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(healthy, forKey: .healthy)
            try c.encode(serving, forKey: .serving)
            try c.encodeIfPresent(replication, forKey: .replication)
            try c.encodeIfPresent(position, forKey: .position)
            try c.encodeIfPresent(currentJob, forKey: .currentJob)
            try c.encodeIfPresent(lastHeartbeat, forKey: .lastHeartbeat)
            try c.encodeIfPresent(archive, forKey: .archive)
        }
    }

    public enum JobKind: String, WireEnum {
        public static let wireName = "job kind"
        case backup
        case restore
        /// A restore drill: restore into a scratch directory and check (issue 15).
        case drill
    }

    public enum JobResult: String, WireEnum {
        public static let wireName = "job result"
        case completed
        case nothingToDo = "nothing_to_do"
        case failed
    }

    /// Where a job is: a backup's phases (``BackupPhase``), a restore's
    /// (``RestorePhase``), and their ends.
    public enum JobPhase: String, WireEnum, CaseIterable, CustomStringConvertible {
        public static let wireName = "job phase"
        case pending
        // A backup's.
        case connecting
        case planning
        case copying
        case committing
        case pruning
        // A restore's.
        case stoppingMysqld = "stopping mysqld"
        case restoring
        case startingMysqld = "starting mysqld"
        // A drill's (after planning and restoring).
        case checking
        case recording
        // Ends.
        case completed
        case nothingToDo = "nothing_to_do"
        case failed

        public init(_ phase: BackupPhase) {
            switch phase {
            case .pending: self = .pending
            case .connecting: self = .connecting
            case .planning: self = .planning
            case .copying: self = .copying
            case .committing: self = .committing
            case .pruning: self = .pruning
            case .completed: self = .completed
            case .nothingToDo: self = .nothingToDo
            case .failed: self = .failed
            }
        }

        public init(_ phase: RestorePhase) {
            switch phase {
            case .pending: self = .pending
            case .planning: self = .planning
            case .stoppingMysqld: self = .stoppingMysqld
            case .restoring: self = .restoring
            case .startingMysqld: self = .startingMysqld
            case .completed: self = .completed
            case .failed: self = .failed
            }
        }

        public init(_ phase: DrillPhase) {
            switch phase {
            case .pending: self = .pending
            case .planning: self = .planning
            case .restoring: self = .restoring
            case .checking: self = .checking
            case .recording: self = .recording
            case .completed: self = .completed
            case .failed: self = .failed
            }
        }

        public var description: String { rawValue }

        /// Phases as tablets before typed phases reported them, with a detail
        /// after the phase ("copying mysql-bin.000003", "extracting <backup>"):
        /// ctld's stored jobs and older tablets still send them.
        public static func legacy(_ text: String) -> JobPhase? {
            let word = text.split(separator: " ", maxSplits: 1).first.map(String.init) ?? text
            switch word {
            case "copying": return .copying
            case "extracting", "preparing", "initializing", "loading", "replaying": return .restoring
            case "shutting": return text == "shutting down" ? .restoring : nil
            case "starting": return text == "starting" ? .pending : nil
            default: return nil
            }
        }
    }

    /// What a restore job restores.
    public struct RestoreParameters: Codable, Sendable, Hashable {
        public var backup: String?
        public var toTime: Date?
        public var toPosition: String?
        /// A restore point of the keyspace: ctld (or the tablet) resolves it
        /// to the shard's position there (``toPosition``) before planning.
        public var restorePoint: String?

        public init(backup: String? = nil, toTime: Date? = nil, toPosition: String? = nil, restorePoint: String? = nil) {
            self.backup = backup
            self.toTime = toTime
            self.toPosition = toPosition
            self.restorePoint = restorePoint
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
            if let restorePoint {
                throw CairnError(.internal, "restore point \(restorePoint) was not resolved to a position before planning; retry")
            }
            return .latest
        }

        public var isPointInTime: Bool { backup != nil || toTime != nil || toPosition != nil || restorePoint != nil }

        enum CodingKeys: String, CodingKey {
            case backup
            case toTime = "to_time"
            case toPosition = "to_position"
            case restorePoint = "restore_point"
        }
    }

    /// What a tablet reports about a job as it runs and when it ends: the
    /// part of a ``Job`` that changes.
    public struct JobReport: Codable, Sendable, Hashable {
        public var phase: JobPhase
        public var bytesDone: Int64
        public var storedBytes: Int64
        /// Bytes per second.
        public var rate: Double
        public var startedAt: Date?
        public var endedAt: Date?
        public var result: JobResult?
        public var error: String?
        public var backupName: String?
        public var position: String?
        /// A sentence for the operator, e.g. that replication stays off after a point-in-time restore.
        public var note: String?

        public init(phase: JobPhase, bytesDone: Int64 = 0, storedBytes: Int64 = 0, rate: Double = 0,
                    startedAt: Date? = nil, endedAt: Date? = nil, result: JobResult? = nil, error: String? = nil,
                    backupName: String? = nil, position: String? = nil, note: String? = nil) {
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
            case phase
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

    /// One backup or restore run by a tablet. On the wire its report's
    /// fields are flat, beside the job's own.
    @dynamicMemberLookup
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
        /// Drills: what to restore.
        public var drill: DrillParameters?
        /// Started by the scheduler rather than a client.
        public var scheduled: Bool
        public var createdAt: Date
        /// The phase, bytes, result, ... as the tablet last reported them.
        public var report: JobReport

        public var isFinished: Bool { report.result != nil }
        public var shardID: String { "\(keyspace)/\(shard)" }

        public init(id: Int64, keyspace: String, shard: String, tablet: String, kind: JobKind, scheduled: Bool, createdAt: Date) {
            self.id = id
            self.keyspace = keyspace
            self.shard = shard
            self.tablet = tablet
            self.kind = kind
            self.scheduled = scheduled
            self.createdAt = createdAt
            self.report = JobReport(phase: .pending)
        }

        /// The report's fields (`phase`, `result`, `bytesDone`, ...) read as the job's own.
        public subscript<T>(dynamicMember keyPath: KeyPath<JobReport, T>) -> T {
            report[keyPath: keyPath]
        }

        /// Applies a tablet's report.
        public mutating func apply(_ update: JobUpdate) {
            let new = update.report
            report.phase = new.phase
            report.bytesDone = new.bytesDone
            report.storedBytes = new.storedBytes
            report.rate = new.rate
            if let s = new.startedAt { report.startedAt = s }
            if let r = new.result {
                report.result = r
                report.endedAt = new.endedAt ?? Date()
            }
            if let e = new.error { report.error = e }
            if let b = new.backupName { report.backupName = b }
            if let p = new.position { report.position = p }
            if let n = new.note { report.note = n }
        }

        /// Ends the job as failed with `message` (ctld's own verdict: a lost tablet, a refused job).
        public mutating func fail(_ message: String, at time: Date = Date()) {
            report.phase = .failed
            report.result = .failed
            report.error = message
            report.endedAt = time
        }

        enum CodingKeys: String, CodingKey {
            case id, keyspace, shard, tablet, kind
            case backupType = "backup_type"
            case engine, restore, drill, scheduled
            case createdAt = "created_at"
        }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            id = try c.decode(Int64.self, forKey: .id)
            keyspace = try c.decode(String.self, forKey: .keyspace)
            shard = try c.decode(String.self, forKey: .shard)
            tablet = try c.decode(String.self, forKey: .tablet)
            kind = try c.decode(JobKind.self, forKey: .kind)
            backupType = try c.decodeIfPresent(RequestedBackupType.self, forKey: .backupType)
            engine = try c.decodeIfPresent(FullBackupEngine.self, forKey: .engine)
            restore = try c.decodeIfPresent(RestoreParameters.self, forKey: .restore)
            drill = try c.decodeIfPresent(DrillParameters.self, forKey: .drill)
            scheduled = try c.decode(Bool.self, forKey: .scheduled)
            createdAt = try c.decode(Date.self, forKey: .createdAt)
            report = try JobReport(from: decoder)
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(id, forKey: .id)
            try c.encode(keyspace, forKey: .keyspace)
            try c.encode(shard, forKey: .shard)
            try c.encode(tablet, forKey: .tablet)
            try c.encode(kind, forKey: .kind)
            try c.encodeIfPresent(backupType, forKey: .backupType)
            try c.encodeIfPresent(engine, forKey: .engine)
            try c.encodeIfPresent(restore, forKey: .restore)
            try c.encodeIfPresent(drill, forKey: .drill)
            try c.encode(scheduled, forKey: .scheduled)
            try c.encode(createdAt, forKey: .createdAt)
            try report.encode(to: encoder)
        }
    }

    /// A tablet's report on one of its jobs: the job's id and its report, flat on the wire.
    @dynamicMemberLookup
    public struct JobUpdate: Codable, Sendable {
        public var id: Int64
        public var report: JobReport

        public init(id: Int64, report: JobReport) {
            self.id = id
            self.report = report
        }

        public subscript<T>(dynamicMember keyPath: KeyPath<JobReport, T>) -> T {
            report[keyPath: keyPath]
        }

        enum CodingKeys: String, CodingKey {
            case id
        }

        public init(from decoder: any Decoder) throws {
            id = try decoder.container(keyedBy: CodingKeys.self).decode(Int64.self, forKey: .id)
            report = try JobReport(from: decoder)
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(id, forKey: .id)
            try report.encode(to: encoder)
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

    /// What a drill job restores.
    public struct DrillParameters: Codable, Sendable, Hashable {
        /// A random point in the restorable window instead of the newest backup.
        public var randomPoint: Bool

        public init(randomPoint: Bool) {
            self.randomPoint = randomPoint
        }

        public var target: DrillTarget { randomPoint ? .randomPoint : .newestBackup }

        enum CodingKeys: String, CodingKey {
            case randomPoint = "random_point"
        }
    }

    /// `POST /drills`: run a restore drill of a shard on one of its tablets.
    public struct DrillRequest: Codable, Sendable {
        public var keyspace: String
        public var shard: String
        /// Which tablet runs it: by alias, or a replica when one is healthy, else the primary.
        public var tablet: String?
        public var parameters: DrillParameters

        public init(keyspace: String, shard: String, tablet: String?, parameters: DrillParameters) {
            self.keyspace = keyspace
            self.shard = shard
            self.tablet = tablet
            self.parameters = parameters
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

    /// `POST /restore-points`: block commits on every primary of a keyspace
    /// together, record each one's position, release them.
    public struct RestorePointRequest: Codable, Sendable {
        public var keyspace: String
        public var name: String
        /// How long waiting for every primary's block may take before all is released.
        public var maximumBlockMilliseconds: Int

        public init(keyspace: String, name: String, maximumBlockMilliseconds: Int) {
            self.keyspace = keyspace
            self.name = name
            self.maximumBlockMilliseconds = maximumBlockMilliseconds
        }

        enum CodingKeys: String, CodingKey {
            case keyspace, name
            case maximumBlockMilliseconds = "max_block_ms"
        }
    }

    /// ctld to a primary tablet: block commits and say where they stopped.
    public struct CommitBlockRequest: Codable, Sendable {
        public var id: String
        public var maximumBlockMilliseconds: Int

        public init(id: String, maximumBlockMilliseconds: Int) {
            self.id = id
            self.maximumBlockMilliseconds = maximumBlockMilliseconds
        }

        enum CodingKeys: String, CodingKey {
            case id
            case maximumBlockMilliseconds = "max_block_ms"
        }
    }

    /// A primary holds its commits at this position.
    public struct CommitBlockHeld: Codable, Sendable {
        public var position: String

        public init(position: String) { self.position = position }
    }

    /// A primary released its commits after this long (nil: nothing was held).
    public struct CommitBlockReleased: Codable, Sendable {
        public var blockedMilliseconds: Int?

        public init(blockedMilliseconds: Int?) { self.blockedMilliseconds = blockedMilliseconds }

        enum CodingKeys: String, CodingKey {
            case blockedMilliseconds = "blocked_ms"
        }
    }

    /// What the scheduler will do next for one shard.
    public struct ShardSchedule: Codable, Sendable, Hashable {
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

/// An enum of the cluster API, carried as its raw string. A value this
/// Cairn does not know (a newer peer sent it) decodes to a clear
/// ``CairnError`` rather than a decoding failure nobody can act on.
public protocol WireEnum: RawRepresentable<String>, Codable, Sendable, Hashable {
    /// What the value is, for messages: "job phase".
    static var wireName: String { get }
    /// Older spellings still accepted (nil: none).
    static func legacy(_ text: String) -> Self?
}

extension WireEnum {
    public static func legacy(_ text: String) -> Self? { nil }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        guard let value = Self(rawValue: text) ?? Self.legacy(text) else {
            throw WireEnumError.unknown(Self.wireName, text)
        }
        self = value
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(rawValue)
    }
}

/// A value of a ``WireEnum`` this Cairn does not know.
enum WireEnumError {
    static let prefix = "unknown "

    static func unknown(_ name: String, _ value: String) -> CairnError {
        CairnError(.cluster, "\(prefix)\(name) \"\(value)\"; upgrade this Cairn to the version of the one that wrote it")
    }

    /// `error`, saying who sent the unknown value; nil for other errors.
    static func from(_ sender: String, _ error: any Error) -> CairnError? {
        guard let error = error as? CairnError, error.code == .cluster, error.message.hasPrefix(prefix) else { return nil }
        return CairnError(.cluster, "\(sender) sent an \(error.message)")
    }
}
