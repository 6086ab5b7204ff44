import CairnCore
@testable import CairnEngine
import CairnMySQL
import CairnStorage
import CairnTestSupport
import Foundation
import NIOCore
import Synchronization
import Testing

/// A storage that refuses every write while `failing` is set: an outage.
final class FlakyStorage: BackupStorage {
    let base: MemoryStorage
    let failing = Atomic<Bool>(false)
    init(_ base: MemoryStorage) { self.base = base }

    var displayURL: String { "flaky+" + base.displayURL }
    func list(prefix: String) async throws -> [StorageObject] {
        try check()
        return try await base.list(prefix: prefix)
    }
    func makeWriter(key: String) async throws -> any StorageWriter {
        try check()
        return try await base.makeWriter(key: key)
    }
    func makeReader(key: String, range: Range<Int64>?) async throws -> any StorageReader {
        try await base.makeReader(key: key, range: range)
    }
    func delete(keys: [String]) async throws { try await base.delete(keys: keys) }
    func discardUnfinishedUploads(prefix: String) async throws -> Int { try await base.discardUnfinishedUploads(prefix: prefix) }
    func check() throws {
        if failing.load(ordering: .relaxed) { throw CairnError(.storage, "the test storage is down") }
    }
}

@Suite("Binary log archiver", .serialized)
struct BinlogArchiverTests {
    let shard = try! KeyspaceShard(parsing: "commerce/0")

    /// Polls `condition` every 100 ms; fails after `limit` seconds (a generous bound, not a timing assertion).
    func wait(_ what: String, limit: Int = 120, _ condition: () async throws -> Bool) async throws {
        for _ in 0..<(limit * 10) {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw TestSupportError("gave up waiting until \(what)")
    }

    @Test("a storage outage holds segments until storage returns, then stores them all, with no gap; a stop stores the rest")
    func storageOutage() async throws {
        try await withTestServer { source in
            try await source.query("CREATE DATABASE t; CREATE TABLE t.a (id INT PRIMARY KEY, v TEXT)")
            let start = try await source.gtidBinlogPosition()
            let memory = MemoryStorage()
            let storage = FlakyStorage(memory)
            let archiver = BinlogArchiver(
                settings: .init(shard: shard, mysql: source.connectionConfiguration, storage: storage,
                                interval: .seconds(1), maxBackoff: .seconds(1)),
                logger: testLogger)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await archiver.run() }
                do {
                    // With nothing archived or backed up, it starts at the server's position when it connects.
                    try await wait("the archiver is connected") { archiver.status.connected }
                    for i in 0..<20 { try await source.query("INSERT INTO t.a VALUES (\(i), REPEAT('x', 1000))") }
                    let first = try await source.gtidBinlogPosition()
                    try await wait("the first writes are archived") { archiver.status.archivedPosition?.contains(first) == true }

                    storage.failing.store(true, ordering: .relaxed)
                    for i in 20..<60 { try await source.query("INSERT INTO t.a VALUES (\(i), REPEAT('y', 1000))") }
                    let second = try await source.gtidBinlogPosition()
                    try await wait("the archiver has received the writes made during the outage") {
                        archiver.status.receivedPosition?.contains(second) == true
                    }
                    try await wait("the archiver reports that storage refuses its segments") {
                        archiver.status.lastError?.contains("the test storage is down") == true
                    }
                    #expect(archiver.status.archivedPosition?.contains(second) == false)

                    storage.failing.store(false, ordering: .relaxed)
                    try await wait("the archive catches up") { archiver.status.archivedPosition?.contains(second) == true }

                    // Received but not yet due at the stop: stored by the stop.
                    try await source.query("INSERT INTO t.a VALUES (1000, 'last')")
                    let third = try await source.gtidBinlogPosition()
                    try await wait("the last write is received") { archiver.status.receivedPosition?.contains(third) == true }
                    archiver.requestStop()
                    try await group.waitForAll()
                    #expect(archiver.status.archivedPosition == third)
                } catch {
                    archiver.requestStop()
                    group.cancelAll()
                    throw error
                }
            }
            let archive = try await BackupRepository(storage: memory, logger: testLogger).listArchive(shard)
            #expect(archive.timeline.gaps.isEmpty)
            #expect(archive.segments.first?.fromPosition == start)
            #expect(archive.segments.last?.position == (try await source.gtidBinlogPosition()))
            #expect(archive.segments.map(\.sequence) == Array(1...archive.segments.count))
            #expect(archive.segments.reduce(0) { $0 + $1.transactionCount } == 61)
        }
    }
}
