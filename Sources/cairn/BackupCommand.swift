import ArgumentParser
import CairnCluster
import CairnCore
import CairnEngine
import CairnStorage
import Foundation
import Synchronization

struct BackupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Back up a shard.",
        discussion: """
            With --local, backs up the mysqld on this host given by --mysql-socket and --mysql-datadir. \
            --type auto (the default) takes a full backup when no complete chain exists or the strategy says \
            one is due, and an incremental otherwise.
            """,
        aliases: ["Backup", "BackupShard"]
    )

    @Argument(help: ArgumentHelp("The shard, <keyspace>/<shard>; or a keyspace, to back up each of its shards through ctld.", valueName: "keyspace[/shard]"),
              transform: ShardOrKeyspace.init(parsing:))
    var scope: ShardOrKeyspace

    @Flag(name: .long, help: "Direct mode: back up the mysqld on this host, in this process.")
    var local = false

    @Option(name: .long, help: ArgumentHelp("The mysqld's data directory (checked against the server's own).", valueName: "path"))
    var mysqlDatadir: String?

    @Option(name: .long, help: ArgumentHelp("The kind of backup to take: auto, full, incremental (binary logs) or delta (physical: the pages changed since the chain's newest full backup or delta).", valueName: "type"))
    var type: RequestedBackupType = .auto

    @Option(name: .long, help: ArgumentHelp("Full-backup engine: physical (mariadb-backup) or logical (mariadb-dump). Default: the configuration's engine, else physical.", valueName: "engine"))
    var engine: FullBackupEngine?

    @Option(name: .long, help: ArgumentHelp("Name the backup after this tablet alias (direct mode; default local-<server id>).", valueName: "alias"))
    var tabletAlias: String?

    @Option(name: .long, help: ArgumentHelp("Through ctld: back up on this tablet.", valueName: "alias"))
    var tablet: String?

    @Option(name: .long, help: ArgumentHelp("Through ctld: the type of tablet to back up on, primary (default) or replica (the most caught-up one).", valueName: "type"))
    var tabletType: ClusterAPI.TabletType?

    @Flag(name: .long, help: "Through ctld: return once the backup has started (for a keyspace: once every shard's has).")
    var async = false

    @Option(name: .long, help: ArgumentHelp("A keyspace: back up at most this many shards at once.", valueName: "n"))
    var concurrency: Int = 4

    @OptionGroup var cluster: ClusterOptions

    @OptionGroup var storageOptions: StorageOptions
    @OptionGroup var mysqlOptions: MySQLOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard case .keyspace(let keyspace) = scope else { return }
        if local {
            throw ValidationError("--local backs up one mysqld, so it takes <keyspace>/<shard>; a whole keyspace is backed up through ctld (`cairn backup \(keyspace)`)")
        }
        if tablet != nil {
            throw ValidationError("--tablet names one tablet, so it takes <keyspace>/<shard>; a keyspace backup picks each shard's tablet by --tablet-type")
        }
        if concurrency < 1 {
            throw ValidationError("--concurrency must be at least 1")
        }
    }

    func run() async throws {
        let configuration = try storageOptions.loadConfiguration()
        let shard: KeyspaceShard
        switch scope {
        case .keyspace(let keyspace):
            try await backUpKeyspace(keyspace, configuration: configuration)
            return
        case .shard(let one):
            shard = one
        }
        let alias = try tabletAlias.map { try TabletAlias(parsing: $0) }
        guard local else {
            try await runThroughControlServer(shard: shard, configuration: configuration)
            return
        }
        let engine = self.engine ?? configuration.engine
        let logger = output.makeLogger()
        let mysql = try mysqlOptions.connection(configuration)
        let progress = TransferProgress()
        let request = BackupRequest(type: type, engine: engine, strategy: configuration.backupStrategy,
                                    retention: configuration.retention)
        let pruned = Mutex<PruneOutcome?>(nil)
        let keyring = try MasterKeyring.load(configuration.encryption)
        let (outcome, displayURL) = try await storageOptions.withStorage(configuration, logger: logger) { storage in
            let context = BackupContext(shard: shard, tabletAlias: alias, storage: storage, mysql: mysql,
                                        dataDirectory: mysqlDatadir.map { URL(fileURLWithPath: $0).standardizedFileURL.path }, compression: CompressionSettings(configuration: configuration),
                                        logger: logger, progress: progress, keyring: keyring)
            let outcome = try await Output.withProgress(progress, enabled: !output.json) {
                try await BackupRunner(context: context, onPrune: { outcome in pruned.withLock { $0 = outcome } }).run(request)
            }
            return (outcome, storage.displayURL)
        }
        let prune = pruned.withLock { $0 }.map(PruneResultJSON.init)
        switch outcome {
        case .completed(let manifest):
            if output.json {
                try Output.json(BackupResultJSON(status: "completed", backup: manifest, parent: nil, prune: prune))
            } else {
                let kind = manifest.incremental ? manifest.typeName : "full (\(manifest.method.rawValue))"
                Output.line("Backup \(manifest.backupName) of \(shard) completed: \(kind), position \(manifest.position), \(formatBytes(manifest.storedSize)) stored in \(displayURL).")
                if let prune {
                    if let error = prune.error {
                        Output.note("warning: the backup is complete, but pruning after it failed: \(error); run `cairn prune \(shard)` once that is fixed")
                    } else if prune.removed.isEmpty {
                        Output.line("Retention: nothing to remove.")
                    } else {
                        Output.line("Retention: removed \(prune.removed.joined(separator: ", ")) (\(formatBytes(prune.freedBytes))); `cairn prune \(shard) --dry-run` explains each decision.")
                    }
                }
            }
        case .nothingNew(let parent):
            if output.json {
                try Output.json(BackupResultJSON(status: "nothing_new", backup: nil, parent: parent.backupName))
            } else {
                Output.line("No new transactions since backup \(parent.backupName) (position \(parent.position)); nothing was written.")
            }
        }
    }
}

