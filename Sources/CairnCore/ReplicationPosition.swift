import Foundation

/// The replication flavor a position belongs to. Stored as the prefix of a
/// position's text form: `MariaDB/0-1-250`.
public enum ReplicationFlavor: String, Sendable, Hashable, Codable, CaseIterable {
    case mariadb = "MariaDB"
}

/// One MariaDB global transaction id, `domain-server-sequence`.
public struct MariaDBGTID: Hashable, Sendable, CustomStringConvertible {
    public var domain: UInt32
    public var server: UInt32
    public var sequence: UInt64

    public init(domain: UInt32, server: UInt32, sequence: UInt64) {
        self.domain = domain
        self.server = server
        self.sequence = sequence
    }

    public init(parsing text: some StringProtocol) throws {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 3, let d = UInt32(parts[0]), let s = UInt32(parts[1]), let q = UInt64(parts[2]) else {
            throw CairnError(.usage, "invalid MariaDB GTID \"\(clip(text))\": expected domain-server-sequence, e.g. 0-1-250")
        }
        self.init(domain: d, server: s, sequence: q)
    }

    public var description: String { "\(domain)-\(server)-\(sequence)" }
}

/// A MariaDB GTID position: the last transaction applied in each replication
/// domain (`0-1-250,1-2-30`). Within a domain sequence numbers only grow, so
/// one position contains another when it is at least as far in every domain.
public struct MariaDBGTIDList: Hashable, Sendable, CustomStringConvertible {
    /// The last GTID per domain.
    public private(set) var byDomain: [UInt32: MariaDBGTID]

    public init(_ gtids: [MariaDBGTID] = []) {
        var map: [UInt32: MariaDBGTID] = [:]
        for g in gtids {
            if let existing = map[g.domain], existing.sequence >= g.sequence { continue }
            map[g.domain] = g
        }
        byDomain = map
    }

    public init(parsing text: some StringProtocol) throws {
        var map: [UInt32: MariaDBGTID] = [:]
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if !trimmed.isEmpty {
            for item in trimmed.split(separator: ",") {
                let gtid = try MariaDBGTID(parsing: item.trimmingCharacters(in: .whitespacesAndNewlines))
                guard map[gtid.domain] == nil else {
                    throw CairnError(.usage, "invalid MariaDB GTID position \"\(clip(text))\": domain \(gtid.domain) appears twice")
                }
                map[gtid.domain] = gtid
            }
        }
        byDomain = map
    }

    /// GTIDs ordered by domain.
    public var gtids: [MariaDBGTID] { byDomain.values.sorted { $0.domain < $1.domain } }

    public var isEmpty: Bool { byDomain.isEmpty }

    public var description: String { gtids.map(\.description).joined(separator: ",") }

    /// True when every transaction in `other` is also in `self`.
    public func contains(_ other: MariaDBGTIDList) -> Bool {
        for (domain, theirs) in other.byDomain {
            guard let ours = byDomain[domain] else { return false }
            if ours.sequence < theirs.sequence { return false }
            if ours.sequence == theirs.sequence && ours.server != theirs.server { return false }
        }
        return true
    }

    /// The position after also applying `other`: the furthest GTID per domain.
    public func union(_ other: MariaDBGTIDList) -> MariaDBGTIDList {
        MariaDBGTIDList(gtids + other.gtids)
    }

    /// Records that `gtid` was applied.
    public mutating func advance(to gtid: MariaDBGTID) {
        if let existing = byDomain[gtid.domain], existing.sequence >= gtid.sequence { return }
        byDomain[gtid.domain] = gtid
    }

    /// Whether the transaction `gtid` is at or before this position in its domain.
    public func includes(_ gtid: MariaDBGTID) -> Bool {
        guard let ours = byDomain[gtid.domain] else { return false }
        return ours.sequence >= gtid.sequence
    }

