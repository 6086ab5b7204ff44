import CairnCore
import CairnEngine
import Foundation

/// The text of `cairn status`.
public enum StatusReport {
    public static func render(_ status: ClusterAPI.FleetStatus, showAll: Bool, limit: Int) -> String {
        let shards = status.shards
        guard !shards.isEmpty else { return "No shards: no tablet has registered with ctld." }
        let now = status.generatedAt
        let protected = shards.filter { $0.protected == true }.count
        let unprotected = shards.filter { $0.protected == false }.count
        let unknown = shards.count - protected - unprotected
        let troubled = shards.filter { !$0.problems.isEmpty }
        var lines = ["\(shards.count) shard\(shards.count == 1 ? "" : "s"): \(protected) protected, \(unprotected) not protected"
            + (unknown > 0 ? ", \(unknown) not listed yet" : "") + "; \(troubled.count) with problems."]
        // Problems first, then the rest, up to the limit: one screen, whatever the fleet.
        let ordered = troubled + shards.filter { $0.problems.isEmpty }
        let shown = showAll ? ordered : Array(ordered.prefix(max(1, limit)))
        var table = TextTable(header: ["SHARD", "PROTECTED", "LAST BACKUP", "AGE", "RESTORABLE WINDOW (UTC)", "ARCHIVE LAG", "LAST DRILL", "TABLETS", "PROBLEMS"])
        for s in shown {
            let protectedText = s.protected.map { $0 ? "yes" : "NO" } ?? "?"
            let last = s.lastBackup.map { "\($0.type) \(bytes($0.storedBytes))" } ?? "-"
            let age = s.lastBackupAgeSeconds.map(ageText) ?? "-"
            let window = s.window.map { "\(short($0.start)) .. \(short($0.end))" } ?? "-"
            let drill = s.lastDrill.map { "\($0.passed ? "passed" : "FAILED") \(ageText(now.timeIntervalSince($0.finishedAt))) ago" } ?? "none"
            let tablets = "\(s.healthyTablets)/\(s.tablets)"
            table.rows.append([s.id, protectedText, last, age, window, s.archiveLagSeconds.map(lagText) ?? "-", drill, tablets,
                               s.problems.isEmpty ? "-" : "\(s.problems.count)"])
        }
        lines.append(table.render())
        if shown.count < shards.count {
            let hiddenTroubled = troubled.count - shown.filter { !$0.problems.isEmpty }.count
            lines.append("\(shards.count - shown.count) more shard(s) not shown (\(hiddenTroubled) of them with problems); --all shows them.")
        }
        // Each shown shard's first problem (--json, or the console, has them all).
        for s in shown where !s.problems.isEmpty {
            lines.append("\(s.id): \(s.problems[0])" + (s.problems.count > 1 ? " (and \(s.problems.count - 1) more)" : ""))
        }
        return lines.joined(separator: "\n")
    }

    static func ageText(_ seconds: Double) -> String { FleetStatusBuilder.ageText(seconds) }

    /// An archive lag: tenths of a second under a minute (the recovery point
    /// is a few seconds), then as an age.
    static func lagText(_ seconds: Double) -> String {
        seconds < 60 ? "\((max(0, seconds) * 10).rounded() / 10)s" : ageText(seconds)
    }

    static func short(_ date: Date) -> String {
        // 2026-11-30T12:34:56Z -> 11-30 12:34
        let text = UTCTime.rfc3339(date, fractional: false)
        let start = text.index(text.startIndex, offsetBy: 5)
        let end = text.index(text.startIndex, offsetBy: 16)
        return text[start..<end].replacingOccurrences(of: "T", with: " ")
    }

    static func bytes(_ n: Int64) -> String { StoredSize.text(n) }
}
