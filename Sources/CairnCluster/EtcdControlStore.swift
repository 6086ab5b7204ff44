import CairnCore
import CairnEtcd
import CairnStorage
import Foundation
import Logging
import Synchronization

/// ctld's topology and job history in etcd, under one key prefix shared by
/// every ctld of a cluster (`--topo etcd://HOST:PORT[,...]/PREFIX`). The
/// layout (docs/CLUSTER.md, "Control plane on etcd"):
///
/// | key under the prefix | value |
/// | --- | --- |
/// | `cluster` | the marker: format version and the backup storage it serves |
/// | `leader` | the leading ctld's identity, under its lease |
/// | `next-job-id` | the next job id, decimal |
/// | `tablets/<alias>` | the tablet's record (JSON) |
/// | `shard-tablets/<ks>/<shard>/<alias>` | empty: the shard's tablets |
/// | `jobs/<id, 20 digits>` | the job's record (JSON) |
/// | `shard-jobs/<ks>/<shard>/<id>` | empty: the shard's jobs |
/// | `busy/<ks>/<shard>` | the id of the shard's unfinished job and its claim's nonce; absent when none |
/// | `running/<alias>/<id>` | `<ks>/<shard>`: the tablet's unfinished jobs |
/// | `last-scheduled/<ks>/<shard>` | the id of the shard's newest scheduled backup |
/// | `archive-leases/<ks>/<shard>` | the shard's archive lease: holder and expiry (JSON) |
/// | `schedule/<ks>/<shard>` | the leader's plan for the shard, as `cairn jobs` shows it (JSON) |
///
/// A job is created in one transaction that allocates its id (compare on
/// `next-job-id`'s revision) and claims its shard (compare on `busy/...`
/// being absent): two ctlds can never both start a job on one shard. A
/// job's changes compare its key's revision and retry; the change that
/// finishes it releases the shard in the same transaction. A heartbeat
/// reads and writes its own tablet's key only (and, from a shard's
/// archiving primary, that shard's archive lease).
final class EtcdControlStore: ControlStore {
    /// The marker's format; a prefix of a newer format is refused.
    static let formatVersion = 1

    struct Marker: Codable, Sendable {
        var format: Int
        /// The backup storage the cluster's ctlds serve (no credentials): a
        /// second cluster on the same prefix would schedule this one's shards.
        var storage: String
        var createdAt: Date
    }

    let client: EtcdClient
    let prefix: String
    let logger: Logger
    /// Until when writes fail without waiting out an election, and reads go
    /// to the answering member's own copy: a write found etcd without quorum.
    private let degradedUntil = Mutex<ContinuousClock.Instant?>(nil)
    /// Until when reads go to the answering member's copy: a read found etcd without a leader.
    private let leaderlessUntil = Mutex<ContinuousClock.Instant?>(nil)
    /// Heartbeats that arrive while a group is being written go together into the next.
    let heartbeatWrites = TabletWriteGroup<[Int64]?>()
    /// Job ids this ctld reserved from `next-job-id` and has not given out yet.
    let reservedJobIDs = Mutex(JobIDReservations())

    private init(client: EtcdClient, prefix: String, logger: Logger) {
        self.client = client
        self.prefix = prefix
        self.logger = logger
    }

    // MARK: - Opening

    /// Connects to etcd and checks (or writes) the prefix's marker: a prefix
    /// holding anything but this cluster's keys is refused. With
    /// `migratingFrom`, the prefix must be empty and ctld's SQLite database at
    /// that path is copied in first (the marker is written last, so an
    /// interrupted copy is refused at the next start rather than served).
    static func open(_ topology: EtcdTopology, storage: String?, migratingFrom sqlite: String? = nil,
                     logger: Logger) async throws -> EtcdControlStore {
        let client = try EtcdClient(endpoints: topology.endpoints, logger: logger)
        let store = EtcdControlStore(client: client, prefix: topology.prefix, logger: logger)
        do {
            _ = try await client.clusterID()
            let wanted = Marker(format: formatVersion, storage: Self.storageIdentity(storage), createdAt: Date())
            if let sqlite {
                try await store.migrate(from: sqlite, topology: topology, marker: wanted)
            } else {
                try await store.claimPrefix(topology: topology, marker: wanted)
            }
        } catch {
            await client.shutdown()
            throw error
        }
        return store
    }

    /// The storage as the marker records it: the parsed location, so that
    /// spellings of one place (`file:///b/` and `file:///b/./`, `s3://b/p/`
    /// and `s3://b/p`) are the same cluster.
    static func storageIdentity(_ url: String?) -> String {
        guard let url, !url.isEmpty else { return "none" }
        let text: String
        switch try? StorageLocation(parsing: url) {
        case .file(let path)?: text = "file://" + (path as NSString).standardizingPath
        case let location?: text = location.description
        case nil: text = url
        }
        return text.hasSuffix("/") ? String(text.dropLast()) : text
    }

