import ArgumentParser
import CairnCore
import CairnEngine
import CairnStorage
import Foundation
import Logging

struct BackupsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backups",
        abstract: "List a shard's backups, oldest first, with their chains.",
        aliases: ["ListBackups", "GetBackups"]
    )

    @Argument(help: ArgumentHelp("The shard, <keyspace>/<shard>.", valueName: "keyspace/shard"))
    var shard: String

    @OptionGroup var storageOptions: StorageOptions
    @OptionGroup var output: OutputOptions

    func run() async throws {
        let shard = try parseShard(shard)
        let configuration = try storageOptions.loadConfiguration()
        let logger = output.makeLogger()
        let listing = try await storageOptions.withStorage(configuration, logger: logger) { storage in
            try await BackupListing.make(shard: shard, storage: storage, strategy: configuration.backupStrategy, logger: logger)
        }
        if output.json {
            try Output.json(listing)
            return
        }
        guard !listing.backups.isEmpty else {
            Output.line("No backups of \(shard).")
            return
        }
        var table = TextTable(header: ["NAME", "TYPE", "STATUS", "PARENT", "FROM", "POSITION", "STARTED", "FINISHED", "SIZE"])
        for b in listing.backups {
            table.rows.append([
                b.name, b.type, b.status, b.parent ?? "-", b.fromPosition ?? "-", b.position ?? "-",
                b.startTime.map { UTCTime.rfc3339($0, fractional: false) } ?? "-",
                b.finishTime.map { UTCTime.rfc3339($0, fractional: false) } ?? "-",
                formatBytes(b.storedBytes),
            ])
        }
        Output.line(table.render())
        for b in listing.backups where b.status == "unreadable" {
            Output.note("warning: \(b.name): \(b.problem ?? "unreadable")")
        }
        if let next = listing.nextFullDue {
            Output.line("Next full backup due \(UTCTime.rfc3339(next, fractional: false))" +
                        (listing.nextIncrementalDue.map { ", next incremental \(UTCTime.rfc3339($0, fractional: false))" } ?? "") + ".")
        }
    }
}

/// The listing as printed with --json (and returned by the control server).
struct BackupListing: Encodable {
    struct Entry: Encodable {
        var name: String
        /// `full` or `incremental`; `unknown` when incomplete.
        var type: String
        var method: String?
        /// `complete`, `incomplete` or `unreadable`.
        var status: String
        var problem: String?
        var tabletAlias: String?
        var parent: String?
        var fromPosition: String?
        var position: String?
        var startTime: Date?
        var finishTime: Date?
        var firstEventTime: Date?
        var lastEventTime: Date?
        var storedBytes: Int64
        var rawBytes: Int64?
        /// Whether its chain back to a full backup is whole.
        var restorable: Bool

        enum CodingKeys: String, CodingKey {
            case name, type, method, status, problem
            case tabletAlias = "tablet_alias"
            case parent
            case fromPosition = "from_position"
            case position
            case startTime = "start_time"
            case finishTime = "finish_time"
            case firstEventTime = "first_event_time"
            case lastEventTime = "last_event_time"
            case storedBytes = "stored_bytes"
            case rawBytes = "raw_bytes"
            case restorable
        }
    }

    var shard: String
    var storage: String
    var backups: [Entry]
    var nextFullDue: Date?
    var nextIncrementalDue: Date?

    enum CodingKeys: String, CodingKey {
        case shard, storage, backups
        case nextFullDue = "next_full_due"
        case nextIncrementalDue = "next_incremental_due"
    }

    static func make(shard: KeyspaceShard, storage: any BackupStorage, strategy: BackupStrategyConfig?,
                     logger: Logger) async throws -> BackupListing {
        let stored = try await BackupRepository(storage: storage, logger: logger).list(shard)
        let chains = BackupChains(stored.compactMap(\.manifest))
        let entries = stored.map { b -> Entry in
            switch b.state {
            case .complete(let m):
                return Entry(name: b.name, type: m.incremental ? "incremental" : "full", method: m.method.rawValue,
                             status: "complete", problem: nil, tabletAlias: m.tabletAlias, parent: m.parentBackup,
                             fromPosition: m.fromPosition?.description, position: m.position.description,
                             startTime: m.startTime, finishTime: m.finishTime, firstEventTime: m.firstEventTime,
                             lastEventTime: m.lastEventTime, storedBytes: m.storedSize, rawBytes: m.rawSize,
                             restorable: chains.brokenLink(of: m) == nil)
            case .incomplete:
                return Entry(name: b.name, type: "unknown", method: nil, status: "incomplete", problem: nil,
                             tabletAlias: b.parsedName?.tabletAlias.description, parent: nil, fromPosition: nil, position: nil,
                             startTime: b.startTime, finishTime: nil, firstEventTime: nil, lastEventTime: nil,
                             storedBytes: b.storedBytes, rawBytes: nil, restorable: false)
            case .unreadable(let why):
                return Entry(name: b.name, type: "unknown", method: nil, status: "unreadable", problem: why,
                             tabletAlias: b.parsedName?.tabletAlias.description, parent: nil, fromPosition: nil, position: nil,
                             startTime: b.startTime, finishTime: nil, firstEventTime: nil, lastEventTime: nil,
                             storedBytes: b.storedBytes, rawBytes: nil, restorable: false)
            }
        }
        let schedule = BackupStrategy.schedule(backups: chains.backups, strategy: strategy, now: Date())
        return BackupListing(shard: shard.description, storage: storage.displayURL, backups: entries,
                             nextFullDue: schedule.nextFull, nextIncrementalDue: schedule.nextIncremental)
    }
}
