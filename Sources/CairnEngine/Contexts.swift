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

    public var repository: BackupRepository { BackupRepository(storage: storage, logger: logger) }

    public init(shard: KeyspaceShard, tabletAlias: TabletAlias?, storage: any BackupStorage,
                mysql: MySQLConnectionConfiguration, dataDirectory: String?, compression: CompressionSettings,
                logger: Logger, progress: TransferProgress?) {
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

    public var repository: BackupRepository { BackupRepository(storage: storage, logger: logger) }

    public init(shard: KeyspaceShard, storage: any BackupStorage, logger: Logger, progress: TransferProgress?,
                replay: BinlogReplayMethod = .sqlThread) {
        self.shard = shard
        self.storage = storage
        self.logger = logger
        self.progress = progress
        self.replay = replay
    }
}
