@testable import CairnEngine
import CairnCore
import CairnMySQL
import CairnSystem
import CairnTestSupport
import Foundation
import NIOCore
import Testing

@Suite("Relay log filtering", .serialized)
struct RelayLogFilterTests {
    /// Runs `data` through a filter in chunks of `chunkSize`.
    func filter(_ data: Data, chunkSize: Int, applied: MariaDBGTIDList, stop: MariaDBGTIDList?) throws -> (Data, RelayLogFilter) {
        var filter = RelayLogFilter(fileName: "test", applied: applied, stop: stop)
        var out = Data()
        var offset = 0
        while offset < data.count {
            let end = min(data.count, offset + chunkSize)
            let piece = try filter.process(ByteBuffer(bytes: data[offset..<end]))
            out.append(contentsOf: piece.readableBytesView)
            offset = end
        }
        try filter.finish()
        return (out, filter)
    }

    @Test("keeps the header events and exactly the transactions after the applied position up to the stop, in chunks of any size")
    func keepsTheRange() async throws {
        try await withTestServer(serverID: 7) { server in
            try await server.query("CREATE DATABASE d; CREATE TABLE d.t (id INT PRIMARY KEY, v TEXT)")
            try await server.query("FLUSH BINARY LOGS")
            for i in 0..<100 { try await server.query("INSERT INTO d.t VALUES (\(i), REPEAT('x', \(i * 37 % 3000)))") }
            try await server.query("FLUSH BINARY LOGS")
            let logs = try await server.connect().binaryLogs()
            let path = "\(server.dataDirectory)/\(logs[logs.count - 2].name)"
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            var all = BinlogScanner(fileName: "all")
            let gtids = try all.feed(ByteBuffer(bytes: data)).map(\.gtid)
            #expect(gtids.count == 100)
            let applied = MariaDBGTIDList([gtids[19]])
            let stop = MariaDBGTIDList([gtids[79]])
            for chunkSize in [1, 13, 4096, 1 << 20] {
                let (out, filter) = try filter(data, chunkSize: chunkSize, applied: applied, stop: stop)
                var scanner = BinlogScanner(fileName: "out")
                let kept = try scanner.feed(ByteBuffer(bytes: out)).map(\.gtid)
                #expect(kept == Array(gtids[20...79]), "chunk size \(chunkSize)")
                #expect(scanner.endsAtEventBoundary)
                #expect(filter.reached == stop && filter.transactions == 60)
                // The header events (Format_description, Gtid_list, Binlog_checkpoint) stay as they were, with
                // a Rotate event naming the file and the Format_description event again after the first one.
                var first = BinlogScanner(fileName: "first")
                let firstGTID = Int(try #require(try first.feedFirst(data)))
                let bytes = [UInt8](out)
                func le32(_ b: [UInt8], _ at: Int) -> Int { Int(b[at]) | Int(b[at + 1]) << 8 | Int(b[at + 2]) << 16 | Int(b[at + 3]) << 24 }
                let description = le32(bytes, 4 + 9)
                #expect(Array(bytes.prefix(4 + description)) == [UInt8](data.prefix(4 + description)))
                let rotate = le32(bytes, 4 + description + 9)
                #expect(bytes[4 + description + 4] == 0x04)
                #expect(String(decoding: bytes[(4 + description + 19 + 8)..<(4 + description + rotate - 4)], as: UTF8.self) == "test")
                #expect(Array(bytes[(4 + description + rotate)...].prefix(firstGTID - 4)) == [UInt8](data[4..<firstGTID]))
            }
            // What it writes is a binary log mariadb-binlog reads, with the kept transactions.
            let (out, _) = try filter(data, chunkSize: 4096, applied: applied, stop: nil)
            let filtered = server.directory.file("filtered.bin")
            try out.write(to: URL(fileURLWithPath: filtered))
            let text = try await ChildProcess.run("mariadb-binlog", [filtered], doing: "decoding the filtered file")
            #expect(text.contains("GTID \(gtids[20])") && text.contains("GTID \(gtids[99])") && !text.contains("GTID \(gtids[19]) "))
        }
    }

    @Test("a file cut in the middle of an event is refused")
    func truncated() async throws {
        try await withTestServer(serverID: 7) { server in
            try await server.query("CREATE DATABASE d; CREATE TABLE d.t (id INT PRIMARY KEY)")
            try await server.query("INSERT INTO d.t VALUES (1)")
            try await server.query("FLUSH BINARY LOGS")
            let logs = try await server.connect().binaryLogs()
            let data = try Data(contentsOf: URL(fileURLWithPath: "\(server.dataDirectory)/\(logs[logs.count - 2].name)"))
            #expect(throws: CairnError.self) { _ = try filter(data.dropLast(3), chunkSize: 4096, applied: MariaDBGTIDList(), stop: nil) }
        }
    }
}

extension BinlogScanner {
    /// The offset of the first GTID event in `data`.
    mutating func feedFirst(_ data: Data) throws -> Int64? {
        try feed(ByteBuffer(bytes: data)).first?.offset
    }
}
