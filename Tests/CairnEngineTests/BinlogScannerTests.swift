@testable import CairnEngine
import CairnCore
import CairnMySQL
import CairnSystem
import CairnTestSupport
import Foundation
import NIOCore
import Testing

@Suite("Binlog event scanning", .serialized)
struct BinlogScannerTests {
    /// GTIDs and timestamps of a real binary log, as mariadb-binlog prints them.
    func referenceGTIDs(_ path: String) async throws -> [String] {
        let text = try await ChildProcess.run("mariadb-binlog", [path], doing: "decoding \(path)")
        return text.split(separator: "\n").compactMap { line -> String? in
            guard let r = line.range(of: "GTID ") , line.hasPrefix("#") else { return nil }
            return String(line[r.upperBound...].split(separator: " ").first ?? "")
        }
    }

    @Test("finds every transaction's GTID in a real binary log, in chunks of any size")
    func matchesMariadbBinlog() async throws {
        try await withTestServer(serverID: 7) { server in
            try await server.query("CREATE DATABASE d; CREATE TABLE d.t (id INT PRIMARY KEY, v TEXT)")
            for i in 0..<200 { try await server.query("INSERT INTO d.t VALUES (\(i), REPEAT('x', \(i * 37 % 3000)))") }
            try await server.query("FLUSH BINARY LOGS")
            let logs = try await server.connect().binaryLogs()
            let path = "\(server.dataDirectory)/\(logs[logs.count - 2].name)"
            let expected = try await referenceGTIDs(path)
            #expect(expected.count >= 202)
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            for chunkSize in [1, 7, 4096, 1 << 20] {
                var scanner = BinlogScanner(fileName: "test")
                var found: [String] = []
                var offset = 0
                while offset < data.count {
                    let end = min(data.count, offset + chunkSize)
                    found += try scanner.feed(ByteBuffer(bytes: data[offset..<end])).map(\.gtid.description)
                    offset = end
                }
                #expect(found == expected, "chunk size \(chunkSize)")
                #expect(scanner.endsAtEventBoundary)
            }
        }
    }

    @Test("a time cut keeps whole transactions before the second and nothing from it on")
    func timeCut() async throws {
        try await withTestServer(serverID: 7) { server in
            try await server.query("CREATE DATABASE d; CREATE TABLE d.t (id INT PRIMARY KEY)")
            try await server.query("INSERT INTO d.t VALUES (1)")
            let before = try await server.gtidBinlogPosition()
            try await Task.sleep(for: .milliseconds(1100))
            let cutTime = Date(timeIntervalSince1970: floor(Date().timeIntervalSince1970))
            try await Task.sleep(for: .milliseconds(1100))
            try await server.query("INSERT INTO d.t VALUES (2)")
            try await server.query("FLUSH BINARY LOGS")
            let logs = try await server.connect().binaryLogs()
            let data = try Data(contentsOf: URL(fileURLWithPath: "\(server.dataDirectory)/\(logs[logs.count - 2].name)"))
            var cut = BinlogTimeCut(fileName: "test", stopTime: cutTime, applied: MariaDBGTIDList())
            var kept = ByteBuffer()
            var offset = 0
            var stopped = false
            while offset < data.count && !stopped {
                let end = min(data.count, offset + 333)
                let (out, go) = try cut.process(ByteBuffer(bytes: data[offset..<end]))
                kept.writeImmutableBuffer(out)
                stopped = !go
                offset = end
            }
            #expect(stopped)
            #expect(ReplicationPosition(mariadb: cut.lastIncluded) == before)
            // What was kept is itself a valid binary log ending with the last transaction before the cut.
            var check = BinlogScanner(fileName: "kept")
            let gtids = try check.feed(kept).map(\.gtid)
            #expect(check.endsAtEventBoundary)
            #expect(gtids.last.map { MariaDBGTIDList([$0]) } == before.mariadb)
        }
    }
}
