import CairnCore
import Foundation
import NIOCore

/// One whole transaction received from the binary log stream: every event
/// from its GTID event to the event that commits it, as the server logged them.
public struct ReceivedTransaction: Sendable, Hashable {
    public var gtid: MariaDBGTID
    /// The GTID event's header time, seconds since the epoch.
    public var timestamp: UInt32
    public var bytes: [UInt8]
}

/// Turns the events of a replication stream into whole transactions. Pure:
/// a value the archiver feeds event by event and unit tests drive with
/// hand-made events.
///
/// A transaction begins with a GTID event and ends with an Xid event, a
/// `COMMIT`/`ROLLBACK` query, or an XA_PREPARE event; a GTID event flagged
/// standalone (DDL) is ended by its one query. Rotate, Gtid_list,
/// Binlog_checkpoint and heartbeat events are the stream's bookkeeping and
/// belong to no transaction. A Format_description event starts a new file
/// (or a new connection) and discards a transaction left unfinished by it.
public struct BinlogTransactionAssembler: Sendable {
    public enum Output: Sendable, Hashable {
        case nothing
        /// A transaction ended.
        case transaction(ReceivedTransaction)
        /// A Format_description event, ready to head a segment file.
        case formatDescription([UInt8])
        /// A heartbeat: the server is alive and has nothing more to send.
        case heartbeat
    }

    static let queryEvent: UInt8 = 2
    static let rotateEvent: UInt8 = 4
    static let formatDescriptionEvent: UInt8 = 15
    static let xidEvent: UInt8 = 16
    static let heartbeatEvent: UInt8 = 27
    static let xaPrepareEvent: UInt8 = 38
    static let gtidEvent: UInt8 = 0xa2
    static let gtidListEvent: UInt8 = 0xa3
    static let headerLength = 19
    /// LOG_EVENT_BINLOG_IN_USE_F: set in the Format_description of a file being written.
    static let binlogInUseFlag: UInt16 = 0x1

    /// Whether events end with a CRC32 (from the last Format_description).
    public private(set) var checksums = false
    var open: (gtid: MariaDBGTID, timestamp: UInt32, standalone: Bool, bytes: [UInt8])? = nil

    public init() {}

    /// Whether a transaction has begun and not ended.
    public var inTransaction: Bool { open != nil }

    public mutating func feed(_ event: [UInt8]) throws -> Output {
        guard event.count >= Self.headerLength else {
            throw CairnError(.integrity, "a binary log event of \(event.count) bytes is shorter than its header; the stream is damaged")
        }
        let type = event[4]
        let length = Int(Self.le32(event, 9))
        guard length == event.count else {
            throw CairnError(.integrity, "a binary log event of type \(type) says it is \(length) bytes long but \(event.count) arrived; the stream is damaged")
        }
        switch type {
        case Self.formatDescriptionEvent:
            open = nil
            guard event.count >= Self.headerLength + 57 + 5 else {
                throw CairnError(.integrity, "a Format_description event of \(event.count) bytes is too short; the stream is damaged")
            }
            checksums = event[event.count - 5] == 1
            return .formatDescription(Self.closedFormatDescription(event))
        case Self.heartbeatEvent:
            return .heartbeat
        case Self.gtidEvent:
            guard event.count >= Self.headerLength + 13 else {
                throw CairnError(.integrity, "a GTID event of \(event.count) bytes is too short; the stream is damaged")
            }
            var finished: ReceivedTransaction? = nil
            if let previous = open {
                // A new transaction begins only after the previous one ended.
                finished = ReceivedTransaction(gtid: previous.gtid, timestamp: previous.timestamp, bytes: previous.bytes)
            }
            let gtid = MariaDBGTID(domain: Self.le32(event, 27), server: Self.le32(event, 5), sequence: Self.le64(event, 19))
            let flags = event[31]
            open = (gtid, Self.le32(event, 0), flags & 1 != 0, event)
            return finished.map { .transaction($0) } ?? .nothing
        default:
            guard var current = open else {
                // Rotate, Gtid_list, Binlog_checkpoint, Start_encryption and
                // other bookkeeping between transactions.
                return .nothing
            }
            current.bytes.append(contentsOf: event)
            let ends: Bool
            switch type {
            case Self.xidEvent, Self.xaPrepareEvent: ends = true
            case Self.queryEvent: ends = current.standalone || isCommitQuery(event)
            default: ends = false
            }
            if ends {
                open = nil
                return .transaction(ReceivedTransaction(gtid: current.gtid, timestamp: current.timestamp, bytes: current.bytes))
            }
            open = current
            return .nothing
        }
    }

    /// A query event whose statement is COMMIT or ROLLBACK (a
    /// non-transactional engine's group ends so).
    func isCommitQuery(_ event: [UInt8]) -> Bool {
        // Post-header: thread id 4, time 4, schema length 1, error 2, status length 2.
        let body = Self.headerLength
        guard event.count >= body + 13 else { return false }
        let schemaLength = Int(event[body + 8])
        let statusLength = Int(UInt16(event[body + 11]) | UInt16(event[body + 12]) << 8)
        let start = body + 13 + statusLength + schemaLength + 1
        let end = event.count - (checksums ? 4 : 0)
        guard start <= end, end - start <= 16 else { return false }
        let text = String(decoding: event[start..<end], as: UTF8.self).uppercased()
        return text == "COMMIT" || text.hasPrefix("ROLLBACK")
    }

