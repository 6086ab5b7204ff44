import CairnCore
import Foundation
import Testing

@Suite("Backup strategy")
struct StrategyTests {
    let strategy = BackupStrategyConfig(fullBackupInterval: ConfigDuration(seconds: 86400),
                                        incrementalBackupInterval: ConfigDuration(seconds: 3600))

    @Test("auto takes a full backup when no chain exists")
    func noChain() throws {
        let d = try BackupStrategy.decide(requested: .auto, backups: [], strategy: strategy, now: Date())
        #expect(!d.isIncremental)
    }

    @Test("auto continues the newest chain while the full backup is young, then takes a full one")
    func continuesThenFull() throws {
        var b = ChainBuilder()
        let f = b.full(at: 0, seq: 100)
        let i = b.incremental(after: f, at: 60, seq: 200)
        let young = try BackupStrategy.decide(requested: .auto, backups: b.backups, strategy: strategy, now: b.time(120))
        guard case .incremental(let parent, _) = young else {
            Issue.record("expected an incremental, got \(young)")
            return
        }
        #expect(parent.backupName == i.backupName)
        let old = try BackupStrategy.decide(requested: .auto, backups: b.backups, strategy: strategy, now: b.time(24 * 60))
        #expect(!old.isIncremental)
    }

    @Test("an incremental on a broken chain is refused; auto starts a new chain")
    func brokenChain() throws {
        var b = ChainBuilder()
        let f = b.full(at: 0, seq: 100)
        let i1 = b.incremental(after: f, at: 60, seq: 200)
        b.incremental(after: i1, at: 120, seq: 300)
        b.remove(i1)
        // The newest restorable backup is the full one: continue from there, never from the orphan.
        let d = try BackupStrategy.decide(requested: .incremental, backups: b.backups, strategy: strategy, now: b.time(130))
        guard case .incremental(let parent, _) = d else {
            Issue.record("expected an incremental")
            return
        }
        #expect(parent.backupName == f.backupName)
        #expect(throws: CairnError.self) {
            try BackupStrategy.decide(requested: .incremental, backups: [], strategy: strategy, now: b.time(130))
        }
    }

    @Test("the schedule says when the next full and incremental are due")
    func schedule() {
        var b = ChainBuilder()
        let f = b.full(at: 0, seq: 100)
        let i = b.incremental(after: f, at: 60, seq: 200)
        let s = BackupStrategy.schedule(backups: b.backups, strategy: strategy, now: b.time(61))
        #expect(s.nextFull == f.startTime.addingTimeInterval(86400))
        #expect(s.nextIncremental == i.startTime.addingTimeInterval(3600))
    }
}

@Suite("Backup job phases")
struct BackupJobStateTests {
    @Test("a job moves forward through its phases and ends once")
    func forward() throws {
        var s = BackupJobState()
        for p in [BackupPhase.connecting, .planning, .copying, .committing, .completed] { try s.advance(to: p) }
        #expect(s.phase == .completed)
        #expect(throws: CairnError.self) { try s.advance(to: .copying) }
        s.fail("late failure")
        #expect(s.phase == .completed && s.error == nil)
    }

    @Test("a job cannot claim completion without committing")
    func noShortcut() throws {
        var s = BackupJobState()
        try s.advance(to: .connecting)
        try s.advance(to: .planning)
        try s.advance(to: .copying)
        #expect(throws: CairnError.self) { try s.advance(to: .completed) }
        s.fail("storage went away")
        #expect(s.phase == .failed && s.error == "storage went away")
    }

    @Test("nothing to do is only possible while planning")
    func nothingToDo() throws {
        var s = BackupJobState()
        try s.advance(to: .connecting)
        #expect(throws: CairnError.self) { try s.advance(to: .nothingToDo) }
        try s.advance(to: .planning)
        try s.advance(to: .nothingToDo)
        #expect(s.phase.isFinal)
    }
}

@Suite("Restore job phases")
struct RestoreJobStateTests {
    @Test("a restore stops mysqld, restores, starts mysqld, and only then completes")
    func forward() throws {
        var s = RestoreJobState()
        #expect(s.phase == .pending)
        for p in [RestorePhase.planning, .stoppingMysqld, .restoring, .startingMysqld, .completed] { try s.advance(to: p) }
        #expect(s.phase == .completed && s.phase.isFinal)
        #expect(s.history == [.pending, .planning, .stoppingMysqld, .restoring, .startingMysqld, .completed])
    }

    @Test("a restore cannot skip restoring or claim completion with mysqld stopped")
    func noShortcut() throws {
        var s = RestoreJobState()
        try s.advance(to: .planning)
        let skip = try #require(throws: CairnError.self) { try s.advance(to: .startingMysqld) }
        #expect(skip.message == "a restore cannot go from planning to starting mysqld")
        try s.advance(to: .stoppingMysqld)
        try s.advance(to: .restoring)
        #expect(throws: CairnError.self) { try s.advance(to: .completed) }
        s.fail("cancelled: the tablet is shutting down")
        #expect(s.phase == .failed && s.error == "cancelled: the tablet is shutting down")
        #expect(throws: CairnError.self) { try s.advance(to: .startingMysqld) }
    }
}
