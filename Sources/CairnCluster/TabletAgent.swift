import CairnCore
import CairnEngine
import CairnMySQL
import CairnStorage
import CairnSystem
import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization
import UnixSignals

/// How `cairn tablet` runs.
public struct TabletAgentOptions: Sendable {
    public var alias: TabletAlias
    public var shard: KeyspaceShard
    public var type: ClusterAPI.TabletType
    public var mysqlSocket: String
    public var mysqlDataDirectory: String
    /// The mysqld's TCP port (replicas connect to a primary through it).
    public var mysqlPort: Int?
    public var mysqlHost: String = "127.0.0.1"
    public var mysql: MySQLConnectionConfiguration
    public var ctldAddress: String
    public var bindAddress: String = "127.0.0.1"
    public var port: Int = 0
    /// ctld's tablet token: presented to ctld, and required of ctld's calls to this tablet.
    public var authToken: String
    /// Register even while another agent holds the alias (`--replace`).
    public var replace = false
    public var configuration: CairnConfiguration
    public var storageURL: String?
    /// Restore into the (empty) data directory before registering.
    public var restoreFromBackup: ClusterAPI.RestoreParameters?
    public var heartbeatInterval: Duration = .seconds(2)
    /// Where restore drills make their scratch directory (the system's temporary directory when nil).
    public var drillDirectory: String?
    /// Timeouts and the connection cap of its HTTP server.
    public var httpLimits: HTTPServerLimits = .tabletAgent

    public init(alias: TabletAlias, shard: KeyspaceShard, type: ClusterAPI.TabletType, mysqlSocket: String,
                mysqlDataDirectory: String, mysql: MySQLConnectionConfiguration, ctldAddress: String,
                authToken: String, configuration: CairnConfiguration) {
        self.alias = alias
        self.shard = shard
        self.type = type
        self.mysqlSocket = mysqlSocket
        self.mysqlDataDirectory = mysqlDataDirectory
        self.mysql = mysql
        self.ctldAddress = ctldAddress
        self.authToken = authToken
        self.configuration = configuration
    }
}

/// `cairn tablet`: the agent beside one mysqld. It registers with ctld,
/// heartbeats, and runs backups and restores of its own mysqld as jobs, one
/// at a time, reporting progress to ctld and to its log.
///
/// Its long-running parts are services of one `ServiceGroup`: the heartbeat,
/// the binary log archiver (with `binlog_archive_interval`, on the primary
/// holding the shard's archive lease), the HTTP API and the job runner. SIGTERM or SIGINT shuts them down in the
/// reverse order: the job runner first (a running job is cancelled and
/// reported failed), then the API, then the heartbeat; the mysqld the tablet
/// manages is stopped only after all of them have ended.
public final class TabletAgent: Sendable {
    let options: TabletAgentOptions
    let storage: any BackupStorage
    /// The master keys from `encryption` in the configuration: backups are encrypted with them, restores read with them.
    let keyring: MasterKeyring?
    let mysqld: TabletMysqld
    let ctld: ClusterClient
    let logger: Logger
    let state = Mutex(State())
    /// Jobs accepted and not yet reported.
    let jobs = JobQueue()
    /// Commit blocks held for a restore point (primaries only).
    let commitBlocks: CommitBlocks
    /// Its `/metrics`.
    let metrics = TabletMetrics()
    /// Its binary log archiving (TabletArchiveService).
    let archiveState = Mutex(ArchiveState())

    struct State {
        var restoring = false
        /// Replication deliberately off (after a point-in-time restore), with the reason.
        var replicationOff: String?
        var registered = false
    }

    public init(options: TabletAgentOptions, logger: Logger) throws {
        self.options = options
        self.logger = logger
        guard let url = options.storageURL ?? options.configuration.bucket else {
            throw CairnError(.configuration, "the tablet has no backup storage configured; pass --config with a \"bucket\" or --storage URL")
        }
        storage = try StorageFactory.make(url: url, configuration: options.configuration, logger: logger)
        keyring = try MasterKeyring.load(options.configuration.encryption)
        commitBlocks = CommitBlocks(mysql: options.mysql, alias: options.alias.description, logger: logger)
        mysqld = TabletMysqld(socketPath: options.mysqlSocket, dataDirectory: options.mysqlDataDirectory, port: options.mysqlPort,
                              serverID: options.alias.uid, connection: options.mysql, logger: logger)
        ctld = ClusterClient(address: options.ctldAddress, token: options.authToken,
                             tokenAdvice: "the tablet token is missing or wrong; pass ctld's tablet token (tablet-token in its data directory) with --tablet-token-file or CAIRN_TABLET_TOKEN")
        state.withLock { $0.replicationOff = TabletAgent.readReplicationOffNote(options.mysqlDataDirectory) }
    }

