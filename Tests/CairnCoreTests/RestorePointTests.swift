import CairnCore
import Foundation
import Testing

@Suite("Restore points")
struct RestorePointTests {
    let start = ContinuousClock().now
    func part(_ text: String) throws -> RestorePoint.ShardPoint {
        RestorePoint.ShardPoint(position: try ReplicationPosition(parsing: text), tablet: "zone1-100", blockedMilliseconds: 0)
    }

    @Test("the round records the point only once every primary has blocked, within the maximum block")
    func allBlocked() throws {
        var round = CommitBlockRound(shards: ["-80", "80-"], maximumBlock: .seconds(2), started: start)
        round.blocked("-80", try part("0-100-5"), at: start + .milliseconds(10))
        #expect(round.outcome == .waiting)
        round.timedOut(at: start + .milliseconds(500))
        #expect(round.outcome == .waiting)
        round.blocked("80-", try part("0-200-9"), at: start + .milliseconds(30))
        #expect(round.outcome == .allBlocked)
        #expect(round.blocked.count == 2)
    }

    @Test("a shard that fails, or a block that comes too late, abandons the round and names the shard")
    func abandoned() throws {
        var failed = CommitBlockRound(shards: ["-80", "80-"], maximumBlock: .seconds(2), started: start)
        failed.failed("80-", "tablet zone1-200 is not healthy")
        guard case .abandon(let reason) = failed.outcome else { Issue.record("not abandoned: \(failed.outcome)"); return }
        #expect(reason.contains("shard 80-") && reason.contains("not healthy"))
        // Once abandoned, a late block changes nothing.
        failed.blocked("-80", try part("0-100-5"), at: start)
        #expect(failed.outcome == .abandon(reason))

        var slow = CommitBlockRound(shards: ["-80", "80-"], maximumBlock: .milliseconds(500), started: start)
        slow.blocked("-80", try part("0-100-5"), at: start + .milliseconds(10))
        slow.timedOut(at: start + .milliseconds(501))
        guard case .abandon(let late) = slow.outcome else { Issue.record("not abandoned: \(slow.outcome)"); return }
        #expect(late.contains("shard 80- did not block") && late.contains("500ms"), "\(late)")

        var lastTooLate = CommitBlockRound(shards: ["-80"], maximumBlock: .seconds(1), started: start)
        lastTooLate.blocked("-80", try part("0-100-5"), at: start + .milliseconds(1001))
        #expect(lastTooLate.outcome != .allBlocked)
    }

    @Test("names are checked, a stored point decodes only as the point asked for, and a shard outside it is named")
    func storedForm() throws {
        #expect(throws: CairnError.self) { try RestorePoint.validateName("../x") }
        #expect(throws: CairnError.self) { try RestorePoint.validateName(".hidden") }
        try RestorePoint.validateName("before-migration.2026_11")
        let point = RestorePoint(name: "p1", keyspace: "commerce", createdAt: Date(timeIntervalSince1970: 1_800_000_000),
                                 blockedMilliseconds: 12, shards: ["-80": try part("0-100-5"), "80-": try part("0-200-9")])
        let data = try CairnJSON.encoder().encode(point)
        #expect(try RestorePoint.decode(data, name: "p1", keyspace: "commerce") == point)
        let misplaced = #expect(throws: CairnError.self) { try RestorePoint.decode(data, name: "p2", keyspace: "commerce") }
        #expect(misplaced?.message.contains("tampered with or misplaced") == true)
        #expect(try point.position(of: KeyspaceShard(parsing: "commerce/80-")) == ReplicationPosition(parsing: "0-200-9"))
        let outside = #expect(throws: CairnError.self) { try point.position(of: KeyspaceShard(parsing: "commerce/0")) }
        #expect(outside?.message.contains("covers commerce/-80, commerce/80-") == true)
    }
}
