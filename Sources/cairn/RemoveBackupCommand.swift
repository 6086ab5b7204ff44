import ArgumentParser
import CairnCluster
import CairnCore
import CairnEngine
import CairnStorage
import Foundation

struct RemoveBackupCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "remove-backup",
        abstract: "Remove one backup of a shard.",
        discussion: """
            Refuses to remove a backup that other backups continue (it names them): they would no longer \
            restore. --force removes those dependents too, newest first, and says so. An incomplete backup \
            that may still be running (see incomplete_after in docs/RETENTION.md) is refused unless --force.
            """,
        aliases: ["RemoveBackup"]
    )

    @Argument(help: .shard, transform: KeyspaceShard.init(parsing:))
    var shard: KeyspaceShard

    @Argument(help: ArgumentHelp("The backup's name, as `cairn backups` lists it.", valueName: "name"))
    var name: String

    @Flag(name: .long, help: "Also remove the backups that continue its chain; remove an incomplete backup even if it may still be running.")
    var force = false

    @Flag(name: .long, help: "Print what would be removed and change nothing.")
    var dryRun = false

    @OptionGroup var storageOptions: StorageOptions
    @OptionGroup var cluster: ClusterOptions
    @OptionGroup var output: OutputOptions

    /// The removal with the shard and --force beside its own keys.
    struct ResultJSON: Encodable {
        var shard: String
        var forced: Bool
        var removal: BackupRemoval

        enum CodingKeys: String, CodingKey {
            case shard, forced
        }

        func encode(to encoder: any Encoder) throws {
            try removal.encode(to: encoder)
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(shard, forKey: .shard)
            try container.encode(forced, forKey: .forced)
        }
    }

    func run() async throws {
        let configuration = try storageOptions.loadConfiguration()
        let logger = output.makeLogger()
        let removal: BackupRemoval
        let displayURL: String
        if storageOptions.isDirect {
            let incompleteAfter = configuration.retention?.incompleteAfter ?? RetentionPolicy.defaultIncompleteAfter
            (removal, displayURL) = try await storageOptions.withStorage(configuration, logger: logger) { storage in
                let pruner = BackupPruner(shard: shard, storage: storage, logger: logger)
                let removal = try await pruner.remove(name, force: force, dryRun: dryRun, now: Date(), incompleteAfter: incompleteAfter)
                return (removal, storage.displayURL)
            }
        } else {
            let client = try cluster.client(configuration)
            removal = try await client.removeBackup(shard, name: name, force: force, dryRun: dryRun)
            displayURL = "the storage of ctld at \(client.baseURL)"
        }
        if output.json {
            try Output.json(ResultJSON(shard: shard.description, forced: force, removal: removal))
            return
        }
        let verb = dryRun ? "Would remove" : "Removed"
        var text = "\(verb) backup \(removal.backup) of \(shard)"
        if !removal.dependents.isEmpty {
            text += " and, because of --force, the backup\(removal.dependents.count == 1 ? "" : "s") that continue\(removal.dependents.count == 1 ? "s" : "") it: \(removal.dependents.joined(separator: ", "))"
        }
        text += " (\(formatBytes(removal.freedBytes))) from \(displayURL)."
        if dryRun { text += " Dry run: nothing was changed." }
        Output.line(text)
    }
}
