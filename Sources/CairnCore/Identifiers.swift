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
    /// The Gregorian calendar in UTC, for the retention planner's calendar periods.
    static let calendar: Calendar = {
        var c = Calendar(identifier: .gregorian)
        c.timeZone = TimeZone(identifier: "UTC")!
        return c
    }()

    // Times are formatted and parsed with integer arithmetic on days since
    // the epoch (the proleptic Gregorian calendar, as RFC 3339 uses), not
    // through Calendar and String(format:): ctld formats a time for every
    // tablet and job it encodes, and at 1,000 tablets Calendar's cost showed
    // in its profile.

    /// (year, month, day) of `days` since 1970-01-01 (H. Hinnant's civil_from_days).
    static func civil(fromDays days: Int64) -> (year: Int64, month: Int, day: Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let day = Int(doy - (153 * mp + 2) / 5 + 1)
        let month = Int(mp < 10 ? mp + 3 : mp - 9)
        return (yoe + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }

    /// Days since 1970-01-01 of a valid (year, month, day).
    static func days(fromCivil year: Int64, _ month: Int, _ day: Int) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = Int64(month > 2 ? month - 3 : month + 9)
        let doy = (153 * mp + 2) / 5 + Int64(day) - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    static func daysInMonth(_ year: Int64, _ month: Int) -> Int {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    /// The fields of `date` in UTC; `millisecond` rounds down (after rounding to the microsecond).
    static func fields(_ date: Date) -> (year: Int64, month: Int, day: Int, hour: Int, minute: Int, second: Int, millisecond: Int) {
        let t = date.timeIntervalSince1970
        let whole = t.rounded(.down)
        let seconds = Int64(whole)
        // To the nearest microsecond first: a time parsed from ".123" is a double just under it.
        let millisecond = min(999, max(0, Int(((t - whole) * 1_000_000).rounded()) / 1000))
        var days = seconds / 86_400
        var rest = seconds % 86_400
        if rest < 0 {
            rest += 86_400
            days -= 1
        }
        let (y, m, d) = civil(fromDays: days)
        return (y, m, d, Int(rest / 3600), Int(rest % 3600 / 60), Int(rest % 60), millisecond)
    }

    /// Appends `value` with at least `width` digits, zero-padded.
    static func append(_ value: Int64, width: Int, to out: inout [UInt8]) {
        var digits: [UInt8] = []
        var v = value < 0 ? -value : value
        repeat {
            digits.append(UInt8(48 + v % 10))
            v /= 10
        } while v > 0
        if value < 0 { out.append(UInt8(ascii: "-")) }
        for _ in digits.count..<max(width, digits.count) { out.append(48) }
        out.append(contentsOf: digits.reversed())
    }

    /// Appends `YYYY-MM-DD`.
    static func appendDate(_ year: Int64, _ month: Int, _ day: Int, to out: inout [UInt8]) {
        append(year, width: 4, to: &out)
        out.append(UInt8(ascii: "-"))
        append(Int64(month), width: 2, to: &out)
        out.append(UInt8(ascii: "-"))
        append(Int64(day), width: 2, to: &out)
    }

    /// `YYYY-MM-DD.HHMMSS`
    public static func nameStamp(_ date: Date) -> String {
        let f = fields(date)
        var out: [UInt8] = []
        out.reserveCapacity(17)
        appendDate(f.year, f.month, f.day, to: &out)
        out.append(UInt8(ascii: "."))
        for v in [f.hour, f.minute, f.second] { append(Int64(v), width: 2, to: &out) }
        return String(decoding: out, as: UTF8.self)
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
              let h = num(11..<13), let mi = num(13..<15), let se = num(15..<17),
              (1...12).contains(mo), (1...daysInMonth(Int64(y), mo)).contains(d), h < 24, mi < 60, se < 60 else { return nil }
        let days = days(fromCivil: Int64(y), mo, d)
        return Date(timeIntervalSince1970: TimeInterval(days * 86_400 + Int64(h * 3600 + mi * 60 + se)))
    }

    /// RFC 3339 with fractional seconds when present, always in UTC: `2026-11-25T19:41:54.123Z`.
    public static func rfc3339(_ date: Date, fractional: Bool = true) -> String {
        let f = fields(date)
        var out: [UInt8] = []
        out.reserveCapacity(24)
        appendDate(f.year, f.month, f.day, to: &out)
        out.append(UInt8(ascii: "T"))
        append(Int64(f.hour), width: 2, to: &out)
        out.append(UInt8(ascii: ":"))
        append(Int64(f.minute), width: 2, to: &out)
        out.append(UInt8(ascii: ":"))
        append(Int64(f.second), width: 2, to: &out)
        if fractional {
            out.append(UInt8(ascii: "."))
            append(Int64(f.millisecond), width: 3, to: &out)
        }
        out.append(UInt8(ascii: "Z"))
        return String(decoding: out, as: UTF8.self)
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
        guard (1...12).contains(mo), (1...daysInMonth(Int64(y), mo)).contains(d), h < 24, mi < 60, se < 61 else { return nil }
        let base = days(fromCivil: Int64(y), mo, d) * 86_400 + Int64(h * 3600 + mi * 60 + min(se, 59))
        return Date(timeIntervalSince1970: TimeInterval(base) + fraction - Double(offset))
    }
}
