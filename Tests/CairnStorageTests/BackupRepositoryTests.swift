import CairnCore
import CairnStorage
import CairnTestSupport
import Foundation
import Testing

@Suite("Backup repository: the storage layout")
struct BackupRepositoryTests {
    let shard = try! KeyspaceShard(parsing: "commerce/-80")
    let start = Date(timeIntervalSince1970: 1_700_000_000)

    @Test("a started backup takes a name no directory of its listing has; committed, it is what the next listing shows")
    func startListCommit() async throws {
        let storage = MemoryStorage()
        let repository = BackupRepository(storage: storage, logger: testLogger)
        // An interrupted backup from the same tablet in the same second.
        let taken = BackupName(time: start, tabletAlias: SyntheticBackups.alias).description
        try await SyntheticBackups.writeIncomplete(name: taken, to: storage, shard: shard)
        var listing = try await repository.list(shard)
        #expect(listing.map(\.name) == [taken])

        let started = try await repository.start(in: listing, alias: SyntheticBackups.alias, now: { start })
        #expect(started.name.description != taken && started.name.time == start.addingTimeInterval(1))
        let running = try #require(try await repository.list(shard).first { $0.name == started.name.description })
        #expect(!running.isComplete && !running.removalStarted)

        // The backup writes its data file, then commits.
        let data = Data("data\n".utf8)
        var manifest = SyntheticBackups.manifest(shard: shard, start: started.startTime, finish: start.addingTimeInterval(5),
                                                 parent: nil, seq: 10)
        manifest.backupName = started.name.description
        try await storage.writeAll(key: repository.key(shard, manifest.backupName, "backup.mbstream"), data: data)
        // The SHA-256 of "data\n": a manifest with a malformed hash is unreadable.
        manifest.files = [ManifestFile(name: "backup.mbstream", rawSize: 5, storedSize: Int64(data.count),
                                       sha256: "6667b2d1aab6a00caa5aee5af8ad9f1465e567abf1c209d15727d57b3e8f6e5f")]
        listing.add(try await repository.commit(manifest, of: started))

        let fresh = try await repository.list(shard)
        #expect(listing.map(\.name) == fresh.map(\.name))
        #expect(listing.manifests == fresh.manifests && listing.manifests == [manifest])
        let added = try #require(listing.last)
        let stored = try #require(fresh.last)
        #expect(Set(added.objects.map(\.key)) == Set(stored.objects.map(\.key)))
        #expect(added.storedBytes == stored.storedBytes)
        // The next name is free again only after this one.
        #expect(fresh.uniqueName(startingAt: start, alias: SyntheticBackups.alias).time == start.addingTimeInterval(2))
    }

    @Test("with a manifest cache, a second listing decodes only what changed: a rewritten MANIFEST is read again, a removed one is forgotten")
    func manifestCache() async throws {
        let storage = MemoryStorage()
        let cache = ManifestCache()
        let repository = BackupRepository(storage: storage, logger: testLogger, manifestCache: cache)
        let full = try await SyntheticBackups.writeComplete(
            SyntheticBackups.manifest(shard: shard, start: start, finish: start.addingTimeInterval(5), parent: nil, seq: 10),
            to: storage, shard: shard)
        let incremental = try await SyntheticBackups.writeComplete(
            SyntheticBackups.manifest(shard: shard, start: start.addingTimeInterval(60), finish: start.addingTimeInterval(65), parent: full, seq: 20),
            to: storage, shard: shard)
        #expect(try await repository.list(shard).manifests == [full, incremental])
        #expect(cache.statistics.count == 2 && cache.statistics.hits == 0)
        #expect(try await repository.list(shard).manifests == [full, incremental])
        #expect(cache.statistics.hits == 2)

        // rotate-key rewrites a MANIFEST in place: the listing shows the new one, not the cached one.
        var rewritten = incremental
        rewritten.hostname = "rewritten-host"
        try await Task.sleep(for: .milliseconds(2))
        try await storage.writeAll(key: repository.key(shard, incremental.backupName, BackupManifest.fileName),
                                   data: try rewritten.encoded())
        #expect(try await repository.list(shard).manifests == [full, rewritten])
        #expect(cache.statistics.hits == 3)

        // A removed backup's manifest leaves the cache at the next listing of its shard.
        try await storage.delete(keys: [repository.key(shard, incremental.backupName, BackupManifest.fileName)])
        #expect(try await repository.list(shard).manifests == [full])
        #expect(cache.statistics.count == 1)

        // Bounded: once full, what it holds stays and new manifests are read but not admitted.
        let small = ManifestCache(capacity: 1)
        let bounded = BackupRepository(storage: storage, logger: testLogger, manifestCache: small)
        try await storage.writeAll(key: repository.key(shard, incremental.backupName, BackupManifest.fileName),
                                   data: try rewritten.encoded())
        #expect(try await bounded.list(shard).manifests == [full, rewritten])
        #expect(small.statistics.count == 1 && small.statistics.refused == 1)
        #expect(try await bounded.list(shard).manifests == [full, rewritten])
        #expect(small.statistics.hits == 1)
    }

    @Test("markers are one line of JSON, and the markers earlier versions wrote still read")
    func markers() async throws {
        let storage = MemoryStorage()
        let repository = BackupRepository(storage: storage, logger: testLogger)
        let started = try await repository.start(in: try await repository.list(shard), alias: SyntheticBackups.alias, now: { start })
        let data = try await storage.readAll(key: repository.key(shard, started.name.description, BackupRepository.startedMarker))
        #expect(data.last == UInt8(ascii: "\n") && !data.dropLast().contains(UInt8(ascii: "\n")))
        let marker = try BackupRepository.decodeMarker(BackupRepository.StartedMarker.self, from: data)
        #expect(marker.backupName == started.name.description && marker.startTime == start && marker.pid == getpid())

        let old = Data(#"{"backup_name": "2023-11-14.221320.zone1-100", "start_time": "2023-11-14T22:13:20.000Z", "hostname": "db1", "pid": 4242}"#.utf8 + [10])
        let oldStarted = try BackupRepository.decodeMarker(BackupRepository.StartedMarker.self, from: old)
        #expect(oldStarted == .init(backupName: "2023-11-14.221320.zone1-100", startTime: start, hostname: "db1", pid: 4242))
        let oldRemoving = Data(#"{"backup_name": "2023-11-14.221320.zone1-100", "removal_started": "2023-11-14T22:13:20.000Z"}"#.utf8 + [10])
        #expect(try BackupRepository.decodeMarker(BackupRepository.RemovingMarker.self, from: oldRemoving).removalStarted == start)
    }
}
