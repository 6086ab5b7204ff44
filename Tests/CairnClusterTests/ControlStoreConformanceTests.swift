import CairnCore
import CairnEtcd
import CairnTestSupport
import Foundation
import Testing

@testable import CairnCluster

/// Which ``ControlStore`` a conformance test runs against.
enum ControlStoreKind: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite
    case etcd

    var testDescription: String { rawValue }

    /// A fresh, empty store of this kind for `body`: SQLite in a temporary
    /// directory, or etcd (a real one-member cluster on loopback) under a
    /// new prefix. Everything is removed afterwards, also when `body` throws.
    func withStore(_ body: (any ControlStore) async throws -> Void) async throws {
        switch self {
        case .sqlite:
            let directory = try TemporaryDirectory(prefix: "cairn-control-store")
            defer { directory.remove() }
            try await body(try CtldStore(path: directory.file("ctld.sqlite")))
        case .etcd:
            let etcd = try await EtcdCluster.start(members: 1)
            do {
                let store = try await EtcdControlStore.open(try EtcdTopology(parsing: etcd.topo(prefix: "cairn/conformance")),
                                                            storage: "file:///backups", logger: testLogger)
                do {
                    try await body(store)
                } catch {
                    await store.close()
                    throw error
                }
                await store.close()
            } catch {
                await etcd.remove()
                throw error
            }
            await etcd.remove()
        }
    }
}

/// ctld's store semantics, the same for SQLite and etcd: what the
/// heartbeat, the monitor, the scheduler, the API and the pruner rely on.
@Suite("ctld's store: the same rules on SQLite and on etcd")
struct ControlStoreConformanceTests {
    static func shard(_ text: String) throws -> KeyspaceShard { try KeyspaceShard(parsing: text) }

    @discardableResult
    static func register(_ store: any ControlStore, _ alias: String, _ shard: String, healthy: Bool = true,
                         lastHeartbeat: Date? = Date()) async throws -> ClusterAPI.Tablet {
        let s = try Self.shard(shard)
        var tablet = ClusterAPI.Tablet(registration: .init(alias: alias, keyspace: s.keyspace, shard: s.shard, type: .primary,
                                                           agentURL: "http://127.0.0.1:1", mysqlHost: nil, mysqlPort: nil, hostname: "test"))
        tablet.healthy = healthy
        tablet.lastHeartbeat = lastHeartbeat
        try await store.saveTablet(tablet)
        return tablet
    }

    static func job(_ store: any ControlStore, _ shard: String, on tablet: String, scheduled: Bool = true, finished: Bool) async throws -> Int64 {
        let job = try await store.createJob(shard: try Self.shard(shard), tablet: tablet, scheduled: scheduled) { $0.backupType = .auto }
        if finished { try await finish(store, job.id) }
        return job.id
    }

    static func finish(_ store: any ControlStore, _ id: Int64) async throws {
        try await store.updateJob(id) { $0.apply(.init(id: id, report: .init(phase: .completed, result: .completed))) }
    }