    /// Accepts the prefix's marker, or writes it into an empty prefix.
    func claimPrefix(topology: EtcdTopology, marker wanted: Marker) async throws {
        for _ in 0..<5 {
            if let existing = try await client.get(markerKey) {
                try check(existing, wanted: wanted, topology: topology)
                return
            }
            if !(try await client.list(prefix: prefix, limit: 1, keysOnly: true).isEmpty) {
                throw foreignData(topology)
            }
            let result = try await client.transaction(if: [.absent(markerKey)], then: [.put(markerKey, try Self.encode(wanted))])
            if result.succeeded {
                logger.notice("ctld keeps its state in etcd under a new prefix", metadata: ["topo": "\(topology)"])
                return
            }
            // Another ctld wrote it at the same moment: read it again.
        }
        throw CairnError(.unavailable, "the marker of etcd prefix \(topology) kept changing while ctld read it; check that no other program writes there and start ctld again")
    }

    func check(_ existing: EtcdKeyValue, wanted: Marker, topology: EtcdTopology) throws {
        guard let marker = try? Self.decode(Marker.self, existing.value) else { throw foreignData(topology) }
        guard marker.format <= Self.formatVersion else {
            throw CairnError(.configuration, "etcd prefix \(topology) holds a Cairn control plane of format \(marker.format), newer than this ctld reads (\(Self.formatVersion)); upgrade Cairn")
        }
        guard marker.storage == wanted.storage else {
            throw CairnError(.configuration, "etcd prefix \(topology) holds the Cairn cluster whose backups are in \(marker.storage), not \(wanted.storage); give this cluster its own prefix in --topo")
        }
    }

    func foreignData(_ topology: EtcdTopology) -> CairnError {
        CairnError(.configuration, "etcd prefix \(topology) already holds keys that are not a Cairn cluster's (another program's data, or an interrupted --migrate-from-sqlite); choose another prefix in --topo, or empty this one with `etcdctl del --prefix \(prefix)`")
    }

    /// Copies ctld's SQLite database into the (empty) prefix, then writes the marker.
    func migrate(from path: String, topology: EtcdTopology, marker: Marker) async throws {
        guard FileManager.default.fileExists(atPath: path) else {
            throw CairnError(.fileSystem, "there is no ctld database at \(path); give --migrate-from-sqlite the ctld.sqlite of the old ctld's --data-dir")
        }
        guard try await client.list(prefix: prefix, limit: 1, keysOnly: true).isEmpty else {
            throw CairnError(.configuration, "etcd prefix \(topology) is not empty; --migrate-from-sqlite copies only into an empty prefix, choose a new one in --topo")
        }
        let sqlite = try CtldStore(path: path)
        let snapshot = try await sqlite.migrationSnapshot()
        var operations: [EtcdClient.Operation] = []
        for tablet in snapshot.tablets {
            let shard = try KeyspaceShard(keyspace: tablet.keyspace, shard: tablet.shard)
            operations.append(.put(tabletKey(tablet.alias), try Self.encode(tablet)))
            operations.append(.put(shardTabletKey(shard, tablet.alias), Data()))
        }
        var lastScheduled: [KeyspaceShard: Int64] = [:]
        for row in snapshot.jobs {
            let job = row.job
            let shard = try KeyspaceShard(keyspace: job.keyspace, shard: job.shard)
            operations.append(.put(jobKey(job.id), try Self.encode(job)))
            operations.append(.put(shardJobKey(shard, job.id), Data()))
            if !job.isFinished {
                operations.append(.put(busyKey(shard), Data(String(job.id).utf8)))
                operations.append(.put(runningKey(job.tablet, job.id), Data(shard.description.utf8)))
            }
            if row.scheduled { lastScheduled[shard] = max(lastScheduled[shard] ?? 0, job.id) }
        }
        for (shard, id) in lastScheduled {
            operations.append(.put(lastScheduledKey(shard), Data(String(id).utf8)))
        }
        operations.append(.put(nextJobIDKey, Data(String(snapshot.nextJobID).utf8)))
        for start in stride(from: 0, to: operations.count, by: Self.batch) {
            _ = try await client.transaction(if: [], then: Array(operations[start..<min(start + Self.batch, operations.count)]))
        }
        // Last: only a complete copy is a cluster.
        let result = try await client.transaction(if: [.absent(markerKey)], then: [.put(markerKey, try Self.encode(marker))])
        guard result.succeeded else {
            throw CairnError(.configuration, "another ctld claimed etcd prefix \(topology) during the migration; migrate into a new prefix")
        }
        logger.notice("ctld's SQLite database was copied into etcd", metadata: [
            "from": "\(path)", "topo": "\(topology)", "tablets": "\(snapshot.tablets.count)", "jobs": "\(snapshot.jobs.count)"])
    }

    /// Operations per transaction: below etcd's default limit of 128.
    static let batch = 100

    func close() async {
        await client.shutdown()
    }

    // MARK: - Keys

