import CairnCore
import CairnEngine
import CairnStorage
import CairnTestSupport
import Foundation
import Logging
import NIOCore
import Synchronization
import Testing

/// A storage that passes everything through to a real one, except that its
/// `failAfter`-th change (an object written or a delete call) fails, as if the
/// process had stopped there.
final class FailingStorage: BackupStorage {
    let base: any BackupStorage
    let remaining: Mutex<Int>

    init(_ base: any BackupStorage, failAfter: Int) {
        self.base = base
        remaining = Mutex(failAfter)
    }

    func change() throws {
        let stop = remaining.withLock { n -> Bool in
            n -= 1
            return n < 0
        }
        if stop { throw CairnError(.storage, "injected failure: the process stopped here") }
    }

    var displayURL: String { base.displayURL }
    func list(prefix: String) async throws -> [StorageObject] { try await base.list(prefix: prefix) }
    func makeWriter(key: String) async throws -> any StorageWriter {
        try change()
        return try await base.makeWriter(key: key)
    }
    func makeReader(key: String, range: Range<Int64>?) async throws -> any StorageReader {
        try await base.makeReader(key: key, range: range)
    }
    func delete(keys: [String]) async throws {
        try change()
        try await base.delete(keys: keys)
    }
    func discardUnfinishedUploads(prefix: String) async throws -> Int { try await base.discardUnfinishedUploads(prefix: prefix) }
}

@Suite("Pruning storage")
struct BackupPrunerTests {
    let shard = try! KeyspaceShard(parsing: "commerce/0")
    let logger = testLogger

    /// Eight days of daily chains, two incomplete backups and an unreadable one.
    func writeHistory(to storage: any BackupStorage, now: Date) async throws -> WeeksOfHistory {
        let history = WeeksOfHistory(days: 8, now: now, shard: shard)
        _ = try await history.write(to: storage, shard: shard)
        // Incomplete and recent: may still be running.
        try await SyntheticBackups.writeIncomplete(name: BackupName(time: now.addingTimeInterval(-600), tabletAlias: SyntheticBackups.alias).description,
                                                   to: storage, shard: shard)
        // Unreadable, older than everything else: reported and kept.
        try await SyntheticBackups.writeUnreadable(name: BackupName(time: now.addingTimeInterval(-30 * 86400), tabletAlias: SyntheticBackups.alias).description,
                                                   to: storage, shard: shard)
        return history
    }

    func names(_ storage: any BackupStorage) async throws -> Set<String> {
        Set(try await BackupRepository(storage: storage, logger: logger).list(shard).map(\.name))
    }

