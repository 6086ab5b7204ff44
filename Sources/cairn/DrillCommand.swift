import ArgumentParser
import CairnCluster
import CairnCore
import CairnEngine
import CairnStorage
import Foundation

struct DrillCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drill",
        abstract: "Prove a shard restores: restore it into a scratch directory, check every table, compare with the reference.",
        discussion: """
            A drill restores the newest backup (or, with --random-point, a random moment of the restorable window) \
            into a scratch directory with a temporary mariadbd, runs CHECK TABLE and CHECKSUM TABLE on every table, \
            and compares the checksums with those the first drill of the same point recorded. Its record goes into \
            storage (<keyspace>/<shard>/drills/). The shard's own server is not touched. Exits 1 when the drill fails.
            """,
        aliases: ["Drill"]
    )

    @Argument(help: .shard, transform: KeyspaceShard.init(parsing:))
    var shard: KeyspaceShard

    @Flag(name: .long, help: "Direct mode: run the drill on this host.")
    var local = false

    @Flag(name: .long, help: "Restore a random moment of the restorable window instead of the newest backup.")
    var randomPoint = false

    @Option(name: .long, help: ArgumentHelp("Direct mode: where the scratch directory is made (default: the system's temporary directory).", valueName: "path"))
    var scratchDir: String?

    @Option(name: .long, help: ArgumentHelp("Through ctld: the tablet whose host runs the drill (default: a healthy replica, else the primary).", valueName: "alias"))
    var tablet: String?

    @Flag(name: .long, help: "Through ctld: return once the drill has started.")
    var async = false

    @OptionGroup var cluster: ClusterOptions
    @OptionGroup var storageOptions: StorageOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        if local, tablet != nil {
            throw ValidationError("--tablet picks where ctld runs the drill; with --local it runs on this host")
        }
        if !local, scratchDir != nil {
            throw ValidationError("--scratch-dir goes with --local; a tablet's drills use its --drill-directory")
        }
    }

    func run() async throws {
        let target: DrillTarget = randomPoint ? .randomPoint : .newestBackup
        let configuration = try storageOptions.loadConfiguration()
        let logger = output.makeLogger()
        guard local else {
            let client = try cluster.client(configuration)
            let job = try await client.startDrill(ClusterAPI.DrillRequest(keyspace: shard.keyspace, shard: shard.shard, tablet: tablet,
                                                                          parameters: .init(randomPoint: randomPoint)))
            let follower = JobFollower(noun: "drill", client: client, output: output, async: async)
            guard let finished = try await follower.follow(job, starting: "Starting a restore drill of \(shard) on tablet \(shortTablet(job.tablet))") else { return }
            guard finished.result == .completed else { throw follower.failure(finished) }
            if !output.json { Output.line(finished.note ?? "The drill passed.") }
            return
        }
        let progress = TransferProgress()
        let keyring = try MasterKeyring.load(configuration.encryption)
        let record = try await storageOptions.withStorage(configuration, logger: logger) { storage in
            let runner = DrillRunner(context: RestoreContext(shard: shard, storage: storage, logger: logger, progress: progress,
                                                             keyring: keyring),
                                     ranOn: "local", scratchRoot: scratchDir.map { URL(fileURLWithPath: $0).standardizedFileURL.path })
            return try await Output.withProgress(progress, enabled: !output.json) {
                try await runner.run(target)
            }
        }
        if output.json {
            try Output.json(record)
        } else {
            Output.line(record.summary.prefix(1).uppercased() + record.summary.dropFirst())
            if !record.passed {
                for table in record.tables where !table.checkPassed {
                    Output.line("  \(table.table): \(table.check)")
                }
            }
        }
        if !record.passed { throw ExitCode(1) }
    }
}
