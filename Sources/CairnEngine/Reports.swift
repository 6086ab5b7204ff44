import CairnCore
import CairnStorage
import Foundation
import Logging

/// The listing as printed with --json (and returned by the control server).
public struct BackupListing: Codable, Sendable {
    public struct Entry: Codable, Sendable {
        public var name: String
        /// `full` or `incremental`; `unknown` when incomplete.
        public var type: String
        public var method: String?
        /// `complete`, `incomplete` or `unreadable`.
        public var status: String
        public var problem: String?
        public var tabletAlias: String?
        public var parent: String?
        public var fromPosition: String?
        public var position: String?
        public var startTime: Date?
        public var finishTime: Date?
        public var firstEventTime: Date?
        public var lastEventTime: Date?
        public var storedBytes: Int64
        public var rawBytes: Int64?
        /// Whether its chain back to a full backup is whole.
        public var restorable: Bool
        /// `none` or `aes-256-gcm`; nil when the manifest cannot be read.
        public var encryption: String? = nil
        /// The master key a restore of this backup needs (encrypted backups only).
        public var keyID: String? = nil

        enum CodingKeys: String, CodingKey {
            case encryption
            case keyID = "key_id"
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

    /// The shard's binary log archive (`cairn archive`).
    public struct Archive: Codable, Sendable {
        public var segments: Int
        public var storedBytes: Int64
        public var firstSegment: String?
        public var lastSegment: String?
        /// After the newest archived transaction.
        public var position: String?
        /// The oldest archived transaction's time.
        public var firstEventTime: Date?
        public var lastEventTime: Date?
        public var lastArchivedTime: Date?
        /// Segment manifests that cannot be read (each a gap), with why.
        public var unreadable: [String]
        /// The master keys the encrypted segments need, sorted (absent when none is encrypted).
        public var keyIDs: [String]? = nil

        enum CodingKeys: String, CodingKey {
            case keyIDs = "key_ids"
            case segments
            case storedBytes = "stored_bytes"
            case firstSegment = "first_segment"
            case lastSegment = "last_segment"
            case position
            case firstEventTime = "first_event_time"
            case lastEventTime = "last_event_time"
            case lastArchivedTime = "last_archived_time"
            case unreadable
        }
    }

    /// The cluster's live archiver of the shard (issue 11 item 2), as ctld
    /// knows it from the heartbeats: absent in direct mode and when archiving
    /// is not configured.
    public struct Archiver: Codable, Sendable, Hashable {
        /// The tablet holding the archive lease, if one does.
        public var tablet: String?
        public var running: Bool
        public var connected: Bool
        /// Seconds the oldest received but not yet stored transaction has waited.
        public var lagSeconds: Double?
        public var archivedPosition: String?
        public var lastEventTime: Date?
        public var error: String?

        public init(tablet: String?, running: Bool, connected: Bool, lagSeconds: Double?, archivedPosition: String?,
                    lastEventTime: Date?, error: String?) {
            self.tablet = tablet
            self.running = running
            self.connected = connected
            self.lagSeconds = lagSeconds
            self.archivedPosition = archivedPosition
            self.lastEventTime = lastEventTime
            self.error = error
        }

        /// "tablet zone1-100, lag 0.4s, archived up to MariaDB/0-1-250 (2026-...)", or why none runs.
        public var summary: String {
            guard running else { return "not running (\(error ?? "no tablet archives"))" }
            var s = "tablet \(tablet ?? "?"), "
            s += connected ? "lag \(((lagSeconds ?? 0) * 10).rounded() / 10)s" : "disconnected"
            if let archivedPosition { s += ", archived up to \(archivedPosition)" }
            if let lastEventTime { s += " (\(UTCTime.rfc3339(lastEventTime, fractional: false)))" }
            if let error { s += "; last error: \(error)" }
            return s
        }

        enum CodingKeys: String, CodingKey {
            case tablet, running, connected, error
            case lagSeconds = "lag_seconds"
            case archivedPosition = "archived_position"
            case lastEventTime = "last_event_time"
        }
    }

    public var shard: String
    public var storage: String
    public var backups: [Entry]
    public var nextFullDue: Date?
    public var nextIncrementalDue: Date?
    /// When `delta_backup_interval` next falls due; absent without one.
    public var nextDeltaDue: Date? = nil
    /// Present when the shard has archived segments.
    public var archive: Archive?
    /// What can be restored, from backups and archived segments together; nil when nothing is.
    public var restorableWindow: RestoreWindow?
    /// The live archiver (through ctld only).
    public var archiver: Archiver?

    enum CodingKeys: String, CodingKey {
        case shard, storage, backups
        case nextFullDue = "next_full_due"
        case nextIncrementalDue = "next_incremental_due"
        case nextDeltaDue = "next_delta_due"
        case archive
        case restorableWindow = "restorable_window"
        case archiver
    }

