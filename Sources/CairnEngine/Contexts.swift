import CairnCore
import CairnMySQL
import CairnStorage
import Logging

/// Everything a backup needs to know about where it reads and writes.
public struct BackupContext: Sendable {
    public var shard: KeyspaceShard
    /// The tablet the backup is named after; nil names it `local-<server id>`.
    public var tabletAlias: TabletAlias?
    public var storage: any BackupStorage
    public var mysql: MySQLConnectionConfiguration
    /// The server's data directory as the operator gave it; checked against the server's own.
    public var dataDirectory: String?
    public var compression: CompressionSettings
    public var logger: Logger
    public var progress: TransferProgress?
    /// The master keys: with them, every file of a new backup is encrypted (nil: stored in the clear).
    public var keyring: MasterKeyring?
    /// The data key of the backup being written; set by ``BackupRunner`` from `keyring`.
    var dataKey: DataKey?

    public var repository: BackupRepository { BackupRepository(storage: storage, logger: logger) }

    public init(shard: KeyspaceShard, tabletAlias: TabletAlias?, storage: any BackupStorage,
                mysql: MySQLConnectionConfiguration, dataDirectory: String?, compression: CompressionSettings,
                logger: Logger, progress: TransferProgress?, keyring: MasterKeyring? = nil) {
        self.keyring = keyring
        self.shard = shard
        self.tabletAlias = tabletAlias
        self.storage = storage
        self.mysql = mysql
        self.dataDirectory = dataDirectory
        self.compression = compression
        self.logger = logger
        self.progress = progress
    }
}

/// Everything a restore needs to know about where it reads.
public struct RestoreContext: Sendable {
    public var shard: KeyspaceShard
    public var storage: any BackupStorage
    public var logger: Logger
    public var progress: TransferProgress?
    /// How binary logs are applied after the full backup.
    public var replay: BinlogReplayMethod
    /// Applier threads of the restore server's SQL thread (`slave_parallel_threads`,
    /// optimistic mode); 0: the SQL thread applies alone.
    public var replayThreads: Int
    /// Applier threads when the restore does not ask for a number
    /// (`cairn restore --replay-threads`): none, the SQL thread applies alone.
    /// With more, the restored binary log's GTID events carry the group-commit
    /// ids (`cid=`) of the parallel applier's commit groups, where the client
    /// pipe's carry none; transactions, their order, GTIDs, server ids,
    /// timestamps and events are the same (ReplayTests). Four did not pay on
    /// 2 cores (docs/BENCHMARKS.md, issue 12).
    public static let defaultReplayThreads = 0
    /// The master keys that open encrypted backups; nil reads only unencrypted ones.
    public var keyring: MasterKeyring?

    public var repository: BackupRepository { BackupRepository(storage: storage, logger: logger) }

    /// The key of `file` of `manifest`: nil when the backup is stored in the
    /// clear; fails with one sentence naming the master key it needs.
    func fileKey(_ manifest: BackupManifest, _ file: ManifestFile) throws -> FileKey? {
        try MasterKeyring.dataKey(of: manifest, keyring: keyring)?.fileKey(file.name)
    }

    public init(shard: KeyspaceShard, storage: any BackupStorage, logger: Logger, progress: TransferProgress?,
                replay: BinlogReplayMethod = .sqlThread, keyring: MasterKeyring? = nil,
                replayThreads: Int = RestoreContext.defaultReplayThreads) {
        self.keyring = keyring
        self.replayThreads = replayThreads
        self.shard = shard
        self.storage = storage
        self.logger = logger
        self.progress = progress
        self.replay = replay
    }
}
