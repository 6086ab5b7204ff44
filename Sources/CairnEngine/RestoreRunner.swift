import CairnCore
import CairnMySQL
import CairnStorage
import CairnSystem
import Foundation
import Logging

/// What a restore reached.
public struct RestoreResult: Sendable {
    public var plan: RestorePlan
    /// The restored server's GTID position (`gtid_binlog_pos` = `gtid_slave_pos`).
    public var position: ReplicationPosition
}

/// Restores a chain into a new data directory: the full backup, then each
/// incremental's binary logs up to the target, applied by the SQL thread of
/// a temporary `mariadbd` (``RelayLogReplay``) that is shut down cleanly at the end.
public struct RestoreRunner: Sendable {
    public let context: RestoreContext
    /// Left in the target while a restore runs; a directory holding it is not a usable data directory.
    public static let inProgressMarker = "CAIRN-RESTORE-IN-PROGRESS"

    public init(context: RestoreContext) {
        self.context = context
    }

    /// Chooses the chain for `target` from what storage holds.
    public func plan(_ target: RestoreTarget) async throws -> RestorePlan {
        let listing = try await context.repository.list(context.shard)
        let manifests = listing.manifests
        guard !manifests.isEmpty else {
            throw CairnError(.notFound, "there is no complete backup of \(context.shard) in \(context.storage.displayURL); take one with `cairn backup \(context.shard)`")
        }
        let archive = try await context.repository.listArchive(context.shard, objects: listing.archiveObjects)
        return try RestorePlanner.plan(backups: manifests, archive: archive.timeline, target: target)
    }

    /// Opens the data key of every backup and segment of `plan`: a missing or
    /// wrong master key fails here, in one sentence naming the key id, before
    /// anything is written.
    public func checkKeys(_ plan: RestorePlan) throws {
        _ = try MasterKeyring.dataKey(of: plan.full, keyring: context.keyring)
        for incremental in plan.incrementals { _ = try MasterKeyring.dataKey(of: incremental, keyring: context.keyring) }
        for segment in plan.segments { _ = try MasterKeyring.dataKey(of: segment, keyring: context.keyring) }
    }

    /// Checks that `directory` can receive a restore: missing or empty.
    public static func checkTarget(_ directory: String) throws {
        guard try FileSystem.isMissingOrEmptyDirectory(directory) else { throw targetNotEmpty(directory) }
    }

    static func targetNotEmpty(_ directory: String) -> CairnError {
        CairnError(.restoreTarget, "the target directory \(directory) is not empty; Cairn restores only into an empty or new directory, empty it or choose another")
    }

    /// Runs `plan` into `directory`, which must be missing or empty. On
    /// failure the directory is emptied again.
    public func run(_ plan: RestorePlan, into directory: String) async throws -> RestoreResult {
        try await run(plan, into: directory, beforeFinish: nil)
    }

    /// ``run(_:into:)``, with `beforeFinish` called on the temporary server
    /// once the restore has reached its position and before the server shuts
    /// down (a drill checks the tables there); its error fails the restore.
    func run(_ plan: RestorePlan, into directory: String,
             beforeFinish: ((RestoreServer, ReplicationPosition) async throws -> Void)?) async throws -> RestoreResult {
        let logger = context.logger
        try checkKeys(plan)
        guard try await FileSystem.Async.isMissingOrEmptyDirectory(directory) else {
            throw RestoreRunner.targetNotEmpty(directory)
        }
        try await FileSystem.Async.createDirectory(directory)
        let marker = "\(directory)/\(RestoreRunner.inProgressMarker)"
        guard FileManager.default.createFile(atPath: marker, contents: Data("A Cairn restore is writing this directory; if no restore is running, it was interrupted: empty the directory and restore again.\n".utf8)) else {
            throw CairnError(.restoreTarget, "cannot write into the target directory \(directory); check its permissions")
        }
        var server: RestoreServer? = nil
        do {
            let full = plan.full
            logger.info("restoring full backup", metadata: ["backup": "\(full.backupName)", "target": "\(directory)"])
            switch full.method {
            case .physical:
                try await PhysicalEngine.restore(full, deltas: plan.deltas, into: directory, context: context)
                server = try await RestoreServer.start(dataDirectory: directory, serverID: full.serverID, logger: logger)
            case .logical:
                guard plan.deltas.isEmpty else {
                    throw CairnError(.manifest, "logical backup \(full.backupName) is followed by delta \(plan.deltas[0].backupName), but a delta continues only a physical backup; the MANIFESTs are inconsistent, restore another point")
                }
                context.progress?.setPhase("initializing \(directory)")
                try await Mysqld.initializeDataDirectory(directory, rootAuthentication: .unixSocket, logger: logger)
                server = try await RestoreServer.start(dataDirectory: directory, serverID: full.serverID, logger: logger)
                try await LogicalEngine.load(full, into: server!, context: context)
            case .binlog:
                throw CairnError(.manifest, "backup \(full.backupName) is a binlog backup, not a full one")
            }
            // The data files reach the full backup's position, or the last delta's.
            let snapshotPosition = plan.snapshotPosition
            try await server!.setGTIDState(snapshotPosition)

            // The binary log incrementals after the last snapshot, then the archived
            // segments (each replayed as a one-file binlog backup from the position
            // reached before it).
            var replay = plan.binlogIncrementals
            guard !replay.contains(where: \.isSnapshot) else {
                throw CairnError(.manifest, "the restore plan puts a delta after a binary log incremental; the MANIFESTs are inconsistent, restore another point")
            }
            var replayFrom = plan.chainEnd
            for segment in plan.segments {
                replay.append(segment.asReplayManifest(replayFrom: replayFrom))
                replayFrom = replayFrom.union(segment.position)
            }
            switch context.replay {
            case .sqlThread:
                let binlogs = try StoredBinlog.files(of: replay, stopPosition: plan.stopPosition, repository: context.repository, shard: context.shard,
                                                     keyring: context.keyring)
                _ = try await RelayLogReplay.replay(binlogs, into: server!, start: snapshotPosition, stopPosition: plan.stopPosition,
                                                    stopTime: plan.stopTime, context: context)
            case .clientPipe:
                for (index, incremental) in replay.enumerated() {
                    logger.info("applying incremental backup", metadata: ["backup": "\(incremental.backupName)"])
                    let isLast = index == replay.count - 1
                    let keepGoing = try await BinlogEngine.apply(
                        incremental, into: server!, stopPosition: isLast ? plan.stopPosition : nil,
                        stopTime: plan.stopTime, context: context)
                    if !keepGoing { break }
                }
            }

            let reached = try await server!.binlogPosition()
            if let expected = plan.expectedPosition, !(reached.contains(expected) && expected.contains(reached)) {
                throw CairnError(.integrity, "the restore reached \(reached) but \(plan.target) is \(expected); the backups do not hold what their manifests say, restore another point")
            }
            if let beforeFinish { try await beforeFinish(server!, reached) }
            context.progress?.setPhase("shutting down")
            try await server!.finish()
            server = nil
            try FileManager.default.removeItem(atPath: marker)
            logger.info("restore completed", metadata: ["target": "\(directory)", "position": "\(reached)"])
            return RestoreResult(plan: plan, position: reached)
        } catch {
            if let server {
                logger.error("restore failed; the temporary server's log ends with: \(server.errorLogTail)")
                await server.abandon()
            }
            // Nothing half-restored stays behind to be mistaken for a data directory.
            try? await FileSystem.Async.emptyDirectory(directory)
            throw error
        }
    }
}
