import ArgumentParser
import CairnCore
import CairnEngine
import CairnStorage
import Foundation

struct RotateKeyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rotate-key",
        abstract: "Re-wrap every backup's and archived segment's data key under the current master key.",
        discussion: """
            Reads storage directly (--config or --storage). The configuration's encryption.key_file is the \
            new key; encryption.previous_key_files must hold the keys the backups are under now. Only the \
            small MANIFEST and segment manifests are rewritten, each in one atomic write, never data: \
            stopped anywhere, every backup stays readable with its old key or the new one, and running \
            it again finishes the work. See docs/SECURITY.md.
            """,
        aliases: ["RotateKey"]
    )

    @Argument(help: ArgumentHelp("The shard, as keyspace/shard; omit with --all.", valueName: "keyspace/shard"),
              transform: KeyspaceShard.init(parsing:))
    var shard: KeyspaceShard?

    @Flag(name: .long, help: "Rotate every shard that storage holds.")
    var all = false

    @OptionGroup var storageOptions: StorageOptions
    @OptionGroup var output: OutputOptions

    struct ResultJSON: Encodable {
        var keyID: String
        var shards: [KeyRotator.Report]

        enum CodingKeys: String, CodingKey {
            case keyID = "key_id"
            case shards
        }
    }

    func validate() throws {
        guard (shard != nil) != all else {
            throw ValidationError("give one keyspace/shard, or --all for every shard")
        }
    }

    func run() async throws {
        let configuration = try storageOptions.loadConfiguration()
        guard let keyring = try MasterKeyring.load(configuration.encryption) else {
            throw CairnError(.configuration, "rotate-key needs the new master key: set encryption.key_file (and the old keys in encryption.previous_key_files) in the configuration given with --config")
        }
        let logger = output.makeLogger()
        let reports = try await storageOptions.withStorage(configuration, logger: logger) { storage in
            var shards: [KeyspaceShard] = []
            if let shard { shards = [shard] } else { shards = try await BackupRepository(storage: storage, logger: logger).shards() }
            var reports: [KeyRotator.Report] = []
            let rotator = KeyRotator(storage: storage, keyring: keyring, logger: logger)
            for shard in shards {
                reports.append(try await rotator.rotate(shard))
            }
            return reports
        }
        if output.json {
            try Output.json(ResultJSON(keyID: keyring.current.id, shards: reports))
            return
        }
        for r in reports {
            Output.line("\(r.shard): re-wrapped \(r.rewrappedBackups.count) backup\(r.rewrappedBackups.count == 1 ? "" : "s") and " +
                        "\(r.rewrappedSegments.count) archived segment\(r.rewrappedSegments.count == 1 ? "" : "s") under key \(r.keyID); " +
                        "\(r.alreadyCurrent) already under it, \(r.unencrypted) stored unencrypted.")
        }
        if reports.isEmpty { Output.line("Storage holds no shard; nothing to rotate.") }
    }
}