    var markerKey: String { prefix + "cluster" }
    var leaderKey: String { prefix + "leader" }
    var nextJobIDKey: String { prefix + "next-job-id" }
    var tabletsPrefix: String { prefix + "tablets/" }
    func tabletKey(_ alias: String) -> String { tabletsPrefix + alias }
    var allShardTabletsPrefix: String { prefix + "shard-tablets/" }
    func shardTabletsPrefix(_ shard: KeyspaceShard) -> String { allShardTabletsPrefix + "\(shard.keyspace)/\(shard.shard)/" }
    func shardTabletKey(_ shard: KeyspaceShard, _ alias: String) -> String { shardTabletsPrefix(shard) + alias }
    var jobsPrefix: String { prefix + "jobs/" }
    func jobKey(_ id: Int64) -> String { jobsPrefix + Self.idText(id) }
    var allShardJobsPrefix: String { prefix + "shard-jobs/" }
    func shardJobsPrefix(_ shard: KeyspaceShard) -> String { allShardJobsPrefix + "\(shard.keyspace)/\(shard.shard)/" }
    func shardJobKey(_ shard: KeyspaceShard, _ id: Int64) -> String { shardJobsPrefix(shard) + Self.idText(id) }
    var busyPrefix: String { prefix + "busy/" }
    func busyKey(_ shard: KeyspaceShard) -> String { busyPrefix + "\(shard.keyspace)/\(shard.shard)" }
    var allRunningPrefix: String { prefix + "running/" }
    func runningPrefix(_ alias: String) -> String { allRunningPrefix + alias + "/" }
    func runningKey(_ alias: String, _ id: Int64) -> String { runningPrefix(alias) + Self.idText(id) }
    func lastScheduledKey(_ shard: KeyspaceShard) -> String { prefix + "last-scheduled/\(shard.keyspace)/\(shard.shard)" }
    var schedulePrefix: String { prefix + "schedule/" }
    func archiveLeaseKey(_ shard: KeyspaceShard) -> String { prefix + "archive-leases/\(shard.keyspace)/\(shard.shard)" }

    /// Job ids in keys: zero-padded, so key order is id order.
    static func idText(_ id: Int64) -> String {
        let digits = String(id)
        return String(repeating: "0", count: max(0, 20 - digits.count)) + digits
    }

    /// The parts of `key` after `base`, split at `/`.
    static func parts(_ key: String, after base: String) -> [String] {
        guard key.hasPrefix(base) else { return [] }
        return key.dropFirst(base.count).split(separator: "/", omittingEmptySubsequences: false).map(String.init)
    }

    static func encode<T: Encodable>(_ value: T) throws -> Data {
        try CairnJSON.encoder().encode(value)
    }

    static func decode<T: Decodable>(_ type: T.Type, _ data: Data) throws -> T {
        try CairnJSON.decoder().decode(type, from: data)
    }

    // MARK: - Reads that survive a lost quorum

    /// Whether a write found etcd without quorum recently: reads then go
    /// straight to a member's copy, and writes fail without waiting out an election.
    var isDegraded: Bool {
        degradedUntil.withLock { until in until.map { ContinuousClock.now < $0 } ?? false }
    }

    /// Runs a read linearizably, or, when etcd has no leader (an election,
    /// or a lost quorum), from the answering member's copy, which may be a
    /// little behind: reads answer while writes cannot.
    func read<T>(_ body: (_ serializable: Bool) async throws -> T) async throws -> T {
        let leaderless = leaderlessUntil.withLock { until in until.map { ContinuousClock.now < $0 } ?? false }
        if isDegraded || leaderless { return try await body(true) }
        do {
            return try await body(false)
        } catch let error as CairnError where error.code == .unavailable {
            // The next reads for a few seconds need not find out again.
            leaderlessUntil.withLock { $0 = .now + .seconds(5) }
            logger.debug("etcd has no leader; ctld reads a member's copy", metadata: ["error": "\(error.message)"])
            let original = error
            do { return try await body(true) } catch { throw original }
        }
    }

    /// A write. `body` is told whether to wait out an election: not for a
    /// while after a write found etcd without quorum (after waiting out one
    /// election already), so that refusals answer promptly.
    func write<T>(_ body: (_ waitForLeader: Bool) async throws -> T) async throws -> T {
        do {
            let leaderless = leaderlessUntil.withLock { until in until.map { ContinuousClock.now < $0 } ?? false }
            if leaderless || isDegraded { try await requireLeader() }
            let result = try await body(!isDegraded)
            degradedUntil.withLock { $0 = nil }
            return result
        } catch let error as CairnError where error.code == .unavailable {
            degradedUntil.withLock { $0 = .now + .seconds(10) }
            logger.warning("etcd refused a write for want of quorum; ctld answers reads from a member's copy", metadata: ["error": "\(error.message)"])
            throw error
        }
    }

    /// After etcd was seen without a leader: waits for one as long as an
    /// election after a lost member may take (the client's election window),
    /// asking a member's status, which answers at once; else refuses, so that
    /// a write without quorum is refused well within a client's timeout
    /// rather than after etcd's own timeouts on every attempt.
    static let noQuorum = CairnError(.unavailable, "etcd has no quorum (no leader among the members ctld reaches); writes are refused until a majority of its members is back")

    func requireLeader() async throws {
        let deadline = ContinuousClock.now + EtcdClient.electionWindow
        while true {
            if (try? await client.hasLeader()) == true { return }
            guard ContinuousClock.now < deadline else {
                throw Self.noQuorum
            }
            try await Task.sleep(for: .milliseconds(300))
        }
    }

    func get(_ key: String) async throws -> EtcdKeyValue? {
        try await read { try await client.get(key, serializable: $0, waitForLeader: false) }
    }

