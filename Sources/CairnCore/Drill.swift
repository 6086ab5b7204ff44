public import Foundation

/// What a restore drill restores.
public enum DrillTarget: Sendable, Hashable, CustomStringConvertible {
    /// Exactly the newest complete backup (its chain, no archived segments):
    /// the point the next drill reaches too until a new backup lands, so the
    /// drills of one backup check each other (``DrillReference``).
    case newestBackup
    /// A moment drawn at random inside the restorable window.
    case randomPoint

    public var description: String {
        switch self {
        case .newestBackup: "the newest backup"
        case .randomPoint: "a random point in the restorable window"
        }
    }
}

/// One table of a drill's restored server: what `CHECK TABLE` said and its `CHECKSUM TABLE`.
public struct DrillTableCheck: Sendable, Hashable, Codable {
    /// `schema.table`.
    public var table: String
    /// `OK`, or the message `CHECK TABLE` gave instead.
    public var check: String
    /// `CHECKSUM TABLE ... EXTENDED`, as text (it can exceed Int64); nil when the table has none.
    public var checksum: String?

    public init(table: String, check: String, checksum: String?) {
        self.table = table
        self.check = check
        self.checksum = checksum
    }

    public var checkPassed: Bool { check == "OK" }
}

/// The per-table checksums a shard's data has at one position of one chain,
/// recorded by the first drill that restored it. A later drill that reaches
/// the same position from the same full backup must reproduce them: a
/// backup changed underneath since (edited, or rotten in a way its hashes
/// did not catch) restores other data and fails the drill.
public struct DrillReference: Sendable, Hashable, Codable {
    public var fullBackup: String
    public var position: ReplicationPosition
    /// The drill that recorded it.
    public var recordedBy: String
    public var recordedAt: Date
    /// `schema.table` → checksum.
    public var checksums: [String: String]

    public init(fullBackup: String, position: ReplicationPosition, recordedBy: String, recordedAt: Date, checksums: [String: String]) {
        self.fullBackup = fullBackup
        self.position = position
        self.recordedBy = recordedBy
        self.recordedAt = recordedAt
        self.checksums = checksums
    }

    enum CodingKeys: String, CodingKey {
        case fullBackup = "full_backup"
        case position
        case recordedBy = "recorded_by"
        case recordedAt = "recorded_at"
        case checksums
    }

    /// The reference's key inside the drill directory: the full backup and a
    /// digest of the position (a GTID list can be long and holds `,` and `:`).
    public static func key(fullBackup: String, position: ReplicationPosition) -> String {
        // FNV-1a over the canonical text: stable across runs and platforms.
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in position.description.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        let hex = String(hash, radix: 16)
        return "\(fullBackup).\(String(repeating: "0", count: 16 - hex.count))\(hex)"
    }
}

/// How a drill's checks compare with the reference.
public enum DrillReferenceOutcome: String, Sendable, Hashable, Codable {
    /// No drill had restored this point before; this one recorded the reference.
    case recorded
    /// Every table's checksum equals the reference.
    case matched
    /// At least one table differs from the reference.
    case mismatched
    /// The drill did not get as far as comparing (its restore failed).
    case notCompared = "not_compared"
}

/// A drill's outcome, stored as `<ks>/<shard>/drills/<name>.json`.
public struct DrillRecord: Sendable, Hashable, Codable {
    public var name: String
    public var keyspace: String
    public var shard: String
    /// Where it ran: a tablet alias, or `local`.
    public var ranOn: String
    public var target: String
    public var startedAt: Date
    public var finishedAt: Date
    public var passed: Bool
    /// Why it failed, one sentence; nil when it passed.
    public var failure: String?
    public var fullBackup: String?
    /// The backups restored, full first.
    public var backups: [String]
    public var segments: Int
    public var position: ReplicationPosition?
    /// Download, verification and replay: what a real restore of this point would take.
    public var restoreSeconds: Double
    public var tables: [DrillTableCheck]
    public var reference: DrillReferenceOutcome
    /// The drill whose reference this one was compared with.
    public var referenceRecordedBy: String?

