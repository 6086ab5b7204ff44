import CairnCore
import CairnStorage
import Foundation
import Hummingbird
import Logging

// ctld's read-only views of the fleet: `/metrics` for Prometheus and
// `GET /api/v1/status` for `cairn status` (docs/OBSERVABILITY.md). Both read
// the in-memory shard inventory and one query of the tablets; neither
// lists storage.
extension ControlServer {
    /// A job ended (reported by its tablet, or failed by ctld): count it once and refresh the shard's listing.
    func jobEnded(_ job: ClusterAPI.Job) {
        guard inventory.jobEnded(job, relist: !schedulerLists) else { return }
        metrics.jobEnded(job)
    }

    /// Hands a listing of `shard` to the inventory; when it holds a drill
    /// record newer than the one known, reads that (one small object).
    func observe(_ shard: KeyspaceShard, listing: ShardListing, repository: BackupRepository) async {
        let id = shard.description
        inventory.observe(id, manifests: listing.manifests, at: Date())
        guard let key = listing.newestDrillKey, inventory.entry(id)?.lastDrillKey != key else { return }
        do {
            let record = try await DrillRepository(storage: repository.storage, logger: logger).load(key: key)
            inventory.recordDrill(id, ShardInventory.DrillOutcome(record), key: key)
        } catch {
            logger.warning("could not read the shard's newest drill record", metadata: ["shard": "\(id)", "key": "\(key)", "error": "\(error)"])
        }
    }

    /// Whether the scheduler runs, and so lists each shard after its job ends (and at least every minute).
    var schedulerLists: Bool {
        options.schedulerEnabled && options.configuration.backupStrategy != nil && storage != nil
    }

    /// How old a shard's newest restorable commit may be while it counts as protected.
    var maximumProtectedAge: TimeInterval {
        ShardProtection.maximumAge(strategy: options.configuration.backupStrategy)
    }

    func addObservabilityRoutes(_ router: Router<BasicRequestContext>) {
        // Prometheus sends the client token as `Authorization: Bearer` (its `authorization` scrape setting).
        router.group("metrics")
            .add(middleware: BearerTokenMiddleware(tokens: [options.authToken], refusal: "metrics need ctld's client auth token (auth-token in its data directory)", logger: logger))
            .get { _, _ in try await self.scrapeMetrics() }
        router.group(RouterPath(ClusterAPI.prefix))
            .add(middleware: BearerTokenMiddleware(tokens: [options.authToken], refusal: "this call needs ctld's client auth token (auth-token in its data directory), not the tablet token", logger: logger))
            .get("status") { _, _ in jsonResponse(try await self.fleetStatus()) }
    }

    func scrapeMetrics() async throws -> Response {
        let shards = try await store.knownShards().map(\.shard.description)
        return metrics.scrape(shards: shards, inventory: inventory.snapshot(), tablets: try await store.tablets(), now: Date(),
                              heartbeatTimeout: options.heartbeatTimeout, maximumAge: maximumProtectedAge)
    }

    func fleetStatus() async throws -> ClusterAPI.FleetStatus {
        let shards = try await store.knownShards().map(\.shard)
        var schedule: [String: Date] = [:]
        for entry in try await scheduleSummary(nil) { schedule[entry.shard] = entry.nextRun }
        return FleetStatusBuilder.build(shards: shards, inventory: inventory.snapshot(), tablets: try await store.tablets(),
                                        schedule: schedule, now: Date(), heartbeatTimeout: options.heartbeatTimeout,
                                        maximumAge: maximumProtectedAge)
    }
}
