import ArgumentParser
import CairnCore
import CairnEngine
import CairnStorage
import Foundation

struct PruneCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prune",
        abstract: "Apply the retention policy to a shard's backups.",
        discussion: """
            The policy is the configuration's "retention" object (see docs/RETENTION.md). Prints every backup \
            with its decision, keep or remove, and the reasons; --dry-run prints the same and changes nothing. \
            A backup with an unreadable MANIFEST is reported and kept. With "object_lock" configured, what the \
            store still locks is kept, with the date its lock ends (see docs/STORAGE.md).
            """,
        aliases: ["PruneBackups"]
    )

    @Argument(help: .shard, transform: KeyspaceShard.init(parsing:))
    var shard: KeyspaceShard

    @Flag(name: .long, help: "Print what would be removed and change nothing.")
    var dryRun = false

    @OptionGroup var storageOptions: StorageOptions
    @OptionGroup var output: OutputOptions

    func run() async throws {
        let configuration = try storageOptions.loadConfiguration()
        guard let policy = configuration.retention else {
            throw CairnError(.configuration, "no retention policy is configured; add a \"retention\" object to the configuration file given with --config (see docs/RETENTION.md)")
        }
        let logger = output.makeLogger()
        let (report, displayURL) = try await storageOptions.withStorage(configuration, logger: logger) { storage in
            let pruner = BackupPruner(shard: shard, storage: storage, logger: logger)
            return (try await pruner.prune(policy: policy, now: Date(), dryRun: dryRun), storage.displayURL)
        }
        let json = PruneReportJSON(shard: shard, storage: displayURL, report: report)
        if output.json {
            try Output.json(json)
        } else {
            Output.line("Retention policy: \(policy.summary); now \(UTCTime.rfc3339(report.plan.now, fractional: false)).")
            if let lock = report.plan.objectLock {
                Output.line("Object lock: \(lock); what the store still locks is kept.")
            }
            if report.plan.decisions.isEmpty {
                Output.line("No backups of \(shard).")
            } else {
                Output.line(json.table())
            }
            let toRemove = report.plan.removalOrder.count
            if dryRun {
                Output.line("Dry run: \(toRemove) backup\(toRemove == 1 ? "" : "s") would be removed, \(report.plan.kept.count) kept; nothing was changed.")
            } else {
                Output.line("Removed \(report.removed.count) backup\(report.removed.count == 1 ? "" : "s") of \(shard) (\(formatBytes(report.freedBytes))) from \(displayURL); \(report.plan.kept.count) kept.")
            }
            for point in report.restorePoints {
                Output.line("\(dryRun ? "Would remove" : "Removed") restore point \(point.name) of keyspace \(shard.keyspace): \(point.reason).")
            }
        }
        if !output.json, !report.segmentsRemoved.isEmpty {
            let n = report.segmentsRemoved.count
            Output.line("\(dryRun ? "Would remove" : "Removed") \(n) archived binary log segment\(n == 1 ? "" : "s") that no kept full backup needs (through \(report.segmentsRemoved.last!)).")
        }
        if !output.json, let first = report.segmentsLocked.first, let last = report.segmentsLocked.last {
            let n = report.segmentsLocked.count
            Output.line("Kept \(n) archived binary log segment\(n == 1 ? "" : "s") that no kept full backup needs (\(first.segment.manifestName)\(n == 1 ? "" : " through \(last.segment.manifestName)")): the store still locks \(n == 1 ? "it" : "them"); the oldest is \(first.reason).")
        }
        for problem in report.plan.problems {
            Output.note("warning: backup \(problem.name) of \(shard) has an unreadable MANIFEST and was kept; inspect it, then repair it or remove it with `cairn remove-backup \(shard) \(problem.name)`")
        }
    }
}

/// `cairn prune --json`.
struct PruneReportJSON: Encodable {
    struct Reason: Encodable {
        var rule: String
        var detail: String
    }