    public init(name: String, keyspace: String, shard: String, ranOn: String, target: String, startedAt: Date) {
        self.name = name
        self.keyspace = keyspace
        self.shard = shard
        self.ranOn = ranOn
        self.target = target
        self.startedAt = startedAt
        self.finishedAt = startedAt
        self.passed = false
        self.backups = []
        self.segments = 0
        self.restoreSeconds = 0
        self.tables = []
        self.reference = .notCompared
    }

    enum CodingKeys: String, CodingKey {
        case name, keyspace, shard
        case ranOn = "ran_on"
        case target
        case startedAt = "started_at"
        case finishedAt = "finished_at"
        case passed, failure
        case fullBackup = "full_backup"
        case backups, segments, position
        case restoreSeconds = "restore_seconds"
        case tables, reference
        case referenceRecordedBy = "reference_recorded_by"
    }

    /// A drill's name: the second it started, then where it ran, like a backup's.
    public static func name(startedAt: Date, ranOn: String) -> String {
        "\(UTCTime.nameStamp(startedAt)).\(ranOn)"
    }

    /// A drill name is a UTC stamp and a host part of letters, digits and `-`.
    public static func isValidName(_ name: String) -> Bool {
        guard !name.isEmpty, name.count <= 100 else { return false }
        return name.utf8.allSatisfy { c in
            (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) || (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z"))
                || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z")) || c == UInt8(ascii: "-") || c == UInt8(ascii: ".")
        } && !name.hasPrefix(".") && !name.contains("..")
    }

    /// One line for the operator.
    public var summary: String {
        if let failure { return "drill \(name) FAILED: \(failure)" }
        let compared: String
        switch reference {
        case .recorded: compared = "recorded the reference checksums of this point"
        case .matched: compared = "checksums match the reference of drill \(referenceRecordedBy ?? "?")"
        case .mismatched, .notCompared: compared = "not compared"
        }
        return "drill \(name) passed: restored \(target) in \(String(format: "%.1f", restoreSeconds)) s, \(tables.count) table\(tables.count == 1 ? "" : "s") checked, \(compared)"
    }
}

/// Judges a drill's table checks against the reference: pure, so each rule is unit-tested.
public enum DrillVerdict {
    public struct Judgement: Sendable, Hashable {
        public var passed: Bool
        public var failure: String?
        public var reference: DrillReferenceOutcome
        /// The reference to store when this drill is the first at its point.
        public var newReference: DrillReference?
    }

