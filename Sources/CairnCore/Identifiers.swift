public import Foundation

/// A keyspace and one of its shards, written `<keyspace>/<shard>` (`commerce/0`, `customer/-80`).
public struct KeyspaceShard: Hashable, Sendable, Codable, Comparable, CustomStringConvertible {
    public let keyspace: String
    public let shard: String

    public init(keyspace: String, shard: String) throws {
        guard Self.isValidKeyspace(keyspace) else {
            throw CairnError(.usage, "invalid keyspace \"\(clip(keyspace))\": use letters, digits, '_' and '-' (at most 64 characters), e.g. commerce")
        }
        guard Self.isValidShard(shard) else {
            throw CairnError(.usage, "invalid shard \"\(clip(shard))\": use a key range such as 0, -80, 80- or 40-80, or a name of letters, digits and '_'")
        }
        self.keyspace = keyspace
        self.shard = shard
    }

    /// Parses `<keyspace>/<shard>`.
    public init(parsing text: String) throws {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, !parts[0].isEmpty, !parts[1].isEmpty else {
            throw CairnError(.usage, "invalid keyspace/shard \"\(clip(text))\": expected <keyspace>/<shard>, e.g. commerce/0")
        }
        try self.init(keyspace: String(parts[0]), shard: String(parts[1]))
    }

    public var description: String { "\(keyspace)/\(shard)" }

    public static func < (lhs: KeyspaceShard, rhs: KeyspaceShard) -> Bool {
        (lhs.keyspace, lhs.shard) < (rhs.keyspace, rhs.shard)
    }

    /// Checks a keyspace name on its own (a keyspace-wide verb).
    public static func validateKeyspace(_ keyspace: String) throws {
        guard isValidKeyspace(keyspace) else {
            throw CairnError(.usage, "invalid keyspace \"\(clip(keyspace))\": use letters, digits, '_' and '-' (at most 64 characters), e.g. commerce")
        }
    }

    static func isValidKeyspace(_ s: String) -> Bool {
        guard !s.isEmpty, s.count <= 64, s != ".", s != ".." else { return false }
        return s.unicodeScalars.allSatisfy { isWordScalar($0) || $0 == "-" }
    }