    @Test("a prune removes exactly what its plan removes, and a dry run removes nothing")
    func pruneApplies() async throws {
        let storage = MemoryStorage()
        let now = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))
        let history = try await writeHistory(to: storage, now: now)
        let pruner = BackupPruner(shard: shard, storage: storage, logger: logger)
        let policy = RetentionPolicy(minCount: 2, keepDaily: 4)
        let all = try await names(storage)
        let dry = try await pruner.prune(policy: policy, now: now, dryRun: true)
        #expect(dry.removed.isEmpty)
        #expect(try await names(storage) == all)
        let real = try await pruner.prune(policy: policy, now: now, dryRun: false)
        #expect(real.plan.decisions == dry.plan.decisions)
        #expect(real.removed == dry.plan.removalOrder)
        #expect(try await names(storage) == Set(dry.plan.kept.map(\.name)))
        // Yesterday's whole chain (the latest), and the full backups of the last 4 days (today has none).
        let expectedFulls = Set(history.fulls.prefix(3).map(\.backupName))
        let keptFulls = Set(real.plan.kept.filter { $0.kind == .full }.map(\.name))
        #expect(keptFulls == expectedFulls)
        #expect(Set(history.chains[0].map(\.backupName)).isSubset(of: try await names(storage)))
        #expect(real.plan.problems.count == 1)
    }

    @Test("a prune that removes archived segments also removes data files no manifest names at or below them, and keeps newer ones")
    func pruneRemovesOrphanedSegmentData() async throws {
        let storage = MemoryStorage()
        let now = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))
        let history = try await writeHistory(to: storage, now: now)
        let repository = BackupRepository(storage: storage, logger: logger)
        // Two segments continuing the oldest chain, which the policy removes.
        let oldest = try #require(history.chains.last?.last)
        var from = oldest.position
        for (sequence, seq) in [(1, UInt64(1350)), (2, UInt64(1400))] {
            let name = ArchiveSegmentManifest.dataFileName(sequence: sequence, suffix: ".zst", writer: "0000000a")
            try await storage.writeAll(key: repository.archiveKey(shard, name), data: Data("segment \(sequence)".utf8))
            let segment = ArchiveSegmentManifest(
                keyspace: shard.keyspace, shard: shard.shard, sequence: sequence, fromPosition: from, position: SyntheticBackups.position(seq),
                firstEventTime: oldest.finishTime.addingTimeInterval(Double(sequence)), lastEventTime: oldest.finishTime.addingTimeInterval(Double(sequence) + 1),
                transactionCount: 50, archivedTime: oldest.finishTime.addingTimeInterval(Double(sequence) + 2), sourceServerID: 100, sourceHost: "synthetic",
                archiverServerID: 4_000_000_100, compression: .none,
                file: ManifestFile(name: name, rawSize: 9, storedSize: 9, sha256: String(repeating: "0", count: 64)))
            try await repository.commitSegment(segment, shard: shard)
            from = segment.position
        }
        // Left by archivers that stopped between upload and commit: one below what the prune removes, one above.
        let oldOrphan = ArchiveSegmentManifest.dataFileName(sequence: 1, suffix: ".zst", writer: "0000000b")
        let newOrphan = ArchiveSegmentManifest.dataFileName(sequence: 5, suffix: ".zst", writer: "0000000c")
        for name in [oldOrphan, newOrphan] {
            try await storage.writeAll(key: repository.archiveKey(shard, name), data: Data("orphan".utf8))
        }
        let report = try await BackupPruner(shard: shard, storage: storage, logger: logger)
            .prune(policy: RetentionPolicy(minCount: 2, keepDaily: 4), now: now, dryRun: false)
        #expect(report.segmentsRemoved.count == 2, "\(report.segmentsRemoved)")
        let left = Set(try await storage.list(prefix: BackupRepository.archivePrefix(shard)).map(\.key))
        #expect(left == [repository.archiveKey(shard, newOrphan)], "\(left)")
    }

    @Test("remove-backup refuses a backup others continue, naming them; --force removes them first")
    func removeBackup() async throws {
        let storage = MemoryStorage()
        let now = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))
        let history = try await writeHistory(to: storage, now: now)
        let pruner = BackupPruner(shard: shard, storage: storage, logger: logger)
        let chain = history.chains[2]
        await #expect {
            try await pruner.remove(chain[1].backupName, force: false, dryRun: false, now: now)
        } throws: { error in
            let m = (error as? CairnError)?.message ?? ""
            return m.contains(chain[2].backupName) && m.contains(chain[3].backupName) && m.contains("--force")
        }
        let removal = try await pruner.remove(chain[1].backupName, force: true, dryRun: false, now: now)
        #expect(removal.removed == [chain[3], chain[2], chain[1]].map(\.backupName))
        let left = try await names(storage)
        #expect(left.isDisjoint(with: chain.dropFirst().map(\.backupName)))
        #expect(left.contains(chain[0].backupName))
        // The last incremental of a chain has no dependents.
        let last = try await pruner.remove(history.chains[3][3].backupName, force: false, dryRun: false, now: now)
        #expect(last.dependents.isEmpty && last.removed == [history.chains[3][3].backupName])
        // A recent incomplete backup may still be running.
        let running = try #require(try await BackupRepository(storage: storage, logger: logger).list(shard).first { !$0.isComplete && $0.manifest == nil && $0.parsedName!.time > now.addingTimeInterval(-3600) })
        await #expect(throws: CairnError.self) {
            try await pruner.remove(running.name, force: false, dryRun: false, now: now)
        }
        #expect(try await pruner.remove(running.name, force: true, dryRun: false, now: now).removed == [running.name])
    }

    /// Stops a prune at every change in turn; what it leaves must be whole
    /// backups or backups marked for removal, and the next prune must end
    /// exactly where an uninterrupted one would.
    func interruptedPrunes(cases: [Int], storage: (Int) -> any BackupStorage) async throws {
        for failAfter in cases {
            let base = storage(failAfter)
            let now = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))
            _ = try await writeHistory(to: base, now: now)
            let policy = RetentionPolicy(minCount: 1)
            let expected = Set(try await BackupPruner(shard: shard, storage: base, logger: logger)
                .prune(policy: policy, now: now, dryRun: true).plan.kept.map(\.name))

            let failing = FailingStorage(base, failAfter: failAfter)
            await #expect {
                try await BackupPruner(shard: shard, storage: failing, logger: logger).prune(policy: policy, now: now, dryRun: false)
            } throws: { error in
                // The error says how far the prune got.
                let m = (error as? CairnError)?.message ?? ""
                return m.contains("injected failure") && m.contains("removals") && m.contains("the next prune finishes the work")
            }
            let repository = BackupRepository(storage: base, logger: logger)
            for backup in try await repository.list(shard) {
                switch backup.state {
                case .complete(let m):
                    // Whole: every file the manifest lists is there.
                    let keys = Set(backup.objects.map(\.key))
                    for file in m.files { #expect(keys.contains(repository.key(shard, backup.name, file.name)), "\(backup.name) lost \(file.name)") }
                case .incomplete:
                    // Either marked for removal, or the incomplete backup the history has.
                    #expect(backup.removalStarted || backup.parsedName!.time > now.addingTimeInterval(-3600), "\(backup.name) is incomplete and unmarked")
                case .unreadable:
                    break
                }
            }
            let finish = try await BackupPruner(shard: shard, storage: base, logger: logger).prune(policy: policy, now: now, dryRun: false)
            #expect(try await names(base) == expected, "after stopping at change \(failAfter), the next prune ends elsewhere (\(finish.removed))")
            await base.shutdown()
        }
    }

    @Test("a prune stopped between changes on file storage is finished by the next")
    func interruptedOnFiles() async throws {
        let work = try TemporaryDirectory(prefix: "cairn-prune-interrupted")
        defer { work.remove() }
        try await interruptedPrunes(cases: Array(1...9) + [17, 40]) { n in
            try? FileManager.default.createDirectory(atPath: work.file("\(n)"), withIntermediateDirectories: true)
            return FileStorage(root: work.file("\(n)"))
        }
    }

    @Test("a prune stopped between changes on S3 (SeaweedFS) is finished by the next", .seaweedFS)
    func interruptedOnS3() async throws {
        let server = try SharedSeaweedFS.server()
        try await interruptedPrunes(cases: [1, 2, 3, 4, 5, 11, 30]) { n in
            server.storage(bucket: SharedSeaweedFS.bucket, prefix: "run-\(n)")
        }
    }
}

