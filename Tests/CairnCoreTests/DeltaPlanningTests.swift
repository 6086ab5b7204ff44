import CairnCore
import Foundation
import Testing

extension ChainBuilder {
    /// A physical full backup that records its checkpoint LSN (as Cairn's do from issue 12 on).
    @discardableResult
    mutating func physicalFull(at minute: Double, seq: UInt64, lsn: UInt64) -> BackupManifest {
        full(at: minute, seq: seq)
        backups[backups.count - 1].toLSN = lsn
        return backups[backups.count - 1]
    }

    /// A delta continuing the snapshot `parent`, started at `minute`, ending at `seq`.
    @discardableResult
    mutating func delta(after parent: BackupManifest, at minute: Double, seq: UInt64) -> BackupManifest {
        let name = BackupName(time: time(minute), tabletAlias: TabletAlias(cell: "zone1", uid: 100)).description
        var m = BackupManifest(backupName: name, keyspace: "commerce", shard: "0", tabletAlias: "zone1-100", hostname: "h",
                               method: .physical, incremental: true, parentBackup: parent.backupName, fromPosition: parent.position,
                               position: Self.pos(seq), purgedPosition: Self.pos(0), startTime: time(minute),
                               finishTime: time(minute + 1), firstEventTime: nil, lastEventTime: nil, serverID: 1,
                               serverVersion: "10.11", flavor: .mariadb, compression: .zstd(level: 3), encryption: "none", files: [])
        m.fromLSN = parent.toLSN
        m.toLSN = (parent.toLSN ?? 0) + seq
        backups.append(m)
        return m
    }
}

/// Issue 12 item 2: deltas are chain links. A restore to a point starts from
/// the newest snapshot (full backup or delta) at or before it; retention
/// keeps the snapshots a kept backup needs; `--type auto` takes a delta when
/// `delta_backup_interval` is due.
@Suite("Delta backups in planning, retention and strategy")
struct DeltaPlanningTests {
    /// F (0) - I1 (10) ; F - D1 (20) - I2 (30) ; D1 - D2 (40) - I3 (50).
    func deltaChain() -> (ChainBuilder, f: BackupManifest, i1: BackupManifest, d1: BackupManifest, i2: BackupManifest,
                          d2: BackupManifest, i3: BackupManifest) {
        var b = ChainBuilder()
        let f = b.physicalFull(at: 0, seq: 10, lsn: 1000)
        let i1 = b.incremental(after: f, at: 10, seq: 20)
        let d1 = b.delta(after: f, at: 20, seq: 30)
        let i2 = b.incremental(after: d1, at: 30, seq: 40)
        let d2 = b.delta(after: d1, at: 40, seq: 50)
        let i3 = b.incremental(after: d2, at: 50, seq: 60)
        return (b, f, i1, d1, i2, d2, i3)
    }

    func names(_ plan: RestorePlan) -> [String] { plan.backups.map(\.backupName) }

    @Test("a restore to a time or position starts from the newest delta at or before it")
    func plannerPicksNewestDelta() throws {
        let (b, f, i1, d1, i2, d2, i3) = deltaChain()
        let latest = try RestorePlanner.plan(backups: b.backups, target: .latest)
        #expect(names(latest) == [f, d1, d2, i3].map(\.backupName))
        #expect(latest.deltas.map(\.backupName) == [d1, d2].map(\.backupName))
        #expect(latest.binlogIncrementals.map(\.backupName) == [i3.backupName])
        #expect(latest.snapshotPosition == d2.position)

        // Before the first delta: the full backup and its own incremental.
        let early = try RestorePlanner.plan(backups: b.backups, target: .time(b.time(5)))
        #expect(names(early) == [f, i1].map(\.backupName))
        #expect(early.snapshotPosition == f.position)
        // Between the deltas: the first delta, then only the binary logs after it.
        let between = try RestorePlanner.plan(backups: b.backups, target: .time(b.time(25)))
        #expect(names(between) == [f, d1, i2].map(\.backupName))
        #expect(between.stopTime == b.time(25))
        // After the second delta: both deltas, none of the binary logs before the second.
        let late = try RestorePlanner.plan(backups: b.backups, target: .time(b.time(45)))
        #expect(names(late) == [f, d1, d2, i3].map(\.backupName))
        // While the second delta ran, its snapshot may hold later commits: the first delta's chain is not
        // extended to that moment (nothing covers it), and the second delta is never used for it.
        #expect(throws: CairnError.self) { try RestorePlanner.plan(backups: b.backups, target: .time(b.time(40.5))) }

        let position = try RestorePlanner.plan(backups: b.backups, target: .position(ChainBuilder.pos(35)))
        #expect(names(position) == [f, d1, i2].map(\.backupName))
        #expect(position.stopPosition == ChainBuilder.pos(35))
        let exact = try RestorePlanner.plan(backups: b.backups, target: .position(d2.position))
        #expect(names(exact) == [f, d1, d2].map(\.backupName))
        #expect(exact.stopPosition == nil)
        let byName = try RestorePlanner.plan(backups: b.backups, target: .backup(i2.backupName))
        #expect(names(byName) == [f, d1, i2].map(\.backupName))
    }

