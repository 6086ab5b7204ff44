import CairnCore
import Foundation
import Testing

@Suite("Restore planning")
struct RestorePlannerTests {
    /// full F1 (seq 100) at 0m; I1 (200) at 60m; I2 (300) at 120m; full F2 (300) at 180m; I3 (400) at 240m.
    func history() -> (ChainBuilder, [BackupManifest]) {
        var b = ChainBuilder()
        let f1 = b.full(at: 0, seq: 100)
        let i1 = b.incremental(after: f1, at: 60, seq: 200)
        let i2 = b.incremental(after: i1, at: 120, seq: 300)
        let f2 = b.full(at: 180, seq: 300)
        let i3 = b.incremental(after: f2, at: 240, seq: 400)
        return (b, [f1, i1, i2, f2, i3])
    }

    func names(_ plan: RestorePlan) -> [String] { plan.backups.map(\.backupName) }

    @Test("latest takes the newest full backup and its incrementals")
    func latest() throws {
        let (b, h) = history()
        let plan = try RestorePlanner.plan(backups: b.backups, target: .latest)
        #expect(names(plan) == [h[3], h[4]].map(\.backupName))
        #expect(plan.expectedPosition == ChainBuilder.pos(400))
    }

    @Test("a named backup restores exactly its chain")
    func named() throws {
        let (b, h) = history()
        let plan = try RestorePlanner.plan(backups: b.backups, target: .backup(h[2].backupName))
        #expect(names(plan) == [h[0], h[1], h[2]].map(\.backupName))
        #expect(throws: CairnError.self) { try RestorePlanner.plan(backups: b.backups, target: .backup("2020-01-01.000000.zone1-1")) }
    }

    @Test("a position inside an incremental stops there, from the newest full backup that precedes it")
    func position() throws {
        let (b, h) = history()
        let plan = try RestorePlanner.plan(backups: b.backups, target: .position(ChainBuilder.pos(250)))
        #expect(names(plan) == [h[0], h[1], h[2]].map(\.backupName))
        #expect(plan.stopPosition == ChainBuilder.pos(250))
        // Exactly a full backup's position needs nothing else.
        let exact = try RestorePlanner.plan(backups: b.backups, target: .position(ChainBuilder.pos(300)))
        #expect(names(exact) == [h[3].backupName])
        #expect(exact.stopPosition == nil)
        let later = try RestorePlanner.plan(backups: b.backups, target: .position(ChainBuilder.pos(350)))
        #expect(names(later) == [h[3], h[4]].map(\.backupName))
    }

    @Test("a time restores through the first incremental that covers it, never from a full backup that may hold later writes")
    func time() throws {
        let (b, h) = history()
        // 90m: after F1 finished, covered by I2 (started 120m).
        let plan = try RestorePlanner.plan(backups: b.backups, target: .time(b.time(90)))
        #expect(names(plan) == [h[0], h[1], h[2]].map(\.backupName))
        #expect(plan.stopTime == b.time(90))
        // 180.5m: F2 has not finished (finishes 181m), so F1's chain... which ends at 120m: unreachable.
        #expect(throws: CairnError.self) { try RestorePlanner.plan(backups: b.backups, target: .time(b.time(180.5))) }
        // 200m: F2 then I3.
        let late = try RestorePlanner.plan(backups: b.backups, target: .time(b.time(200)))
        #expect(names(late) == [h[3], h[4]].map(\.backupName))
    }

    @Test("targets outside the backed-up range name the restorable range")
    func outOfRange() throws {
        let (b, _) = history()
        #expect {
            try RestorePlanner.plan(backups: b.backups, target: .position(ChainBuilder.pos(50)))
        } throws: { e in
            let m = (e as? CairnError)?.message ?? ""
            return m.contains("before the earliest full backup") && m.contains("MariaDB/0-1-100") && m.contains("MariaDB/0-1-400")
        }
        #expect {
            try RestorePlanner.plan(backups: b.backups, target: .position(ChainBuilder.pos(401)))
        } throws: { e in
            (e as? CairnError)?.message.contains("past the newest backed-up transaction") == true
        }
        #expect {
            try RestorePlanner.plan(backups: b.backups, target: .time(b.time(500)))
        } throws: { e in
            (e as? CairnError)?.message.contains("past the newest backed-up transaction") == true
        }
        #expect {
            try RestorePlanner.plan(backups: b.backups, target: .time(b.time(0.5)))
        } throws: { e in
            (e as? CairnError)?.message.contains("before the earliest full backup") == true
        }
    }

    @Test("a missing middle link refuses targets past it, naming it, and still restores before it")
    func gap() throws {
        var b = ChainBuilder()
        let f = b.full(at: 0, seq: 100)
        let i1 = b.incremental(after: f, at: 60, seq: 200)
        let i2 = b.incremental(after: i1, at: 120, seq: 300)
        let i3 = b.incremental(after: i2, at: 180, seq: 400)
        b.remove(i2)
        #expect {
            try RestorePlanner.plan(backups: b.backups, target: .latest)
        } throws: { e in
            let m = (e as? CairnError)?.message ?? ""
            return m.contains(i3.backupName) && m.contains(i2.backupName) && m.contains("missing")
        }
        #expect {
            try RestorePlanner.plan(backups: b.backups, target: .position(ChainBuilder.pos(350)))
        } throws: { e in
            (e as? CairnError)?.message.contains(i2.backupName) == true
        }
        let before = try RestorePlanner.plan(backups: b.backups, target: .position(ChainBuilder.pos(150)))
        #expect(names(before) == [f, i1].map(\.backupName))
        let beforeTime = try RestorePlanner.plan(backups: b.backups, target: .time(b.time(30)))
        #expect(names(beforeTime) == [f, i1].map(\.backupName))
    }

    @Test("an incremental that does not start where its parent ended is not a link")
    func mismatchedLink() throws {
        var b = ChainBuilder()
        let f = b.full(at: 0, seq: 100)
        var bad = b.incremental(after: f, at: 60, seq: 200)
        b.remove(bad)
        bad.fromPosition = ChainBuilder.pos(90)
        b.backups.append(bad)
        #expect {
            try RestorePlanner.plan(backups: b.backups, target: .latest)
        } throws: { e in
            (e as? CairnError)?.message.contains("not where its parent") == true
        }
    }

    @Test("no full backup at all is a clear error")
    func noFull() {
        #expect {
            try RestorePlanner.plan(backups: [], target: .latest)
        } throws: { e in
            (e as? CairnError)?.message.contains("no complete full backup") == true
        }
    }
}
