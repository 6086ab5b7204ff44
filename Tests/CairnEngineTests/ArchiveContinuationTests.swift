import CairnCore
@testable import CairnEngine
import CairnMySQL
import CairnStorage
import CairnTestSupport
import Foundation
import Testing

/// Issue 11 item 2: a new primary continues the archive by GTID, and two
/// archivers of one shard never leave two segments of one sequence.
@Suite("Binary log archive: continuation and fencing", .serialized)
struct ArchiveContinuationTests {
    let shard = try! KeyspaceShard(parsing: "commerce/0")

    func wait(_ what: String, limit: Int = 120, _ condition: () async throws -> Bool) async throws {
        for _ in 0..<(limit * 10) {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestSupportError("gave up waiting until \(what)")
    }

    func archiver(_ server: TestServer, _ storage: any BackupStorage) -> BinlogArchiver {
        BinlogArchiver(settings: .init(shard: shard, mysql: server.connectionConfiguration, storage: storage,
                                       interval: .seconds(1), maxBackoff: .seconds(1)),
                       logger: testLogger)
    }

    /// Runs `archiver` until `body` returns, then stops it; returns how `run()` ended.
    func running(_ archiver: BinlogArchiver, _ body: () async throws -> Void) async throws -> (any Error)? {
        try await withThrowingTaskGroup(of: (any Error)?.self) { group in
            group.addTask {
                do { try await archiver.run(); return nil } catch { return error }
            }
            do {
                try await body()
            } catch {
                archiver.requestStop()
                group.cancelAll()
                throw error
            }
            archiver.requestStop()
            return try await group.next() ?? nil
        }
    }

    @Test("an archiver on a promoted replica, whose binary log files are named differently, continues the archive by GTID with no gap and no repeat")
    func continuesOnNewPrimaryByGTID() async throws {
        let ports = try FreePorts.take(2)
        let old = try await TestServer.start(serverID: 1, port: ports[0])
        let new: TestServer
        do {
            new = try await TestServer.start(serverID: 2, port: ports[1], extraArguments: ["--log-bin=promoted-replica-bin"])
        } catch {
            await old.stop()
            throw error
        }
        do {
            try await old.query("CREATE USER repl@'%' IDENTIFIED BY 'repl-pw'; GRANT REPLICATION SLAVE ON *.* TO repl@'%'")
            try await old.query("CREATE DATABASE t; CREATE TABLE t.a (id INT PRIMARY KEY, v TEXT)")
            try await new.query("CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=\(ports[0]), MASTER_USER='repl', MASTER_PASSWORD='repl-pw', MASTER_USE_GTID=slave_pos; START SLAVE")
            let storage = MemoryStorage()

            // The old primary's archiver archives the first writes, then stops (its tablet was demoted).
            let first = archiver(old, storage)
            let firstEnd = try await running(first) {
                try await wait("the first archiver is connected") { first.status.connected }
                for i in 0..<20 { try await old.query("INSERT INTO t.a VALUES (\(i), 'old primary, archived there')") }
                let archived = try await old.gtidBinlogPosition()
                try await wait("the first writes are archived") { first.status.archivedPosition?.contains(archived) == true }
            }
            #expect(firstEnd == nil)

            // Writes nobody archived, then the failover: the replica catches up and becomes the primary.
            for i in 20..<40 { try await old.query("INSERT INTO t.a VALUES (\(i), 'old primary, never archived there')") }
            let oldEnd = try await old.gtidBinlogPosition()
            try await wait("the replica has the old primary's writes") { try await new.gtidBinlogPosition().contains(oldEnd) }
            try await new.query("STOP SLAVE")
            for i in 40..<50 { try await new.query("INSERT INTO t.a VALUES (\(i), 'new primary')") }
            let newEnd = try await new.gtidBinlogPosition()
            let oldFile = try await old.query("SHOW MASTER STATUS").rows.first?.first ?? nil
            let newFile = try await new.query("SHOW MASTER STATUS").rows.first?.first ?? nil
            #expect(oldFile != nil && newFile != nil && oldFile != newFile, "the two servers' binary log files must differ for this test")

            let second = archiver(new, storage)
            let secondEnd = try await running(second) {
                try await wait("the new primary's archiver has archived everything") {
                    second.status.archivedPosition?.contains(newEnd) == true
                }
            }
            #expect(secondEnd == nil)

            let archive = try await BackupRepository(storage: storage, logger: testLogger).listArchive(shard)
            #expect(archive.timeline.gaps.isEmpty, "\(archive.timeline.gaps)")
            #expect(archive.segments.map(\.sequence) == Array(1...archive.segments.count))
            // Every transaction after the first archiver's start exactly once: 20 + 20 + 10 inserts.
            #expect(archive.segments.reduce(0) { $0 + $1.transactionCount } == 50)
            #expect(archive.segments.last?.position == newEnd)
            #expect(Set(archive.segments.map(\.sourceServerID)) == [1, 2])
            let extension_ = archive.timeline.extend(from: archive.segments[0].fromPosition)
            #expect(extension_.blockedBy == nil && extension_.reached.contains(newEnd))
        } catch {
            await new.stop()
            await old.stop()
            throw error
        }
        await new.stop()
        await old.stop()
    }

    @Test("two archivers of one shard: one is fenced off, the archive keeps one segment per sequence, every one intact, with no gap")
    func twoArchiversAreFenced() async throws {
        try await withTestServer { source in
            try await source.query("CREATE DATABASE t; CREATE TABLE t.a (id INT PRIMARY KEY, v TEXT)")
            let storage = MemoryStorage()
            let one = archiver(source, storage)
            // A second archiver of the same shard: its own replica server id, the same storage.
            let two = BinlogArchiver(settings: .init(shard: shard, mysql: source.connectionConfiguration, storage: storage,
                                                     interval: .seconds(1), replicaServerID: 3_999_999_001, maxBackoff: .seconds(1)),
                                     logger: testLogger)
            let ends = try await withThrowingTaskGroup(of: (any Error)?.self) { group -> [(any Error)?] in
                for archiver in [one, two] {
                    group.addTask {
                        do { try await archiver.run(); return nil } catch { return error }
                    }
                }
                do {
                    try await wait("both archivers are connected") { one.status.connected && two.status.connected }
                    for i in 0..<200 {
                        try await source.query("INSERT INTO t.a VALUES (\(i), REPEAT('x', 2000))")
                        if i % 20 == 19 { try await Task.sleep(for: .milliseconds(600)) }
                    }
                    let end = try await source.gtidBinlogPosition()
                    // One of them is fenced off and ends; the other archives everything.
                    try await wait("an archiver has been fenced off and everything is archived") {
                        let fenced = one.status.lastError?.contains("another archiver") == true || two.status.lastError?.contains("another archiver") == true
                        let archived = one.status.archivedPosition?.contains(end) == true || two.status.archivedPosition?.contains(end) == true
                        return fenced && archived
                    }
                } catch {
                    one.requestStop()
                    two.requestStop()
                    group.cancelAll()
                    throw error
                }
                one.requestStop()
                two.requestStop()
                var ends: [(any Error)?] = []
                for try await end in group { ends.append(end) }
                return ends
            }
            let fencedEnds = ends.compactMap { $0 as? CairnError }.filter { $0.code == .alreadyExists }
            #expect(fencedEnds.count >= 1, "\(ends)")
            #expect(fencedEnds.allSatisfy { $0.message.contains("run one archiver per shard") })

            let prefix = BackupRepository.archivePrefix(shard)
            let objects = try await storage.list(prefix: prefix)
            let manifestNames = objects.map { String($0.key.dropFirst(prefix.count)) }.filter { ArchiveSegmentManifest.parseManifestName($0) != nil }
            let sequences = manifestNames.compactMap { ArchiveSegmentManifest.parseManifestName($0)?.sequence }
            #expect(Set(sequences).count == sequences.count, "two manifests of one sequence: \(manifestNames)")
            let archive = try await BackupRepository(storage: storage, logger: testLogger).listArchive(shard)
            #expect(archive.timeline.gaps.isEmpty, "\(archive.timeline.gaps)")
            #expect(archive.segments.last?.position == (try await source.gtidBinlogPosition()))
            // Every kept segment's data is the one its manifest describes.
            for segment in archive.segments {
                let stored = objects.first { $0.key == prefix + segment.file.name }
                #expect(stored?.size == segment.file.storedSize, "segment \(segment.sequence): \(String(describing: stored))")
            }
            // And restore would apply each of the 201 transactions once: the extension covers them without overlap.
            let run = archive.timeline.extend(from: archive.segments[0].fromPosition)
            #expect(run.blockedBy == nil)
        }
    }
}
