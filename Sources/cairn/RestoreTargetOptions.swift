import ArgumentParser
import CairnCluster
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

    @Option(name: .long, help: ArgumentHelp("Restore to this restore point of the keyspace (see `cairn restore-points`): the shard's position at it.", valueName: "name"))
    var toRestorePoint: String?

    /// Whether any of the options was given.
    var isGiven: Bool { backup != nil || toTime != nil || toPosition != nil || toRestorePoint != nil }

    /// What was asked for; a restore point is resolved to a position by whoever reads storage.
    func parameters() throws -> ClusterAPI.RestoreParameters {
        if let toRestorePoint {
            _ = try target()
            return ClusterAPI.RestoreParameters(restorePoint: toRestorePoint)
        }
        return ClusterAPI.RestoreParameters(try target())
    }

    /// The planner's target, for every option but --to-restore-point (which is `.latest` here).
    private func target() throws -> RestoreTarget {
        let chosen = [backup != nil, toTime != nil, toPosition != nil, toRestorePoint != nil].filter { $0 }.count
        guard chosen <= 1 else {
            throw CairnError(.usage, "choose one of --backup, --to-time, --to-position and --to-restore-point")
        }
        if let toRestorePoint { try RestorePoint.validateName(toRestorePoint) }
        if let backup { return .backup(backup) }
        if let toTime { return .time(try parseRestoreTime(toTime)) }
        if let toPosition { return .position(try ReplicationPosition(parsing: toPosition)) }
        return .latest
    }

    func validate() throws {
        do {
            _ = try parameters()
        } catch let error as CairnError {
            throw ValidationError(error)
        }
    }
}
