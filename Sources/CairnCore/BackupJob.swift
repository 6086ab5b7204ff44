import Foundation

/// The phases of one kind of job, for ``JobState``: where a job starts, which
/// moves are allowed, and which phases end it.
public protocol JobPhaseMachine: RawRepresentable<String>, Hashable, Sendable, CaseIterable {
    /// Where every job of this kind starts.
    static var initial: Self { get }
    /// The end of a job that failed.
    static var failed: Self { get }
    /// The moves a job may make from each phase.
    static var allowed: [Self: Set<Self>] { get }
    /// What the job is, for messages: "backup", "restore".
    static var jobName: String { get }
}

extension JobPhaseMachine {
    /// A phase nothing follows.
    public var isFinal: Bool { Self.allowed[self]?.isEmpty ?? true }
}

/// A job's phase as a small state machine that refuses impossible
/// transitions, so progress reports and job records can never claim, say,
/// "completed" for a backup that never committed.
public struct JobState<Phase: JobPhaseMachine>: Sendable, Hashable {
    public private(set) var phase: Phase = .initial
    public private(set) var error: String?
    public private(set) var history: [Phase] = [.initial]

    public init() {}

    /// Moves to `next`, or throws when the move is not allowed from here.
    public mutating func advance(to next: Phase) throws {
        guard Phase.allowed[phase]?.contains(next) == true else {
            throw CairnError(.internal, "a \(Phase.jobName) cannot go from \(phase.rawValue) to \(next.rawValue)")
        }
        phase = next
        history.append(next)
    }

    /// Marks the job failed with `message`, from any phase that is not final.
    public mutating func fail(_ message: String) {
        guard !phase.isFinal else { return }
        phase = .failed
        error = message
        history.append(.failed)
    }
}

/// The phases of one backup, in order. A job only moves forward; it ends
/// `completed`, `nothingToDo` or `failed`.
public enum BackupPhase: String, Sendable, Hashable, Codable, CaseIterable, JobPhaseMachine {
    case pending
    /// Reaching the server and reading its state.
    case connecting
    /// Reading the shard's backups and choosing full or incremental.
    case planning
    /// Streaming data into storage.
    case copying
    /// Writing the MANIFEST, the commit point.
    case committing
    /// Applying the retention policy after a successful backup.
    case pruning
    case completed
    /// An incremental found no new transaction; nothing was written.
    case nothingToDo = "nothing_to_do"
    case failed

    public static var initial: BackupPhase { .pending }
    public static var jobName: String { "backup" }
    public static let allowed: [BackupPhase: Set<BackupPhase>] = [
        .pending: [.connecting, .failed],
        .connecting: [.planning, .failed],
        .planning: [.copying, .nothingToDo, .failed],
        .copying: [.committing, .failed],
        .committing: [.pruning, .completed, .failed],
        .pruning: [.completed],
        .completed: [],
        .nothingToDo: [],
        .failed: [],
    ]
}

public typealias BackupJobState = JobState<BackupPhase>

/// The phases of a restore into a tablet's own mysqld, in order. It ends
/// `completed` or `failed`.
public enum RestorePhase: String, Sendable, Hashable, Codable, CaseIterable, JobPhaseMachine {
    case pending
    /// Choosing the chain of backups for the target.
    case planning
    /// Stopping the tablet's mysqld and emptying its data directory.
    case stoppingMysqld = "stopping mysqld"
    /// Writing the chain into the data directory.
    case restoring
    /// Starting mysqld on the restored data, and replication when it follows.
    case startingMysqld = "starting mysqld"
    case completed
    case failed

    public static var initial: RestorePhase { .pending }
    public static var jobName: String { "restore" }
    public static let allowed: [RestorePhase: Set<RestorePhase>] = [
        .pending: [.planning, .failed],
        .planning: [.stoppingMysqld, .failed],
        .stoppingMysqld: [.restoring, .failed],
        .restoring: [.startingMysqld, .failed],
        .startingMysqld: [.completed, .failed],
        .completed: [],
        .failed: [],
    ]
}

public typealias RestoreJobState = JobState<RestorePhase>
