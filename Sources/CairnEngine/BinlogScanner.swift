import CairnCore
import Foundation
import NIOCore

/// Reads the event headers of a MariaDB binary log as it streams past,
/// without decoding rows: enough to find each transaction's GTID and
/// timestamp, and the byte offset where its events begin.
///
/// Layout: a 4-byte magic `\xfe bin`, then events, each with a 19-byte
/// header (timestamp u32, type u8, server id u32, length u32, next position
/// u32, flags u16, little-endian) whose length covers the whole event. A
/// GTID event (type 0xa2) starts its body with sequence u64 and domain u32.
public struct BinlogScanner: Sendable {
    public struct GTIDEvent: Sendable, Hashable {
        /// Offset of the event's first byte in the file.
        public var offset: Int64
        public var gtid: MariaDBGTID
        /// Seconds since the epoch, as written in the event header.
        public var timestamp: UInt32
    }

    static let magic: [UInt8] = [0xfe, 0x62, 0x69, 0x6e]
    static let headerLength = 19
    static let gtidEventType: UInt8 = 0xa2
    static let startEncryptionEventType: UInt8 = 0xa4
    /// Header plus the start of a GTID event's body.
    static let neededPrefix = 19 + 12

    let fileName: String
    /// Offset of the next byte to be fed.
    public private(set) var position: Int64 = 0
    /// Where the event being read starts.
    var eventStart: Int64 = 4
    var eventLength: Int64? = nil
    var prefix: [UInt8] = []

    public init(fileName: String) {
        self.fileName = fileName
    }

    /// Bytes before this offset belong to events whose headers are fully read.
    public var safeBoundary: Int64 {
        prefix.isEmpty ? position : eventStart
    }

    /// Feeds the next bytes of the file; returns the GTID events whose headers completed.
    public mutating func feed(_ chunk: ByteBuffer) throws -> [GTIDEvent] {
        var found: [GTIDEvent] = []
        try chunk.withUnsafeReadableBytes { bytes in
            var i = 0
            let n = bytes.count
            while i < n {
                let absolute = position + Int64(i)
                if absolute < 4 {
                    guard bytes[i] == BinlogScanner.magic[Int(absolute)] else {
                        throw CairnError(.integrity, "\(fileName) is not a MariaDB binary log (bad magic number)")
                    }
                    i += 1
                    continue
                }
                if absolute < eventStart {
                    // Inside an event's body: skip to its end.
                    i += Int(min(Int64(n - i), eventStart - absolute))
                    continue
                }
                // Collecting the start of the event at eventStart.
                let wanted = eventLength.map { Int(min($0, Int64(BinlogScanner.neededPrefix))) } ?? BinlogScanner.headerLength
                let take = min(wanted - prefix.count, n - i)
                prefix.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[i..<(i + take)]))
                i += take
                if eventLength == nil && prefix.count >= BinlogScanner.headerLength {
                    let length = Int64(le32(prefix, 9))
                    guard length >= Int64(BinlogScanner.headerLength) else {
                        throw CairnError(.integrity, "\(fileName) has a damaged event at offset \(eventStart) (length \(length))")
                    }
                    eventLength = length
                    if prefix[4] == BinlogScanner.startEncryptionEventType {
                        throw CairnError(.internal, "\(fileName) is encrypted (encrypt_binlog); Cairn cannot read encrypted binary logs yet, take full backups instead")
                    }
                    continue
                }
                if let length = eventLength, prefix.count == Int(min(length, Int64(BinlogScanner.neededPrefix))) {
                    if prefix[4] == BinlogScanner.gtidEventType && prefix.count >= BinlogScanner.neededPrefix {
                        let gtid = MariaDBGTID(domain: le32(prefix, 27), server: le32(prefix, 5), sequence: le64(prefix, 19))
                        found.append(GTIDEvent(offset: eventStart, gtid: gtid, timestamp: le32(prefix, 0)))
                    }
                    eventStart += length
                    eventLength = nil
                    prefix.removeAll(keepingCapacity: true)
                }
            }
        }
        position += Int64(chunk.readableBytes)
        return found
    }

    /// Whether the bytes fed so far end exactly at an event boundary.
    public var endsAtEventBoundary: Bool { position == eventStart && prefix.isEmpty }

    func le32(_ b: [UInt8], _ at: Int) -> UInt32 {
        UInt32(b[at]) | UInt32(b[at + 1]) << 8 | UInt32(b[at + 2]) << 16 | UInt32(b[at + 3]) << 24
    }

    func le64(_ b: [UInt8], _ at: Int) -> UInt64 {
        UInt64(le32(b, at)) | UInt64(le32(b, at + 4)) << 32
    }
}

/// Passes a binary log through unchanged up to the first transaction that
/// is not yet applied and has a timestamp at or after `stopTime`, and cuts
/// the stream there, at the transaction's first byte: a point-in-time
/// restore then applies whole transactions only.
public struct BinlogTimeCut: Sendable {
    var scanner: BinlogScanner
    let stopTime: UInt32
    let applied: MariaDBGTIDList
    /// Bytes read but not yet passed on: the start of an event whose header is incomplete.
    var held: ByteBuffer = ByteBufferAllocator().buffer(capacity: 64)
    var heldStart: Int64 = 0
    public private(set) var lastIncluded: MariaDBGTIDList

    public init(fileName: String, stopTime: Date, applied: MariaDBGTIDList) {
        self.scanner = BinlogScanner(fileName: fileName)
        // "Before that second": events stamped at that second or later are cut.
        self.stopTime = UInt32(clamping: Int64(floor(stopTime.timeIntervalSince1970)))
        self.applied = applied
        self.lastIncluded = applied
    }

    /// Returns the bytes to pass on and whether to keep reading.
    public mutating func process(_ chunk: ByteBuffer) throws -> (ByteBuffer, continue: Bool) {
        let events = try scanner.feed(chunk)
        var combined = held
        combined.writeImmutableBuffer(chunk)
        for event in events where !applied.includes(event.gtid) {
            if event.timestamp >= stopTime {
                let keep = Int(event.offset - heldStart)
                return (combined.getSlice(at: combined.readerIndex, length: keep)!, false)
            }
            lastIncluded.advance(to: event.gtid)
        }
        let safe = Int(scanner.safeBoundary - heldStart)
        let out = combined.getSlice(at: combined.readerIndex, length: safe)!
        held = combined.getSlice(at: combined.readerIndex + safe, length: combined.readableBytes - safe)!
        heldStart += Int64(safe)
        return (out, true)
    }

    /// Whatever is still held at the end of the stream.
    public mutating func flush() -> ByteBuffer {
        defer { held.clear() }
        return held
    }
}