    /// The read of a compare-and-swap. While etcd has no leader it comes
    /// from a member's copy, which may be behind: a record found there is
    /// safe (the swap compares its revision, and fails without quorum
    /// anyway), but a record missing there may exist, so that answer is the
    /// quorum refusal, never "absent" (which would drop a job's end, or
    /// refuse a heartbeat as from an unregistered tablet).
    func getForUpdate(_ key: String) async throws -> EtcdKeyValue? {
        try await read { serializable in
            let found = try await client.get(key, serializable: serializable, waitForLeader: false)
            if serializable && found == nil { throw Self.noQuorum }
            return found
        }
    }

    func list(_ prefix: String, from start: String? = nil, limit: Int? = nil, descending: Bool = false,
              keysOnly: Bool = false) async throws -> [EtcdKeyValue] {
        try await read {
            try await client.list(prefix: prefix, from: start, limit: limit, descending: descending, keysOnly: keysOnly,
                                  serializable: $0, waitForLeader: false)
        }
    }

    /// The values of `keys`, in order (nil for an absent key): in
    /// transactions of gets, or one serializable get each while etcd has no quorum.
    func getMany(_ keys: [String]) async throws -> [EtcdKeyValue?] {
        try await read { serializable in
            if serializable {
                var found: [EtcdKeyValue?] = []
                for key in keys { found.append(try await client.get(key, serializable: true)) }
                return found
            }
            return try await getsInTransactions(keys)
        }
    }

    /// The values of `keys`, in order, read with quorum in transactions of
    /// at most `batch` gets each; the caller has checked that etcd has quorum.
    func getsInTransactions(_ keys: [String]) async throws -> [EtcdKeyValue?] {
        var found: [EtcdKeyValue?] = []
        for start in stride(from: 0, to: keys.count, by: Self.batch) {
            let chunk = keys[start..<min(start + Self.batch, keys.count)]
            let result = try await client.transaction(if: [], then: chunk.map { EtcdClient.Operation.get($0) }, waitForLeader: false)
            guard result.found.count == chunk.count else {
                throw CairnError(.cluster, "etcd answered \(result.found.count) of \(chunk.count) reads in one transaction; check that the endpoints are etcd 3.4 or newer")
            }
            found += result.found
        }
        return found
    }

    /// How often a compare-and-swap is tried before giving up: many ctlds
    /// changing one record at once is rare, so this is only a safeguard.
    static let casAttempts = 50

    func conflict(_ what: String) -> CairnError {
        CairnError(.unavailable, "\(what) kept changing while ctld tried to update it in etcd; retry")
    }

    // MARK: - Tablets

    func saveTablet(_ tablet: ClusterAPI.Tablet) async throws {
        let shard = try KeyspaceShard(keyspace: tablet.keyspace, shard: tablet.shard)
        let body = try Self.encode(tablet)
        for _ in 0..<Self.casAttempts {
            let key = tabletKey(tablet.alias)
            let existing = try await getForUpdate(key)
            var operations: [EtcdClient.Operation] = [.put(key, body), .put(shardTabletKey(shard, tablet.alias), Data())]
            if let existing, let old = try? Self.decode(ClusterAPI.Tablet.self, existing.value),
               let oldShard = try? KeyspaceShard(keyspace: old.keyspace, shard: old.shard), oldShard != shard {
                operations.append(.delete(shardTabletKey(oldShard, tablet.alias)))
            }
            let compare = existing.map { EtcdClient.Compare.modRevision(key, $0.modRevision) } ?? .absent(key)
            if try await write({ try await client.transaction(if: [compare], then: operations, waitForLeader: $0) }).succeeded { return }
        }
        throw conflict("tablet \(tablet.alias)")
    }

    func tablet(_ alias: String) async throws -> ClusterAPI.Tablet? {
        try await get(tabletKey(alias)).map { try Self.decode(ClusterAPI.Tablet.self, $0.value) }
    }

    func tablets() async throws -> [ClusterAPI.Tablet] {
        try await list(tabletsPrefix).map { try Self.decode(ClusterAPI.Tablet.self, $0.value) }
            .sorted { ($0.keyspace, $0.shard, $0.alias) < ($1.keyspace, $1.shard, $1.alias) }
    }

    func tablets(_ shard: KeyspaceShard) async throws -> [ClusterAPI.Tablet] {
        let base = shardTabletsPrefix(shard)
        let aliases = try await list(base, keysOnly: true).compactMap { Self.parts($0.key, after: base).first }
        return try await getMany(aliases.map(tabletKey)).compactMap { kv in
            try kv.map { try Self.decode(ClusterAPI.Tablet.self, $0.value) }
        }.filter { $0.keyspace == shard.keyspace && $0.shard == shard.shard }.sorted { $0.alias < $1.alias }
    }

    @discardableResult
    func updateTablet(_ alias: String, _ change: @escaping @Sendable (inout ClusterAPI.Tablet) -> Void) async throws -> Bool {
        try await changeTablet(alias, readingRunningJobs: false, change) != nil
    }

