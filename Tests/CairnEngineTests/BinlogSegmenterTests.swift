import CairnCore
@testable import CairnEngine
import Foundation
import NIOCore
import Testing

/// Hand-made binary log events, as a server sends them with CRC32 checksums.
enum Events {
    static func event(_ type: UInt8, body: [UInt8], time: UInt32 = 1_800_000_000, flags: UInt16 = 0) -> [UInt8] {
        let length = UInt32(19 + body.count + 4)
        var e: [UInt8] = []
        e += le32(time)
        e.append(type)
        e += le32(1)
        e += le32(length)
        e += le32(0)
        e += [UInt8(flags & 0xff), UInt8(flags >> 8)]
        e += body
        e += le32(CRC32.checksum(e))
        return e
    }

    static func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8((v >> (8 * UInt32($0))) & 0xff) } }
    static func le64(_ v: UInt64) -> [UInt8] { le32(UInt32(v & 0xffff_ffff)) + le32(UInt32(v >> 32)) }

    /// A Format_description event of a file being written (in-use flag set), CRC32 checksums.
    static func formatDescription(created: UInt32 = 1_800_000_000) -> [UInt8] {
        var body: [UInt8] = [4, 0]
        body += Array("10.11.99-MariaDB".utf8) + [UInt8](repeating: 0, count: 50 - 16)
        body += le32(created)
        body.append(19)
        body += [UInt8](repeating: 8, count: 40)
        // The checksum algorithm: CRC32. `event` appends the checksum itself.
        body.append(1)
        return event(15, body: body, flags: 1)
    }

    static func gtid(_ seq: UInt64, domain: UInt32 = 0, standalone: Bool = false, time: UInt32 = 1_800_000_000) -> [UInt8] {
        event(0xa2, body: le64(seq) + le32(domain) + [standalone ? 1 : 0] + [0, 0, 0, 0, 0, 0], time: time)
    }

    static func query(_ text: String) -> [UInt8] {
        event(2, body: le32(7) + le32(0) + [4] + [0, 0] + [0, 0] + Array("test".utf8) + [0] + Array(text.utf8))
    }

    static let xid = event(16, body: le64(99))
    static let rows = event(30, body: [UInt8](repeating: 0xab, count: 100))
    static let tableMap = event(19, body: [UInt8](repeating: 0xcd, count: 30))
    static let heartbeat = event(27, body: Array("binlog.000001".utf8))
    static let rotate = event(4, body: le64(4) + Array("binlog.000002".utf8))
}

@Suite("Binary log segments: whole transactions from a replication stream")
struct BinlogSegmenterTests {
    @Test("CRC-32 matches the standard check value")
    func crc() {
        #expect(CRC32.checksum(Array("123456789".utf8)) == 0xCBF4_3926)
    }

