public import Foundation

/// One archived segment of a shard's binary log: a self-contained binary
/// log file (magic, a Format_description event, then whole transactions)
/// holding every transaction after `fromPosition` up to and including
/// `position`, written by `cairn archive` (docs/STORAGE.md, "Binary log
/// archive"). Its manifest is written after its data file and is the commit
/// point, as a backup's `MANIFEST` is.
public struct ArchiveSegmentManifest: Sendable, Codable, Hashable {
    public static let currentFormatVersion = 1

    public var formatVersion: Int
    public var keyspace: String
    public var shard: String
    /// The segment's number: one more than the segment it continues.
    /// Segments in sequence order are in binary log order.
    public var sequence: Int
    /// The GTID position the segment continues from (its first transaction follows it).
    public var fromPosition: ReplicationPosition
    /// The GTID position after its last transaction.
    public var position: ReplicationPosition
    /// Header time of its first and last transaction's GTID event.
    public var firstEventTime: Date
    public var lastEventTime: Date
    public var transactionCount: Int
    /// When the archiver stored it.
    public var archivedTime: Date
    /// The server the binary log was received from.
    public var sourceServerID: UInt32
    public var sourceHost: String
    /// The archiver's own replica server id.
    public var archiverServerID: UInt32
    public var compression: CompressionInfo
    public var encryption: String
    /// The master key wrapping this segment's own data key (encrypted segments only).
    public var keyID: String?
    /// The segment's data key, sealed with master key `keyID`, base64.
    public var wrappedKey: String?
    /// The data file; its `startPosition` is `fromPosition`.
    public var file: ManifestFile

    public init(keyspace: String, shard: String, sequence: Int, fromPosition: ReplicationPosition,
                position: ReplicationPosition, firstEventTime: Date, lastEventTime: Date, transactionCount: Int,
                archivedTime: Date, sourceServerID: UInt32, sourceHost: String, archiverServerID: UInt32,
                compression: CompressionInfo, encryption: String = "none", file: ManifestFile,
                keyID: String? = nil, wrappedKey: String? = nil) {
        self.formatVersion = Self.currentFormatVersion
        self.keyspace = keyspace
        self.shard = shard
        self.sequence = sequence
        self.fromPosition = fromPosition
        self.position = position
        self.firstEventTime = firstEventTime
        self.lastEventTime = lastEventTime
        self.transactionCount = transactionCount
        self.archivedTime = archivedTime
        self.sourceServerID = sourceServerID
        self.sourceHost = sourceHost
        self.archiverServerID = archiverServerID
        self.compression = compression
        self.encryption = encryption
        self.keyID = keyID
        self.wrappedKey = wrappedKey
        self.file = file
    }

    enum CodingKeys: String, CodingKey {
        case formatVersion = "format_version"
        case keyspace, shard, sequence
        case fromPosition = "from_position"
        case position
        case firstEventTime = "first_event_time"
        case lastEventTime = "last_event_time"
        case transactionCount = "transaction_count"
        case archivedTime = "archived_time"
        case sourceServerID = "source_server_id"
        case sourceHost = "source_host"
        case archiverServerID = "archiver_server_id"
        case compression, encryption, file
        case keyID = "key_id"
        case wrappedKey = "wrapped_key"
    }

    // MARK: Names

    /// The directory under `<keyspace>/<shard>/` that holds the segments.
    /// Not a backup name, so backup listings pass it by.
    public static let directoryName = "binlog-archive"

    /// `000000000042`: the sequence, zero-padded so names sort in order.
    public static func stem(_ sequence: Int) -> String {
        let digits = String(sequence)
        return String(repeating: "0", count: max(0, 12 - digits.count)) + digits
    }

    /// The data file's name: `<stem>.binlog` plus the compression suffix;
    /// with a `writer` tag `<stem>.<writer>.binlog` plus the suffix, which is
    /// what archivers write since issue 11's fencing, so that two archivers
    /// racing for one sequence never overwrite each other's data (readers
    /// take the name from the manifest, so both forms read).
    public static func dataFileName(sequence: Int, suffix: String, writer: String? = nil) -> String {
        "\(stem(sequence))\(writer.map { ".\($0)" } ?? "").binlog\(suffix)"
    }

    /// Of two committed manifests for one sequence (two archivers raced),
    /// the one every reader keeps: the smaller manifest name, then the
    /// smaller data file name. The other archiver withdraws its own.
    public static func precedes(_ a: ArchiveSegmentManifest, _ b: ArchiveSegmentManifest) -> Bool {
        (a.manifestName, a.file.name) < (b.manifestName, b.file.name)
    }