    @Test("the shards with tablets, each once, with whether a job runs on it", arguments: ControlStoreKind.allCases)
    func knownShards(_ kind: ControlStoreKind) async throws {
        try await kind.withStore { store in
            try await Self.register(store, "zone1-100", "ks/0")
            try await Self.register(store, "zone1-101", "ks/0")
            try await Self.register(store, "zone1-200", "ks/1")
            try await Self.register(store, "zone1-300", "other/0")
            _ = try await Self.job(store, "ks/0", on: "zone1-100", finished: true)
            _ = try await Self.job(store, "ks/0", on: "zone1-101", finished: false)
            _ = try await Self.job(store, "ks/1", on: "zone1-200", finished: true)
            // A shard whose tablets are gone is not known, even with a running job.
            _ = try await Self.job(store, "gone/0", on: "zone1-900", finished: false)

            #expect(try await store.knownShards() == [
                .init(shard: try Self.shard("ks/0"), busy: true),
                .init(shard: try Self.shard("ks/1"), busy: false),
                .init(shard: try Self.shard("other/0"), busy: false),
            ])
            #expect(try await store.isBusy(try Self.shard("ks/0")))
            #expect(try await !store.isBusy(try Self.shard("ks/1")))
            #expect(try await store.tablets(try Self.shard("ks/0")).map(\.alias) == ["zone1-100", "zone1-101"])
            #expect(try await store.tablets().map(\.alias) == ["zone1-100", "zone1-101", "zone1-200", "zone1-300"])
            #expect(try await store.tablet("zone1-200")?.shard == "1")
            #expect(try await store.tablet("zone1-999")?.alias == nil)
        }
    }

    @Test("a tablet registered again in another shard leaves its old shard", arguments: ControlStoreKind.allCases)
    func tabletMoves(_ kind: ControlStoreKind) async throws {
        try await kind.withStore { store in
            try await Self.register(store, "zone1-100", "ks/0")
            try await Self.register(store, "zone1-100", "ks/1")
            #expect(try await store.tablets(try Self.shard("ks/0")).isEmpty)
            #expect(try await store.tablets(try Self.shard("ks/1")).map(\.alias) == ["zone1-100"])
            #expect(try await store.knownShards().map(\.shard) == [try Self.shard("ks/1")])
            #expect(try await store.tablets().count == 1)
        }
    }

    @Test("one unfinished job per shard: a second is refused, also among racers, until the first ends; ids grow",
          arguments: ControlStoreKind.allCases)
    func oneJobPerShard(_ kind: ControlStoreKind) async throws {
        try await kind.withStore { store in
            let first = try await Self.job(store, "ks/0", on: "zone1-100", finished: false)
            await #expect(throws: CairnError.self) {
                _ = try await store.createJob(shard: try Self.shard("ks/0"), tablet: "zone1-101", scheduled: false) { _ in }
            }
            do {
                _ = try await store.createJob(shard: try Self.shard("ks/0"), tablet: "zone1-101", scheduled: false) { _ in }
            } catch let error as CairnError {
                #expect(error.message == "a job is already running on ks/0; wait for it (see `cairn jobs ks/0`) and retry")
            }
            // Another shard is not held up.
            let other = try await Self.job(store, "ks/1", on: "zone1-200", finished: false)
            #expect(other > first)
            try await Self.finish(store, first)
            let next = try await Self.job(store, "ks/0", on: "zone1-100", finished: false)
            #expect(next > other)

            // Eight claims on one free shard at once: exactly one job.
            let created = try await withThrowingTaskGroup(of: Int64?.self, returning: [Int64].self) { group in
                for i in 0..<8 {
                    group.addTask {
                        do {
                            return try await store.createJob(shard: try Self.shard("race/0"), tablet: "zone1-\(300 + i)", scheduled: true) { _ in }.id
                        } catch let error as CairnError where error.message.hasPrefix("a job is already running on race/0") {
                            return nil
                        }
                    }
                }
                return try await group.reduce(into: []) { if let id = $1 { $0.append(id) } }
            }
            #expect(created.count == 1)
            #expect(try await store.jobs(shard: try Self.shard("race/0"), limit: 100).map(\.id) == created)
        }
    }

    @Test("jobs on 100 shards at once, as a scheduler's wave starts them: each is created, with an id of its own, newer than every earlier one",
          arguments: ControlStoreKind.allCases)
    func manyShardsAtOnce(_ kind: ControlStoreKind) async throws {
        try await kind.withStore { store in
            let before = try await Self.job(store, "ks/0", on: "zone1-100", finished: true)
            let created = try await withThrowingTaskGroup(of: (String, Int64).self, returning: [String: Int64].self) { group in
                for i in 0..<100 {
                    group.addTask {
                        let job = try await store.createJob(shard: try Self.shard("wave/\(i)"), tablet: "zone1-\(1000 + i)", scheduled: true) { _ in }
                        return (job.shard, job.id)
                    }
                }
                return try await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
            }
            #expect(created.count == 100)
            #expect(Set(created.values).count == 100)
            #expect(created.values.allSatisfy { $0 > before })
            for i in 0..<100 {
                let shard = try Self.shard("wave/\(i)")
                #expect(try await store.jobs(shard: shard, limit: 10).map(\.id) == [created["\(i)"]].compactMap { $0 })
                #expect(try await store.isBusy(shard))
            }
        }
    }

    @Test("job changes: concurrent changes all land, a finished job no longer changes, an unknown job is nil",
          arguments: ControlStoreKind.allCases)
    func jobUpdates(_ kind: ControlStoreKind) async throws {
        try await kind.withStore { store in
            let id = try await Self.job(store, "ks/0", on: "zone1-100", finished: false)
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<10 {
                    group.addTask { _ = try await store.updateJob(id) { $0.report.bytesDone += 1 } }
                }
                try await group.waitForAll()
            }
            #expect(try await store.job(id)?.bytesDone == 10)
            // The final report is the last change.
            try await store.updateJob(id) { $0.apply(.init(id: id, report: .init(phase: .completed, bytesDone: 20, result: .completed))) }
            #expect(try await !store.isBusy(try Self.shard("ks/0")))
            let after = try await store.updateJob(id) { $0.report.bytesDone = 99 }
            #expect(after?.bytesDone == 20 && after?.result == .completed)
            #expect(try await store.job(id)?.bytesDone == 20)
            let unknown = try await store.updateJob(12345) { $0.report.bytesDone = 1 }
            #expect(unknown?.id == nil)
            #expect(try await store.job(12345)?.id == nil)
        }
    }

    @Test("jobs are listed newest first, per shard or all, up to the limit", arguments: ControlStoreKind.allCases)
    func jobListing(_ kind: ControlStoreKind) async throws {
        try await kind.withStore { store in
            var ks0: [Int64] = []
            var all: [Int64] = []
            for i in 0..<6 {
                let shard = i % 2 == 0 ? "ks/0" : "ks/1"
                let id = try await Self.job(store, shard, on: "zone1-100", finished: true)
                all.append(id)
                if shard == "ks/0" { ks0.append(id) }
            }
            #expect(try await store.jobs(shard: nil, limit: 100).map(\.id) == all.reversed())
            #expect(try await store.jobs(shard: nil, limit: 2).map(\.id) == Array(all.reversed().prefix(2)))
            #expect(try await store.jobs(shard: try Self.shard("ks/0"), limit: 100).map(\.id) == ks0.reversed())
            #expect(try await store.jobs(shard: try Self.shard("ks/0"), limit: 1).map(\.id) == [ks0.last!])
            #expect(try await store.jobs(shard: try Self.shard("ks/9"), limit: 10).isEmpty)
        }
    }

    @Test("a heartbeat reads its tablet's unfinished jobs: its own, not its shard's or finished ones", arguments: ControlStoreKind.allCases)
    func tabletJobs(_ kind: ControlStoreKind) async throws {
        try await kind.withStore { store in
            try await Self.register(store, "zone1-100", "ks/0")
            try await Self.register(store, "zone1-101", "ks/0")
            _ = try await Self.job(store, "ks/0", on: "zone1-100", finished: true)
            let running = try await Self.job(store, "ks/0", on: "zone1-100", finished: false)
            // A heartbeat's change reads them, and lands.
            #expect(try await store.heartbeatTablet("zone1-100") { $0.serving = true } == [running])
            #expect(try await store.heartbeatTablet("zone1-101") { $0.serving = true } == [])
            #expect(try await store.tablet("zone1-100")?.serving == true)
            #expect(try await store.heartbeatTablet("zone1-999") { $0.serving = true } == nil)
            try await store.updateJob(running) { $0.fail("x") }
            #expect(try await store.heartbeatTablet("zone1-100") { $0.serving = false } == [])
        }
    }

    @Test("many heartbeats at once, racing other changes of the same tablets: each lands, none is lost, each gets its own running jobs",
          arguments: ControlStoreKind.allCases)
    func concurrentHeartbeats(_ kind: ControlStoreKind) async throws {
        try await kind.withStore { store in
            let count = 150
            let aliases = (0..<count).map { "zone1-\(1000 + $0)" }
            for (index, alias) in aliases.enumerated() { try await Self.register(store, alias, "ks/\(index)") }
            // Every tenth tablet runs a job.
            var running: [String: Int64] = [:]
            for (index, alias) in aliases.enumerated() where index % 10 == 0 {
                running[alias] = try await Self.job(store, "ks/\(index)", on: alias, finished: false)
            }
            let answers = try await withThrowingTaskGroup(of: (String, [Int64]?).self) { group in
                for (index, alias) in aliases.enumerated() {
                    group.addTask { (alias, try await store.heartbeatTablet(alias) { $0.currentJob = Int64(index) }) }
                    // Another change of the same tablet, racing the heartbeat (ctld's scheduler marking it, say).
                    if index % 4 == 0 {
                        group.addTask {
                            let updated = try await store.updateTablet(alias) { $0.healthy = false }
                            #expect(updated)
                            return ("", nil)
                        }
                    }
                }
                group.addTask { ("zone1-999", try await store.heartbeatTablet("zone1-999") { $0.currentJob = 1 }) }
                var answers: [String: [Int64]?] = [:]
                for try await (alias, answer) in group where !alias.isEmpty { answers[alias] = answer }
                return answers
            }
            #expect(answers["zone1-999"] == .some(nil), "an unregistered tablet's heartbeat is refused")
            let tablets = Dictionary(uniqueKeysWithValues: try await store.tablets().map { ($0.alias, $0) })
            for (index, alias) in aliases.enumerated() {
                #expect(answers[alias] == .some(running[alias].map { [$0] } ?? []), "\(alias): its own running jobs")
                #expect(tablets[alias]?.currentJob == Int64(index), "\(alias): the heartbeat's change landed")
                #expect(tablets[alias]?.healthy == (index % 4 != 0), "\(alias): the racing change landed too")
            }
        }
    }

    @Test("silent tablets: those past the cutoff still marked healthy or still holding a job, with their jobs",
          arguments: ControlStoreKind.allCases)
    func silentTablets(_ kind: ControlStoreKind) async throws {
        try await kind.withStore { store in
            let now = Date()
            let old = now.addingTimeInterval(-60)
            try await Self.register(store, "zone1-100", "ks/0", healthy: true, lastHeartbeat: old)      // silent, still healthy
            try await Self.register(store, "zone1-200", "ks/1", healthy: true, lastHeartbeat: now)      // heartbeating
            try await Self.register(store, "zone1-300", "ks/2", healthy: false, lastHeartbeat: old)     // silent, already handled
            try await Self.register(store, "zone1-400", "ks/3", healthy: false, lastHeartbeat: old.addingTimeInterval(1)) // silent, a job left
            try await Self.register(store, "zone1-500", "ks/4", healthy: true, lastHeartbeat: nil)      // never heard from
            _ = try await Self.job(store, "ks/1", on: "zone1-200", finished: false)
            _ = try await Self.job(store, "ks/2", on: "zone1-300", finished: true)
            let lost = try await Self.job(store, "ks/3", on: "zone1-400", finished: false)

            let silent = try await store.silentTablets(heartbeatBefore: now.addingTimeInterval(-10))
            #expect(silent.map(\.alias) == ["zone1-500", "zone1-100", "zone1-400"])
            #expect(silent.first { $0.alias == "zone1-400" }?.unfinishedJobs == [.init(id: lost, shard: try Self.shard("ks/3"))])
            #expect(silent.first { $0.alias == "zone1-100" }?.healthy == true)
            #expect(silent.first { $0.alias == "zone1-500" }?.lastHeartbeat == nil)

            // A heartbeat, recorded through updateTablet, takes the tablet off the list.
            #expect(try await store.updateTablet("zone1-100") { $0.lastHeartbeat = now })
            #expect(try await !store.updateTablet("zone1-999") { $0.lastHeartbeat = now })
            #expect(try await store.silentTablets(heartbeatBefore: now.addingTimeInterval(-10)).map(\.alias) == ["zone1-500", "zone1-400"])
        }
    }

    @Test("archive leases: racing heartbeats of two primaries leave one holder; a change that keeps the lease stores nothing; nil removes it",
          arguments: ControlStoreKind.allCases)
    func archiveLeases(_ kind: ControlStoreKind) async throws {
        try await kind.withStore { store in
            let shard = try Self.shard("ks/0")
            let rule = ArchiveLeaseRule(duration: 10, graceUntil: nil)
            let now = Date()
            #expect(try await store.archiveLease(shard) == nil)
            // Both primaries ask at once, as when their heartbeats reach two ctlds.
            let granted = try await withThrowingTaskGroup(of: String?.self) { group in
                for tablet in ["zone1-100", "zone1-200"] {
                    group.addTask {
                        try await store.updateArchiveLease(shard) { lease in
                            let outcome = rule.heartbeat(lease, tablet: tablet, primary: true, healthy: true, archiving: false, now: now)
                            lease = outcome.lease
                            return outcome.heldUntil == nil ? nil : tablet
                        }
                    }
                }
                return try await group.reduce(into: [String]()) { if let t = $1 { $0.append(t) } }
            }
            #expect(granted.count == 1)
            let stored = try #require(try await store.archiveLease(shard))
            #expect(stored.holder == granted.first)
            #expect(stored.expires > now && stored.expires <= now.addingTimeInterval(10))
            // Another shard's lease is its own.
            #expect(try await store.archiveLease(try Self.shard("ks/1")) == nil)
            // Leaving the lease as it is returns the change's result.
            #expect(try await store.updateArchiveLease(shard) { _ in 7 } == 7)
            #expect(try await store.archiveLease(shard) == stored)
            _ = try await store.updateArchiveLease(shard) { $0 = nil }
            #expect(try await store.archiveLease(shard) == nil)
        }
    }

    @Test("published plans: changed ones replace, removed ones go, by shard", arguments: ControlStoreKind.allCases)
    func publishedSchedule(_ kind: ControlStoreKind) async throws {
        try await kind.withStore { store in
            let at = Date(timeIntervalSince1970: 1_800_000_000)
            #expect(try await store.publishedSchedule().isEmpty)
            let a = ClusterAPI.ShardSchedule(shard: "ks/0", nextRun: at, nextKind: "full", note: "no backup yet")
            let b = ClusterAPI.ShardSchedule(shard: "ks/1", nextRun: nil, nextKind: nil, note: "a job is running")
            try await store.publishSchedule(changed: [b, a], removed: [])
            #expect(try await store.publishedSchedule().sorted { $0.shard < $1.shard } == [a, b])
            let a2 = ClusterAPI.ShardSchedule(shard: "ks/0", nextRun: at.addingTimeInterval(3600), nextKind: "incremental", note: nil)
            try await store.publishSchedule(changed: [a2], removed: ["ks/1", "ks/9"])
            #expect(try await store.publishedSchedule() == [a2])
        }
    }

    @Test("the last scheduled job of each asked shard; manual jobs and other shards do not count", arguments: ControlStoreKind.allCases)
    func lastScheduledJobs(_ kind: ControlStoreKind) async throws {
        try await kind.withStore { store in
            _ = try await Self.job(store, "ks/0", on: "zone1-100", finished: true)
            let newest = try await Self.job(store, "ks/0", on: "zone1-100", finished: true)
            _ = try await Self.job(store, "ks/0", on: "zone1-100", scheduled: false, finished: true)
            _ = try await Self.job(store, "ks/1", on: "zone1-200", scheduled: false, finished: true)
            let other = try await Self.job(store, "ks/2", on: "zone1-300", finished: false)

            let last = try await store.lastScheduledJobs([try Self.shard("ks/0"), try Self.shard("ks/1"), try Self.shard("ks/9")])
            #expect(last.mapValues(\.id) == [try Self.shard("ks/0"): newest])
            #expect(try await store.lastScheduledJobs([try Self.shard("ks/2")]).mapValues(\.id) == [try Self.shard("ks/2"): other])
            #expect(try await store.lastScheduledJobs([]).isEmpty)
        }
    }

    @Test("job retention keeps each shard's newest finished jobs and every young one, and never an unfinished one",
          arguments: ControlStoreKind.allCases)
    func retention(_ kind: ControlStoreKind) async throws {
        try await kind.withStore { store in
            var ids: [Int64] = []
            for _ in 0..<130 { ids.append(try await Self.job(store, "ks/0", on: "zone1-100", finished: true)) }
            let running = try await Self.job(store, "ks/0", on: "zone1-100", finished: false)
            var few: [Int64] = []
            for _ in 0..<5 { few.append(try await Self.job(store, "ks/1", on: "zone1-200", finished: true)) }
            let week = JobRetention(keepPerShard: 100, keepYoungerThan: 7 * 86_400)

            // Today every job is young: nothing goes.
            #expect(try await store.pruneJobs(retention: week, now: Date()) == 0)
            // Eight days on, every job is old: ks/0 keeps its newest 100 finished, ks/1 (fewer) all.
            let later = Date().addingTimeInterval(8 * 86_400)
            #expect(try await store.pruneJobs(retention: week, now: later) == 30)
            #expect(try await store.jobs(shard: try Self.shard("ks/0"), limit: 1000).map(\.id) == ([running] + ids.suffix(100)).sorted(by: >))
            #expect(try await store.jobs(shard: try Self.shard("ks/1"), limit: 1000).map(\.id) == few.reversed())
            #expect(try await store.pruneJobs(retention: week, now: later) == 0)
            // Keeping none by count leaves only the unfinished job.
            #expect(try await store.pruneJobs(retention: JobRetention(keepPerShard: 0, keepYoungerThan: 7 * 86_400), now: later) == 105)
            #expect(try await store.jobs(shard: nil, limit: 1000).map(\.id) == [running])
            #expect(try await store.isBusy(try Self.shard("ks/0")))
            // New jobs continue the ids.
            try await Self.finish(store, running)
            #expect(try await Self.job(store, "ks/0", on: "zone1-100", finished: false) > few.last!)
        }
    }
}
