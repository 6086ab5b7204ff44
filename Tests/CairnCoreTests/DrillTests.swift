import CairnCore
import Foundation
import Testing

/// A seeded generator, so random drill points are reproducible in tests.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite("Restore drills: verdict, reference, target and schedule")
struct DrillTests {
    let position = ChainBuilder.pos(42)
    let now = UTCTime.parseRFC3339("2026-11-30T12:00:00Z")!

    func tables(_ sums: [String: String], check: String = "OK") -> [DrillTableCheck] {
        sums.sorted { $0.key < $1.key }.map { DrillTableCheck(table: $0.key, check: check, checksum: $0.value) }
    }

    @Test("the first drill of a point passes and records its checksums as the reference")
    func firstDrillRecords() {
        let j = DrillVerdict.judge(tables(["app.a": "1", "app.b": "2"]), reference: nil, drill: "d1", fullBackup: "F", position: position, now: now)
        #expect(j.passed)
        #expect(j.reference == .recorded)
        #expect(j.newReference?.checksums == ["app.a": "1", "app.b": "2"])
        #expect(j.newReference?.recordedBy == "d1")
        #expect(j.newReference?.position == position)
    }

    @Test("a later drill with equal checksums passes without a new reference")
    func matching() {
        let reference = DrillReference(fullBackup: "F", position: position, recordedBy: "d1", recordedAt: now, checksums: ["app.a": "1"])
        let j = DrillVerdict.judge(tables(["app.a": "1"]), reference: reference, drill: "d2", fullBackup: "F", position: position, now: now)
        #expect(j.passed)
        #expect(j.reference == .matched)
        #expect(j.newReference == nil)
    }

    @Test("a changed, missing or extra table fails the drill and is named")
    func mismatch() throws {
        let reference = DrillReference(fullBackup: "F", position: position, recordedBy: "d1", recordedAt: now,
                                       checksums: ["app.a": "1", "app.b": "2", "app.c": "3"])
        let j = DrillVerdict.judge(tables(["app.a": "1", "app.b": "999", "app.d": "4"]), reference: reference, drill: "d2",
                                   fullBackup: "F", position: position, now: now)
        #expect(!j.passed)
        #expect(j.reference == .mismatched)
        let failure = try #require(j.failure)
        #expect(failure.contains("app.b"))
        #expect(failure.contains("app.c (missing)"))
        #expect(failure.contains("app.d (not in the reference)"))
        #expect(failure.contains("drill d1"))
        #expect(!failure.contains("app.a"))
    }

    @Test("CHECK TABLE reporting damage fails the drill before any comparison")
    func damagedTable() throws {
        var checks = tables(["app.a": "1"])
        checks.append(DrillTableCheck(table: "app.broken", check: "Table is marked as crashed", checksum: nil))
        let j = DrillVerdict.judge(checks, reference: nil, drill: "d1", fullBackup: "F", position: position, now: now)
        #expect(!j.passed)
        #expect(j.reference == .notCompared)
        #expect(j.newReference == nil)
        #expect(try #require(j.failure).contains("app.broken (Table is marked as crashed)"))
    }

    @Test("a reference is keyed by its full backup and position")
    func referenceKey() {
        let a = DrillReference.key(fullBackup: "F", position: ChainBuilder.pos(1))
        #expect(a == DrillReference.key(fullBackup: "F", position: ChainBuilder.pos(1)))
        #expect(a != DrillReference.key(fullBackup: "F", position: ChainBuilder.pos(2)))
        #expect(a != DrillReference.key(fullBackup: "G", position: ChainBuilder.pos(1)))
        #expect(a.hasPrefix("F."))
    }