    /// The domains in which `other` is further than `self`, each with the
    /// first sequence number `self` lacks there.
    public func firstMissing(comparedTo other: MariaDBGTIDList) -> [(domain: UInt32, sequence: UInt64)] {
        var result: [(UInt32, UInt64)] = []
        for theirs in other.gtids {
            let ourSequence = byDomain[theirs.domain]?.sequence ?? 0
            if theirs.sequence > ourSequence { result.append((theirs.domain, ourSequence + 1)) }
        }
        return result
    }
}

/// A replication position of any flavor, printed and stored with its flavor
/// prefix (`MariaDB/0-1-250`). Callers compare and print positions through
/// this type only, so a second flavor (MySQL `uuid:1-5` sets) is a new case
/// here, not a change to them.
public struct ReplicationPosition: Hashable, Sendable, Codable, CustomStringConvertible {
    enum Value: Hashable, Sendable {
        case mariadb(MariaDBGTIDList)
    }

    let value: Value

    public init(mariadb list: MariaDBGTIDList) {
        value = .mariadb(list)
    }

    /// An empty position of the given flavor: nothing applied yet.
    public static func empty(_ flavor: ReplicationFlavor) -> ReplicationPosition {
        switch flavor {
        case .mariadb: ReplicationPosition(mariadb: MariaDBGTIDList())
        }
    }

    /// Parses `MariaDB/0-1-250` or, without a prefix, a GTID list of `defaultFlavor`.
    public init(parsing text: String, defaultFlavor: ReplicationFlavor = .mariadb) throws {
        var flavor = defaultFlavor
        var body = Substring(text.trimmingCharacters(in: .whitespacesAndNewlines))
        if let slash = body.firstIndex(of: "/") {
            let prefix = body[..<slash]
            guard let f = ReplicationFlavor.allCases.first(where: { $0.rawValue.lowercased() == prefix.lowercased() }) else {
                throw CairnError(.usage, "invalid position \"\(clip(text))\": unknown flavor \"\(clip(prefix, limit: 40))\"; use MariaDB/<domain-server-sequence>[,...]")
            }
            flavor = f
            body = body[body.index(after: slash)...]
        }
        switch flavor {
        case .mariadb:
            do {
                value = .mariadb(try MariaDBGTIDList(parsing: body))
            } catch let error as CairnError {
                throw CairnError(.usage, "invalid position \"\(clip(text))\": \(error.message)")
            }
        }
    }

    public var flavor: ReplicationFlavor {
        switch value {
        case .mariadb: .mariadb
        }
    }

    /// The MariaDB GTID list, when this is a MariaDB position.
    public var mariadb: MariaDBGTIDList? {
        switch value {
        case .mariadb(let list): list
        }
    }

    public var isEmpty: Bool {
        switch value {
        case .mariadb(let list): list.isEmpty
        }
    }

    /// The position without the flavor prefix, as the server prints it.
    public var gtidText: String {
        switch value {
        case .mariadb(let list): list.description
        }
    }

    public var description: String { "\(flavor.rawValue)/\(gtidText)" }

    /// True when every transaction in `other` is also in `self`. Positions of
    /// different flavors never contain each other.
    public func contains(_ other: ReplicationPosition) -> Bool {
        switch (value, other.value) {
        case (.mariadb(let a), .mariadb(let b)): a.contains(b)
        }
    }

    /// The position after also applying `other`.
    public func union(_ other: ReplicationPosition) -> ReplicationPosition {
        switch (value, other.value) {
        case (.mariadb(let a), .mariadb(let b)): ReplicationPosition(mariadb: a.union(b))
        }
    }

    /// A short sentence naming what `self` lacks compared to `other`, e.g.
    /// "domain 0 from sequence 251"; empty when `self` contains `other`.
    public func describeMissing(comparedTo other: ReplicationPosition) -> String {
        switch (value, other.value) {
        case (.mariadb(let a), .mariadb(let b)):
            a.firstMissing(comparedTo: b)
                .map { "domain \($0.domain) from sequence \($0.sequence)" }
                .joined(separator: ", ")
        }
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        do {
            try self.init(parsing: text)
        } catch let error as CairnError {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: error.message))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }
}