    /// The manifest's name: `<stem>.<first event>.<last event>.json` with
    /// the times as `YYYYMMDDTHHMMSSZ`, so a listing alone tells which
    /// segments hold a time range.
    public var manifestName: String {
        "\(Self.stem(sequence)).\(Self.compactTime(firstEventTime)).\(Self.compactTime(lastEventTime)).json"
    }

    /// What a manifest's name says, without reading it.
    public struct NameInfo: Sendable, Hashable {
        public var sequence: Int
        public var firstEventTime: Date
        public var lastEventTime: Date
    }

    /// Parses a manifest name; nil for anything else (data files, strays).
    public static func parseManifestName(_ name: String) -> NameInfo? {
        let parts = name.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[3] == "json", parts[0].count == 12, let sequence = Int(parts[0]),
              let first = parseCompactTime(parts[1]), let last = parseCompactTime(parts[2]) else { return nil }
        return NameInfo(sequence: sequence, firstEventTime: first, lastEventTime: last)
    }

    static func compactTime(_ date: Date) -> String {
        let c = Calendar.utc.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        func pad(_ v: Int?, _ n: Int) -> String {
            let s = String(v ?? 0)
            return String(repeating: "0", count: max(0, n - s.count)) + s
        }
        return "\(pad(c.year, 4))\(pad(c.month, 2))\(pad(c.day, 2))T\(pad(c.hour, 2))\(pad(c.minute, 2))\(pad(c.second, 2))Z"
    }

    static func parseCompactTime(_ text: Substring) -> Date? {
        let u = Array(text.utf8)
        guard u.count == 16, u[8] == UInt8(ascii: "T"), u[15] == UInt8(ascii: "Z") else { return nil }
        func num(_ r: Range<Int>) -> Int? { Int(String(decoding: u[r], as: UTF8.self)) }
        guard let y = num(0..<4), let mo = num(4..<6), let d = num(6..<8), let h = num(9..<11),
              let mi = num(11..<13), let s = num(13..<15) else { return nil }
        return Calendar.utc.date(from: DateComponents(year: y, month: mo, day: d, hour: h, minute: mi, second: s))
    }

    // MARK: Encoding

    public func encoded() throws -> Data {
        try CairnJSON.encoder(pretty: true).encode(self)
    }

    public static func decode(_ data: Data, name: String) throws -> ArchiveSegmentManifest {
        let segment: ArchiveSegmentManifest
        do {
            segment = try CairnJSON.decoder().decode(ArchiveSegmentManifest.self, from: data)
        } catch {
            throw CairnError(.manifest, "the manifest of archived segment \(name) cannot be read (\(describeDecodingError(error))); the archive has a gap there, check the file")
        }
        guard segment.formatVersion <= currentFormatVersion else {
            throw CairnError(.manifest, "the manifest of archived segment \(name) has format version \(segment.formatVersion), newer than this Cairn understands (\(currentFormatVersion)); upgrade Cairn to read it")
        }
        if let problem = BackupManifest.fileNameProblem(segment.file.name)
            ?? EncryptionScheme.problem(segment.encryption, keyID: segment.keyID, wrappedKey: segment.wrappedKey) {
            throw CairnError(.manifest, "the manifest of archived segment \(name) is not valid (\(problem))")
        }
        return segment
    }

    /// The segment as a one-file binlog "backup" that replays it from
    /// `replayFrom` (the position the restore has reached), so that restore
    /// applies segments exactly as it applies incrementals' binary logs.
    /// Its name is the segments' directory, so the file's key is
    /// `<keyspace>/<shard>/binlog-archive/<data file>`.
    public func asReplayManifest(replayFrom: ReplicationPosition) -> BackupManifest {
        var file = self.file
        file.binlogFile = file.name
        file.startPosition = fromPosition
        return BackupManifest(
            backupName: Self.directoryName, keyspace: keyspace, shard: shard, tabletAlias: "archive",
            hostname: sourceHost, method: .binlog, incremental: true, parentBackup: nil,
            fromPosition: replayFrom, position: position, purgedPosition: fromPosition,
            startTime: archivedTime, finishTime: archivedTime, firstEventTime: firstEventTime,
            lastEventTime: lastEventTime, serverID: sourceServerID, serverVersion: "", flavor: position.flavor,
            compression: compression, encryption: encryption, files: [file], keyID: keyID, wrappedKey: wrappedKey)
    }
}

extension Calendar {
    static let utc: Calendar = {
        var c = Calendar(identifier: .gregorian)
        c.timeZone = TimeZone(identifier: "UTC")!
        return c
    }()
}

