import CairnCore
import CairnEngine
import CairnEtcd
import CairnStorage
import CairnSystem
import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// How `cairn ctld` runs.
public struct ControlServerOptions: Sendable {
    public var bindAddress: String = "127.0.0.1"
    public var port: Int = 15999
    public var dataDirectory: String
    public var configuration: CairnConfiguration
    /// Overrides the configuration's bucket.
    public var storageURL: String?
    /// The clients' token (`auth-token`).
    public var authToken: String
    /// The tablets' token; nil: `<data-dir>/tablet-token`, created when missing.
    public var tabletToken: String?
    /// A tablet silent for this long is unhealthy, and its running job failed.
    public var heartbeatTimeout: TimeInterval = 10
    public var schedulerEnabled: Bool
    /// Which tablet type scheduled backups run on.
    public var scheduledTabletType: ClusterAPI.TabletType = .primary
    /// Timeouts and the connection cap of its HTTP server.
    public var httpLimits: HTTPServerLimits = .controlServer
    /// Which finished jobs ctld keeps; the rest are pruned in the background.
    public var jobRetention = JobRetention()
    /// How old a shard's cached storage listing may grow before ctld lists
    /// it again for the metrics, `cairn status` and the console (a finished
    /// job, and the scheduler's own listings, refresh it sooner).
    public var inventoryRefresh: TimeInterval = 300
    /// Keep the topology, jobs and schedule state in etcd (`--topo`) instead
    /// of SQLite under the data directory; several ctlds may share it.
    public var topology: EtcdTopology?
    /// With `topology`: copy this ctld SQLite database into the empty prefix first (`--migrate-from-sqlite`).
    public var migrateFromSQLite: String?
    /// With `topology`: the leader's lease, in seconds; another ctld leads within it after the leader is lost.
    public var leaderLeaseTTL = 10

    public init(dataDirectory: String, configuration: CairnConfiguration, authToken: String, schedulerEnabled: Bool) {
        self.dataDirectory = dataDirectory
        self.configuration = configuration
        self.authToken = authToken
        self.schedulerEnabled = schedulerEnabled
    }
}

/// `cairn ctld`: knows keyspaces, shards and tablets, receives client
/// commands, picks the tablet, hands it the job, keeps job history and runs
/// the scheduler.
public final class ControlServer: Sendable {
    let options: ControlServerOptions
    /// What tablets present, and what ctld presents to tablets.
    let tabletToken: String
    let store: any ControlStore
    /// With etcd: who leads, and so runs the scheduler, the heartbeat
    /// monitor and the other background work. Without: this ctld always does.
    let leadership: EtcdLeadership?
    let storage: (any BackupStorage)?
    let logger: Logger

    /// A ctld on SQLite under the data directory (`options.topology` is not used).
    public convenience init(options: ControlServerOptions, logger: Logger) throws {
        try self.init(options: options, logger: logger) { try CtldStore(path: "\($0)/ctld.sqlite") }
    }

    /// A ctld on the store `options.topology` names: etcd (which must be
    /// reachable, and its prefix this cluster's or empty), or SQLite.
    public static func open(options: ControlServerOptions, logger: Logger) async throws -> ControlServer {
        guard let topology = options.topology else {
            if options.migrateFromSQLite != nil {
                throw CairnError(.usage, "--migrate-from-sqlite copies into etcd; give --topo etcd://HOST:PORT/PREFIX too")
            }
            return try ControlServer(options: options, logger: logger)
        }
        let store = try await EtcdControlStore.open(topology, storage: options.storageURL ?? options.configuration.bucket,
                                                    migratingFrom: options.migrateFromSQLite, logger: logger)
        do {
            let identity = "\(ProcessInfo.processInfo.hostName):\(options.port) (pid \(ProcessInfo.processInfo.processIdentifier), \(UUID().uuidString.prefix(8)))"
            let leadership = EtcdLeadership(client: store.client, key: store.leaderKey, identity: identity, ttl: options.leaderLeaseTTL, logger: logger)
            return try ControlServer(options: options, logger: logger, leadership: leadership) { _ in store }
        } catch {
            await store.close()
            throw error
        }
    }