    @Test("the default target is the newest restorable backup; a random point lies inside the window")
    func targets() throws {
        var b = ChainBuilder()
        let full = b.full(at: 0, seq: 10)
        let inc = b.incremental(after: full, at: 60, seq: 20)
        var generator = SplitMix64(state: 7)
        #expect(try DrillTargetChoice.restoreTarget(.newestBackup, backups: b.backups, archive: ArchiveTimeline([]), using: &generator)
                == .backup(inc.backupName))
        let window = try #require(RestorePlanner.window(backups: b.backups, archive: ArchiveTimeline([])))
        let end = try #require(window.toTime)
        var seen: Set<Date> = []
        for _ in 0..<200 {
            guard case .time(let t) = try DrillTargetChoice.restoreTarget(.randomPoint, backups: b.backups, archive: ArchiveTimeline([]),
                                                                            using: &generator) else {
                Issue.record("a random point must be a time")
                return
            }
            #expect(t > window.fromTime)
            #expect(t <= end)
            #expect(t.timeIntervalSince1970 == t.timeIntervalSince1970.rounded())
            // Every drawn time restores: the planner accepts it.
            _ = try RestorePlanner.plan(backups: b.backups, archive: ArchiveTimeline([]), target: .time(t))
            seen.insert(t)
        }
        #expect(seen.count > 50)
    }

    @Test("a random point on a lone full backup is that backup")
    func randomOnFullOnly() throws {
        var b = ChainBuilder()
        let full = b.full(at: 0, seq: 10)
        var generator = SplitMix64(state: 1)
        #expect(try DrillTargetChoice.restoreTarget(.randomPoint, backups: b.backups, archive: ArchiveTimeline([]), using: &generator)
                == .backup(full.backupName))
    }

    @Test("nothing to drill without a complete chain")
    func nothingToDrill() {
        var generator = SplitMix64(state: 1)
        #expect(throws: CairnError.self) {
            try DrillTargetChoice.restoreTarget(.newestBackup, backups: [], archive: ArchiveTimeline([]), using: &generator)
        }
    }

    @Test("a drill is due an interval after the newest, at once without one, and retried after a failed start")
    func schedule() {
        let day = ConfigDuration(seconds: 86400)
        #expect(DrillSchedule.nextDue(lastDrill: nil, lastAttempt: nil, interval: day) == .distantPast)
        #expect(DrillSchedule.nextDue(lastDrill: now, lastAttempt: nil, interval: day) == now.addingTimeInterval(86400))
        // A start that failed (no record) is retried five minutes later.
        #expect(DrillSchedule.nextDue(lastDrill: nil, lastAttempt: now, interval: day) == now.addingTimeInterval(300))
        // An attempt that produced the newest drill does not delay the next one.
        #expect(DrillSchedule.nextDue(lastDrill: now, lastAttempt: now.addingTimeInterval(-10), interval: day) == now.addingTimeInterval(86400))
        // A short interval is never stretched by the retry delay.
        #expect(DrillSchedule.nextDue(lastDrill: nil, lastAttempt: now, interval: ConfigDuration(seconds: 120)) == now.addingTimeInterval(120))
    }

    @Test("a drill's phases run forward only")
    func phases() throws {
        var state = JobState<DrillPhase>()
        try state.advance(to: .planning)
        try state.advance(to: .restoring)
        #expect(throws: CairnError.self) { try state.advance(to: .completed) }
        try state.advance(to: .checking)
        try state.advance(to: .recording)
        try state.advance(to: .completed)
        #expect(state.phase.isFinal)
    }

    @Test("drill_interval is read from backup_strategy and must be at least a minute")
    func configuration() throws {
        let c = try CairnConfiguration.parse(Data(#"{"backup_strategy": {"full_backup_interval": "24h", "drill_interval": "12h"}}"#.utf8), source: "test")
        #expect(c.backupStrategy?.drillInterval == ConfigDuration(seconds: 43200))
        #expect(throws: CairnError.self) {
            try CairnConfiguration.parse(Data(#"{"backup_strategy": {"full_backup_interval": "24h", "drill_interval": "30s"}}"#.utf8), source: "test")
        }
    }
}