/// A hole in a shard's archive: transactions after `after` and up to
/// `before` that no segment holds.
public struct ArchiveGap: Sendable, Hashable, Codable, CustomStringConvertible {
    public enum Cause: String, Sendable, Hashable, Codable {
        /// Segment numbers are missing: segments were deleted or lost.
        case missingSegments = "missing_segments"
        /// The numbers run on but the positions do not: the binary logs
        /// were purged (or the source changed) before they were archived.
        case notArchived = "not_archived"
    }

    public var cause: Cause
    /// The position of the last transaction archived before the gap.
    public var after: ReplicationPosition
    /// Where archiving resumed.
    public var before: ReplicationPosition
    public var afterTime: Date
    public var beforeTime: Date
    /// The segments on either side.
    public var lastSegmentBefore: Int
    public var firstSegmentAfter: Int

    enum CodingKeys: String, CodingKey {
        case cause, after, before
        case afterTime = "after_time"
        case beforeTime = "before_time"
        case lastSegmentBefore = "last_segment_before"
        case firstSegmentAfter = "first_segment_after"
    }

    public var description: String {
        let what = switch cause {
        case .missingSegments:
            "archived segments \(ArchiveSegmentManifest.stem(lastSegmentBefore + 1))" +
                (firstSegmentAfter - 1 > lastSegmentBefore + 1 ? "-\(ArchiveSegmentManifest.stem(firstSegmentAfter - 1))" : "") +
                " are missing"
        case .notArchived:
            "binary logs were purged or lost before they were archived"
        }
        return "a gap in the binary log archive after \(after) (\(UTCTime.rfc3339(afterTime, fractional: false))) up to \(before) (\(UTCTime.rfc3339(beforeTime, fractional: false))): \(what)"
    }
}

/// A shard's archived segments in order, with the gaps between them. Pure.
public struct ArchiveTimeline: Sendable {
    /// By sequence, ascending; of duplicates of a sequence (archivers that
    /// raced) the one ``ArchiveSegmentManifest/precedes(_:_:)`` puts first.
    public let segments: [ArchiveSegmentManifest]
    public let gaps: [ArchiveGap]

    public init(_ segments: [ArchiveSegmentManifest]) {
        var seen: Set<Int> = []
        let sorted = segments.sorted { $0.sequence != $1.sequence ? $0.sequence < $1.sequence : ArchiveSegmentManifest.precedes($0, $1) }
            .filter { seen.insert($0.sequence).inserted }
        self.segments = sorted
        var gaps: [ArchiveGap] = []
        for (a, b) in zip(sorted, sorted.dropFirst()) where !a.position.contains(b.fromPosition) {
            gaps.append(ArchiveGap(cause: b.sequence == a.sequence + 1 ? ArchiveGap.Cause.notArchived : .missingSegments,
                                   after: a.position, before: b.fromPosition, afterTime: a.lastEventTime,
                                   beforeTime: b.firstEventTime, lastSegmentBefore: a.sequence, firstSegmentAfter: b.sequence))
        }
        self.gaps = gaps
    }

    public var isEmpty: Bool { segments.isEmpty }
    public var newest: ArchiveSegmentManifest? { segments.last }

    /// How far the segments carry a restore that has reached `start`.
    public struct Extension: Sendable, Hashable {
        /// The segments to replay, in order.
        public var segments: [ArchiveSegmentManifest]
        /// The position reached after them.
        public var reached: ReplicationPosition
        /// The gap that stopped the extension before the newest segment, if any.
        public var blockedBy: ArchiveGap?
    }

    /// The segments that continue from `start`, in order, stopping after the
    /// first for which `done` holds, or at a gap, or at the newest segment.
    public func extend(from start: ReplicationPosition, until done: (ArchiveSegmentManifest) -> Bool = { _ in false }) -> Extension {
        var reached = start
        var run: [ArchiveSegmentManifest] = []
        var previous: ArchiveSegmentManifest? = nil
        for segment in segments {
            defer { previous = segment }
            if reached.contains(segment.position) { continue }
            guard reached.contains(segment.fromPosition) else {
                let gap = ArchiveGap(
                    cause: previous.map { segment.sequence == $0.sequence + 1 ? ArchiveGap.Cause.notArchived : .missingSegments } ?? .notArchived,
                    after: reached, before: segment.fromPosition,
                    afterTime: run.last?.lastEventTime ?? previous?.lastEventTime ?? segment.firstEventTime,
                    beforeTime: segment.firstEventTime,
                    lastSegmentBefore: previous?.sequence ?? segment.sequence - 1, firstSegmentAfter: segment.sequence)
                return Extension(segments: run, reached: reached, blockedBy: gap)
            }
            run.append(segment)
            reached = reached.union(segment.position)
            if done(segment) { break }
        }
        return Extension(segments: run, reached: reached, blockedBy: nil)
    }
}