/// Memory storage that says it locks uploads for `lock` (as S3 with
/// `object_lock` does), lists no write times (so the manifests' times are
/// what a lock is reckoned from), and records every key it is asked to delete.
final class LockReportingStorage: BackupStorage {
    let base = MemoryStorage()
    let lock: ObjectLockConfig
    let deleted = Mutex<[String]>([])

    init(lock: ObjectLockConfig) { self.lock = lock }

    var objectLock: ObjectLockConfig? { lock }
    var displayURL: String { "memory://locked" }
    func list(prefix: String) async throws -> [StorageObject] {
        try await base.list(prefix: prefix).map { StorageObject(key: $0.key, size: $0.size, lastModified: nil) }
    }
    func makeWriter(key: String) async throws -> any StorageWriter { try await base.makeWriter(key: key) }
    func makeReader(key: String, range: Range<Int64>?) async throws -> any StorageReader {
        try await base.makeReader(key: key, range: range)
    }
    func delete(keys: [String]) async throws {
        deleted.withLock { $0 += keys }
        try await base.delete(keys: keys)
    }
    func discardUnfinishedUploads(prefix: String) async throws -> Int { 0 }
}

@Suite("Pruning with Object Lock")
struct LockedPruneTests {
    let shard = try! KeyspaceShard(parsing: "commerce/0")

