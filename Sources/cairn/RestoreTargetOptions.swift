import ArgumentParser
import CairnCore
import Foundation

/// What a restore reaches: the options of `restore` and of
/// `tablet --restore-from-backup`. At most one of them; none is the latest
/// backup.
struct RestoreTargetOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Restore exactly this backup (and the chain under it).", valueName: "name"))
    var backup: String?

    @Option(name: .long, help: ArgumentHelp("Restore everything committed before this second (RFC 3339, e.g. 2026-11-25T14:00:00Z).", valueName: "time"))
    var toTime: String?

    @Option(name: .long, help: ArgumentHelp("Restore up to and including this GTID position (with or without the MariaDB/ prefix).", valueName: "gtid"))
    var toPosition: String?

    /// Whether any of the options was given.
    var isGiven: Bool { backup != nil || toTime != nil || toPosition != nil }

    func target() throws -> RestoreTarget {
        let chosen = [backup != nil, toTime != nil, toPosition != nil].filter { $0 }.count
        guard chosen <= 1 else {
            throw CairnError(.usage, "choose one of --backup, --to-time and --to-position")
        }
        if let backup { return .backup(backup) }
        if let toTime { return .time(try parseRestoreTime(toTime)) }
        if let toPosition { return .position(try ReplicationPosition(parsing: toPosition)) }
        return .latest
    }

    func validate() throws {
        do {
            _ = try target()
        } catch let error as CairnError {
            throw ValidationError(error)
        }
    }
}