    public static func make(shard: KeyspaceShard, storage: any BackupStorage, strategy: BackupStrategyConfig?,
                     logger: Logger) async throws -> BackupListing {
        let repository = BackupRepository(storage: storage, logger: logger)
        let stored = try await repository.list(shard)
        let archived = try await repository.listArchive(shard, objects: stored.archiveObjects)
        let chains = BackupChains(stored.manifests)
        let entries = stored.map { b -> Entry in
            switch b.state {
            case .complete(let m):
                return Entry(name: b.name, type: m.typeName, method: m.method.rawValue,
                             status: "complete", problem: nil, tabletAlias: m.tabletAlias, parent: m.parentBackup,
                             fromPosition: m.fromPosition?.description, position: m.position.description,
                             startTime: m.startTime, finishTime: m.finishTime, firstEventTime: m.firstEventTime,
                             lastEventTime: m.lastEventTime, storedBytes: m.storedSize, rawBytes: m.rawSize,
                             restorable: chains.brokenLink(of: m) == nil, encryption: m.encryption,
                             keyID: m.encryption == EncryptionScheme.none ? nil : m.keyID)
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
        var archive: Archive? = nil
        if !archived.objects.isEmpty {
            let segments = archived.segments
            archive = Archive(segments: segments.count, storedBytes: archived.objects.reduce(0) { $0 + $1.size },
                              firstSegment: segments.first?.manifestName, lastSegment: segments.last?.manifestName,
                              position: segments.last?.position.description, firstEventTime: segments.first?.firstEventTime,
                              lastEventTime: segments.last?.lastEventTime,
                              lastArchivedTime: segments.last?.archivedTime,
                              unreadable: archived.unreadable.map { "\($0.name): \($0.problem)" })
            let keyIDs = Set(segments.filter { $0.encryption != EncryptionScheme.none }.compactMap(\.keyID)).sorted()
            archive?.keyIDs = keyIDs.isEmpty ? nil : keyIDs
        }
        var listing = BackupListing(shard: shard.description, storage: storage.displayURL, backups: entries,
                                    nextFullDue: schedule.nextFull, nextIncrementalDue: schedule.nextIncremental,
                                    archive: archive,
                                    restorableWindow: RestorePlanner.window(backups: stored.manifests, archive: archived.timeline))
        listing.nextDeltaDue = schedule.nextDelta
        return listing
    }
}

public struct RestorePlanSummary: Codable, Sendable {
    public struct Step: Codable, Sendable {
        public var backup: String
        public var type: String
        public var fromPosition: String?
        public var position: String
        public var startTime: Date
        public var finishTime: Date
        public var firstEventTime: Date?
        public var lastEventTime: Date?

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

    public var target: String
    public var steps: [Step]
    public var stopPosition: String?
    public var stopTime: Date?
    public var reachedPosition: String?
    public var targetDatadir: String?

    enum CodingKeys: String, CodingKey {
        case target, steps
        case stopPosition = "stop_position"
        case stopTime = "stop_time"
        case reachedPosition = "reached_position"
        case targetDatadir = "target_datadir"
    }

    public init(_ plan: RestorePlan) {
        target = plan.target.description
        steps = plan.backups.map {
            Step(backup: $0.backupName, type: $0.incremental ? $0.typeName : "full (\($0.method.rawValue))",
                 fromPosition: $0.fromPosition?.description, position: $0.position.description,
                 startTime: $0.startTime, finishTime: $0.finishTime,
                 firstEventTime: $0.firstEventTime, lastEventTime: $0.lastEventTime)
        }
        steps += plan.segments.map {
            Step(backup: "\(ArchiveSegmentManifest.directoryName)/\($0.manifestName)", type: "archived segment",
                 fromPosition: $0.fromPosition.description, position: $0.position.description,
                 startTime: $0.archivedTime, finishTime: $0.archivedTime,
                 firstEventTime: $0.firstEventTime, lastEventTime: $0.lastEventTime)
        }
        stopPosition = plan.stopPosition?.description
        stopTime = plan.stopTime
    }

    public func table() -> String {
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

/// A fixed-width text table.
public struct TextTable: Sendable {
    public var header: [String]
    public var rows: [[String]] = []

    public init(header: [String]) {
        self.header = header
    }

    public func render() -> String {
        var widths = header.map(\.count)
        for row in rows {
            for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) }
        }
        func format(_ cells: [String]) -> String {
            cells.enumerated().map { i, c in
                i == cells.count - 1 ? c : c.padding(toLength: widths[i], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }
        return ([format(header)] + rows.map(format)).joined(separator: "\n")
    }
}
