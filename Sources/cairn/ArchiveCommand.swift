import ArgumentParser
import CairnCore
import CairnEngine
import CairnStorage
import Foundation
import Logging
import ServiceLifecycle
import UnixSignals

struct ArchiveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "archive",
        abstract: "Archive a shard's binary log continuously, until stopped.",
        discussion: """
            With --local, receives the binary log of the mysqld given by --mysql-socket as a replica would \
            and stores it in segments at least every --interval (and every few MiB), each ending at a \
            transaction boundary. It starts after the newest archived or backed-up position and runs until \
            SIGTERM or SIGINT, then stores what it has received and exits. Restores then reach every archived \
            transaction (docs/STORAGE.md, "Binary log archive").
            """
    )

    @Argument(help: .shard, transform: KeyspaceShard.init(parsing:))
    var shard: KeyspaceShard

    @Flag(name: .long, help: "Direct mode: archive the mysqld on this host, in this process.")
    var local = false

    @Option(name: .long, help: ArgumentHelp("Store a segment at least this often (e.g. 5s, 1m).", valueName: "duration"))
    var interval: String = "5s"

    @Option(name: .long, help: ArgumentHelp("The server id the archiver uses as a replica (default: 4000000000 plus the source's server id).", valueName: "id"))
    var archiverServerId: UInt32?

    @OptionGroup var storageOptions: StorageOptions
    @OptionGroup var mysqlOptions: MySQLOptions
    @OptionGroup var output: OutputOptions

    func run() async throws {
        guard local else {
            throw CairnError(.usage, "cairn archive runs beside the server: pass --local with --mysql-socket PATH and --storage URL")
        }
        guard let duration = ConfigDuration(parsing: interval), duration.seconds >= 1 else {
            throw CairnError(.usage, "--interval \(clip(interval)) is not a duration of at least one second; write e.g. 5s or 1m")
        }
        let configuration = try storageOptions.loadConfiguration()
        let logger = output.makeLogger(defaultLevel: "info")
        let mysql = try mysqlOptions.connection(configuration)
        try await storageOptions.withStorage(configuration, logger: logger) { storage in
            var compression = CompressionSettings(configuration: configuration)
            compression.multithreaded = false
            let archiver = BinlogArchiver(
                settings: .init(shard: shard, mysql: mysql, storage: storage, interval: .seconds(duration.seconds),
                                replicaServerID: archiverServerId, compression: compression,
                                keyring: try MasterKeyring.load(configuration.encryption)),
                logger: logger)
            let group = ServiceGroup(configuration: ServiceGroupConfiguration(
                services: [archiver], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
            try await group.run()
            let status = archiver.status
            if output.json {
                try Output.json(ArchiveSummaryJSON(shard: shard.description, segmentsWritten: status.segmentsWritten,
                                                   position: status.archivedPosition?.description))
            } else {
                Output.line("Archiving of \(shard) stopped after \(status.segmentsWritten) segment(s)" +
                            (status.archivedPosition.map { "; archived up to \($0)" } ?? "") + ".")
            }
        }
    }
}

struct ArchiveSummaryJSON: Codable {
    var shard: String
    var segmentsWritten: Int
    var position: String?

    enum CodingKeys: String, CodingKey {
        case shard
        case segmentsWritten = "segments_written"
        case position
    }
}