    @Test("a chain missing its delta is broken past it, and restores before the delta still work")
    func missingDelta() throws {
        let (chain, f, i1, d1, _, _, i3) = deltaChain()
        var b = chain
        b.remove(d1)
        #expect(throws: CairnError.self) { try RestorePlanner.plan(backups: b.backups, target: .latest) }
        #expect(throws: CairnError.self) { try RestorePlanner.plan(backups: b.backups, target: .backup(i3.backupName)) }
        let early = try RestorePlanner.plan(backups: b.backups, target: .time(b.time(5)))
        #expect(names(early) == [f, i1].map(\.backupName))
    }

    @Test("retention keeps the full backup and deltas a kept incremental needs, and drops binary logs the deltas replace")
    func retentionKeepsParents() throws {
        let (chain, f, i1, d1, i2, d2, i3) = deltaChain()
        var b = chain
        let g = b.physicalFull(at: 60, seq: 70, lsn: 9000)
        let j = b.incremental(after: g, at: 70, seq: 80)
        let now = b.time(80)
        let candidates = b.backups.map { RetentionCandidate(name: $0.backupName, nameTime: $0.startTime, lastModified: $0.finishTime, state: .complete($0)) }
        // A window from minute 42 on: only F - D1 - D2 - I3 restores minute 45.
        let policy = RetentionPolicy(minCount: 1, pitrWindow: ConfigDuration(seconds: 38 * 60))
        let plan = RetentionPlanner.plan(candidates, policy: policy, now: now)
        let kept = Set(plan.kept.map(\.name))
        #expect(kept == Set([f, d1, d2, i3, g, j].map(\.backupName)), "kept \(kept.sorted())")
        #expect(plan.removed.map(\.name).sorted() == [i1, i2].map(\.backupName).sorted())
        #expect(plan.decision(for: d1.backupName)?.kind == .delta)
        // Kept for the window as a link of I3's chain.
        #expect(plan.decision(for: d1.backupName)?.reasons.map(\.rule).contains(.pitrWindow) == true,
                "\(plan.decision(for: d1.backupName)?.reasons ?? [])")
        let keptManifests = b.backups.filter { kept.contains($0.backupName) }
        #expect((try? RestorePlanner.plan(backups: keptManifests, target: .time(b.time(45)))) != nil)

