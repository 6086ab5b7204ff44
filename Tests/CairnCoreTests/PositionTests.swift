import CairnCore
import Testing

@Suite("Replication positions")
struct PositionTests {
    func pos(_ s: String) throws -> ReplicationPosition { try ReplicationPosition(parsing: s) }

    @Test("parses and prints MariaDB GTID lists with the flavor prefix, domains in order")
    func parseAndPrint() throws {
        let p = try pos("1-2-30,0-1-250")
        #expect(p.description == "MariaDB/0-1-250,1-2-30")
        #expect(p.gtidText == "0-1-250,1-2-30")
        #expect(try pos("MariaDB/0-1-250,1-2-30") == p)
        #expect(try pos("mariadb/0-1-250, 1-2-30") == p)
        #expect(try pos("MariaDB/").isEmpty)
        #expect(try pos("").isEmpty)
    }

    @Test("rejects malformed positions", arguments: ["0-1", "0-1-x", "a-b-c", "0-1-2,0-1-3", "MySQL/uuid:1-5", "0-1-2-3"])
    func rejects(_ text: String) {
        #expect(throws: CairnError.self) { try ReplicationPosition(parsing: text) }
    }

    @Test("containment is per domain and needs every domain")
    func containment() throws {
        let a = try pos("0-1-250,1-2-30")
        #expect(a.contains(try pos("0-1-250")))
        #expect(a.contains(try pos("0-1-100,1-2-30")))
        #expect(a.contains(try pos("")))
        #expect(!a.contains(try pos("0-1-251")))
        #expect(!a.contains(try pos("0-1-10,1-2-31")))
        #expect(!a.contains(try pos("2-5-1")))
        #expect(!(try pos("0-1-250")).contains(a))
        // The same sequence from another server is a different transaction.
        #expect(!(try pos("0-1-250")).contains(try pos("0-3-250")))
        // A server id change with a higher sequence is a later transaction in the domain.
        #expect((try pos("0-3-260")).contains(try pos("0-1-250")))
    }

    @Test("union keeps the furthest transaction per domain")
    func union() throws {
        let u = try pos("0-1-250,1-2-30").union(try pos("0-1-260,2-9-4"))
        #expect(u == (try pos("0-1-260,1-2-30,2-9-4")))
    }

    @Test("names what one position lacks compared to another")
    func missing() throws {
        let have = try pos("0-1-250,1-2-30")
        let need = try pos("0-1-300,1-2-30,2-4-7")
        #expect(have.describeMissing(comparedTo: need) == "domain 0 from sequence 251, domain 2 from sequence 1")
        #expect(need.describeMissing(comparedTo: have) == "")
    }

    @Test("encodes as its prefixed text")
    func codable() throws {
        let p = try pos("0-1-250")
        let data = try JSONEncoder().encode([p])
        #expect(String(decoding: data, as: UTF8.self) == #"["MariaDB\/0-1-250"]"#)
        #expect(try JSONDecoder().decode([ReplicationPosition].self, from: data) == [p])
    }
}

import Foundation