extension BackupCommand {
    func runThroughControlServer(shard: KeyspaceShard, configuration: CairnConfiguration) async throws {
        _ = output.makeLogger()
        let client = try cluster.client(configuration)
        let job = try await client.startBackup(ClusterAPI.BackupRequest(keyspace: shard.keyspace, shard: shard.shard, tablet: tablet,
                                                                        tabletType: tabletType, type: type, engine: engine))
        let follower = JobFollower(noun: "backup", client: client, output: output, async: async)
        guard let finished = try await follower.follow(
            job, starting: "Starting backup for keyspace \"\(shard.keyspace)\", shard \"\(shard.shard)\" on tablet \(shortTablet(job.tablet))")
        else { return }
        switch finished.result {
        case .completed?:
            if !output.json {
                Output.line("Backup \(finished.backupName ?? "?") completed on tablet \(shortTablet(finished.tablet)): \(finished.note ?? "done"), position \(finished.position ?? "?").")
            }
        case .nothingToDo?:
            if !output.json { Output.line("No backup was needed: \(finished.note ?? "nothing new").") }
        default:
            throw follower.failure(finished)
        }
    }
}

struct BackupResultJSON: Encodable {
    var status: String
    var backup: BackupManifest?
    var parent: String?
    /// The prune after the backup, when a retention policy is configured.
    var prune: PruneResultJSON? = nil
}

/// What the prune after a backup did, in `backup --json`.
struct PruneResultJSON: Encodable {
    var removed: [String]
    var freedBytes: Int64
    var error: String?

    enum CodingKeys: String, CodingKey {
        case removed, error
        case freedBytes = "freed_bytes"
    }

    init(_ outcome: PruneOutcome) {
        switch outcome {
        case .pruned(let report):
            removed = report.removed
            freedBytes = report.freedBytes
            error = nil
        case .failed(let message):
            removed = []
            freedBytes = 0
            error = message
        }
    }
}