    @Test("the pruner takes the storage's object_lock: it deletes nothing of a locked backup, reports it kept with the date, and remove-backup refuses it")
    func lockedBackupsStay() async throws {
        let storage = LockReportingStorage(lock: ObjectLockConfig(mode: .compliance, days: 1))
        let now = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))
        // F1 ten days ago (its lock is over); F2 twelve hours ago (locked) with an incremental; F3 an hour ago.
        let f1 = try await SyntheticBackups.writeComplete(SyntheticBackups.manifest(shard: shard, start: now.addingTimeInterval(-10 * 86_400),
                                                                                     finish: now.addingTimeInterval(-10 * 86_400 + 60), parent: nil, seq: 100),
                                                          to: storage, shard: shard)
        let f2 = try await SyntheticBackups.writeComplete(SyntheticBackups.manifest(shard: shard, start: now.addingTimeInterval(-12 * 3600),
                                                                                     finish: now.addingTimeInterval(-12 * 3600 + 60), parent: nil, seq: 200),
                                                          to: storage, shard: shard)
        let i2 = try await SyntheticBackups.writeComplete(SyntheticBackups.manifest(shard: shard, start: now.addingTimeInterval(-6 * 3600),
                                                                                     finish: now.addingTimeInterval(-6 * 3600 + 30), parent: f2, seq: 250),
                                                          to: storage, shard: shard)
        let f3 = try await SyntheticBackups.writeComplete(SyntheticBackups.manifest(shard: shard, start: now.addingTimeInterval(-3600),
                                                                                     finish: now.addingTimeInterval(-3600 + 60), parent: nil, seq: 300),
                                                          to: storage, shard: shard)
        let pruner = BackupPruner(shard: shard, storage: storage, logger: testLogger)
        #expect(pruner.objectLock == storage.lock)

        let report = try await pruner.prune(policy: RetentionPolicy(minCount: 1), now: now, dryRun: false)
        #expect(report.removed == [f1.backupName])
        #expect(report.plan.objectLock == storage.lock)
        let deleted = storage.deleted.withLock { $0 }
        #expect(!deleted.isEmpty && deleted.allSatisfy { $0.hasPrefix("commerce/0/\(f1.backupName)/") }, "\(deleted)")
        for locked in [f2, i2] {
            let decision = try #require(report.plan.decision(for: locked.backupName))
            #expect(decision.isKept && decision.reasons.first?.rule == .objectLock)
            let until = locked.finishTime.addingTimeInterval(86_400 + ObjectLockConfig.margin)
            #expect(decision.reasons.first?.detail == "locked until \(UTCTime.rfc3339(until, fractional: false)) (object_lock compliance, 1 day)")
        }
        let left = Set(try await BackupRepository(storage: storage, logger: testLogger).list(shard).compactMap(\.manifest).map(\.backupName))
        #expect(left == [f2.backupName, i2.backupName, f3.backupName])

        // remove-backup refuses, even with --force, naming the locked backup and the date.
        let error = await #expect(throws: CairnError.self) {
            try await pruner.remove(f2.backupName, force: true, dryRun: false, now: now)
        }
        #expect(error?.code == .inUse)
        #expect(error?.message.hasPrefix("backup \(i2.backupName), which continues \(f2.backupName), is locked until ") == true, "\(error?.message ?? "")")
        #expect(storage.deleted.withLock { $0 } == deleted)

        // A day and a bit later the locks are over and the same policy removes F2's chain, incremental first.
        let later = try await pruner.prune(policy: RetentionPolicy(minCount: 1), now: now.addingTimeInterval(2 * 86_400), dryRun: false)
        #expect(later.removed == [i2.backupName, f2.backupName])
    }
}
