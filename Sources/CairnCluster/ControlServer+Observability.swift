import CairnCore
import Foundation
import Hummingbird

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
        for entry in scheduleSummary(nil) { schedule[entry.shard] = entry.nextRun }
        return FleetStatusBuilder.build(shards: shards, inventory: inventory.snapshot(), tablets: try await store.tablets(),
                                        schedule: schedule, now: Date(), heartbeatTimeout: options.heartbeatTimeout,
                                        maximumAge: maximumProtectedAge)
    }
}