    /// Heartbeats are written in groups (``TabletWriteGroup``): those that
    /// arrive while one group is being written go into the next. A group of
    /// up to ``heartbeatBatch`` tablets costs two etcd requests, whatever its
    /// size: one transaction of gets reads their records, and one transaction
    /// writes them all, each compared on its own revision, with the range of
    /// each tablet's running jobs riding along. When any record changed in
    /// between (a job started, the tablet registered again), the transaction
    /// writes nothing and each heartbeat of that part is written on its own,
    /// compare-and-swap as before. Alone, a heartbeat costs the same two
    /// requests it did.
    func heartbeatTablet(_ alias: String, _ change: @escaping @Sendable (inout ClusterAPI.Tablet) -> Void) async throws -> [Int64]? {
        try await heartbeatWrites.update(alias, change) { group in
            var results: [Result<[Int64]?, any Error>] = []
            for start in stride(from: 0, to: group.count, by: Self.heartbeatBatch) {
                results += await self.writeHeartbeats(Array(group[start..<min(start + Self.heartbeatBatch, group.count)]))
            }
            return results
        }
    }

    /// Tablets per heartbeat transaction: each puts its record and ranges
    /// over its running jobs, and etcd allows 128 operations in a transaction
    /// (`--max-txn-ops`).
    static let heartbeatBatch = 64

    /// Writes one part of a heartbeat group; each heartbeat gets its own result.
    func writeHeartbeats(_ part: [TabletWriteGroup<[Int64]?>.Pending]) async -> [Result<[Int64]?, any Error>] {
        func oneByOne() async -> [Result<[Int64]?, any Error>] {
            var results: [Result<[Int64]?, any Error>] = []
            for item in part {
                do { results.append(.success(try await changeTablet(item.alias, readingRunningJobs: true, item.change))) }
                catch { results.append(.failure(error)) }
            }
            return results
        }
        // A tablet twice in one part, or a part of one: the plain path.
        guard part.count > 1, Set(part.map(\.alias)).count == part.count else { return await oneByOne() }
        do {
            let keys = part.map { tabletKey($0.alias) }
            let found = try await read { serializable -> [EtcdKeyValue?]? in
                // Without quorum each read and write goes its own way (and writes are refused).
                guard !serializable else { return nil }
                return try await getsInTransactions(keys)
            }
            guard let found else { return await oneByOne() }
            var compares: [EtcdClient.Compare] = []
            var operations: [EtcdClient.Operation] = []
            var written: [Int] = []
            var results: [Result<[Int64]?, any Error>?] = part.map { _ in nil }
            for (index, item) in part.enumerated() {
                // Not registered: the heartbeat is refused, as on its own.
                guard let existing = found[index] else { results[index] = .success(nil); continue }
                let body: Data
                do {
                    var tablet = try Self.decode(ClusterAPI.Tablet.self, existing.value)
                    let shard = try KeyspaceShard(keyspace: tablet.keyspace, shard: tablet.shard)
                    item.change(&tablet)
                    // A heartbeat does not move a tablet; one that would goes the plain path.
                    guard try KeyspaceShard(keyspace: tablet.keyspace, shard: tablet.shard) == shard else { return await oneByOne() }
                    body = try Self.encode(tablet)
                } catch {
                    results[index] = .failure(error)
                    continue
                }
                compares.append(.modRevision(keys[index], existing.modRevision))
                operations += [.put(keys[index], body), .range(prefix: runningPrefix(item.alias), keysOnly: true)]
                written.append(index)
            }
            if !written.isEmpty {
                let result = try await write {
                    try await client.transaction(if: compares, then: operations, waitForLeader: $0)
                }
                guard result.succeeded, result.ranges.count == written.count else { return await oneByOne() }
                for (range, index) in zip(result.ranges, written) {
                    let running = runningPrefix(part[index].alias)
                    results[index] = .success(range.compactMap { Self.parts($0.key, after: running).first.flatMap { Int64($0) } })
                }
            }
            return results.map { $0 ?? .success(nil) }
        } catch {
            return part.map { _ in .failure(error) }
        }
    }

    /// Compare-and-swaps the tablet's record; nil when it is not registered,
    /// else the ids under `running/<alias>/` (empty unless asked for).
    func changeTablet(_ alias: String, readingRunningJobs: Bool,
                      _ change: @escaping @Sendable (inout ClusterAPI.Tablet) -> Void) async throws -> [Int64]? {
        let key = tabletKey(alias)
        let running = runningPrefix(alias)
        for _ in 0..<Self.casAttempts {
            guard let existing = try await getForUpdate(key) else { return nil }
            var tablet = try Self.decode(ClusterAPI.Tablet.self, existing.value)
            let oldShard = try KeyspaceShard(keyspace: tablet.keyspace, shard: tablet.shard)
            change(&tablet)
            var operations: [EtcdClient.Operation] = [.put(key, try Self.encode(tablet))]
            let newShard = try KeyspaceShard(keyspace: tablet.keyspace, shard: tablet.shard)
            if newShard != oldShard {
                operations += [.delete(shardTabletKey(oldShard, alias)), .put(shardTabletKey(newShard, alias), Data())]
            }
            if readingRunningJobs { operations.append(.range(prefix: running, keysOnly: true)) }
            let result = try await write {
                try await client.transaction(if: [.modRevision(key, existing.modRevision)], then: operations, waitForLeader: $0)
            }
            if result.succeeded {
                return (result.ranges.first ?? []).compactMap { Self.parts($0.key, after: running).first.flatMap { Int64($0) } }
            }
        }
        throw conflict("tablet \(alias)")
    }

