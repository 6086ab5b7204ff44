import CairnCore
import CairnMySQL
import CairnStorage
import CairnSystem
import Foundation
import Logging

/// What to back up and how.
public struct BackupRequest: Sendable {
    public var type: RequestedBackupType
    public var engine: FullBackupEngine
    public var strategy: BackupStrategyConfig?
    /// When set, the shard is pruned by this policy after the backup commits.
    public var retention: RetentionPolicy?

    public init(type: RequestedBackupType = .auto, engine: FullBackupEngine = .physical, strategy: BackupStrategyConfig? = nil,
                retention: RetentionPolicy? = nil) {
        self.type = type
        self.engine = engine
        self.strategy = strategy
        self.retention = retention
    }
}

/// What the prune after a committed backup did. A failed prune never fails
/// the backup: the backup is already committed, and the next prune (after
/// the next backup, or `cairn prune`) finishes the work.
public enum PruneOutcome: Sendable {
    case pruned(BackupPruner.Report)
    case failed(String)
}

/// How a backup ended.
public enum BackupOutcome: Sendable {
    /// A backup was written and committed.
    case completed(BackupManifest)
    /// An incremental found nothing new since its parent; nothing was written.
    case nothingNew(parent: BackupManifest)
}

/// Takes one backup of one shard from one server: connect, choose full or
/// incremental, stream into storage, commit the manifest.
public struct BackupRunner: Sendable {
    public let context: BackupContext
    /// Reports each phase change (job records, logs).
    public var onPhase: (@Sendable (BackupPhase) -> Void)?
    /// Reports the prune after the backup, when the request has a retention policy.
    public var onPrune: (@Sendable (PruneOutcome) -> Void)?

    public init(context: BackupContext, onPhase: (@Sendable (BackupPhase) -> Void)? = nil,
                onPrune: (@Sendable (PruneOutcome) -> Void)? = nil) {
        self.context = context
        self.onPhase = onPhase
        self.onPrune = onPrune
    }

    public func run(_ request: BackupRequest, now: @Sendable () -> Date = { Date() }) async throws -> BackupOutcome {
        var state = BackupJobState()
        func advance(_ phase: BackupPhase) throws {
            // Cancelled (the tablet shutting down) before its commit, a backup goes no further.
            if Task.isCancelled, phase == .planning || phase == .copying || phase == .committing {
                throw CairnError(.cancelled, "the backup was cancelled before \(phase.rawValue)")
            }
            try state.advance(to: phase)
            context.progress?.setPhase(phase.rawValue)
            onPhase?(phase)
        }
        do {
            let outcome = try await run(request, now: now, advance: advance)
            return outcome
        } catch {
            state.fail("\(error)")
            onPhase?(.failed)
            throw error
        }
    }

    private func run(_ request: BackupRequest, now: @Sendable () -> Date,
                     advance: (BackupPhase) throws -> Void) async throws -> BackupOutcome {
        try advance(.connecting)
        // The connection is closed (awaited) however the backup ends.
        return try await MySQLConnection.with(context.mysql, logger: context.logger) { connection in
            try await run(request, connection: connection, now: now, advance: advance)
        }
    }