    /// `CHECK TABLE` must say OK for every table, and when a reference
    /// exists, every table's checksum and the set of tables must equal it.
    public static func judge(_ tables: [DrillTableCheck], reference: DrillReference?, drill: String, fullBackup: String,
                             position: ReplicationPosition, now: Date) -> Judgement {
        let broken = tables.filter { !$0.checkPassed }
        if !broken.isEmpty {
            let list = broken.prefix(5).map { "\($0.table) (\($0.check))" }.joined(separator: ", ")
            return Judgement(passed: false, failure: "CHECK TABLE reports \(broken.count) damaged table\(broken.count == 1 ? "" : "s") after restoring \(fullBackup)'s chain: \(list); the backup does not hold a sound copy, take a new full backup",
                             reference: .notCompared, newReference: nil)
        }
        let checksums = Dictionary(tables.compactMap { t in t.checksum.map { (t.table, $0) } }, uniquingKeysWith: { a, _ in a })
        guard let reference else {
            return Judgement(passed: true, failure: nil, reference: .recorded,
                             newReference: DrillReference(fullBackup: fullBackup, position: position, recordedBy: drill, recordedAt: now,
                                                          checksums: checksums))
        }
        var differing: [String] = []
        for (table, sum) in reference.checksums.sorted(by: { $0.key < $1.key }) where checksums[table] != sum {
            differing.append(checksums[table] == nil ? "\(table) (missing)" : table)
        }
        for table in checksums.keys.sorted() where reference.checksums[table] == nil {
            differing.append("\(table) (not in the reference)")
        }
        guard differing.isEmpty else {
            let list = differing.prefix(5).joined(separator: ", ") + (differing.count > 5 ? " and \(differing.count - 5) more" : "")
            return Judgement(passed: false, failure: "the data restored at \(position) differs from what drill \(reference.recordedBy) restored at the same point: \(list); a backup of this chain was changed after that drill, restore from another chain and take a new full backup",
                             reference: .mismatched, newReference: nil)
        }
        return Judgement(passed: true, failure: nil, reference: .matched, newReference: nil)
    }
}

/// Picks a drill's restore target: pure, the randomness is a parameter.
public enum DrillTargetChoice {
    /// For ``DrillTarget/newestBackup``, the newest restorable backup; for a
    /// random point, a second drawn uniformly between the window's first
    /// restorable moment and its newest transaction time (the newest backup
    /// when no time is known there).
    public static func restoreTarget<G: RandomNumberGenerator>(_ target: DrillTarget, backups: [BackupManifest], archive: ArchiveTimeline,
                                                               using generator: inout G) throws -> RestoreTarget {
        let chains = BackupChains(backups)
        guard let newest = chains.newestRestorable else {
            throw CairnError(.chain, "there is no complete chain to drill; take a full backup first")
        }
        switch target {
        case .newestBackup:
            return .backup(newest.backupName)
        case .randomPoint:
            guard let window = RestorePlanner.window(backups: backups, archive: archive),
                  let end = window.toTime, end.timeIntervalSince(window.fromTime) >= 2 else {
                return .backup(newest.backupName)
            }
            // Time targets restore what committed before the instant, so a
            // second after the first full backup finished is the earliest.
            let from = window.fromTime.timeIntervalSince1970.rounded(.up) + 1
            let to = end.timeIntervalSince1970.rounded(.down)
            guard to > from else { return .backup(newest.backupName) }
            let second = Double.random(in: from...to, using: &generator).rounded(.down)
            return .time(Date(timeIntervalSince1970: second))
        }
    }
}

/// When the next scheduled drill of a shard is due (`backup_strategy.drill_interval`).
public enum DrillSchedule {
    /// `interval` after the newest drill (passed or failed), at once when
    /// there is none; after a drill that could not start, again after `retry`.
    /// A shard without a complete backup has nothing to drill.
    public static func nextDue(lastDrill: Date?, lastAttempt: Date?, interval: ConfigDuration, retry: TimeInterval = 300) -> Date {
        var due = lastDrill.map { $0.addingTimeInterval(interval.timeInterval) } ?? .distantPast
        if let lastAttempt {
            due = max(due, lastAttempt.addingTimeInterval(min(retry, interval.timeInterval)))
        }
        return due
    }
}

/// The phases of a restore drill, in order. It ends `completed` (the drill
/// ran; whether it passed is its record's) or `failed`.
public enum DrillPhase: String, Sendable, Hashable, Codable, CaseIterable, JobPhaseMachine {
    case pending
    /// Choosing the chain and the point.
    case planning
    /// Restoring into the scratch directory.
    case restoring
    /// `CHECK TABLE` and `CHECKSUM TABLE` on every table.
    case checking
    /// Writing the drill's record (and a first reference) into storage.
    case recording
    case completed
    case failed

    public static var initial: DrillPhase { .pending }
    public static var jobName: String { "drill" }
    public static let allowed: [DrillPhase: Set<DrillPhase>] = [
        .pending: [.planning, .failed],
        .planning: [.restoring, .recording, .failed],
        .restoring: [.checking, .recording, .failed],
        .checking: [.recording, .failed],
        .recording: [.completed, .failed],
        .completed: [],
        .failed: [],
    ]
}
