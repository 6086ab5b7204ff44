import CairnCore
import Foundation
import Testing

@Suite("Names: shards, tablets, backups, times")
struct IdentifierTests {
    @Test("keyspace/shard parses Vitess shard names", arguments: ["commerce/0", "customer/-80", "customer/80-", "customer/40-80", "my_ks/shard_1"])
    func validShards(_ text: String) throws {
        let s = try KeyspaceShard(parsing: text)
        #expect(s.description == text)
    }

    @Test("malformed keyspace/shard is a usage error naming the input", arguments: ["commerce", "commerce/", "/0", "a/b/c", "comm erce/0", "ks/../x", "ks/8-0-", ""])
    func invalidShards(_ text: String) {
        #expect {
            try KeyspaceShard(parsing: text)
        } throws: { error in
            guard let e = error as? CairnError else { return false }
            return e.code == .usage && e.message.contains("\"")
        }
    }

    @Test("tablet aliases: cell-uid and the seed's short uid form")
    func aliases() throws {
        let full = try TabletAlias(parsing: "zone1-100")
        #expect(full.cell == "zone1" && full.uid == 100 && full.description == "zone1-100")
        let short = try TabletAlias(parsing: "100")
        #expect(short.cell == nil && short.uid == 100)
        #expect(short.matches(full) && full.matches(short))
        #expect(!(try TabletAlias(parsing: "zone2-100")).matches(full))
        #expect(throws: CairnError.self) { try TabletAlias(parsing: "zone1-") }
        #expect(throws: CairnError.self) { try TabletAlias(parsing: "zone1") }
    }

    @Test("backup names carry the UTC start second and the tablet, and sort by time")
    func backupNames() throws {
        let time = UTCTime.parseRFC3339("2026-11-25T19:41:54.750Z")!
        let name = BackupName(time: time, tabletAlias: try TabletAlias(parsing: "zone1-100"))
        #expect(name.description == "2026-11-25.194154.zone1-100")
        let parsed = try BackupName(parsing: name.description)
        #expect(parsed == name)
        #expect(parsed.time.timeIntervalSince1970 == floor(time.timeIntervalSince1970))
        let later = BackupName(time: time.addingTimeInterval(1), tabletAlias: try TabletAlias(parsing: "zone1-100"))
        #expect(name < later)
        #expect(throws: CairnError.self) { try BackupName(parsing: "2026-13-25.194154.zone1-100") }
        #expect(throws: CairnError.self) { try BackupName(parsing: "2026-11-25.194154") }
    }

    @Test("RFC 3339 times with offsets and fractions")
    func rfc3339() {
        let utc = UTCTime.parseRFC3339("2026-11-25T14:00:00Z")!
        #expect(UTCTime.parseRFC3339("2026-11-25T15:00:00+01:00") == utc)
        #expect(UTCTime.parseRFC3339("2026-11-25T14:00:00.500Z")!.timeIntervalSince(utc) == 0.5)
        #expect(UTCTime.rfc3339(utc, fractional: false) == "2026-11-25T14:00:00Z")
        #expect(UTCTime.parseRFC3339("2026-11-25 14:00:00") == nil)
        #expect(UTCTime.parseRFC3339("2026-02-30T00:00:00Z") == nil)
        #expect(UTCTime.parseRFC3339("yesterday") == nil)
    }

    @Test("formatting by integer arithmetic agrees with Foundation's Gregorian calendar, and every millisecond round-trips")
    func timeArithmetic() {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        var generator = SystemRandomNumberGenerator()
        // From 1900 to 2200: leap years, century rules, before the epoch.
        let samples = (0..<2000).map { _ in Double.random(in: -2_208_988_800 ... 7_258_118_400, using: &generator) }
            + [0, -1, 951_782_400, 951_868_799.999, 4_107_542_400, 1_764_100_914.123]
        for t in samples {
            let date = Date(timeIntervalSince1970: t)
            let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
            let expected = String(format: "%04d-%02d-%02dT%02d:%02d:%02d", c.year!, c.month!, c.day!, c.hour!, c.minute!, c.second!)
            #expect(UTCTime.rfc3339(date, fractional: false) == expected + "Z", "at \(t)")
            #expect(UTCTime.nameStamp(date) == String(format: "%04d-%02d-%02d.%02d%02d%02d", c.year!, c.month!, c.day!, c.hour!, c.minute!, c.second!))
            // What is written is read back to the same text: ctld's JSON survives a round trip.
            let text = UTCTime.rfc3339(date)
            #expect(UTCTime.rfc3339(UTCTime.parseRFC3339(text)!) == text, "\(text)")
        }
        #expect(UTCTime.rfc3339(UTCTime.parseRFC3339("2026-11-25T19:41:54.123Z")!) == "2026-11-25T19:41:54.123Z")
        #expect(UTCTime.parseRFC3339("2000-02-29T00:00:00Z") != nil && UTCTime.parseRFC3339("1900-02-29T00:00:00Z") == nil)
    }
}