    private func run(_ request: BackupRequest, connection: MySQLConnection, now: @Sendable () -> Date,
                     advance: (BackupPhase) throws -> Void) async throws -> BackupOutcome {
        var context = self.context
        // One random data key per backup, wrapped by the current master key (docs/SECURITY.md).
        context.dataKey = try context.keyring?.newDataKey()
        let logger = context.logger
        let info = try await connection.serverInfo()
        guard info.logBin else {
            throw CairnError(.mysql, "binary logging is off on the server at \(context.mysql.endpoint); Cairn needs it for positions and incrementals, start mariadbd with --log-bin (and ROW format)")
        }
        let dataDirectory = try checkDataDirectory(info)

        try advance(.planning)
        let repository = context.repository
        // The one listing of the shard this backup makes: it decides, names and prunes with it.
        var listing = try await repository.list(context.shard)
        var decision = try BackupStrategy.decide(requested: request.type, backups: listing.manifests,
                                                 strategy: request.strategy, now: now())
        logger.info("backup decision", metadata: ["shard": "\(context.shard)", "decision": "\(decision.reason)"])
        var binlogPlan: BinlogEngine.Plan? = nil
        if case .incremental(let parent, _) = decision {
            do {
                guard let plan = try await BinlogEngine.plan(parent: parent, info: info, connection: connection, logger: logger) else {
                    try advance(.nothingToDo)
                    return .nothingNew(parent: parent)
                }
                binlogPlan = plan
            } catch let error as CairnError where error.code == .binlogsPurged && request.type == .auto {
                logger.warning("binary logs needed for an incremental are gone; taking a full backup instead", metadata: ["reason": "\(error.message)"])
                decision = .full(reason: "the binary logs after the chain's position were purged")
            }
        }

        // A delta is always physical (the engine chooses full backups only); its
        // parent is a physical full backup or delta that records its LSN.
        var deltaParent: BackupManifest? = nil
        if case .delta(let parent, _) = decision {
            // Pure planning checked the parent; the server must also still hold everything since it.
            guard info.gtidBinlogPosition.contains(parent.position) else {
                throw CairnError(.chain, "this server's binary log position \(info.gtidBinlogPosition) does not include the position \(parent.position) of backup \(parent.backupName) a delta would continue; take the delta on a tablet that has caught up, or take a full backup (--type full)")
            }
            deltaParent = parent
        }

        try advance(.copying)
        let alias = context.tabletAlias ?? TabletAlias(cell: "local", uid: info.serverID)
        let started = try await repository.start(in: listing, alias: alias, now: now)
        let name = started.name
        let start = started.startTime
        logger.info("backup started", metadata: ["backup": "\(name)", "shard": "\(context.shard)"])

        var files: [ManifestFile]
        var position: ReplicationPosition
        var purged: ReplicationPosition
        var method: BackupMethod
        var parentName: String? = nil
        var fromPosition: ReplicationPosition? = nil
        var firstEvent: Date? = nil
        var lastEvent: Date? = nil
        var toLSN: UInt64? = nil
        var fromLSN: UInt64? = nil
        if let parent = deltaParent, let parentLSN = parent.toLSN {
            // As for a full backup: the incrementals after the delta copy from a new binary log file.
            try await connection.query("FLUSH BINARY LOGS")
            purged = try await connection.purgedPosition()
            let result = try await PhysicalEngine.backup(context, name: name.description, dataDirectory: dataDirectory,
                                                         incrementalLSN: parentLSN)
            files = result.files
            position = result.position
            method = .physical
            parentName = parent.backupName
            fromPosition = parent.position
            toLSN = result.toLSN
            fromLSN = result.fromLSN
            guard position.contains(parent.position) else {
                throw CairnError(.chain, "the delta reached position \(position), which does not include its parent \(parent.backupName)'s \(parent.position); the server diverged, take a full backup (--type full)")
            }
        } else if let plan = binlogPlan {
            let result = try await BinlogEngine.backup(context, name: name.description, plan: plan)
            files = result.files
            position = plan.end
            purged = plan.purged
            method = .binlog
            parentName = plan.parent.backupName
            fromPosition = plan.from
            firstEvent = result.firstEventTime
            lastEvent = result.lastEventTime
        } else {
            // A new binary log file from here on: the next incremental copies whole
            // files from the one holding this backup's position, so it copies what
            // was written since this backup started, not everything before it.
            try await connection.query("FLUSH BINARY LOGS")
            purged = try await connection.purgedPosition()
            let result: FullBackupResult
            switch request.engine {
            case .physical:
                result = try await PhysicalEngine.backup(context, name: name.description, dataDirectory: dataDirectory)
                method = .physical
                toLSN = result.toLSN
            case .logical:
                result = try await LogicalEngine.backup(context, name: name.description, connection: connection)
                method = .logical
            }
            files = result.files
            position = result.position
        }

        try advance(.committing)
        var manifest = BackupManifest(
            backupName: name.description, keyspace: context.shard.keyspace, shard: context.shard.shard,
            tabletAlias: alias.description, hostname: FileSystem.hostname,
            method: method, incremental: method == .binlog || deltaParent != nil, parentBackup: parentName, fromPosition: fromPosition,
            position: position, purgedPosition: purged, startTime: start, finishTime: now(),
            firstEventTime: firstEvent, lastEventTime: lastEvent, serverID: info.serverID,
            serverVersion: info.version, flavor: info.flavor, compression: context.compression.info,
            encryption: context.dataKey == nil ? EncryptionScheme.none : EncryptionScheme.aes256GCM, files: files,
            keyID: context.dataKey?.keyID, wrappedKey: context.dataKey?.wrapped)
        manifest.toLSN = toLSN
        manifest.fromLSN = fromLSN
        listing.add(try await repository.commit(manifest, of: started))
        logger.info("backup completed", metadata: ["backup": "\(name)", "position": "\(position)",
                                                   "stored_bytes": "\(manifest.storedSize)"])
        if let policy = request.retention {
            try advance(.pruning)
            await prune(listing, policy: policy, now: now())
        }
        try advance(.completed)
        return .completed(manifest)
    }

    /// Applies the retention policy after a committed backup, to the
    /// backup's listing with the backup added. Its failure is reported and
    /// logged, never thrown: the backup itself succeeded.
    func prune(_ listing: ShardListing, policy: RetentionPolicy, now: Date) async {
        let pruner = BackupPruner(shard: context.shard, storage: context.storage, logger: context.logger)
        do {
            let report = try await pruner.prune(listing, policy: policy, now: now, dryRun: false)
            for problem in report.plan.problems {
                context.logger.warning("a backup's MANIFEST cannot be read; the prune kept it, inspect it and remove it with `cairn remove-backup`",
                                       metadata: ["shard": "\(context.shard)", "backup": "\(problem.name)",
                                                  "reason": "\(problem.reasons.first?.detail ?? "")"])
            }
            if !report.removed.isEmpty {
                context.logger.info("pruned after the backup", metadata: ["shard": "\(context.shard)", "removed": "\(report.removed.count)"])
            }
            onPrune?(.pruned(report))
        } catch {
            let message = (error as? CairnError)?.message ?? "\(error)"
            context.logger.warning("the backup is complete, but pruning after it failed; run `cairn prune \(context.shard)` once the cause is fixed",
                                   metadata: ["reason": "\(message)"])
            onPrune?(.failed(message))
        }
    }

    /// The operator's `--mysql-datadir` must be the server's own.
    func checkDataDirectory(_ info: ServerInfo) throws -> String {
        let serverDir = (info.dataDirectory as NSString).resolvingSymlinksInPath
        guard let given = context.dataDirectory else { return info.dataDirectory }
        let givenDir = (given as NSString).resolvingSymlinksInPath
        func normalized(_ p: String) -> String { p.hasSuffix("/") && p.count > 1 ? String(p.dropLast()) : p }
        guard normalized(serverDir) == normalized(givenDir) else {
            throw CairnError(.usage, "--mysql-datadir \(given) is not the data directory of the server at \(context.mysql.endpoint) (it reports \(info.dataDirectory)); pass the server's own data directory")
        }
        return given
    }
}