    func knownShards() async throws -> [KnownShard] {
        var shards = Set<KeyspaceShard>()
        for kv in try await list(allShardTabletsPrefix, keysOnly: true) {
            let parts = Self.parts(kv.key, after: allShardTabletsPrefix)
            guard parts.count == 3, let shard = try? KeyspaceShard(keyspace: parts[0], shard: parts[1]) else { continue }
            shards.insert(shard)
        }
        let busy = try await busyShards()
        return shards.sorted().map { KnownShard(shard: $0, busy: busy.contains($0)) }
    }

    func busyShards() async throws -> Set<KeyspaceShard> {
        var busy = Set<KeyspaceShard>()
        for kv in try await list(busyPrefix, keysOnly: true) {
            let parts = Self.parts(kv.key, after: busyPrefix)
            guard parts.count == 2, let shard = try? KeyspaceShard(keyspace: parts[0], shard: parts[1]) else { continue }
            busy.insert(shard)
        }
        return busy
    }

    /// Reads every tablet's record: the monitor's one pass over the fleet.
    func silentTablets(heartbeatBefore cutoff: Date) async throws -> [SilentTablet] {
        var running: [String: [JobReference]] = [:]
        for kv in try await list(allRunningPrefix) {
            let parts = Self.parts(kv.key, after: allRunningPrefix)
            guard parts.count == 2, let id = Int64(parts[1]), let shard = try? KeyspaceShard(parsing: kv.text) else { continue }
            running[parts[0], default: []].append(JobReference(id: id, shard: shard))
        }
        var silent: [SilentTablet] = []
        for tablet in try await list(tabletsPrefix).map({ try Self.decode(ClusterAPI.Tablet.self, $0.value) }) {
            let seconds = tablet.lastHeartbeat?.timeIntervalSince1970 ?? 0
            guard seconds < cutoff.timeIntervalSince1970 else { continue }
            let jobs = (running[tablet.alias] ?? []).sorted { $0.id < $1.id }
            guard tablet.healthy || !jobs.isEmpty else { continue }
            silent.append(SilentTablet(alias: tablet.alias, healthy: tablet.healthy,
                                       lastHeartbeat: seconds > 0 ? tablet.lastHeartbeat : nil, unfinishedJobs: jobs))
        }
        return silent.sorted {
            ($0.lastHeartbeat?.timeIntervalSince1970 ?? 0, $0.alias) < ($1.lastHeartbeat?.timeIntervalSince1970 ?? 0, $1.alias)
        }
    }

    // MARK: - Jobs

    func createJob(shard: KeyspaceShard, tablet: String, scheduled: Bool,
                   _ fill: @escaping @Sendable (inout ClusterAPI.Job) -> Void) async throws -> ClusterAPI.Job {
        let busy = busyKey(shard)
        // Names this call's claim of the shard: a transaction the client sent
        // again (its first answer lost) then recognises the job it created.
        let nonce = UUID().uuidString
        for _ in 0..<Self.casAttempts {
            let id = try await nextJobID()
            let claim = "\(id) \(nonce)"
            var job = ClusterAPI.Job(id: id, keyspace: shard.keyspace, shard: shard.shard, tablet: tablet,
                                     kind: .backup, scheduled: scheduled, createdAt: Date())
            fill(&job)
            var operations: [EtcdClient.Operation] = [
                .put(jobKey(id), try Self.encode(job)),
                .put(shardJobKey(shard, id), Data()),
                .put(busy, Data(claim.utf8)),
                .put(runningKey(tablet, id), Data(shard.description.utf8)),
            ]
            if scheduled { operations.append(.put(lastScheduledKey(shard), Data(String(id).utf8))) }
            let result = try await write {
                try await client.transaction(if: [.absent(jobKey(id)), .absent(busy)], then: operations, else: [.get(busy)], waitForLeader: $0)
            }
            if result.succeeded { return job }
            if let holder = result.found.first ?? nil {
                // A transaction the client sent again (its first answer was lost)
                // finds the job it had already created: that is success.
                if holder.text == claim { return job }
                throw Self.shardBusyError(shard)
            }
            // The id is taken (which reserved blocks rule out, unless the counter
            // was set back by hand): take the next one.
        }
        throw conflict("the job counter")
    }

    /// The next job id: from this ctld's reserved ids, or from a new block
    /// of `JobIDReservations.blockSize` ids that one compare-and-swap takes
    /// from `next-job-id`. Workers that start jobs at once then do not race
    /// for the counter (64 of them lost 50 races in a row at 1,000 shards),
    /// and a job costs one transaction instead of two.
    func nextJobID() async throws -> Int64 {
        if let id = reservedJobIDs.withLock({ $0.take(now: .now) }) { return id }
        for attempt in 0..<Self.casAttempts {
            // After a lost race (another ctld, or another worker of this one,
            // reserved first) wait a little, at random, so the racers spread out.
            if attempt > 0 { try await Task.sleep(for: .milliseconds(Int.random(in: 1...(5 * min(attempt, 10))))) }
            let counter = try await getForUpdate(nextJobIDKey)
            let first = counter.flatMap { Int64($0.text) } ?? 1
            let end = first + JobIDReservations.blockSize
            let compare = counter.map { EtcdClient.Compare.modRevision(nextJobIDKey, $0.modRevision) } ?? .absent(nextJobIDKey)
            let result = try await write {
                try await client.transaction(if: [compare], then: [.put(nextJobIDKey, Data(String(end).utf8))], waitForLeader: $0)
            }
            if result.succeeded {
                return reservedJobIDs.withLock { $0.add(first + 1..<end, now: .now); return first }
            }
            // A worker of this ctld may have reserved a block meanwhile.
            if let id = reservedJobIDs.withLock({ $0.take(now: .now) }) { return id }
        }
        throw conflict("the job counter")
    }

