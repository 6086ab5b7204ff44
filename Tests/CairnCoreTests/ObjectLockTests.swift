import CairnCore
import Foundation
import Testing

@Suite("Object Lock: configuration, headers and retention")
struct ObjectLockTests {
    func parse(_ json: String) throws -> CairnConfiguration {
        try CairnConfiguration.parse(Data(json.utf8), source: "test.json")
    }

    @Test("object_lock takes a mode and whole days; a bad value is refused with a sentence naming the key")
    func configuration() throws {
        #expect(try parse(#"{"object_lock": {"mode": "compliance", "days": 30}}"#).objectLock == ObjectLockConfig(mode: .compliance, days: 30))
        #expect(try parse(#"{"object_lock": {"mode": "GOVERNANCE", "days": 1}}"#).objectLock == ObjectLockConfig(mode: .governance, days: 1))
        #expect(try parse("{}").objectLock == nil)
        for (json, says) in [
            (#"{"object_lock": {"mode": "legal-hold", "days": 30}}"#, "object_lock.mode in test.json is \"legal-hold\"; use \"governance\" or \"compliance\""),
            (#"{"object_lock": {"mode": "compliance", "days": 0}}"#, "object_lock.days in test.json is 0; it must be at least 1"),
            (#"{"object_lock": {"mode": "compliance", "days": -3}}"#, "object_lock.days in test.json is -3"),
            (#"{"object_lock": {"mode": "compliance", "days": 1.5}}"#, "object_lock.days in test.json must be a whole number"),
            (#"{"object_lock": {"mode": "compliance", "days": "30d"}}"#, "object_lock.days in test.json must be a whole number"),
            (#"{"object_lock": {"mode": "compliance", "days": 36501}}"#, "at most 36500"),
            (#"{"object_lock": {"days": 30}}"#, "without object_lock.mode"),
            (#"{"object_lock": {"mode": "compliance"}}"#, "without object_lock.days"),
            (#"{"object_lock": {"mode": "compliance", "days": 30, "years": 1}}"#, "unknown key \"object_lock.years\""),
            (#"{"object_lock": "compliance"}"#, "object_lock in test.json must be a JSON object"),
        ] {
            #expect { try parse(json) } throws: { error in
                guard let error = error as? CairnError, error.code == .configuration else { return false }
                return error.message.contains(says) && !error.message.contains("\n")
            }
        }
    }

    @Test("the upload headers: the mode in capitals and the retain-until date days later, in whole UTC seconds")
    func headers() {
        let lock = ObjectLockConfig(mode: .compliance, days: 30)
        let now = UTCTime.parseRFC3339("2026-11-30T17:35:12.250Z")!
        let headers = lock.headers(uploadedAt: now)
        #expect(headers.map { $0.name } == ["x-amz-object-lock-mode", "x-amz-object-lock-retain-until-date"])
        #expect(headers.map { $0.value } == ["COMPLIANCE", "2026-12-30T17:35:13Z"])
        #expect(lock.retainUntil(uploadedAt: now) >= now.addingTimeInterval(30 * 86_400))
        #expect(ObjectLockConfig(mode: .governance, days: 1).headers(uploadedAt: UTCTime.parseRFC3339("2026-12-31T12:00:00Z")!).map { $0.value }
                == ["GOVERNANCE", "2027-01-01T12:00:00Z"])
    }

    @Test("a lock is reckoned from the write plus the margin, and is over once that has passed")
    func reckoning() {
        let lock = ObjectLockConfig(mode: .governance, days: 2)
        let written = UTCTime.parseRFC3339("2026-11-01T00:00:00Z")!
        let until = written.addingTimeInterval(2 * 86_400 + ObjectLockConfig.margin)
        #expect(lock.lockedUntil(writtenBy: written) == until)
        #expect(lock.lockEnd(writtenBy: written, now: until.addingTimeInterval(-1)) == until)
        #expect(lock.lockEnd(writtenBy: written, now: until) == nil)
        // The reckoned end is never before the store's: a retain-until set by an upload at the written time.
        #expect(lock.lockedUntil(writtenBy: written) > lock.retainUntil(uploadedAt: written))
        #expect(lock.reason(until: until) == "locked until 2026-11-03T01:00:00Z (object_lock governance, 2 days)")
    }

    func candidates(_ b: ChainBuilder) -> [RetentionCandidate] {
        b.backups.map { RetentionCandidate(name: $0.backupName, nameTime: $0.startTime, lastModified: $0.finishTime, state: .complete($0)) }
    }

    @Test("prune keeps a backup the store still locks, with the lock's end as the reason, and the chain it continues")
    func planKeepsLocked() throws {
        // Day 0: F1 and two incrementals; day 3: F2 and one incremental; day 6: F3.
        var b = ChainBuilder()
        let day = 24.0 * 60
        let f1 = b.full(at: 0, seq: 100)
        let i1 = b.incremental(after: f1, at: 60, seq: 200)
        let i2 = b.incremental(after: i1, at: 120, seq: 300)
        let f2 = b.full(at: 3 * day, seq: 400)
        let j1 = b.incremental(after: f2, at: 5 * day, seq: 500)
        let f3 = b.full(at: 6 * day, seq: 600)
        let now = b.time(6 * day + 60)
        let policy = RetentionPolicy(minCount: 1)

        let unlocked = RetentionPlanner.plan(candidates(b), policy: policy, now: now)
        #expect(Set(unlocked.kept.map(\.name)) == [f3.backupName])

        // Locked for 2 days: j1 (day 5) is still locked, so it stays and so does f2, the full backup it continues.
        let lock = ObjectLockConfig(mode: .compliance, days: 2)
        let plan = RetentionPlanner.plan(candidates(b), policy: policy, now: now, objectLock: lock)
        #expect(plan.objectLock == lock)
        #expect(Set(plan.kept.map(\.name)) == [f3.backupName, j1.backupName, f2.backupName])
        let j1Reasons = try #require(plan.decision(for: j1.backupName)).reasons
        #expect(j1Reasons.map(\.rule) == [.objectLock])
        let until = j1.finishTime.addingTimeInterval(2 * 86_400 + ObjectLockConfig.margin)
        #expect(j1Reasons[0].detail == "locked until \(UTCTime.rfc3339(until, fractional: false)) (object_lock compliance, 2 days)")
        #expect(plan.decision(for: f2.backupName)?.reasons.map(\.rule) == [.chain])
        // The newest is locked too, besides the rules that keep it anyway.
        #expect(plan.decision(for: f3.backupName)?.reasons.map(\.rule).contains(.objectLock) == true)
        // What is no longer locked goes as before, dependents first.
        #expect(plan.removalOrder == [i2.backupName, i1.backupName, f1.backupName])

        // A MANIFEST rewritten later (a key rotation) is a newer, newly locked version: the listing's time counts.
        var rewritten = candidates(b)
        let f1Index = try #require(rewritten.firstIndex { $0.name == f1.backupName })
        rewritten[f1Index].lastModified = b.time(5 * day)
        let later = RetentionPlanner.plan(rewritten, policy: policy, now: now, objectLock: lock)
        #expect(later.decision(for: f1.backupName)?.isKept == true)
        #expect(later.decision(for: f1.backupName)?.reasons.map(\.rule) == [.objectLock])
        #expect(later.removalOrder == [i2.backupName, i1.backupName])
    }

    @Test("an incomplete backup past incomplete_after stays while the store locks what it wrote")
    func incompleteLocked() {
        var b = ChainBuilder()
        let f = b.full(at: 0, seq: 100)
        let started = b.time(60)
        let name = BackupName(time: started, tabletAlias: TabletAlias(cell: "zone1", uid: 100)).description
        let all = candidates(b) + [
            RetentionCandidate(name: name, nameTime: started, lastModified: b.time(70), state: .incomplete),
        ]
        let policy = RetentionPolicy(minCount: 1)
        let lock = ObjectLockConfig(mode: .governance, days: 3)
        let whileLocked = RetentionPlanner.plan(all, policy: policy, now: b.time(2 * 24 * 60), objectLock: lock)
        #expect(whileLocked.decision(for: name)?.isKept == true)
        #expect(whileLocked.decision(for: name)?.reasons.first?.rule == .objectLock)
        #expect(whileLocked.decision(for: name)?.reasons.first?.detail.hasPrefix("incomplete, and its objects are locked until ") == true)
        #expect(whileLocked.removalOrder.isEmpty)
        let after = RetentionPlanner.plan(all, policy: policy, now: b.time(4 * 24 * 60), objectLock: lock)
        #expect(after.decision(for: name)?.reasons.first?.rule == .incompleteAfter)
        #expect(after.removalOrder == [name])
        #expect(after.decision(for: f.backupName)?.isKept == true)
    }

    func segment(_ b: ChainBuilder, _ sequence: Int, from: UInt64, to: UInt64, first: Double, last: Double) -> ArchiveSegmentManifest {
        b.segment(sequence, from: from, to: to, first: first, last: last)
    }

    @Test("archived segments no kept backup needs are removed only once the store no longer locks them")
    func lockedSegments() {
        // F1 (seq 100) on day 0; segments 1-2 archived on day 0, segment 3 on day 4; F2 (seq 400) on day 5 holds them all.
        var b = ChainBuilder()
        let day = 24.0 * 60
        let f1 = b.full(at: 0, seq: 100)
        let segments = [
            segment(b, 1, from: 100, to: 200, first: 2, last: 10),
            segment(b, 2, from: 200, to: 300, first: 10, last: 20),
            segment(b, 3, from: 300, to: 400, first: 4 * day, last: 4 * day + 10),
        ]
        b.full(at: 5 * day, seq: 400)
        let now = b.time(5 * day + 60)
        let lock = ObjectLockConfig(mode: .compliance, days: 2)

        let plain = ArchiveRetention.plan(RetentionPlanner.plan(candidates(b), policy: RetentionPolicy(minCount: 1), now: now),
                                          backups: b.backups, archive: ArchiveTimeline(segments))
        #expect(plain.removableSegments.map(\.sequence) == [1, 2, 3])
        #expect(plain.lockedSegments.isEmpty)

        let locked = ArchiveRetention.plan(RetentionPlanner.plan(candidates(b), policy: RetentionPolicy(minCount: 1), now: now, objectLock: lock),
                                           backups: b.backups, archive: ArchiveTimeline(segments))
        #expect(locked.removableSegments.map(\.sequence) == [1, 2])
        #expect(locked.lockedSegments.map(\.segment.sequence) == [3])
        let until = segments[2].archivedTime.addingTimeInterval(2 * 86_400 + ObjectLockConfig.margin)
        #expect(locked.lockedSegments.first?.lockedUntil == until)
        #expect(locked.lockedSegments.first?.reason == lock.reason(until: until))
        #expect(locked.backups.removalOrder == [f1.backupName])
    }

    @Test("a restore point the store still locks is not removed")
    func lockedRestorePoints() {
        var b = ChainBuilder()
        b.full(at: 0, seq: 100)
        let now = b.time(10 * 24 * 60)
        let point = RestorePoint(name: "before-migration", keyspace: "commerce", createdAt: b.time(8 * 24 * 60),
                                 blockedMilliseconds: 1, shards: ["0": .init(position: ChainBuilder.pos(50), tablet: "zone1-100", blockedMilliseconds: 1)])
        let policy = RetentionPolicy(minCount: 1, pitrWindow: ConfigDuration(seconds: 3600))
        #expect(RestorePointRetention.removals([point], shard: "0", keptManifests: b.backups, policy: policy, now: now).map(\.name) == ["before-migration"])
        #expect(RestorePointRetention.removals([point], shard: "0", keptManifests: b.backups, policy: policy, now: now,
                                               objectLock: ObjectLockConfig(mode: .governance, days: 2)).isEmpty)
        #expect(RestorePointRetention.removals([point], shard: "0", keptManifests: b.backups, policy: policy, now: now,
                                               objectLock: ObjectLockConfig(mode: .governance, days: 1)).map(\.name) == ["before-migration"])
    }
}