    /// The event with the "file in use" flag cleared (and its checksum
    /// recomputed), so a segment reads as a properly closed binary log.
    static func closedFormatDescription(_ event: [UInt8]) -> [UInt8] {
        var e = event
        let flags = UInt16(e[17]) | UInt16(e[18]) << 8
        guard flags & binlogInUseFlag != 0 else { return e }
        let cleared = flags & ~binlogInUseFlag
        e[17] = UInt8(cleared & 0xff)
        e[18] = UInt8(cleared >> 8)
        if e[e.count - 5] == 1 {
            let crc = CRC32.checksum(e[0..<(e.count - 4)])
            for i in 0..<4 { e[e.count - 4 + i] = UInt8((crc >> (8 * UInt32(i))) & 0xff) }
        }
        return e
    }

    static func le32(_ b: [UInt8], _ at: Int) -> UInt32 {
        UInt32(b[at]) | UInt32(b[at + 1]) << 8 | UInt32(b[at + 2]) << 16 | UInt32(b[at + 3]) << 24
    }

    static func le64(_ b: [UInt8], _ at: Int) -> UInt64 {
        UInt64(le32(b, at)) | UInt64(le32(b, at + 4)) << 32
    }
}

/// CRC-32 (IEEE, as zlib and the binary log use it).
enum CRC32 {
    static let table: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    static func checksum(_ bytes: some Collection<UInt8>) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes { c = table[Int((c ^ UInt32(b)) & 0xff)] ^ (c >> 8) }
        return c ^ 0xFFFF_FFFF
    }
}

/// A segment being filled: the bytes of a self-contained binary log file
/// (magic, Format_description, Gtid_list, whole transactions) and what
/// they hold. Pure.
public struct OpenSegment: Sendable {
    public static let magic: [UInt8] = [0xfe, 0x62, 0x69, 0x6e]

    /// One buffer, grown to the segment's full size when the first
    /// transaction arrives (not before: while the previous segment uploads,
    /// only it is held); a large allocation goes back to the system when
    /// freed, instead of growing the heap.
    public private(set) var bytes: ByteBuffer
    let capacity: Int
    public let formatDescription: [UInt8]
    public let fromPosition: MariaDBGTIDList
    public private(set) var position: MariaDBGTIDList
    public private(set) var firstEventTime: UInt32? = nil
    public private(set) var lastEventTime: UInt32? = nil
    public private(set) var transactionCount = 0
    /// When its first transaction arrived (the caller's clock).
    public private(set) var openedAt: ContinuousClock.Instant? = nil

    public init(formatDescription: [UInt8], from: MariaDBGTIDList, capacity: Int = 0) {
        self.formatDescription = formatDescription
        let header = Self.magic + formatDescription + Self.gtidListEvent(from, after: formatDescription)
        self.capacity = capacity
        self.bytes = ByteBufferAllocator().buffer(capacity: header.count)
        self.bytes.writeBytes(header)
        self.fromPosition = from
        self.position = from
    }

    /// A Gtid_list event stating the position before the segment's first
    /// transaction, as a binary log file starts with one: a GTID-based
    /// replay (`mariadb-binlog --start-position`) learns from it where the
    /// file begins, even when it applies none of the file's transactions.
    static func gtidListEvent(_ position: MariaDBGTIDList, after fde: [UInt8]) -> [UInt8] {
        let checksums = fde.count > 5 && fde[fde.count - 5] == 1
        let gtids = position.gtids
        var body: [UInt8] = []
        body += le32(UInt32(gtids.count))
        for g in gtids {
            body += le32(g.domain)
            body += le32(g.server)
            body += le32(UInt32(g.sequence & 0xffff_ffff)) + le32(UInt32(g.sequence >> 32))
        }
        let length = 19 + body.count + (checksums ? 4 : 0)
        var e: [UInt8] = []
        e += Array(fde[0..<4])  // the Format_description's time
        e.append(BinlogTransactionAssembler.gtidListEvent)
        e += Array(fde[5..<9])  // its server id
        e += le32(UInt32(length))
        e += le32(UInt32(4 + fde.count + length))  // where the next event starts in the segment
        e += [0, 0]
        e += body
        if checksums { e += le32(CRC32.checksum(e)) }
        return e
    }

    static func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8((v >> (8 * UInt32($0))) & 0xff) } }

    public var isEmpty: Bool { transactionCount == 0 }

    public mutating func append(_ transaction: ReceivedTransaction, now: ContinuousClock.Instant) {
        if openedAt == nil {
            openedAt = now
            bytes.reserveCapacity(max(capacity, bytes.readableBytes + transaction.bytes.count))
        }
        bytes.writeBytes(transaction.bytes)
        position.advance(to: transaction.gtid)
        if firstEventTime == nil { firstEventTime = transaction.timestamp }
        lastEventTime = max(lastEventTime ?? 0, transaction.timestamp)
        transactionCount += 1
    }

    /// Whether the segment is due: it holds transactions and is `interval`
    /// old or `maxBytes` large.
    public func isDue(now: ContinuousClock.Instant, interval: Duration, maxBytes: Int) -> Bool {
        guard let openedAt, !isEmpty else { return false }
        return bytes.readableBytes >= maxBytes || openedAt.duration(to: now) >= interval
    }

    /// Whether `other` describes the same event format (ignoring its creation time and checksum).
    public static func sameFormat(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count, a.count > 19 + 57 else { return false }
        // Body: binlog version 2, server version 50, create time 4 (body 52..<56), header length, post-header lengths, alg.
        let skip = (19 + 52)..<(19 + 56)
        for i in 19..<(a.count - 4) where !skip.contains(i) && a[i] != b[i] { return false }
        return true
    }
}