    @discardableResult
    func updateJob(_ id: Int64, _ change: @escaping @Sendable (inout ClusterAPI.Job) -> Void) async throws -> ClusterAPI.Job? {
        let key = jobKey(id)
        for _ in 0..<Self.casAttempts {
            guard let existing = try await getForUpdate(key) else { return nil }
            var job = try Self.decode(ClusterAPI.Job.self, existing.value)
            guard !job.isFinished else { return job }
            let tablet = job.tablet
            change(&job)
            var operations: [EtcdClient.Operation] = [.put(key, try Self.encode(job))]
            if job.isFinished {
                // The shard is free again, in the same transaction that records the end.
                let shard = try KeyspaceShard(keyspace: job.keyspace, shard: job.shard)
                operations += [.delete(busyKey(shard)), .delete(runningKey(tablet, id))]
            }
            if try await write({ try await client.transaction(if: [.modRevision(key, existing.modRevision)], then: operations, waitForLeader: $0) }).succeeded {
                return job
            }
        }
        throw conflict("job \(id)")
    }

    func job(_ id: Int64) async throws -> ClusterAPI.Job? {
        try await get(jobKey(id)).map { try Self.decode(ClusterAPI.Job.self, $0.value) }
    }

    func jobs(shard: KeyspaceShard?, limit: Int) async throws -> [ClusterAPI.Job] {
        guard limit > 0 else { return [] }
        guard let shard else {
            return try await list(jobsPrefix, limit: limit, descending: true).map { try Self.decode(ClusterAPI.Job.self, $0.value) }
        }
        let base = shardJobsPrefix(shard)
        let ids = try await list(base, limit: limit, descending: true, keysOnly: true).compactMap { Self.parts($0.key, after: base).first.flatMap { Int64($0) } }
        return try await getMany(ids.map(jobKey)).compactMap { kv in try kv.map { try Self.decode(ClusterAPI.Job.self, $0.value) } }
    }

    func isBusy(_ shard: KeyspaceShard) async throws -> Bool {
        try await get(busyKey(shard)) != nil
    }

    func lastScheduledJobs(_ shards: [KeyspaceShard]) async throws -> [KeyspaceShard: ClusterAPI.Job] {
        guard !shards.isEmpty else { return [:] }
        let ids = try await getMany(shards.map(lastScheduledKey)).map { $0.flatMap { Int64($0.text) } }
        let wanted = zip(shards, ids).compactMap { shard, id in id.map { (shard, $0) } }
        let found = try await getMany(wanted.map { jobKey($0.1) })
        var jobs: [KeyspaceShard: ClusterAPI.Job] = [:]
        for ((shard, _), kv) in zip(wanted, found) {
            if let kv { jobs[shard] = try Self.decode(ClusterAPI.Job.self, kv.value) }
        }
        return jobs
    }

    // MARK: - Job history

    /// Reads as few job records as it can. Only a job with `keepPerShard`
    /// newer jobs can go, so a shard with no more jobs than that costs one
    /// listing of keys. Past those, records are read oldest first, and reading
    /// stops at the first job too young to go: ids grow with creation time.
    /// The newest `keepPerShard` are read only when something old enough was
    /// found. A job left unread counts as unfinished, which can only keep
    /// more, never remove one the rule keeps.
    func pruneJobs(_ shard: KeyspaceShard, retention: JobRetention, now: Date) async throws -> Int {
        let cutoff = now.addingTimeInterval(-retention.keepYoungerThan)
        let base = shardJobsPrefix(shard)
        let ids = try await list(base, keysOnly: true).compactMap { Self.parts($0.key, after: base).first.flatMap { Int64($0) } }
            .sorted(by: >)
        let keep = max(retention.keepPerShard, 0)
        guard ids.count > keep else { return 0 }
        var older: [ClusterAPI.Job] = []
        let oldestFirst = Array(ids[keep...].reversed())
        reading: for start in stride(from: 0, to: oldestFirst.count, by: Self.batch) {
            // A job and its index entry come and go in one transaction: every listed id has its record.
            let chunk = oldestFirst[start..<min(start + Self.batch, oldestFirst.count)]
            for job in try await getMany(chunk.map(jobKey)).compactMap({ kv in try kv.map { try Self.decode(ClusterAPI.Job.self, $0.value) } }) {
                if job.createdAt >= cutoff { break reading }
                older.append(job)
            }
        }
        guard older.contains(where: \.isFinished) else { return 0 }
        let newest = try await getMany(ids.prefix(keep).map(jobKey)).compactMap { kv in try kv.map { try Self.decode(ClusterAPI.Job.self, $0.value) } }
        // Finished jobs never change again, so removing them needs no comparison.
        let doomed = (newest + older).filter(\.isFinished).sorted { $0.id > $1.id }.dropFirst(keep).filter { $0.createdAt < cutoff }.map(\.id)
        var removed = 0
        for start in stride(from: 0, to: doomed.count, by: Self.batch / 2) {
            if Task.isCancelled { return removed }
            let chunk = doomed[start..<min(start + Self.batch / 2, doomed.count)]
            _ = try await write {
                try await client.transaction(if: [], then: chunk.flatMap { [EtcdClient.Operation.delete(jobKey($0)), .delete(shardJobKey(shard, $0))] },
                                             waitForLeader: $0)
            }
            removed += chunk.count
        }
        return removed
    }