    struct Decision: Encodable {
        var backup: String
        /// `full`, `incremental`, `incomplete` or `unreadable`.
        var type: String
        /// `keep` or `remove`.
        var decision: String
        var reasons: [Reason]
        var parent: String?
        var startTime: Date?

        enum CodingKeys: String, CodingKey {
            case backup, type, decision, reasons, parent
            case startTime = "start_time"
        }
    }

    struct Policy: Encodable {
        var minCount: Int
        var minAge: String
        var pitrWindow: String?
        var keepDaily: Int
        var keepWeekly: Int
        var keepMonthly: Int
        var incompleteAfter: String

        enum CodingKeys: String, CodingKey {
            case minCount = "min_count"
            case minAge = "min_age"
            case pitrWindow = "pitr_window"
            case keepDaily = "keep_daily"
            case keepWeekly = "keep_weekly"
            case keepMonthly = "keep_monthly"
            case incompleteAfter = "incomplete_after"
        }
    }

    var shard: String
    var storage: String
    var now: Date
    var dryRun: Bool
    var policy: Policy
    var windowStart: Date?
    var decisions: [Decision]
    /// What the plan removes, in the order it removes them.
    var removalOrder: [String]
    /// What was removed (empty in a dry run).
    var removed: [String]
    var freedBytes: Int64
    /// Restore points of the keyspace removed (in a dry run: to remove), with why.
    var restorePoints: [String: String]
    /// Archived binary log segments removed (to remove, in a dry run).
    var segmentsRemoved: [String]
    /// Segments no kept backup needs that the store still locks, with why they stay.
    var segmentsLocked: [String: String]
    /// `object_lock`, when configured.
    var objectLock: ObjectLock?

    struct ObjectLock: Encodable {
        var mode: String
        var days: Int
    }

    enum CodingKeys: String, CodingKey {
        case shard, storage, now, policy, decisions, removed
        case restorePoints = "restore_points_removed"
        case segmentsRemoved = "segments_removed"
        case segmentsLocked = "segments_locked"
        case objectLock = "object_lock"
        case dryRun = "dry_run"
        case windowStart = "window_start"
        case removalOrder = "removal_order"
        case freedBytes = "freed_bytes"
    }

    init(shard: KeyspaceShard, storage: String, report: BackupPruner.Report) {
        let plan = report.plan
        self.shard = shard.description
        self.storage = storage
        now = plan.now
        dryRun = report.dryRun
        let p = plan.policy
        policy = Policy(minCount: p.minCount, minAge: p.minAge.description, pitrWindow: p.pitrWindow?.description,
                        keepDaily: p.keepDaily, keepWeekly: p.keepWeekly, keepMonthly: p.keepMonthly,
                        incompleteAfter: p.incompleteAfter.description)
        windowStart = plan.windowStart
        decisions = plan.decisions.map { d in
            Decision(backup: d.name, type: d.kind.rawValue, decision: d.action.rawValue,
                     reasons: d.reasons.map { Reason(rule: $0.rule.rawValue, detail: $0.detail) },
                     parent: d.parent, startTime: d.startTime)
        }
        removalOrder = plan.removalOrder
        removed = report.removed
        freedBytes = report.freedBytes
        restorePoints = Dictionary(report.restorePoints.map { ($0.name, $0.reason) }, uniquingKeysWith: { a, _ in a })
        segmentsRemoved = report.segmentsRemoved
        segmentsLocked = Dictionary(report.segmentsLocked.map { ($0.segment.manifestName, $0.reason) }, uniquingKeysWith: { a, _ in a })
        objectLock = plan.objectLock.map { ObjectLock(mode: $0.mode.rawValue, days: $0.days) }
    }

    func table() -> String {
        var t = TextTable(header: ["BACKUP", "TYPE", "DECISION", "REASON"])
        for d in decisions {
            t.rows.append([d.backup, d.type, d.decision, d.reasons.map { "\($0.rule): \($0.detail)" }.joined(separator: "; ")])
        }
        return t.render()
    }
}