    init(options: ControlServerOptions, logger: Logger, leadership: EtcdLeadership? = nil,
         store makeStore: (String) throws -> any ControlStore) throws {
        self.options = options
        self.logger = logger
        self.leadership = leadership
        try FileSystem.createPrivateDirectory(options.dataDirectory)
        tabletToken = try options.tabletToken ?? AuthToken.loadOrCreate("\(options.dataDirectory)/\(TabletToken.fileName)")
        guard tabletToken != options.authToken else {
            throw CairnError(.configuration, "the tablet token is the client auth token; give tablets their own token (ctld creates tablet-token in its data directory)")
        }
        store = try makeStore(options.dataDirectory)
        let started = Date()
        archiveLeaseRule = ArchiveLeaseRule(duration: options.heartbeatTimeout,
                                            graceUntil: store.keepsArchiveLeases ? nil : started.addingTimeInterval(options.heartbeatTimeout))
        if let url = options.storageURL ?? options.configuration.bucket {
            storage = try StorageFactory.make(url: url, configuration: options.configuration, logger: logger)
        } else {
            storage = nil
        }
    }

    /// Serves until SIGTERM or SIGINT. `onListening` gets the bound port.
    public func run(onListening: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        let app = buildApplication(onListening: onListening)
        logger.info("ctld starting", metadata: ["address": "\(options.bindAddress):\(options.port)",
                                                "storage": "\(storage?.displayURL ?? "none")",
                                                "scheduler": "\(options.schedulerEnabled && options.configuration.backupStrategy != nil ? "on" : "off")"])
        do {
            try await app.runService()
        } catch {
            await storage?.shutdown()
            await store.close()
            throw error
        }
        await storage?.shutdown()
        await store.close()
    }

    /// The server with its services (heartbeat monitor, scheduler), not yet bound.
    func buildApplication(onListening: @escaping @Sendable (Int) async -> Void) -> some ApplicationProtocol {
        let services: [any Service]
        if let leadership {
            // Several ctlds share the store: only the leader runs the background work.
            services = [LeaderServices(leadership: leadership, logger: logger, services: { self.leaderServices() }),
                        ShardInventoryRefresher(server: self)]
        } else {
            services = leaderServices() + [ShardInventoryRefresher(server: self)]
        }
        return Application(
            router: buildRouter(),
            server: options.httpLimits.server(logger: logger),
            configuration: .init(address: .hostname(options.bindAddress, port: options.port), serverName: "cairn-ctld"),
            services: services,
            onServerRunning: { channel in
                await onListening(channel.localAddress?.port ?? 0)
            },
            logger: logger
        )
    }

    /// What only one ctld of a cluster runs: the heartbeat monitor, the
    /// schedulers and the job history pruner (each ctld serves the API and
    /// keeps its own shard inventory for the metrics and the console). With
    /// etcd, called at the start of each term of leadership.
    func leaderServices() -> [any Service] {
        [
            leadership == nil
                ? HeartbeatMonitor(server: self)
                : HeartbeatMonitor(server: self, judgeAfter: Date().addingTimeInterval(options.heartbeatTimeout),
                                   interval: .milliseconds(max(500, Int(options.heartbeatTimeout * 200)))),
            Scheduler(server: self),
            RestorePointScheduler(server: self),
            DrillScheduler(server: self),
            JobHistoryPruner(store: store, retention: options.jobRetention, logger: logger),
        ] + (leadership == nil ? [] : [SchedulePublisher(state: schedulerState, store: store, logger: logger)])
          + ((store as? EtcdControlStore).map { [EtcdCompactor(client: $0.client, logger: logger)] } ?? [])
    }

