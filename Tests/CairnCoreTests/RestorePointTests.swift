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
        round.released("-80", blockedMilliseconds: 25)
        round.released("80-", blockedMilliseconds: 7)
        #expect(round.outcome == .allBlocked && round.blocked["-80"]?.blockedMilliseconds == 25)

        // A primary that held nothing at the release had lost its block: nothing is recorded.
        var lost = CommitBlockRound(shards: ["-80", "80-"], maximumBlock: .seconds(2), started: start)
        lost.blocked("-80", try part("0-100-5"), at: start)
        lost.blocked("80-", try part("0-200-9"), at: start)
        lost.released("-80", blockedMilliseconds: 12)
        lost.released("80-", blockedMilliseconds: nil)
        guard case .abandon(let reason) = lost.outcome else { Issue.record("recorded a point with a lost block"); return }
        #expect(reason.contains("shard 80-'s commit block was lost"))
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

    func point(_ name: String, at minute: Double, seq: UInt64, _ chain: ChainBuilder) -> RestorePoint {
        RestorePoint(name: name, keyspace: "commerce", createdAt: chain.time(minute), blockedMilliseconds: 5,
                     shards: ["0": RestorePoint.ShardPoint(position: ChainBuilder.pos(seq), tablet: "zone1-100", blockedMilliseconds: 5)])
    }

    @Test("retention keeps points inside the PITR window, removes older ones, and removes a point whose history is gone")
    func retention() throws {
        var chain = ChainBuilder()
        let oldFull = chain.full(at: 0, seq: 10)
        chain.incremental(after: oldFull, at: 60, seq: 20)
        let newFull = chain.full(at: 24 * 60, seq: 100)
        let now = chain.time(24 * 60 + 120)
        let points = [point("early", at: 30, seq: 15, chain), point("recent", at: 24 * 60 + 60, seq: 110, chain),
                      point("other-shard-only", at: 30, seq: 15, chain)].map { p -> RestorePoint in
            var p = p
            if p.name == "other-shard-only" { p.shards = ["-80": p.shards["0"]!] }
            return p
        }
        // A window of 6h: "early" (a day old) goes, "recent" stays; a point of another shard is not this shard's to judge.
        let windowed = RestorePointRetention.removals(points, shard: "0", keptManifests: chain.backups,
                                                      policy: RetentionPolicy(pitrWindow: ConfigDuration(seconds: 6 * 3600)), now: now)
        #expect(windowed.map(\.name) == ["early"])
        #expect(windowed.first?.reason.contains("older than the PITR window (6h)") == true)
        // No window: "early" stays while its chain is kept, and goes once the prune drops that chain,
        // even when the old full backup itself is kept (keep_daily keeps fulls without incrementals).
        #expect(RestorePointRetention.removals(points, shard: "0", keptManifests: chain.backups, policy: RetentionPolicy(), now: now).isEmpty)
        let afterPrune = RestorePointRetention.removals(points, shard: "0", keptManifests: [oldFull, newFull], policy: RetentionPolicy(), now: now)
        #expect(afterPrune.map(\.name) == ["early"])
        #expect(afterPrune.first?.reason.contains("can no longer be restored") == true)
        // "recent" is past every kept backup: not restorable yet, but it will be; it stays.
        #expect(RestorePointRetention.removals(points, shard: "0", keptManifests: [newFull], policy: RetentionPolicy(), now: now).map(\.name) == ["early"])
        // min_age protects even a lost point.
        let young = RestorePointRetention.removals(points, shard: "0", keptManifests: [newFull],
                                                   policy: RetentionPolicy(minAge: ConfigDuration(seconds: 48 * 3600)), now: now)
        #expect(young.isEmpty)
    }

    @Test("scheduled points are due an interval after the newest, at once without one, and a minute after a failure")
    func schedule() throws {
        let chain = ChainBuilder()
        let interval = ConfigDuration(seconds: 3600)
        #expect(RestorePointSchedule.nextDue(newest: nil, lastFailure: nil, interval: interval) == .distantPast)
        #expect(RestorePointSchedule.nextDue(newest: chain.time(0), lastFailure: nil, interval: interval) == chain.time(60))
        #expect(RestorePointSchedule.nextDue(newest: chain.time(0), lastFailure: chain.time(70), interval: interval) == chain.time(71))
        #expect(RestorePointSchedule.automaticName(at: chain.time(0)) == "auto-2026-11-01.000000")
        try RestorePoint.validateName(RestorePointSchedule.automaticName(at: chain.time(0)))
    }
}