        // Without a window, the old chain goes whole; its delta never outlives its full backup.
        let plain = RetentionPlanner.plan(candidates, policy: RetentionPolicy(minCount: 1), now: now)
        #expect(Set(plain.kept.map(\.name)) == Set([g, j].map(\.backupName)))
        let order = plain.removalOrder
        if let dIndex = order.firstIndex(of: d2.backupName), let fIndex = order.firstIndex(of: f.backupName),
           let d1Index = order.firstIndex(of: d1.backupName) {
            #expect(dIndex < d1Index && d1Index < fIndex, "a parent must go after what continues it: \(order)")
        } else {
            Issue.record("the old chain is not removed: \(order)")
        }
    }

    let strategy: BackupStrategyConfig = {
        var s = BackupStrategyConfig(fullBackupInterval: ConfigDuration(seconds: 86400),
                                     incrementalBackupInterval: ConfigDuration(seconds: 15 * 60))
        s.deltaBackupInterval = ConfigDuration(seconds: 3600)
        return s
    }()

    @Test("auto takes a delta of the newest snapshot when delta_backup_interval is due, else an incremental")
    func autoChoosesDelta() throws {
        var b = ChainBuilder()
        let f = b.physicalFull(at: 0, seq: 10, lsn: 1000)
        let i = b.incremental(after: f, at: 20, seq: 20)
        let young = try BackupStrategy.decide(requested: .auto, backups: b.backups, strategy: strategy, now: b.time(50))
        guard case .incremental(let parent, _) = young else { Issue.record("expected an incremental, got \(young)"); return }
        #expect(parent.backupName == i.backupName)

        let due = try BackupStrategy.decide(requested: .auto, backups: b.backups, strategy: strategy, now: b.time(61))
        guard case .delta(let deltaParent, let reason) = due else { Issue.record("expected a delta, got \(due)"); return }
        // The delta continues the full backup, not the incremental after it.
        #expect(deltaParent.backupName == f.backupName)
        #expect(reason.contains("delta_backup_interval"))

        let d = b.delta(after: f, at: 61, seq: 30)
        let after = b.incremental(after: d, at: 80, seq: 40)
        let next = try BackupStrategy.decide(requested: .auto, backups: b.backups, strategy: strategy, now: b.time(100))
        guard case .incremental(let p2, _) = next else { Issue.record("expected an incremental, got \(next)"); return }
        #expect(p2.backupName == after.backupName)
        let second = try BackupStrategy.decide(requested: .auto, backups: b.backups, strategy: strategy, now: b.time(122))
        guard case .delta(let p3, _) = second else { Issue.record("expected a delta, got \(second)"); return }
        #expect(p3.backupName == d.backupName)
        // The full backup still wins when it is due.
        let full = try BackupStrategy.decide(requested: .auto, backups: b.backups, strategy: strategy, now: b.time(24 * 60))
        guard case .full = full else { Issue.record("expected a full backup, got \(full)"); return }

        // The schedule says when, and the scheduler plans the delta.
        let schedule = BackupStrategy.schedule(backups: b.backups, strategy: strategy, now: b.time(81))
        #expect(schedule.nextDelta == d.startTime.addingTimeInterval(3600))
        #expect(schedule.next?.type == .incremental)
        let run = BackupScheduleRule.nextRun(shard: "commerce/0", backups: b.backups, strategy: strategy,
                                             lastAttempt: .init(started: b.time(115), ended: b.time(115.5), failed: false),
                                             now: b.time(116))
        #expect(run.kind == "delta" && run.due == d.startTime.addingTimeInterval(3600), "\(run)")
    }

    @Test("a full backup without a recorded LSN cannot take a delta: asked for, it is refused in one sentence; auto goes on with incrementals")
    func oldFullRefusesDelta() throws {
        var b = ChainBuilder()
        let f = b.full(at: 0, seq: 10)  // no to_lsn, as before issue 12
        let i = b.incremental(after: f, at: 20, seq: 20)
        do {
            _ = try BackupStrategy.decide(requested: .delta, backups: b.backups, strategy: strategy, now: b.time(70))
            Issue.record("a delta of a full backup without an LSN was not refused")
        } catch let error as CairnError {
            #expect(error.message.contains(f.backupName) && error.message.contains("take a full backup"), "\(error.message)")
            #expect(!error.message.contains("\n"))
        }
        let auto = try BackupStrategy.decide(requested: .auto, backups: b.backups, strategy: strategy, now: b.time(70))
        guard case .incremental(let parent, _) = auto else { Issue.record("expected an incremental, got \(auto)"); return }
        #expect(parent.backupName == i.backupName)
        #expect(BackupStrategy.schedule(backups: b.backups, strategy: strategy, now: b.time(70)).nextDelta == nil)
        #expect(throws: CairnError.self) {
            try BackupStrategy.decide(requested: .delta, backups: [], strategy: strategy, now: b.time(70))
        }
    }

    @Test("a shard's protection counts a delta like a full backup: the window reaches its start")
    func protectionCountsDeltas() {
        var b = ChainBuilder()
        let f = b.physicalFull(at: 0, seq: 10, lsn: 1000)
        let i = b.incremental(after: f, at: 20, seq: 20)
        let d = b.delta(after: f, at: 90, seq: 30)
        let p = ShardProtection(manifests: b.backups)
        #expect(p.window?.end == d.startTime, "\(String(describing: p.window)) after \(i.backupName)")
        #expect(p.lastBackup?.type == "delta")
    }

    @Test("a manifest without the LSN fields (before issue 12) still reads; a delta's round-trips and must name its parent and LSNs")
    func manifestCompatibility() throws {
        let (_, f, _, d1, _, _, _) = deltaChain()
        var old = f
        old.toLSN = nil
        old.files = [ManifestFile(name: "backup.mbstream.zst", rawSize: 10, storedSize: 5, sha256: String(repeating: "a", count: 64))]
        let oldJSON = try #require(String(data: try old.encoded(), encoding: .utf8))
        #expect(!oldJSON.contains("to_lsn"))
        #expect(try BackupManifest.decode(Data(oldJSON.utf8), name: old.backupName).toLSN == nil)

        var delta = d1
        delta.files = old.files
        let decoded = try BackupManifest.decode(try delta.encoded(), name: delta.backupName)
        #expect(decoded.isDelta && decoded.typeName == "delta")
        #expect(decoded.fromLSN == 1000 && decoded.toLSN == d1.toLSN)
        var orphan = delta
        orphan.fromLSN = nil
        #expect(orphan.validationProblem() != nil)
    }
}