    /// Walks the shards that have jobs one at a time (a one-key range from
    /// past the previous shard's keys), so a pass never reads every job key
    /// of the cluster at once.
    func pruneJobs(retention: JobRetention, now: Date) async throws -> Int {
        var removed = 0
        var start = allShardJobsPrefix
        while !Task.isCancelled, let kv = try await list(allShardJobsPrefix, from: start, limit: 1, keysOnly: true).first {
            let parts = Self.parts(kv.key, after: allShardJobsPrefix)
            guard parts.count == 3, let shard = try? KeyspaceShard(keyspace: parts[0], shard: parts[1]) else {
                // Not a key this store writes: step past it.
                start = kv.key + "\0"
                continue
            }
            removed += try await pruneJobs(shard, retention: retention, now: now)
            start = EtcdClient.prefixEnd(shardJobsPrefix(shard))
        }
        return removed
    }

    // MARK: - Archive leases

    /// Leases in etcd outlive any one ctld; expiries are wall-clock times
    /// compared by every ctld, so their clocks must agree (NTP) to well
    /// within a lease (docs/CLUSTER.md).
    var keepsArchiveLeases: Bool { true }

    func archiveLease(_ shard: KeyspaceShard) async throws -> ArchiveLeaseRule.Lease? {
        try await get(archiveLeaseKey(shard)).map { try Self.decode(ArchiveLeaseRule.Lease.self, $0.value) }
    }

    func updateArchiveLease<T: Sendable>(_ shard: KeyspaceShard,
                                         _ change: @escaping @Sendable (inout ArchiveLeaseRule.Lease?) -> T) async throws -> T {
        let key = archiveLeaseKey(shard)
        for _ in 0..<Self.casAttempts {
            let existing = try await getForUpdate(key)
            let old = try existing.map { try Self.decode(ArchiveLeaseRule.Lease.self, $0.value) }
            var lease = old
            let result = change(&lease)
            if lease == old { return result }
            let compare = existing.map { EtcdClient.Compare.modRevision(key, $0.modRevision) } ?? .absent(key)
            let operation: EtcdClient.Operation = try lease.map { .put(key, try Self.encode($0)) } ?? .delete(key)
            if try await write({ try await client.transaction(if: [compare], then: [operation], waitForLeader: $0) }).succeeded {
                return result
            }
        }
        throw conflict("the archive lease of \(shard)")
    }

    // MARK: - The scheduler's plans

    /// Only the leader writes here; a write is a batch of puts and deletes
    /// (at most ``batch`` per transaction), no comparison needed.
    func publishSchedule(changed: [ClusterAPI.ShardSchedule], removed: [String]) async throws {
        var operations: [EtcdClient.Operation] = []
        for entry in changed { operations.append(.put(schedulePrefix + entry.shard, try Self.encode(entry))) }
        for shard in removed { operations.append(.delete(schedulePrefix + shard)) }
        for start in stride(from: 0, to: operations.count, by: Self.batch) {
            let chunk = Array(operations[start..<min(start + Self.batch, operations.count)])
            _ = try await write { try await client.transaction(if: [], then: chunk, waitForLeader: $0) }
        }
    }

    func publishedSchedule() async throws -> [ClusterAPI.ShardSchedule] {
        try await list(schedulePrefix).map { try Self.decode(ClusterAPI.ShardSchedule.self, $0.value) }
    }
}

/// Blocks of job ids a ctld reserved from etcd's `next-job-id` and gives
/// out one at a time, smallest first. A block is given out only for
/// `lifetime` after its reservation and the rest is dropped, so ids stay
/// in the order of creation across ctlds to within that, and an id from a
/// block is never given out twice. Ids grow but are not contiguous: a
/// dropped rest, a refused job and a stopped ctld leave gaps.
struct JobIDReservations: Sendable {
    static let blockSize: Int64 = 32
    static let lifetime: Duration = .seconds(2)

    private var blocks: [(ids: Range<Int64>, reservedAt: ContinuousClock.Instant)] = []

    /// The smallest id of a block still young enough, taken out of it.
    mutating func take(now: ContinuousClock.Instant) -> Int64? {
        blocks.removeAll { $0.ids.isEmpty || now - $0.reservedAt > Self.lifetime }
        guard let index = blocks.indices.min(by: { blocks[$0].ids.lowerBound < blocks[$1].ids.lowerBound }) else { return nil }
        let id = blocks[index].ids.lowerBound
        blocks[index].ids = id + 1..<blocks[index].ids.upperBound
        return id
    }

    mutating func add(_ ids: Range<Int64>, now: ContinuousClock.Instant) {
        if !ids.isEmpty { blocks.append((ids, now)) }
    }
}