    /// The API: authentication, errors as JSON, and the routes.
    func buildRouter() -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: ErrorMiddleware(logger: logger))
        // The console's pages check their own session cookie instead.
        router.add(middleware: BearerTokenMiddleware(tokens: [options.authToken, tabletToken], refusal: "a valid auth token is required", logger: logger,
                                                     exempt: ControlServer.isConsolePath))
        addRoutes(router)
        addObservabilityRoutes(router)
        addConsoleRoutes(router)
        return router
    }

    func requireStorage() throws -> any BackupStorage {
        guard let storage else {
            throw CairnError(.configuration, "ctld has no backup storage configured; start it with --config holding a \"bucket\" or with --storage URL")
        }
        return storage
    }

    // MARK: - Routes

    func addRoutes(_ router: Router<BasicRequestContext>) {
        let groups = CredentialGroups(router, clientToken: options.authToken, tabletToken: tabletToken, logger: logger)
        let api = groups.client
        groups.tablet.post("tablets") { request, _ in
            let registration = try await decodeBody(ClusterAPI.TabletRegistration.self, from: request)
            try await self.register(registration)
            return jsonResponse(ClusterClient.Empty())
        }
        groups.tablet.post("tablets/:alias/heartbeat") { request, _ in
            let heartbeat = try await decodeBody(ClusterAPI.Heartbeat.self, from: request, limit: RequestBodyLimit.heartbeat)
            return jsonResponse(try await self.heartbeat(heartbeat))
        }
        groups.either.get("tablets") { _, _ in
            jsonResponse(try await self.store.tablets())
        }
        api.post("backups") { request, _ in
            let body = try await decodeBody(ClusterAPI.BackupRequest.self, from: request)
            return jsonResponse(try await self.startBackup(body, scheduled: false))
        }
        api.get("backups/:keyspace/:shard") { _, context in
            let shard = try KeyspaceShard(keyspace: try context.parameters.require("keyspace"), shard: try context.parameters.require("shard"))
            return jsonResponse(try await self.listBackups(shard))
        }
        api.delete("backups/:keyspace/:shard/:name") { request, context in
            let shard = try KeyspaceShard(keyspace: try context.parameters.require("keyspace"), shard: try context.parameters.require("shard"))
            let name = try context.parameters.require("name")
            return jsonResponse(try await self.removeBackup(shard, name: name, force: request.uri.queryParameters.get("force") == "true",
                                                            dryRun: request.uri.queryParameters.get("dry_run") == "true"))
        }
        api.post("restores") { request, _ in
            let body = try await decodeBody(ClusterAPI.RestoreRequest.self, from: request)
            return jsonResponse(try await self.startRestore(body))
        }
        api.post("drills") { request, _ in
            let body = try await decodeBody(ClusterAPI.DrillRequest.self, from: request)
            return jsonResponse(try await self.startDrill(body, scheduled: false))
        }
        api.get("drills/:keyspace/:shard") { _, context in
            let shard = try KeyspaceShard(keyspace: try context.parameters.require("keyspace"), shard: try context.parameters.require("shard"))
            return jsonResponse(try await DrillRepository(storage: try self.requireStorage(), logger: self.logger).list(shard))
        }
        api.post("restore-points") { request, _ in
            let body = try await decodeBody(ClusterAPI.RestorePointRequest.self, from: request)
            return jsonResponse(try await self.createRestorePoint(body))
        }
        api.get("restore-points/:keyspace") { _, context in
            jsonResponse(try await self.restorePointStatuses(keyspace: try context.parameters.require("keyspace")))
        }
        api.get("jobs") { request, _ in
            let limit = try JobListLimit.parse(request.uri.queryParameters.get("limit"))
            var shard: KeyspaceShard? = nil
            if let ks = request.uri.queryParameters.get("keyspace"), let s = request.uri.queryParameters.get("shard") {
                shard = try KeyspaceShard(keyspace: ks, shard: s)
            }
            let jobs = try await self.store.jobs(shard: shard, limit: limit)
            return jsonResponse(ClusterAPI.JobsResponse(jobs: jobs, schedule: try await self.scheduleSummary(shard)))
        }
        api.get("jobs/:id") { _, context in
            let id = try context.parameters.require("id", as: Int64.self)
            guard let job = try await self.store.job(id) else {
                throw CairnError(.notFound, "there is no job \(id); list them with `cairn jobs`")
            }
            return jsonResponse(job)
        }
        groups.tablet.post("jobs/:id/progress") { request, _ in
            let update = try await decodeBody(ClusterAPI.JobUpdate.self, from: request)
            try await self.record(update)
            return jsonResponse(ClusterClient.Empty())
        }
    }

    // MARK: - Tablets

    func register(_ registration: ClusterAPI.TabletRegistration) async throws {
        _ = try KeyspaceShard(keyspace: registration.keyspace, shard: registration.shard)
        _ = try TabletAlias(parsing: registration.alias)
        try TabletRegistrationPolicy.validateAgentURL(registration.agentURL)
        let existing = try await store.tablet(registration.alias)
        try TabletRegistrationPolicy.checkMove(existing: existing, to: registration, now: Date(), heartbeatTimeout: options.heartbeatTimeout)
        // A tablet registering again keeps its health until the next heartbeat.
        var tablet = existing ?? ClusterAPI.Tablet(registration: registration)
        tablet.registration = registration
        // "Replace" is a request of this registration, not a property of the tablet.
        tablet.registration.replace = nil
        tablet.lastHeartbeat = Date()
        try await store.saveTablet(tablet)
        logger.info("tablet registered", metadata: ["tablet": "\(registration.alias)", "shard": "\(registration.keyspace)/\(registration.shard)",
                                                    "type": "\(registration.type.rawValue)"])
        if registration.version != CairnVersion.current {
            logger.warning("tablet runs a different Cairn version than ctld; upgrade them to one version",
                           metadata: ["tablet": "\(registration.alias)", "tablet_version": "\(registration.version ?? "older than 0.3.0")",
                                      "ctld_version": "\(CairnVersion.current)"])
        }
    }

    @discardableResult
    func heartbeat(_ heartbeat: ClusterAPI.Heartbeat) async throws -> ClusterAPI.HeartbeatAnswer {
        let now = Date()
        // The tablet's shard, seen by the change itself: no second read of its record.
        let shardOfTablet = Mutex<(keyspace: String, shard: String)?>(nil)
        let running = try await store.heartbeatTablet(heartbeat.alias) { t in
            shardOfTablet.withLock { $0 = (t.keyspace, t.shard) }
            t.archive = heartbeat.archive
            t.registration.type = heartbeat.type
            t.healthy = heartbeat.healthy
            t.serving = heartbeat.serving
            t.replication = heartbeat.replication
            t.position = heartbeat.position
            t.currentJob = heartbeat.currentJob
            t.lastHeartbeat = now
        }
        guard let running else {
            throw CairnError(.notFound, "tablet \(heartbeat.alias) is not registered; it registers again on its next start")
        }
        for update in heartbeat.finishedJobs { try await record(update) }
        // A job ctld thinks runs here, that the tablet neither runs nor reports finished, was lost (the tablet restarted).
        // (Usually there is none, and no job is read.)
        for id in running where id != heartbeat.currentJob && !heartbeat.finishedJobs.contains(where: { $0.id == id }) {
            guard let job = try await store.job(id), !job.isFinished, now.timeIntervalSince(job.createdAt) > options.heartbeatTimeout else {
                continue
            }
            try await failJob(job.id, "tablet \(heartbeat.alias) is no longer running it (the tablet restarted)")
        }
        // A tablet configured to archive sends an archive report; ctld's own configuration need not say so.
        guard options.configuration.backupStrategy?.binlogArchiveInterval != nil || heartbeat.archive != nil,
              let tablet = shardOfTablet.withLock({ $0 }) else {
            return ClusterAPI.HeartbeatAnswer()
        }
        return try await archiveLeaseAnswer(heartbeat, shard: KeyspaceShard(keyspace: tablet.keyspace, shard: tablet.shard), now: now)
    }

    /// Grants, renews or withholds the shard's archive lease (docs/CLUSTER.md,
    /// "Binary log archiving"), and records the holder's archive lag for the metrics.
    func archiveLeaseAnswer(_ heartbeat: ClusterAPI.Heartbeat, shard: KeyspaceShard, now: Date) async throws -> ClusterAPI.HeartbeatAnswer {
        let rule = archiveLeaseRule
        let (heldUntil, holder) = try await store.updateArchiveLease(shard) { lease in
            let outcome = rule.heartbeat(lease, tablet: heartbeat.alias, primary: heartbeat.type == .primary, healthy: heartbeat.healthy,
                                         archiving: heartbeat.archive?.running == true, now: now)
            lease = outcome.lease
            return (outcome.heldUntil, ArchiveLeaseRule.holder(outcome.lease, now: now))
        }
        if heldUntil != nil, let report = heartbeat.archive, report.running {
            inventory.setArchiveLag(shard.description, seconds: report.lagSeconds)
        } else if holder == nil {
            inventory.setArchiveLag(shard.description, seconds: nil)
        }
        return ClusterAPI.HeartbeatAnswer(archiveLeaseSeconds: heldUntil.map { $0.timeIntervalSince(now) })
    }

    func record(_ update: ClusterAPI.JobUpdate) async throws {
        let job = try await store.updateJob(update.id) { $0.apply(update) }
        if let job, update.result != nil { jobEnded(job) }
        if let job, let result = update.result {
            logger.info("job finished", metadata: ["job": "\(job.id)", "kind": "\(job.kind.rawValue)", "shard": "\(job.shardID)",
                                                   "tablet": "\(job.tablet)", "result": "\(result.rawValue)",
                                                   "backup": "\(job.backupName ?? "-")", "error": "\(job.error ?? "-")"])
        }
    }

    func failJob(_ id: Int64, _ message: String) async throws {
        if let job = try await store.updateJob(id, { $0.fail(message) }) { jobEnded(job) }
        logger.warning("job failed", metadata: ["job": "\(id)", "error": "\(message)"])
    }

    /// Shards that have tablets.
    func knownShards() async throws -> [String] {
        try await store.knownShards().map(\.shard.description).sorted()
    }

    func unknownShardError(_ shard: KeyspaceShard) async throws -> CairnError {
        let known = try await knownShards()
        return CairnError(.notFound, "ctld does not know keyspace/shard \(shard); known: \(known.isEmpty ? "none (no tablet has registered)" : known.joined(separator: ", "))")
    }

    /// Picks the tablet for a job: a named one, or the best of a type.
    func pickTablet(_ shard: KeyspaceShard, alias: String?, type: ClusterAPI.TabletType) async throws -> ClusterAPI.Tablet {
        let tablets = try await store.tablets(shard)
        guard !tablets.isEmpty else { throw try await unknownShardError(shard) }
        if let alias {
            let wanted = try TabletAlias(parsing: alias)
            guard let tablet = tablets.first(where: { (try? TabletAlias(parsing: $0.alias)).map(wanted.matches) ?? false }) else {
                throw CairnError(.notFound, "shard \(shard) has no tablet \(alias); its tablets: \(tablets.map(\.alias).joined(separator: ", "))")
            }
            guard tablet.healthy || tablet.lastHeartbeat.map({ Date().timeIntervalSince($0) < options.heartbeatTimeout }) == true else {
                throw CairnError(.cluster, "tablet \(tablet.alias) is not healthy (no recent heartbeat); check it and retry")
            }
            return tablet
        }
        let candidates = tablets.filter { $0.type == type && $0.healthy }
        if type == .primary {
            guard let primary = candidates.first else {
                throw CairnError(.cluster, "shard \(shard) has no healthy primary tablet; its tablets: \(describe(tablets))")
            }
            return primary
        }
        // The most caught-up replica: running replication, least lag.
        let best = candidates.sorted { a, b in
            let la = a.replication?.running == true ? (a.replication?.lagSeconds ?? Int.max) : Int.max
            let lb = b.replication?.running == true ? (b.replication?.lagSeconds ?? Int.max) : Int.max
            return (la, a.alias) < (lb, b.alias)
        }.first
        guard let best else {
            throw CairnError(.cluster, "shard \(shard) has no healthy \(type.rawValue) tablet; its tablets: \(describe(tablets))")
        }
        return best
    }

    func describe(_ tablets: [ClusterAPI.Tablet]) -> String {
        tablets.map { "\($0.alias) (\($0.type.rawValue), \($0.healthy ? "healthy" : "unhealthy"))" }.joined(separator: ", ")
    }

    // MARK: - Jobs

    func startBackup(_ request: ClusterAPI.BackupRequest, scheduled: Bool) async throws -> ClusterAPI.Job {
        let shard = try KeyspaceShard(keyspace: request.keyspace, shard: request.shard)
        _ = try requireStorage()
        let tablet = try await pickTablet(shard, alias: request.tablet, type: request.tabletType ?? .primary)
        let job = try await store.createJob(shard: shard, tablet: tablet.alias, scheduled: scheduled) { job in
            job.kind = .backup
            job.backupType = request.type
            job.engine = request.engine
        }
        guard !scheduled else {
            // The scheduler needs no fresh copy of the job: one etcd read less per start in a wave of them.
            try await assign(job, to: tablet)
            return job
        }
        return try await dispatch(job, to: tablet)
    }

    func startRestore(_ request: ClusterAPI.RestoreRequest) async throws -> ClusterAPI.RestoreResponse {
        let shard = try KeyspaceShard(keyspace: request.keyspace, shard: request.shard)
        let storage = try requireStorage()
        let parameters = try await request.parameters.resolvingRestorePoint(for: shard, in: storage, logger: logger)
        let target = try parameters.target()
        let runner = RestoreRunner(context: RestoreContext(shard: shard, storage: storage, logger: logger, progress: nil))
        let plan = try await runner.plan(target)
        if request.dryRun {
            return ClusterAPI.RestoreResponse(job: nil, plan: RestorePlanSummary(plan))
        }
        guard let alias = request.tablet else {
            throw CairnError(.usage, "a restore through ctld needs --tablet ALIAS (a replica or rdonly tablet to restore into), or start a new tablet with `cairn tablet --restore-from-backup`")
        }
        let tablet = try await pickTablet(shard, alias: alias, type: .replica)
        guard tablet.type != .primary else {
            throw CairnError(.cluster, "tablet \(tablet.alias) is the primary of \(shard); Cairn does not restore over a serving primary, restore into a replica or a new tablet")
        }
        let job = try await store.createJob(shard: shard, tablet: tablet.alias, scheduled: false) { job in
            job.kind = .restore
            job.restore = parameters
        }
        return ClusterAPI.RestoreResponse(job: try await dispatch(job, to: tablet), plan: RestorePlanSummary(plan))
    }

    /// Starts a restore drill on a named tablet, or on the shard's best
    /// replica, or on its primary when no replica is healthy: the drill
    /// restores into a scratch directory, so the tablet's own server serves on.
    func startDrill(_ request: ClusterAPI.DrillRequest, scheduled: Bool) async throws -> ClusterAPI.Job {
        let shard = try KeyspaceShard(keyspace: request.keyspace, shard: request.shard)
        _ = try requireStorage()
        let tablet: ClusterAPI.Tablet
        if let alias = request.tablet {
            tablet = try await pickTablet(shard, alias: alias, type: .replica)
        } else if let replica = try? await pickTablet(shard, alias: nil, type: .replica) {
            tablet = replica
        } else if let rdonly = try? await pickTablet(shard, alias: nil, type: .rdonly) {
            tablet = rdonly
        } else {
            tablet = try await pickTablet(shard, alias: nil, type: .primary)
        }
        // The store's `scheduled` column marks scheduled backups (the backup
        // scheduler reads it); a scheduled drill says so in its record only.
        let job = try await store.createJob(shard: shard, tablet: tablet.alias, scheduled: false) { job in
            job.kind = .drill
            job.drill = request.parameters
            job.scheduled = scheduled
        }
        return try await dispatch(job, to: tablet)
    }

    /// Hands a created job to its tablet; a refusal fails the job.
    func dispatch(_ job: ClusterAPI.Job, to tablet: ClusterAPI.Tablet) async throws -> ClusterAPI.Job {
        try await assign(job, to: tablet)
        return try await store.job(job.id) ?? job
    }

    /// Hands `job` to its tablet; a job the tablet did not take is recorded as failed.
    func assign(_ job: ClusterAPI.Job, to tablet: ClusterAPI.Tablet) async throws {
        do {
            try await tabletClient(tablet).assign(job)
        } catch let error as CairnError {
            // ctld is stopping: whether the tablet took the job is unknown, and its heartbeats settle it.
            guard !Task.isCancelled else { throw CancellationError() }
            try await failJob(job.id, "tablet \(tablet.alias) did not take the job: \(error.message)")
            throw CairnError(.cluster, "tablet \(tablet.alias) did not take the \(job.kind.rawValue) job: \(error.message)")
        }
        logger.info("job started", metadata: ["job": "\(job.id)", "kind": "\(job.kind.rawValue)", "shard": "\(job.shardID)",
                                              "tablet": "\(tablet.alias)", "scheduled": "\(job.scheduled)"])
    }

    // MARK: - Backups in storage

    func listBackups(_ shard: KeyspaceShard) async throws -> BackupListing {
        let storage = try requireStorage()
        var listing = try await BackupListing.make(shard: shard, storage: storage, strategy: options.configuration.backupStrategy, logger: logger)
        if listing.backups.isEmpty, !(try await knownShards().contains(shard.description)) {
            throw try await unknownShardError(shard)
        }
        listing.archiver = try await liveArchiver(shard)
        return listing
    }

    /// The shard's archiver from the heartbeats: the lease holder's report,
    /// else (archiving configured) a note that none runs.
    func liveArchiver(_ shard: KeyspaceShard) async throws -> BackupListing.Archiver? {
        let holder = ArchiveLeaseRule.holder(try await store.archiveLease(shard), now: Date())
        let tablets = try await store.tablets(shard)
        if let tablet = tablets.first(where: { $0.alias == holder }) ?? tablets.first(where: { $0.archive?.running == true }),
           let report = tablet.archive, report.running {
            return BackupListing.Archiver(tablet: tablet.alias, running: true, connected: report.connected, lagSeconds: report.lagSeconds,
                                          archivedPosition: report.archivedPosition, lastEventTime: report.lastEventTime, error: report.error)
        }
        guard options.configuration.backupStrategy?.binlogArchiveInterval != nil else { return nil }
        let error = tablets.compactMap { $0.type == .primary ? $0.archive?.error : nil }.first
        let why = holder.map { "tablet \($0) holds the archive lease but does not archive; give it backup_strategy.binlog_archive_interval in its configuration" }
            ?? "no primary tablet of the shard holds the archive lease yet"
        return BackupListing.Archiver(tablet: holder, running: false, connected: false, lagSeconds: nil, archivedPosition: nil,
                                      lastEventTime: nil, error: error ?? why)
    }

    func removeBackup(_ shard: KeyspaceShard, name: String, force: Bool, dryRun: Bool) async throws -> BackupRemoval {
        let storage = try requireStorage()
        guard try await !store.isBusy(shard) || dryRun else {
            throw CairnError(.cluster, "a job is running on \(shard); remove backups once it has ended (see `cairn jobs \(shard)`)")
        }
        let removal = try await BackupPruner(shard: shard, storage: storage, logger: logger).remove(
            name, force: force, dryRun: dryRun, now: Date(),
            incompleteAfter: options.configuration.retention?.incompleteAfter ?? RetentionPolicy.defaultIncompleteAfter)
        if !dryRun {
            logger.info("backups removed", metadata: ["shard": "\(shard)", "removed": "\(removal.removed.joined(separator: ","))", "forced": "\(force)"])
            schedulerState.invalidate(shard.description)
        }
        return removal
    }

    /// The scheduler's plans: the leader's own, or (a ctld that does not
    /// lead) those the leader published into the store.
    func scheduleSummary(_ only: KeyspaceShard?) async throws -> [ClusterAPI.ShardSchedule] {
        guard let leadership, !leadership.isLeader else { return schedulerState.summary(only) }
        return try await store.publishedSchedule().filter { only == nil || $0.shard == only?.description }.sorted { $0.shard < $1.shard }
    }

    let schedulerState = SchedulerState()
    let inventory = ShardInventory()
    /// Manifests decoded before, for the scheduler's and the inventory's
    /// listings of every shard: each listing decodes only what is new.
    let manifestCache = ManifestCache()
    /// Who may archive each shard's binary log; the leases are in the store.
    let archiveLeaseRule: ArchiveLeaseRule
    let metrics = ControlMetrics()
    let consoleSessions = ConsoleSessions()
}
