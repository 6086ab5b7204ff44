import CairnCore
import CairnStorage
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// What ctld last learned about each shard's stored backups, for the
/// metrics, `cairn status` and the console: they read this cache and never
/// list storage themselves, so a scrape costs the same at 1,000 shards as
/// at one. The cache is filled by the scheduler's own listings (it lists a
/// shard at least every minute) and by ``ShardInventoryRefresher`` (shards
/// whose entry is missing, marked stale by a finished job, or older than
/// its refresh interval).
final class ShardInventory: Sendable {
    /// The end of one job, as the status shows it.
    struct JobEnd: Sendable, Hashable {
        var id: Int64
        var kind: ClusterAPI.JobKind
        var result: ClusterAPI.JobResult
        var endedAt: Date
        var error: String?
    }

    /// The outcome of a shard's newest restore drill, from its record in storage.
    struct DrillOutcome: Sendable, Hashable {
        var finishedAt: Date
        var passed: Bool
        var restoreSeconds: Double
        var detail: String?

        init(finishedAt: Date, passed: Bool, restoreSeconds: Double, detail: String?) {
            self.finishedAt = finishedAt
            self.passed = passed
            self.restoreSeconds = restoreSeconds
            self.detail = detail
        }

        init(_ record: DrillRecord) {
            self.init(finishedAt: record.finishedAt, passed: record.passed, restoreSeconds: record.restoreSeconds,
                      detail: record.failure ?? record.summary)
        }
    }

    struct Entry: Sendable {
        var protection: ShardProtection?
        var listedAt: Date?
        /// The last listing failed: why.
        var listingError: String?
        /// A job ended since the listing: list again soon.
        var stale = false
        var lastJobEnd: JobEnd?
        var lastFailure: JobEnd?
        /// The archive lease holder's archive lag from its heartbeat (issue 11): seconds
        /// its oldest received but not yet stored transaction has waited; nil when no tablet archives.
        var archiveLagSeconds: Double?
        var lastDrill: DrillOutcome?
        /// The storage key of the drill record ``lastDrill`` came from.
        var lastDrillKey: String?
    }

    private let entries = Mutex<[String: Entry]>([:])

    func snapshot() -> [String: Entry] { entries.withLock { $0 } }
    func entry(_ shard: String) -> Entry? { entries.withLock { $0[shard] } }

    private func update(_ shard: String, _ change: (inout Entry) -> Void) {
        entries.withLock { change(&$0[shard, default: Entry()]) }
    }

    /// A listing of the shard's complete backups, taken at `at`.
    func observe(_ shard: String, manifests: [BackupManifest], at: Date) {
        let protection = ShardProtection(manifests: manifests)
        update(shard) {
            $0.protection = protection
            $0.listedAt = at
            $0.listingError = nil
            $0.stale = false
        }
    }

    func listingFailed(_ shard: String, _ error: String, at: Date) {
        update(shard) {
            $0.listingError = error
            $0.listedAt = at
            $0.stale = false
        }
    }

    /// A job on the shard ended: remember it, and with `relist` list the
    /// shard again soon (without, when the scheduler runs: it lists a shard
    /// as soon as its job has ended and hands the listing over). False when this end was seen already (a tablet repeats its final
    /// report until ctld acknowledges it; a shard runs one job at a time, so
    /// job ids only grow), so it is counted once.
    func jobEnded(_ job: ClusterAPI.Job, relist: Bool) -> Bool {
        guard let result = job.result else { return false }
        let end = JobEnd(id: job.id, kind: job.kind, result: result, endedAt: job.endedAt ?? Date(), error: job.error)
        return entries.withLock { entries in
            var entry = entries[job.shardID, default: Entry()]
            guard (entry.lastJobEnd?.id ?? Int64.min) < job.id else { return false }
            entry.lastJobEnd = end
            if result == .failed { entry.lastFailure = end }
            if relist { entry.stale = true }
            entries[job.shardID] = entry
            return true
        }
    }

    func markStale(_ shard: String) { update(shard) { $0.stale = true } }

    /// Hook for the binlog archiver (issue 11).
    func setArchiveLag(_ shard: String, seconds: Double?) { update(shard) { $0.archiveLagSeconds = seconds } }

    /// The newest drill of the shard, read from its record at `key`.
    func recordDrill(_ shard: String, _ outcome: DrillOutcome, key: String? = nil) {
        update(shard) {
            $0.lastDrill = outcome
            $0.lastDrillKey = key
        }
    }

    /// Which of `shards` need a listing at `now`.
    func needingListing(_ shards: [String], now: Date, refresh: TimeInterval) -> [String] {
        entries.withLock { entries in
            shards.filter { shard in
                guard let e = entries[shard], let listed = e.listedAt else { return true }
                return e.stale || now.timeIntervalSince(listed) >= refresh
            }
        }
    }
}

/// Lists the shards whose inventory entry is missing, stale or old, a few
/// at a time; the scheduler's listings count too, so with the scheduler on
/// it rarely lists anything itself.
struct ShardInventoryRefresher: Service {
    let server: ControlServer
    static let tick: Duration = .seconds(1)
    /// How many shards are listed at once.
    static let concurrency = 4

    func run() async throws {
        guard let storage = server.storage else {
            try? await gracefulShutdown()
            return
        }
        let repository = BackupRepository(storage: storage, logger: server.logger, manifestCache: server.manifestCache)
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                do {
                    try await pass(repository)
                } catch {
                    if !Task.isCancelled {
                        server.logger.warning("shard inventory pass failed; the next tick retries", metadata: ["error": "\(error)"])
                    }
                }
                try await Task.sleep(for: Self.tick)
            }
        }
    }

    func pass(_ repository: BackupRepository) async throws {
        let shards = try await server.store.knownShards().map(\.shard)
        let byID = Dictionary(shards.map { ($0.description, $0) }, uniquingKeysWith: { a, _ in a })
        let due = server.inventory.needingListing(shards.map(\.description), now: Date(), refresh: server.options.inventoryRefresh)
        let pending = due.compactMap { byID[$0] }
        await withTaskGroup(of: Void.self) { group in
            var index = 0
            while index < pending.count, index < Self.concurrency {
                let shard = pending[index]
                group.addTask { await list(shard, repository) }
                index += 1
            }
            while await group.next() != nil, index < pending.count {
                let shard = pending[index]
                group.addTask { await list(shard, repository) }
                index += 1
            }
        }
    }

    func list(_ shard: KeyspaceShard, _ repository: BackupRepository) async {
        let id = shard.description
        do {
            await server.observe(shard, listing: try await repository.list(shard), repository: repository)
        } catch {
            guard !Task.isCancelled else { return }
            let message = (error as? CairnError)?.message ?? "\(error)"
            server.logger.warning("could not list a shard's backups for the inventory", metadata: ["shard": "\(id)", "error": "\(message)"])
            server.inventory.listingFailed(id, message, at: Date())
        }
    }
}
