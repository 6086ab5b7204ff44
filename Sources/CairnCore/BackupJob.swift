import Foundation

/// The phases of one backup, in order. A job only moves forward; it ends
/// `completed`, `nothingToDo` or `failed`.
public enum BackupPhase: String, Sendable, Hashable, Codable, CaseIterable {
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

    public var isFinal: Bool { self == .completed || self == .nothingToDo || self == .failed }
}

/// A backup job's phase as a small state machine that refuses impossible
/// transitions, so progress reports and job records can never claim, say,
/// "completed" for a job that never committed.
public struct BackupJobState: Sendable, Hashable {
    public private(set) var phase: BackupPhase = .pending
    public private(set) var error: String?
    public private(set) var history: [BackupPhase] = [.pending]

    public init() {}

    static let allowed: [BackupPhase: Set<BackupPhase>] = [
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

    /// Moves to `next`, or throws when the move is not allowed from here.
    public mutating func advance(to next: BackupPhase) throws {
        guard Self.allowed[phase]?.contains(next) == true else {
            throw CairnError(.internal, "a backup cannot go from \(phase.rawValue) to \(next.rawValue)")
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
