import ArgumentParser
import CairnCluster
import CairnCore
import CairnEngine
import Foundation

/// `cairn status`: the whole fleet on one screen, through ctld.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show every shard: whether it is protected, its last backup, restorable window, last drill, and what is wrong.",
        discussion: """
            A shard is protected when it has a restorable chain whose newest commit is younger than twice the \
            shortest backup interval of the strategy (48 hours without one). With more shards than fit a screen \
            (--limit, default 40), shards with problems are shown and the rest counted; --all shows every shard. \
            ctld answers from its cached listings of storage (docs/OBSERVABILITY.md), so a backup that just \
            finished may take a moment to show.
            """,
        aliases: ["Status"]
    )

    @Argument(help: ArgumentHelp("Only this keyspace or keyspace/shard.", valueName: "keyspace[/shard]"))
    var filter: String?

    @Flag(name: .long, help: "Show every shard, however many.")
    var all = false

    @Option(name: .long, help: "Show at most this many shards without problems.")
    var limit: Int = 40

    @OptionGroup var cluster: ClusterOptions
    @OptionGroup var output: OutputOptions

    func run() async throws {
        _ = output.makeLogger()
        var status = try await cluster.client().status()
        if let filter {
            status.shards = status.shards.filter { $0.keyspace == filter || $0.id == filter }
        }
        if output.json {
            try Output.json(status)
            return
        }
        Output.line(StatusReport.render(status, showAll: all, limit: limit))
    }
}

/// The text of `cairn status`.
enum StatusReport {
    static func render(_ status: ClusterAPI.FleetStatus, showAll: Bool, limit: Int) -> String {
        let shards = status.shards
        guard !shards.isEmpty else { return "No shards: no tablet has registered with ctld." }
        let now = status.generatedAt
        let protected = shards.filter { $0.protected == true }.count
        let unprotected = shards.filter { $0.protected == false }.count
        let unknown = shards.count - protected - unprotected
        let troubled = shards.filter { !$0.problems.isEmpty }
        var lines = ["\(shards.count) shard\(shards.count == 1 ? "" : "s"): \(protected) protected, \(unprotected) not protected"
            + (unknown > 0 ? ", \(unknown) not listed yet" : "") + "; \(troubled.count) with problems."]
        // Problems first, then the rest, up to the limit.
        let calm = shards.filter { $0.problems.isEmpty }
        let shownCalm = showAll ? calm : Array(calm.prefix(max(0, limit - troubled.count)))
        let shown = troubled + shownCalm
        var table = TextTable(header: ["SHARD", "PROTECTED", "LAST BACKUP", "AGE", "RESTORABLE WINDOW (UTC)", "LAST DRILL", "TABLETS", "PROBLEMS"])
        for s in shown {
            let protectedText = s.protected.map { $0 ? "yes" : "NO" } ?? "?"
            let last = s.lastBackup.map { "\($0.type) \(bytes($0.storedBytes))" } ?? "-"
            let age = s.lastBackupAgeSeconds.map(ageText) ?? "-"
            let window = s.window.map { "\(short($0.start)) .. \(short($0.end))" } ?? "-"
            let drill = s.lastDrill.map { "\($0.passed ? "passed" : "FAILED") \(ageText(now.timeIntervalSince($0.finishedAt))) ago" } ?? "none"
            let tablets = "\(s.healthyTablets)/\(s.tablets)"
            table.rows.append([s.id, protectedText, last, age, window, drill, tablets, s.problems.isEmpty ? "-" : "\(s.problems.count)"])
        }
        lines.append(table.render())
        if shown.count < shards.count {
            lines.append("\(shards.count - shown.count) more shard(s) without problems not shown; --all shows them.")
        }
        for s in troubled {
            for problem in s.problems { lines.append("\(s.id): \(problem)") }
        }
        return lines.joined(separator: "\n")
    }

    static func ageText(_ seconds: Double) -> String {
        let s = max(0, Int(seconds))
        if s < 60 { return "\(s)s" }
        if s < 3600 { return "\(s / 60)m" }
        if s < 86_400 { return "\(s / 3600)h\((s % 3600) / 60)m" }
        return "\(s / 86_400)d\((s % 86_400) / 3600)h"
    }

    static func short(_ date: Date) -> String {
        // 2026-11-30T12:34:56Z -> 11-30 12:34
        let text = UTCTime.rfc3339(date, fractional: false)
        let start = text.index(text.startIndex, offsetBy: 5)
        let end = text.index(text.startIndex, offsetBy: 16)
        return text[start..<end].replacingOccurrences(of: "T", with: " ")
    }

    static func bytes(_ n: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(n)
        var unit = 0
        while value >= 1024, unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(n) B" : String(format: "%.1f", value) + " " + units[unit]
    }
}