    static func isValidShard(_ s: String) -> Bool {
        guard !s.isEmpty, s.count <= 64 else { return false }
        if s.contains("-") {
            // A key range: optional hex start, '-', optional hex end.
            let halves = s.split(separator: "-", omittingEmptySubsequences: false)
            guard halves.count == 2 else { return false }
            return halves.allSatisfy { $0.unicodeScalars.allSatisfy { $0.properties.isASCIIHexDigit } }
        }
        return s.unicodeScalars.allSatisfy(isWordScalar)
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        try self.init(parsing: text)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

func isWordScalar(_ c: Unicode.Scalar) -> Bool {
    c.isASCII && (c.properties.isAlphabetic || c.properties.numericType != nil || c == "_")
}

/// A tablet's alias, `<cell>-<uid>` (`zone1-100`). The seed's short form
/// `100` names the uid alone; it matches any cell.
public struct TabletAlias: Hashable, Sendable, Codable, Comparable, CustomStringConvertible {
    public let cell: String?
    public let uid: UInt32

    public init(cell: String?, uid: UInt32) {
        self.cell = cell
        self.uid = uid
    }

    public init(parsing text: String) throws {
        if let uid = UInt32(text) {
            self.init(cell: nil, uid: uid)
            return
        }
        guard let dash = text.lastIndex(of: "-") else {
            throw CairnError(.usage, "invalid tablet alias \"\(clip(text))\": expected <cell>-<uid>, e.g. zone1-100, or the uid alone")
        }
        let cell = String(text[..<dash])
        let uidText = text[text.index(after: dash)...]
        guard !cell.isEmpty, cell.unicodeScalars.allSatisfy(isWordScalar), let uid = UInt32(uidText) else {
            throw CairnError(.usage, "invalid tablet alias \"\(clip(text))\": expected <cell>-<uid>, e.g. zone1-100, or the uid alone")
        }
        self.init(cell: cell, uid: uid)
    }

    public var description: String {
        if let cell { return "\(cell)-\(uid)" }
        return "\(uid)"
    }

    /// Whether this alias names `other`; a short form (no cell) matches any cell.
    public func matches(_ other: TabletAlias) -> Bool {
        uid == other.uid && (cell == nil || other.cell == nil || cell == other.cell)
    }

    public static func < (lhs: TabletAlias, rhs: TabletAlias) -> Bool {
        ((lhs.cell ?? ""), lhs.uid) < ((rhs.cell ?? ""), rhs.uid)
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        try self.init(parsing: text)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// A backup's name: `<YYYY-MM-DD.HHMMSS>.<tablet-alias>`, the UTC time the
/// backup started and the tablet it came from. Names sort by time.
public struct BackupName: Hashable, Sendable, Codable, Comparable, CustomStringConvertible {
    public let time: Date
    public let tabletAlias: TabletAlias
    public let description: String

    public init(time: Date, tabletAlias: TabletAlias) {
        let seconds = floor(time.timeIntervalSince1970)
        self.time = Date(timeIntervalSince1970: seconds)
        self.tabletAlias = tabletAlias
        self.description = "\(UTCTime.nameStamp(self.time)).\(tabletAlias)"
    }

    public init(parsing text: String) throws {
        // 2026-11-25.194154.zone1-100
        let stampLength = 17
        guard text.count > stampLength + 1 else {
            throw CairnError(.usage, "invalid backup name \"\(clip(text))\": expected <YYYY-MM-DD.HHMMSS>.<tablet-alias>, e.g. 2026-11-25.194154.zone1-100")
        }
        let stamp = String(text.prefix(stampLength))
        let rest = text.dropFirst(stampLength)
        guard rest.first == ".", let time = UTCTime.parseNameStamp(stamp),
              let alias = try? TabletAlias(parsing: String(rest.dropFirst())) else {
            throw CairnError(.usage, "invalid backup name \"\(clip(text))\": expected <YYYY-MM-DD.HHMMSS>.<tablet-alias>, e.g. 2026-11-25.194154.zone1-100")
        }
        self.init(time: time, tabletAlias: alias)
    }

    public static func < (lhs: BackupName, rhs: BackupName) -> Bool {
        (lhs.time, lhs.description) < (rhs.time, rhs.description)
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        try self.init(parsing: text)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}

/// UTC date formatting without locale surprises.
public enum UTCTime {
    static let calendar: Calendar = {
        var c = Calendar(identifier: .gregorian)
        c.timeZone = TimeZone(identifier: "UTC")!
        return c
    }()

    /// `YYYY-MM-DD.HHMMSS`
    public static func nameStamp(_ date: Date) -> String {
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        return String(format: "%04d-%02d-%02d.%02d%02d%02d", c.year!, c.month!, c.day!, c.hour!, c.minute!, c.second!)
    }

    static func parseNameStamp(_ s: String) -> Date? {
        let chars = Array(s.utf8)
        guard chars.count == 17, chars[4] == UInt8(ascii: "-"), chars[7] == UInt8(ascii: "-"), chars[10] == UInt8(ascii: ".") else { return nil }
        func num(_ r: Range<Int>) -> Int? {
            var v = 0
            for i in r {
                let d = Int(chars[i]) - 48
                guard (0...9).contains(d) else { return nil }
                v = v * 10 + d
            }
            return v
        }
        guard let y = num(0..<4), let mo = num(5..<7), let d = num(8..<10),
              let h = num(11..<13), let mi = num(13..<15), let se = num(15..<17) else { return nil }
        let comps = DateComponents(year: y, month: mo, day: d, hour: h, minute: mi, second: se)
        guard let date = calendar.date(from: comps) else { return nil }
        // Reject out-of-range fields that Calendar would silently normalize.
        guard nameStamp(date) == s else { return nil }
        return date
    }

    /// RFC 3339 with fractional seconds when present, always in UTC: `2026-11-25T19:41:54.123Z`.
    public static func rfc3339(_ date: Date, fractional: Bool = true) -> String {
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second, .nanosecond], from: date)
        var s = String(format: "%04d-%02d-%02dT%02d:%02d:%02d", c.year!, c.month!, c.day!, c.hour!, c.minute!, c.second!)
        if fractional {
            s += String(format: ".%03d", min(999, (c.nanosecond ?? 0) / 1_000_000))
        }
        return s + "Z"
    }

    /// Parses RFC 3339 (`2026-11-25T19:41:54Z`, `2026-11-25T20:41:54+01:00`, fractions allowed).
    public static func parseRFC3339(_ text: String) -> Date? {
        let s = Array(text.utf8)
        guard s.count >= 20 else { return nil }
        func num(_ r: Range<Int>) -> Int? {
            guard r.upperBound <= s.count else { return nil }
            var v = 0
            for i in r {
                let d = Int(s[i]) - 48
                guard (0...9).contains(d) else { return nil }
                v = v * 10 + d
            }
            return v
        }
        guard s[4] == UInt8(ascii: "-"), s[7] == UInt8(ascii: "-"),
              s[10] == UInt8(ascii: "T") || s[10] == UInt8(ascii: "t") || s[10] == UInt8(ascii: " "),
              s[13] == UInt8(ascii: ":"), s[16] == UInt8(ascii: ":"),
              let y = num(0..<4), let mo = num(5..<7), let d = num(8..<10),
              let h = num(11..<13), let mi = num(14..<16), let se = num(17..<19) else { return nil }
        var i = 19
        var fraction = 0.0
        if i < s.count, s[i] == UInt8(ascii: ".") {
            i += 1
            var scale = 0.1
            let start = i
            while i < s.count, (48...57).contains(s[i]) {
                fraction += Double(Int(s[i]) - 48) * scale
                scale /= 10
                i += 1
            }
            guard i > start else { return nil }
        }
        guard i < s.count else { return nil }
        var offset = 0
        if s[i] == UInt8(ascii: "Z") || s[i] == UInt8(ascii: "z") {
            guard i + 1 == s.count else { return nil }
        } else if s[i] == UInt8(ascii: "+") || s[i] == UInt8(ascii: "-") {
            guard i + 6 == s.count, s[i + 3] == UInt8(ascii: ":"),
                  let oh = num((i + 1)..<(i + 3)), let om = num((i + 4)..<(i + 6)), oh < 24, om < 60 else { return nil }
            offset = (oh * 3600 + om * 60) * (s[i] == UInt8(ascii: "+") ? 1 : -1)
        } else {
            return nil
        }
        guard (1...12).contains(mo), (1...31).contains(d), h < 24, mi < 60, se < 61 else { return nil }
        let comps = DateComponents(year: y, month: mo, day: d, hour: h, minute: mi, second: min(se, 59))
        guard let base = calendar.date(from: comps),
              calendar.component(.day, from: base) == d else { return nil }
        return base.addingTimeInterval(fraction - Double(offset))
    }
}