    @Test("transactions end at Xid, at COMMIT, and after a standalone DDL; bookkeeping events belong to none")
    func transactions() throws {
        var assembler = BinlogTransactionAssembler()
        guard case .formatDescription(let fde) = try assembler.feed(Events.formatDescription()) else {
            Issue.record("no format description")
            return
        }
        // The in-use flag is cleared and the checksum still verifies.
        #expect(fde[17] & 1 == 0)
        #expect(Events.le32(CRC32.checksum(fde[0..<(fde.count - 4)])) == Array(fde[(fde.count - 4)...]))
        #expect(assembler.checksums)

        #expect(try assembler.feed(Events.rotate) == .nothing)
        let innodb = [Events.gtid(10), Events.query("BEGIN"), Events.tableMap, Events.rows, Events.xid]
        var outputs: [BinlogTransactionAssembler.Output] = []
        for e in innodb { outputs.append(try assembler.feed(e)) }
        #expect(outputs.dropLast().allSatisfy { $0 == .nothing })
        #expect(outputs.last == .transaction(ReceivedTransaction(gtid: MariaDBGTID(domain: 0, server: 1, sequence: 10),
                                                                 timestamp: 1_800_000_000, bytes: innodb.flatMap { $0 })))
        #expect(!assembler.inTransaction)
        #expect(try assembler.feed(Events.heartbeat) == .heartbeat)

        let ddl = [Events.gtid(11, standalone: true), Events.query("CREATE TABLE t (a INT)")]
        #expect(try assembler.feed(ddl[0]) == .nothing)
        #expect(try assembler.feed(ddl[1]) == .transaction(ReceivedTransaction(gtid: MariaDBGTID(domain: 0, server: 1, sequence: 11),
                                                                               timestamp: 1_800_000_000, bytes: ddl.flatMap { $0 })))

        let myisam = [Events.gtid(12), Events.query("BEGIN"), Events.query("INSERT INTO m VALUES (1)"), Events.query("COMMIT")]
        for e in myisam.dropLast() { #expect(try assembler.feed(e) == .nothing) }
        guard case .transaction(let t) = try assembler.feed(myisam.last!) else {
            Issue.record("COMMIT did not end the transaction")
            return
        }
        #expect(t.gtid.sequence == 12 && t.bytes == myisam.flatMap { $0 })
    }

    @Test("a transaction cut off by a new connection's Format_description is dropped, never stored half")
    func cutOff() throws {
        var assembler = BinlogTransactionAssembler()
        _ = try assembler.feed(Events.formatDescription())
        _ = try assembler.feed(Events.gtid(20))
        _ = try assembler.feed(Events.rows)
        #expect(assembler.inTransaction)
        guard case .formatDescription = try assembler.feed(Events.formatDescription()) else {
            Issue.record("no format description")
            return
        }
        #expect(!assembler.inTransaction)
        #expect(throws: CairnError.self) { try assembler.feed(Array(Events.rows.dropLast())) }
    }

    @Test("a segment is a binary log file: magic, Format_description, whole transactions, and knows its range")
    func segment() throws {
        var assembler = BinlogTransactionAssembler()
        guard case .formatDescription(let fde) = try assembler.feed(Events.formatDescription()) else { return }
        let start = ContinuousClock.now
        var segment = OpenSegment(formatDescription: fde, from: try MariaDBGTIDList(parsing: "0-1-9"))
        #expect(segment.isEmpty && !segment.isDue(now: start + .seconds(60), interval: .seconds(5), maxBytes: 1 << 20))
        for (seq, time) in [(10, UInt32(1_800_000_000)), (11, UInt32(1_800_000_003))] {
            for e in [Events.gtid(UInt64(seq), time: time), Events.rows] { _ = try assembler.feed(e) }
            guard case .transaction(let t) = try assembler.feed(Events.xid) else { return }
            segment.append(t, now: start)
        }
        let bytes = Array(segment.bytes.readableBytesView)
        #expect(Array(bytes.prefix(4)) == [0xfe, 0x62, 0x69, 0x6e])
        #expect(Array(bytes[4..<(4 + fde.count)]) == fde)
        // Then a Gtid_list event with the starting position, its checksum valid.
        let listStart = 4 + fde.count
        let listLength = Int(BinlogTransactionAssembler.le32(bytes, listStart + 9))
        let list = Array(bytes[listStart..<(listStart + listLength)])
        #expect(list[4] == 0xa3 && BinlogTransactionAssembler.le32(list, 19) == 1)
        #expect(BinlogTransactionAssembler.le64(list, 31) == 9)
        #expect(Events.le32(CRC32.checksum(list.dropLast(4))) == Array(list.suffix(4)))
        #expect(segment.position == (try MariaDBGTIDList(parsing: "0-1-11")))
        #expect(segment.firstEventTime == 1_800_000_000 && segment.lastEventTime == 1_800_000_003)
        #expect(!segment.isDue(now: start + .seconds(4), interval: .seconds(5), maxBytes: 1 << 20))
        #expect(segment.isDue(now: start + .seconds(5), interval: .seconds(5), maxBytes: 1 << 20))
        #expect(segment.isDue(now: start, interval: .seconds(5), maxBytes: 100))

        // The whole segment reads back with the scanner restore's time cut uses.
        var scanner = BinlogScanner(fileName: "segment")
        let gtids = try scanner.feed(segment.bytes).map(\.gtid.sequence)
        #expect(gtids == [10, 11])

        // Another file's Format_description differs only in its creation time: the same format.
        let other = Events.formatDescription(created: 1_800_000_500)
        #expect(OpenSegment.sameFormat(fde, BinlogTransactionAssembler.closedFormatDescription(other)))
    }
}
