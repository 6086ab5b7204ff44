import ArgumentParser
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

    @Argument(help: ArgumentHelp("The shard, <keyspace>/<shard>.", valueName: "keyspace/shard"))
    var shard: String

    @Flag(name: .long, help: "Direct mode: restore into a data directory on this host.")
    var local = false

    @Option(name: .long, help: ArgumentHelp("The new data directory (empty or missing).", valueName: "path"))
    var targetDatadir: String?

    @Option(name: .long, help: ArgumentHelp("Restore exactly this backup (and the chain under it).", valueName: "name"))
    var backup: String?

    @Option(name: .long, help: ArgumentHelp("Restore everything committed before this second (RFC 3339, e.g. 2026-11-25T14:00:00Z).", valueName: "time"))
    var toTime: String?

    @Option(name: .long, help: ArgumentHelp("Restore up to and including this GTID position (with or without the MariaDB/ prefix).", valueName: "gtid"))
    var toPosition: String?

    @Flag(name: .long, help: "Print the chosen chain and change nothing.")
    var dryRun = false

    @OptionGroup var storageOptions: StorageOptions
    @OptionGroup var output: OutputOptions

    func target() throws -> RestoreTarget {
        let chosen = [backup != nil, toTime != nil, toPosition != nil].filter { $0 }.count
        guard chosen <= 1 else {
            throw CairnError(.usage, "choose one of --backup, --to-time and --to-position")
        }
        if let backup { return .backup(backup) }
        if let toTime {
            guard let date = UTCTime.parseRFC3339(toTime) else {
                throw CairnError(.usage, "--to-time \(toTime) is not an RFC 3339 time; write e.g. 2026-11-25T14:00:00Z")
            }
            // Everything committed before that second.
            return .time(Date(timeIntervalSince1970: floor(date.timeIntervalSince1970)))
        }
        if let toPosition { return .position(try ReplicationPosition(parsing: toPosition)) }
        return .latest
    }

    func run() async throws {
        let shard = try parseShard(shard)
        let target = try target()
        guard local else {
            throw CairnError(.usage, "restores through the control server are not available in this build; pass --local --target-datadir PATH")
        }
        guard let targetDatadir else {
            throw CairnError(.usage, "direct mode restores into a directory: pass --target-datadir PATH")
        }
        let directory = URL(fileURLWithPath: targetDatadir).standardizedFileURL.path
        let configuration = try storageOptions.loadConfiguration()
        let logger = output.makeLogger()
        let progress = TransferProgress()
        try await storageOptions.withStorage(configuration, logger: logger) { storage in
            let runner = RestoreRunner(context: RestoreContext(shard: shard, storage: storage, logger: logger, progress: progress))
            let plan = try await runner.plan(target)
            try RestoreRunner.checkTarget(directory)
            if dryRun {
                if output.json {
                    try Output.json(RestorePlanJSON(plan))
                } else {
                    Output.line("Restore of \(shard) to \(plan.target) into \(directory) would apply:")
                    Output.line(RestorePlanJSON(plan).table())
                    Output.line("Dry run: nothing was changed.")
                }
                return
            }
            let result = try await Output.withProgress(progress, enabled: !output.json) {
                try await runner.run(plan, into: directory)
            }
            if output.json {
                var json = RestorePlanJSON(plan)
                json.reachedPosition = result.position.description
                json.targetDatadir = directory
                try Output.json(json)
            } else {
                let links = plan.incrementals.count
                Output.line("Restored \(shard) into \(directory): full backup \(plan.full.backupName)" +
                            (links > 0 ? " and \(links) incremental\(links == 1 ? "" : "s")" : "") +
                            ", position \(result.position). Start it with: mariadbd --datadir=\(directory)")
            }
        }
    }
}

struct RestorePlanJSON: Encodable {
    struct Step: Encodable {
        var backup: String
        var type: String
        var fromPosition: String?
        var position: String
        var startTime: Date
        var finishTime: Date
        var firstEventTime: Date?
        var lastEventTime: Date?

        enum CodingKeys: String, CodingKey {
            case backup, type
            case fromPosition = "from_position"
            case position
            case startTime = "start_time"
            case finishTime = "finish_time"
            case firstEventTime = "first_event_time"
            case lastEventTime = "last_event_time"
        }
    }

    var target: String
    var steps: [Step]
    var stopPosition: String?
    var stopTime: Date?
    var reachedPosition: String?
    var targetDatadir: String?

    enum CodingKeys: String, CodingKey {
        case target, steps
        case stopPosition = "stop_position"
        case stopTime = "stop_time"
        case reachedPosition = "reached_position"
        case targetDatadir = "target_datadir"
    }

    init(_ plan: RestorePlan) {
        target = plan.target.description
        steps = plan.backups.map {
            Step(backup: $0.backupName, type: $0.incremental ? "incremental" : "full (\($0.method.rawValue))",
                 fromPosition: $0.fromPosition?.description, position: $0.position.description,
                 startTime: $0.startTime, finishTime: $0.finishTime,
                 firstEventTime: $0.firstEventTime, lastEventTime: $0.lastEventTime)
        }
        stopPosition = plan.stopPosition?.description
        stopTime = plan.stopTime
    }

    func table() -> String {
        var t = TextTable(header: ["BACKUP", "TYPE", "FROM", "TO", "STARTED", "EVENTS"])
        for s in steps {
            let events = s.firstEventTime.map { first in
                "\(UTCTime.rfc3339(first, fractional: false)) .. \(s.lastEventTime.map { UTCTime.rfc3339($0, fractional: false) } ?? "?")"
            } ?? "-"
            t.rows.append([s.backup, s.type, s.fromPosition ?? "-", s.position,
                           UTCTime.rfc3339(s.startTime, fractional: false), events])
        }
        var text = t.render()
        if let stopPosition { text += "\nstopping at position \(stopPosition) (inclusive)" }
        if let stopTime { text += "\nstopping before \(UTCTime.rfc3339(stopTime, fractional: false))" }
        return text
    }
}
