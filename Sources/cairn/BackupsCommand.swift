import ArgumentParser
import CairnCluster
import CairnCore
import CairnEngine
import CairnStorage
import Foundation
import Logging

struct BackupsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backups",
        abstract: "List a shard's backups, oldest first, with their chains.",
        discussion: "Reads storage directly with --storage or --config; otherwise asks ctld.",
        aliases: ["ListBackups", "GetBackups"]
    )

    @Argument(help: .shard, transform: KeyspaceShard.init(parsing:))
    var shard: KeyspaceShard

    @OptionGroup var storageOptions: StorageOptions
    @OptionGroup var cluster: ClusterOptions
    @OptionGroup var output: OutputOptions

    func run() async throws {
        let configuration = try storageOptions.loadConfiguration()
        let logger = output.makeLogger()
        let listing: BackupListing
        if storageOptions.isDirect {
            listing = try await storageOptions.withStorage(configuration, logger: logger) { storage in
                try await BackupListing.make(shard: shard, storage: storage, strategy: configuration.backupStrategy, logger: logger)
            }
        } else {
            listing = try await cluster.client(configuration).backups(shard)
        }
        if output.json {
            try Output.json(listing)
            return
        }
        guard !listing.backups.isEmpty else {
            Output.line("No backups of \(shard).")
            if let archive = listing.archive { Output.line(Self.archiveLine(archive)) }
            if let archiver = listing.archiver { Output.line(Self.archiverLine(archiver)) }
            return
        }
        var table = TextTable(header: ["NAME", "TYPE", "STATUS", "PARENT", "FROM", "POSITION", "STARTED", "FINISHED", "SIZE", "KEY"])
        for b in listing.backups {
            table.rows.append([
                b.name, b.type, b.status, b.parent ?? "-", b.fromPosition ?? "-", b.position ?? "-",
                b.startTime.map { UTCTime.rfc3339($0, fractional: false) } ?? "-",
                b.finishTime.map { UTCTime.rfc3339($0, fractional: false) } ?? "-",
                formatBytes(b.storedBytes),
                b.keyID ?? (b.encryption == nil ? "?" : "-"),
            ])
        }
        Output.line(table.render())
        for b in listing.backups where b.status == "unreadable" {
            Output.note("warning: \(b.name): \(b.problem ?? "unreadable")")
        }
        if let archive = listing.archive {
            Output.line(Self.archiveLine(archive))
            for problem in archive.unreadable { Output.note("warning: archived segment \(problem)") }
        }
        if let archiver = listing.archiver { Output.line(Self.archiverLine(archiver)) }
        if let window = listing.restorableWindow {
            Output.line("Restorable window: from \(window.fromPosition) (after \(UTCTime.rfc3339(window.fromTime, fractional: false))) to \(window.toPosition)" +
                        (window.toTime.map { " (\(UTCTime.rfc3339($0, fractional: false)))" } ?? "") + ".")
            for gap in window.gaps { Output.line("Gap: \(gap.description); restores past it need a full backup taken after it.") }
        }
        if let next = listing.nextFullDue {
            Output.line("Next full backup due \(UTCTime.rfc3339(next, fractional: false))" +
                        (listing.nextDeltaDue.map { ", next delta \(UTCTime.rfc3339($0, fractional: false))" } ?? "") +
                        (listing.nextIncrementalDue.map { ", next incremental \(UTCTime.rfc3339($0, fractional: false))" } ?? "") + ".")
        }
    }

    static func archiverLine(_ archiver: BackupListing.Archiver) -> String { "Archiver: \(archiver.summary)." }

    static func archiveLine(_ archive: BackupListing.Archive) -> String {
        var s = "Binary log archive: \(archive.segments) segment\(archive.segments == 1 ? "" : "s"), \(formatBytes(archive.storedBytes))"
        if let position = archive.position { s += ", up to \(position)" }
        if let time = archive.lastEventTime { s += " (\(UTCTime.rfc3339(time, fractional: false)))" }
        if let keys = archive.keyIDs { s += ", encrypted with key\(keys.count == 1 ? "" : "s") \(keys.joined(separator: ", "))" }
        return s + "."
    }
}
