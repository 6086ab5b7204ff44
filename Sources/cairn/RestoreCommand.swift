import ArgumentParser
import CairnCluster
import CairnCore
import CairnEngine
import CairnStorage
import Foundation

struct RestoreCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore",
        abstract: "Restore a shard's latest chain, a named backup, or a point in time.",
        discussion: """
            With --local, restores into --target-datadir, which must be empty or missing; the result is a data \
            directory a stock mariadbd starts with, whose gtid_binlog_pos and gtid_slave_pos are the restored position.
            """,
        aliases: ["Restore", "RestoreFromBackup"]
    )

    @Argument(help: ArgumentHelp("The shard, <keyspace>/<shard>; or a keyspace, to restore each of its shards to one restore point or time.", valueName: "keyspace[/shard]"),
              transform: ShardOrKeyspace.init(parsing:))
    var scope: ShardOrKeyspace

    @Flag(name: .long, help: "Direct mode: restore into a data directory on this host.")
    var local = false

    @Option(name: .long, help: ArgumentHelp("The new data directory (empty or missing).", valueName: "path"))
    var targetDatadir: String?

    @Option(name: .long, help: ArgumentHelp("A keyspace in direct mode: restore each shard into <path>/<shard> (each empty or missing).", valueName: "path"))
    var targetRoot: String?

    @OptionGroup var restoreTarget: RestoreTargetOptions

    @Flag(name: .long, help: "Print the chosen chain and change nothing.")
    var dryRun = false

    @Option(name: .long, help: ArgumentHelp("Through ctld: restore into this tablet (a replica or rdonly; it is wiped first).", valueName: "alias"))
    var tablet: String?

    // For comparisons (tests, `make bench`): `client` replays through `mariadb-binlog | mariadb` instead of the
    // restore server's SQL thread (docs/ARCHITECTURE.md).
    @Option(name: .long, help: ArgumentHelp("Direct mode: how binary logs are replayed, sql-thread or client.", valueName: "method", visibility: .hidden))
    var binlogReplay: BinlogReplayMethod = .sqlThread

    // For comparisons (tests, `make bench`): the restore server's applier threads (slave_parallel_threads).
    @Option(name: .long, help: ArgumentHelp("Direct mode: applier threads of the restore server's SQL thread (0: it applies alone).",
                                            valueName: "n", visibility: .hidden))
    var replayThreads: Int = RestoreContext.defaultReplayThreads

    @Flag(name: .long, help: "Through ctld: return once the restore has started.")
    var async = false

    @OptionGroup var cluster: ClusterOptions

    @OptionGroup var storageOptions: StorageOptions
    @OptionGroup var output: OutputOptions

    func run() async throws {
        let requested = try restoreTarget.parameters()
        let shard: KeyspaceShard
        switch scope {
        case .keyspace(let keyspace):
            try await restoreKeyspace(keyspace, parameters: requested)
            return
        case .shard(let one):
            shard = one
        }
        guard local else {
            try await runThroughControlServer(shard: shard, parameters: requested)
            return
        }
        guard let targetDatadir else {
            throw CairnError(.usage, "direct mode restores into a directory: pass --target-datadir PATH")
        }
        let directory = URL(fileURLWithPath: targetDatadir).standardizedFileURL.path
        let configuration = try storageOptions.loadConfiguration()
        let logger = output.makeLogger()
        let progress = TransferProgress()
        let keyring = try MasterKeyring.load(configuration.encryption)
        try await storageOptions.withStorage(configuration, logger: logger) { storage in
            let runner = RestoreRunner(context: RestoreContext(shard: shard, storage: storage, logger: logger, progress: progress,
                                                                replay: binlogReplay, keyring: keyring, replayThreads: replayThreads))
            let target = try await requested.resolvingRestorePoint(for: shard, in: storage, logger: logger).target()
            let plan = try await runner.plan(target)
            try runner.checkKeys(plan)
            try RestoreRunner.checkTarget(directory)
            if dryRun {
                if output.json {
                    try Output.json(RestorePlanSummary(plan))
                } else {
                    Output.line("Restore of \(shard) to \(plan.target) into \(directory) would apply:")
                    Output.line(RestorePlanSummary(plan).table())
                    Output.line("Dry run: nothing was changed.")
                }
                return
            }
            let result = try await Output.withProgress(progress, enabled: !output.json) {
                try await runner.run(plan, into: directory)
            }
            if output.json {
                var json = RestorePlanSummary(plan)
                json.reachedPosition = result.position.description
                json.targetDatadir = directory
                try Output.json(json)
            } else {
                let deltas = plan.deltas.count
                let links = plan.binlogIncrementals.count
                Output.line("Restored \(shard) into \(directory): full backup \(plan.full.backupName)" +
                            (deltas > 0 ? " and \(deltas) delta\(deltas == 1 ? "" : "s")" : "") +
                            (links > 0 ? " and \(links) incremental\(links == 1 ? "" : "s")" : "") +
                            (plan.segments.isEmpty ? "" : " and \(plan.segments.count) archived binary log segment\(plan.segments.count == 1 ? "" : "s")") +
                            ", position \(result.position). Start it with: mariadbd --datadir=\(directory)")
            }
        }
    }
}


extension RestoreCommand {
    func runThroughControlServer(shard: KeyspaceShard, parameters: ClusterAPI.RestoreParameters) async throws {
        let configuration = try storageOptions.loadConfiguration()
        _ = output.makeLogger()
        let client = try cluster.client(configuration)
        let response = try await client.startRestore(ClusterAPI.RestoreRequest(keyspace: shard.keyspace, shard: shard.shard,
                                                                               tablet: tablet, parameters: parameters, dryRun: dryRun))
        if dryRun, let plan = response.plan {
            if output.json { try Output.json(plan) } else {
                Output.line("Restore of \(shard) to \(plan.target) would apply:")
                Output.line(plan.table())
                Output.line("Dry run: nothing was changed.")
            }
            return
        }
        guard let job = response.job else {
            throw CairnError(.cluster, "ctld started no restore job")
        }
        let follower = JobFollower(noun: "restore", client: client, output: output, async: async)
        guard let finished = try await follower.follow(
            job, starting: "Starting restore of keyspace \"\(shard.keyspace)\", shard \"\(shard.shard)\" into tablet \(shortTablet(job.tablet))")
        else { return }
        guard finished.result == .completed else { throw follower.failure(finished) }
        if !output.json {
            Output.line("Restored tablet \(shortTablet(finished.tablet)) to \(finished.position ?? "?"): \(finished.note ?? "done").")
        }
    }
}