    var aliasText: String { options.alias.description }

    /// How long the services may take to drain at a shutdown before they are cancelled.
    static let maximumDrain: Duration = .seconds(20)

    /// Prepares mysqld (restoring first when asked), then serves until SIGTERM or SIGINT.
    public func run() async throws {
        if let restore = options.restoreFromBackup {
            try await restoreBeforeStart(restore)
        } else {
            try await mysqld.ensureRunning()
        }
        if options.type == .primary, let credentials = try replicationCredentials() {
            try await mysqld.ensureReplicationAccount(user: credentials.user, password: credentials.password)
        }
        let app = Application(
            router: buildRouter(),
            server: options.httpLimits.server(logger: logger),
            configuration: .init(address: .hostname(options.bindAddress, port: options.port), serverName: "cairn-tablet"),
            onServerRunning: { channel in
                self.listeningPort.withLock { $0 = channel.localAddress?.port ?? 0 }
            },
            logger: logger
        )
        // Shut down in reverse: jobs drain first, the heartbeat carries their reports to the end.
        // The guard stops after the API, so it releases every block the API took.
        // The archiver (when configured) stops before the heartbeat, so the goodbye follows its last segment.
        var services: [any Service] = [HeartbeatService(agent: self)]
        if archivingConfigured { services.append(TabletArchiveService(agent: self)) }
        services += [CommitBlockGuard(blocks: commitBlocks), app, TabletJobRunner(agent: self)] as [any Service]
        var configuration = ServiceGroupConfiguration(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        // A drain that hangs is cancelled, so mysqld is still stopped in time.
        configuration.maximumGracefulShutdownDuration = TabletAgent.maximumDrain
        let group = ServiceGroup(configuration: configuration)
        logger.info("tablet starting", metadata: ["tablet": "\(aliasText)", "shard": "\(options.shard)", "type": "\(options.type.rawValue)"])
        do {
            try await group.run()
        } catch {
            await sayGoodbye()
            await stopMysqldAndStorage()
            throw error
        }
        // Outside the group, so a drain that ran past its limit (and had the
        // services cancelled) still tells ctld how the jobs ended.
        await sayGoodbye()
        logger.info("tablet stopping; stopping its mysqld")
        await stopMysqldAndStorage()
    }

    /// The last step of a tablet's life, once no job runs any more.
    func stopMysqldAndStorage() async {
        await mysqld.shutdown()
        await storage.shutdown()
    }

    /// The tablet's API: take a job, report status.
    func buildRouter() -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: ErrorMiddleware(logger: logger))
        router.add(middleware: BearerTokenMiddleware(token: options.authToken, logger: logger))
        let api = router.group(RouterPath(ClusterAPI.prefix))
        api.post("jobs") { request, _ in
            let job = try await decodeBody(ClusterAPI.Job.self, from: request)
            try self.accept(job)
            return jsonResponse(ClusterClient.Empty(), status: .accepted)
        }
        api.get("status") { _, _ in
            jsonResponse(await self.makeHeartbeat())
        }
        api.post("commit-blocks") { request, _ in
            let body = try await decodeBody(ClusterAPI.CommitBlockRequest.self, from: request)
            guard self.options.type == .primary else {
                throw CairnError(.cluster, "tablet \(self.aliasText) is a \(self.options.type.rawValue); restore points block commits on primaries only")
            }
            try await self.commitBlocks.prepare(id: body.id)
            return jsonResponse(ClusterClient.Empty())
        }
        api.post("commit-blocks/:id/block") { request, context in
            let body = try await decodeBody(ClusterAPI.CommitBlockRequest.self, from: request)
            guard body.id == (try context.parameters.require("id")) else {
                throw CairnError(.usage, "the commit block id in the path and the body differ")
            }
            let position = try await self.commitBlocks.block(id: body.id, maximumBlock: .milliseconds(body.maximumBlockMilliseconds))
            return jsonResponse(ClusterAPI.CommitBlockHeld(position: position.description))
        }
        api.delete("commit-blocks/:id") { _, context in
            let blocked = await self.commitBlocks.release(id: try context.parameters.require("id"))
            return jsonResponse(ClusterAPI.CommitBlockReleased(blockedMilliseconds: blocked.map(\.milliseconds)))
        }
        // Behind the same tablet token as the rest (docs/OBSERVABILITY.md).
        router.get("metrics") { _, _ in
            self.metrics.scrape(await self.makeHeartbeat(), shard: self.options.shard)
        }
        return router
    }

    let listeningPort = Mutex<Int>(0)

    var registration: ClusterAPI.TabletRegistration {
        ClusterAPI.TabletRegistration(alias: aliasText, keyspace: options.shard.keyspace, shard: options.shard.shard, type: options.type,
                                      agentURL: "http://\(options.bindAddress == "0.0.0.0" ? FileSystem.hostname : options.bindAddress):\(listeningPort.withLock { $0 })",
                                      mysqlHost: options.mysqlPort == nil ? nil : options.mysqlHost, mysqlPort: options.mysqlPort,
                                      hostname: FileSystem.hostname, replace: options.replace ? true : nil)
    }

    // MARK: - Heartbeats

    func makeHeartbeat() async -> ClusterAPI.Heartbeat {
        let healthy = await mysqld.isUp()
        let s = state.withLock { $0 }
        let (currentJob, finishedJobs) = jobs.forHeartbeat()
        var replication: ClusterAPI.ReplicationStatus? = nil
        if options.type != .primary, healthy {
            if let off = s.replicationOff {
                replication = ClusterAPI.ReplicationStatus(running: false, lagSeconds: nil, source: nil, note: off)
            } else {
                replication = await mysqld.replicationStatus()
            }
        }
        return ClusterAPI.Heartbeat(alias: aliasText, type: options.type, healthy: healthy && !s.restoring,
                                    serving: healthy && !s.restoring, replication: replication,
                                    position: healthy ? await mysqld.position() : nil,
                                    currentJob: currentJob, finishedJobs: finishedJobs, archive: archiveReport())
    }

    /// One heartbeat: register if needed, report, keep replicas replicating.
    func beat() async {
        if listeningPort.withLock({ $0 }) == 0 { return }
        do {
            if !state.withLock({ $0.registered }) {
                try await ctld.register(registration)
                state.withLock { $0.registered = true }
                logger.info("registered with ctld", metadata: ["ctld": "\(ctld.baseURL)"])
            }
            let heartbeat = await makeHeartbeat()
            let sentAt = ContinuousClock.now
            do {
                archiveLeaseAnswered(try await ctld.heartbeat(heartbeat), sentAt: sentAt)
            } catch let error as CairnError where error.code == .notFound {
                // ctld lost the registration (a new data directory): register again.
                state.withLock { $0.registered = false }
                return
            }
            jobs.acknowledged(heartbeat.finishedJobs.map(\.id))
        } catch {
            metrics.heartbeatFailed()
            logger.warning("cannot reach ctld", metadata: ["ctld": "\(ctld.baseURL)", "error": "\(error)"])
        }
        await keepReplicating()
    }

    /// A replica without replication (and not deliberately left off) replicates from the shard's primary.
    func keepReplicating() async {
        guard options.type != .primary, jobs.forHeartbeat().current == nil,
              state.withLock({ $0.replicationOff == nil && !$0.restoring }) else { return }
        guard await mysqld.isUp(), await mysqld.replicationStatus() == nil else { return }
        do {
            try await startReplication()
        } catch {
            logger.warning("cannot start replication yet", metadata: ["error": "\(error)"])
        }
    }

    func replicationCredentials() throws -> (user: String, password: String)? {
        guard let file = options.configuration.replicationPasswordFile else { return nil }
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
            throw CairnError(.configuration, "cannot read replication_password_file \(file)")
        }
        return (options.configuration.replicationUser ?? "cairn_repl", text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// Points this replica at the shard's primary, from its own GTID position.
    func startReplication() async throws {
        guard let credentials = try replicationCredentials() else {
            throw CairnError(.configuration, "no replication credentials: set replication_password_file (and replication_user) in the configuration")
        }
        let tablets = try await ctld.tablets()
        guard let primary = tablets.first(where: { $0.keyspace == options.shard.keyspace && $0.shard == options.shard.shard && $0.type == .primary }),
              let host = primary.mysqlHost, let port = primary.mysqlPort else {
            throw CairnError(.cluster, "the primary of \(options.shard) is not registered with a MariaDB port yet")
        }
        try await mysqld.replicate(fromHost: host, port: port, user: credentials.user, password: credentials.password)
        logger.info("replicating", metadata: ["from": "\(primary.alias) (\(host):\(port))"])
    }

    // MARK: - Jobs

    /// Takes a job for the job runner, or refuses when one is running or the tablet is shutting down.
    func accept(_ job: ClusterAPI.Job) throws {
        try jobs.accept(job, tablet: aliasText)
        logger.info("job accepted", metadata: ["job": "\(job.id)", "kind": "\(job.kind.rawValue)"])
    }

    /// Runs one job to its end and returns the final report; `phase` follows its phase machine.
    func perform(_ job: ClusterAPI.Job, progress: TransferProgress, phase: JobPhaseCell) async throws -> ClusterAPI.JobReport {
        switch job.kind {
        case .backup: return try await runBackup(job, progress: progress, phase: phase)
        case .restore: return try await runRestore(job, progress: progress, phase: phase)
        case .drill: return try await runDrill(job, progress: progress, phase: phase)
        }
    }

    /// A restore drill into a scratch directory beside nothing of the
    /// tablet's own: its mysqld keeps serving. A drill that finds a problem
    /// is recorded in storage and reported as a failed job with its reason.
    func runDrill(_ job: ClusterAPI.Job, progress: TransferProgress, phase: JobPhaseCell) async throws -> ClusterAPI.JobReport {
        let runner = DrillRunner(context: RestoreContext(shard: options.shard, storage: storage, logger: logger, progress: progress,
                                                         keyring: keyring),
                                 ranOn: aliasText, scratchRoot: options.drillDirectory,
                                 onPhase: { phase.set(ClusterAPI.JobPhase($0)) })
        let record = try await runner.run((job.drill ?? ClusterAPI.DrillParameters(randomPoint: false)).target)
        guard record.passed else {
            throw CairnError(.integrity, record.summary)
        }
        return ClusterAPI.JobReport(phase: phase.get(), result: .completed, backupName: record.backups.last,
                                    position: record.position?.description, note: record.summary)
    }

    func runBackup(_ job: ClusterAPI.Job, progress: TransferProgress, phase: JobPhaseCell) async throws -> ClusterAPI.JobReport {
        let context = BackupContext(shard: options.shard, tabletAlias: options.alias, storage: storage, mysql: options.mysql,
                                    dataDirectory: options.mysqlDataDirectory, compression: CompressionSettings(configuration: options.configuration),
                                    logger: logger, progress: progress, keyring: keyring)
        let request = BackupRequest(type: job.backupType ?? .auto, engine: job.engine ?? options.configuration.engine,
                                    strategy: options.configuration.backupStrategy, retention: options.configuration.retention)
        let runner = BackupRunner(context: context, onPhase: { phase.set(ClusterAPI.JobPhase($0)) })
        switch try await runner.run(request) {
        case .completed(let manifest):
            logger.info("job \(job.id): backup \(manifest.backupName) completed at \(manifest.position)")
            return ClusterAPI.JobReport(phase: phase.get(), result: .completed, backupName: manifest.backupName,
                                        position: manifest.position.description,
                                        note: manifest.incremental ? "\(manifest.typeName) after \(manifest.parentBackup ?? "?")" : "full (\(manifest.method.rawValue))")
        case .nothingNew(let parent):
            logger.info("job \(job.id): nothing new since \(parent.backupName)")
            return ClusterAPI.JobReport(phase: phase.get(), result: .nothingToDo, backupName: nil,
                                        position: parent.position.description,
                                        note: "no new transactions since backup \(parent.backupName); nothing was written")
        }
    }

    func runRestore(_ job: ClusterAPI.Job, progress: TransferProgress, phase: JobPhaseCell) async throws -> ClusterAPI.JobReport {
        var machine = RestoreJobState()
        func advance(_ next: RestorePhase) throws {
            try machine.advance(to: next)
            progress.setPhase(next.rawValue)
            phase.set(ClusterAPI.JobPhase(next))
        }
        guard options.type != .primary else {
            throw CairnError(.cluster, "tablet \(aliasText) is a serving primary; Cairn does not restore over it")
        }
        let parameters = try await (job.restore ?? ClusterAPI.RestoreParameters())
            .resolvingRestorePoint(for: options.shard, in: storage, logger: logger)
        let runner = RestoreRunner(context: RestoreContext(shard: options.shard, storage: storage, logger: logger, progress: progress,
                                                           keyring: keyring))
        try advance(.planning)
        let plan = try await runner.plan(try parameters.target())
        state.withLock { $0.restoring = true }
        defer { state.withLock { $0.restoring = false } }
        try advance(.stoppingMysqld)
        await mysqld.stopReplication()
        try await mysqld.stop()
        try await FileSystem.Async.emptyDirectory(options.mysqlDataDirectory)
        try advance(.restoring)
        let result = try await runner.run(plan, into: options.mysqlDataDirectory)
        try advance(.startingMysqld)
        try await mysqld.start()
        let note = try await afterRestore(parameters: parameters, reached: result.position)
        try advance(.completed)
        return ClusterAPI.JobReport(phase: phase.get(), result: .completed,
                                    backupName: (plan.incrementals.last ?? plan.full).backupName,
                                    position: result.position.description, note: note)
    }

    /// After a point-in-time restore replication stays off (remembered across
    /// restarts) and the note says so; after a restore to the latest backup it
    /// may run again. Returns the note for a point-in-time restore.
    func recordReplicationAfterRestore(_ parameters: ClusterAPI.RestoreParameters, reached: ReplicationPosition) -> String? {
        let note = parameters.isPointInTime
            ? "restored to a point in time (\(reached)); replication stays off so the data stays at that point" : nil
        state.withLock { $0.replicationOff = note }
        TabletAgent.writeReplicationOffNote(note, options.mysqlDataDirectory)
        return note
    }

    /// Replicates after a restore to the latest backup; stays out of
    /// replication after a point-in-time restore, and says so.
    func afterRestore(parameters: ClusterAPI.RestoreParameters, reached: ReplicationPosition) async throws -> String {
        if let note = recordReplicationAfterRestore(parameters, reached: reached) { return note }
        guard options.type != .primary else { return "restored to \(reached)" }
        do {
            try await startReplication()
            return "restored to \(reached); replicating from the primary to catch up"
        } catch let error as CairnError {
            return "restored to \(reached); replication not started yet (\(error.message)), the tablet keeps trying"
        }
    }

    /// `--restore-from-backup`: fill the empty data directory, then start mysqld.
    func restoreBeforeStart(_ requested: ClusterAPI.RestoreParameters) async throws {
        guard try await FileSystem.Async.isMissingOrEmptyDirectory(options.mysqlDataDirectory) else {
            throw CairnError(.restoreTarget, "--restore-from-backup needs an empty or new --mysql-datadir, but \(options.mysqlDataDirectory) is not empty")
        }
        let parameters = try await requested.resolvingRestorePoint(for: options.shard, in: storage, logger: logger)
        let runner = RestoreRunner(context: RestoreContext(shard: options.shard, storage: storage, logger: logger, progress: nil,
                                                           keyring: keyring))
        let plan = try await runner.plan(try parameters.target())
        logger.info("restoring before start", metadata: ["target": "\(plan.target)", "full": "\(plan.full.backupName)",
                                                         "incrementals": "\(plan.incrementals.count)"])
        let result = try await runner.run(plan, into: options.mysqlDataDirectory)
        try await mysqld.start()
        // Replication (after a restore to the latest backup) starts with the first heartbeats, once ctld is reachable.
        let note = recordReplicationAfterRestore(parameters, reached: result.position) ?? "restored to \(result.position)"
        logger.info("restore before start completed: \(note)")
    }

    // The "replication deliberately off" note survives tablet restarts.
    static func noteFile(_ datadir: String) -> String { "\(datadir)/cairn-replication-off" }

    static func readReplicationOffNote(_ datadir: String) -> String? {
        try? String(contentsOfFile: noteFile(datadir), encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func writeReplicationOffNote(_ note: String?, _ datadir: String) {
        if let note {
            _ = FileManager.default.createFile(atPath: noteFile(datadir), contents: Data((note + "\n").utf8))
        } else {
            try? FileManager.default.removeItem(atPath: noteFile(datadir))
        }
    }
}

/// Heartbeats to ctld at a fixed interval for as long as the tablet runs.
struct HeartbeatService: Service {
    let agent: TabletAgent

    func run() async throws {
        // Stopping at a graceful shutdown is the normal end, not an error. It
        // stops last: ctld hears from the tablet while jobs drain, and the
        // tablet's goodbye follows once the whole group has stopped.
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await agent.beat()
                try await Task.sleep(for: agent.options.heartbeatInterval)
            }
        }
    }
}
