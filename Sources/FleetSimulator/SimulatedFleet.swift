import AsyncHTTPClient
import CairnCluster
import CairnCore
import CairnEngine
import CairnStorage
import Crypto
import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOHTTP1
import ServiceLifecycle
import Synchronization
import NIOFoundationEssentialsCompat
import UnixSignals

/// How the simulation runs.
struct FleetSettings: Sendable {
    var ctldURL: String
    var token: String
    var shards: Int
    var keyspace: String = "fleet"
    var heartbeatInterval: Duration = .seconds(2)
    /// How long a simulated job "copies" before it writes its backup.
    var jobDuration: Duration = .seconds(1)
    var duration: Duration
    var strategy: BackupStrategyConfig
    /// After each backup a tablet prunes with this policy, as a real one does; nil prunes nothing.
    var retention: RetentionPolicy? = nil
    /// ctld's process, for CPU and memory samples.
    var ctldPID: Int32?
    var bindAddress: String = "127.0.0.1"
}

/// N tablets in one process that speak the real tablet protocol to a real
/// ctld: they register, heartbeat, take jobs on their own API, report
/// progress and final states (repeating unacknowledged ones in heartbeats,
/// as real tablets do), and write each backup in the real storage format, so
/// ctld's planning sees real chains. Nothing here stands in for ctld.
final class SimulatedFleet: Sendable {
    struct Tablet: Sendable {
        let alias: TabletAlias
        let shard: KeyspaceShard
    }

    struct TabletState: Sendable {
        var registeredAt: Date?
        var currentJob: Int64?
        var unacknowledged: [ClusterAPI.JobUpdate] = []
        /// When ctld should send the next scheduled backup, by the strategy, after the last one.
        var nextDue: Date?
        var sequence: UInt64
    }

    let settings: FleetSettings
    let tablets: [Tablet]
    let byAlias: [String: Int]
    let states: Mutex<[TabletState]>
    let storage: any BackupStorage
    let http: HTTPClient
    let logger: Logger
    let listeningPort = Mutex<Int>(0)
    let jobs: AsyncStream<(Int, ClusterAPI.Job)>
    let jobQueue: AsyncStream<(Int, ClusterAPI.Job)>.Continuation

    // Measurements.
    let heartbeatLatency = SampleSet()
    let reportLatency = SampleSet()
    let firstJobDelay = SampleSet()
    let laterJobDelay = SampleSet()
    let failedRequests = Atomic<Int>(0)
    /// Why requests failed: a count per kind of failure (method, path
    /// pattern and message), for the report; at most 20 kinds are kept.
    let failureReasons = Mutex<[String: Int]>([:])
    let jobsDone = Atomic<Int>(0)
    let jobsFailed = Atomic<Int>(0)
    let refusedJobs = Atomic<Int>(0)
    let usage = Mutex<[(Date, ProcessUsage)]>([])
    let unhealthySeen = Atomic<Int>(0)

    init(settings: FleetSettings, storage: any BackupStorage, logger: Logger) {
        self.settings = settings
        self.storage = storage
        self.logger = logger
        let width = max(4, String(settings.shards).count)
        var tablets: [Tablet] = []
        for i in 0..<settings.shards {
            let number = String(i)
            let shard = "s" + String(repeating: "0", count: width - number.count) + number
            // KeyspaceShard validates; names of this form always pass.
            tablets.append(Tablet(alias: TabletAlias(cell: "sim", uid: UInt32(100 + i)),
                                  shard: try! KeyspaceShard(keyspace: settings.keyspace, shard: shard)))
        }
        self.tablets = tablets
        byAlias = Dictionary(uniqueKeysWithValues: tablets.enumerated().map { ($1.alias.description, $0) })
        let base = UInt64(Date().timeIntervalSince1970) * 1000
        states = Mutex(tablets.map { _ in TabletState(sequence: base) })
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool = .init(idleTimeout: .seconds(60), concurrentHTTP1ConnectionsPerHostSoftLimit: 64)
        configuration.timeout = .init(connect: .seconds(10), read: .seconds(60))
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        (jobs, jobQueue) = AsyncStream.makeStream(of: (Int, ClusterAPI.Job).self)
    }

    // MARK: - Running

    func run() async throws {
        let router = Router()
        let token = settings.token
        router.post("sim/:alias/api/v1/jobs") { request, context -> Response in
            guard request.headers[.authorization] == "Bearer \(token)" else {
                return Response(status: .unauthorized)
            }
            let alias = try context.parameters.require("alias")
            guard let index = self.byAlias[alias] else { return Response(status: .notFound) }
            var request = request
            let body = try await request.collectBody(upTo: 1024 * 1024)
            let job = try CairnJSON.decoder().decode(ClusterAPI.Job.self, from: Data(buffer: body))
            return self.accept(job, tablet: index)
        }
        let app = Application(
            router: router,
            configuration: .init(address: .hostname(settings.bindAddress, port: 0), serverName: "cairn-fleet-sim"),
            onServerRunning: { channel in self.listeningPort.withLock { $0 = channel.localAddress?.port ?? 0 } },
            logger: logger
        )
        let group = ServiceGroup(configuration: .init(services: [
            .init(service: app),
            .init(service: FleetLoop(name: "heartbeats") { try await self.heartbeats() }),
            .init(service: FleetLoop(name: "jobs") { await self.work() }),
            .init(service: FleetLoop(name: "sampler") { try await self.sample() }),
            .init(service: FleetLoop(name: "clock") { try await Task.sleep(for: self.settings.duration) },
                  successTerminationBehavior: .gracefullyShutdownGroup),
        ], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        jobQueue.finish()
        try await http.shutdown()
    }

    /// Every tablet heartbeats at the interval, registering first; tablets are spread across the interval.
    func heartbeats() async throws {
        while listeningPort.withLock({ $0 }) == 0 { try await Task.sleep(for: .milliseconds(50)) }
        let interval = settings.heartbeatInterval
        let count = tablets.count
        await withDiscardingTaskGroup { group in
            for index in tablets.indices {
                group.addTask {
                    try? await Task.sleep(for: interval * (Double(index) / Double(count)))
                    while !Task.isCancelled {
                        await self.beat(index)
                        try? await Task.sleep(for: interval)
                    }
                }
            }
        }
    }

    func beat(_ index: Int) async {
        let tablet = tablets[index]
        if states.withLock({ $0[index].registeredAt == nil }) {
            let port = listeningPort.withLock { $0 }
            let registration = ClusterAPI.TabletRegistration(
                alias: tablet.alias.description, keyspace: tablet.shard.keyspace, shard: tablet.shard.shard, type: .primary,
                agentURL: "http://\(settings.bindAddress):\(port)/sim/\(tablet.alias)", mysqlHost: nil, mysqlPort: nil,
                hostname: "fleet-sim")
            guard (try? await send(.POST, "/tablets", registration, latency: heartbeatLatency)) != nil else { return }
            states.withLock { $0[index].registeredAt = Date() }
        }
        let (current, finished, sequence) = states.withLock { ($0[index].currentJob, $0[index].unacknowledged, $0[index].sequence) }
        let heartbeat = ClusterAPI.Heartbeat(alias: tablet.alias.description, type: .primary, healthy: true, serving: true,
                                             replication: nil, position: position(tablet, sequence).description,
                                             currentJob: current, finishedJobs: finished)
        do {
            try await send(.POST, "/tablets/\(tablet.alias)/heartbeat", heartbeat, latency: heartbeatLatency)
            let sent = Set(finished.map(\.id))
            states.withLock { $0[index].unacknowledged.removeAll { sent.contains($0.id) } }
        } catch let error as CairnError where error.code == .notFound {
            states.withLock { $0[index].registeredAt = nil }
        } catch {}
    }

    /// A job from ctld: taken unless the tablet is busy, as a real tablet does.
    func accept(_ job: ClusterAPI.Job, tablet index: Int) -> Response {
        let now = Date()
        let taken = states.withLock { states -> Bool in
            guard states[index].currentJob == nil else { return false }
            states[index].currentJob = job.id
            if job.scheduled {
                if let due = states[index].nextDue {
                    laterJobDelay.add(now.timeIntervalSince(due))
                } else if let registered = states[index].registeredAt {
                    let offset = BackupScheduleRule.offset(for: tablets[index].shard.description,
                                                           window: BackupScheduleRule.spreadWindow(settings.strategy))
                    firstJobDelay.add(now.timeIntervalSince(registered.addingTimeInterval(offset)))
                }
            }
            return true
        }
        guard taken else {
            refusedJobs.add(1, ordering: .relaxed)
            let body = ClusterAPI.ErrorBody(code: CairnError.Code.cluster.name, message: "tablet \(tablets[index].alias) is busy")
            let data = (try? CairnJSON.encoder().encode(body)) ?? Data()
            return Response(status: .conflict, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(data: data)))
        }
        jobQueue.yield((index, job))
        return Response(status: .accepted, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: "{}")))
    }

    /// Runs accepted jobs, each in its own child task.
    func work() async {
        await withDiscardingTaskGroup { group in
            for await (index, job) in jobs {
                group.addTask { await self.execute(job, tablet: index) }
            }
        }
    }

    func execute(_ job: ClusterAPI.Job, tablet index: Int) async {
        let tablet = tablets[index]
        let started = Date()
        var final = ClusterAPI.JobUpdate(id: job.id, report: ClusterAPI.JobReport(phase: .failed, startedAt: started))
        do {
            let progress = ClusterAPI.JobUpdate(id: job.id, report: ClusterAPI.JobReport(
                phase: .copying, bytesDone: 1 << 20, storedBytes: 1 << 19, rate: 1_048_576, startedAt: started))
            try? await Task.sleep(for: settings.jobDuration / 2)
            try? await send(.POST, "/jobs/\(job.id)/progress", progress, latency: reportLatency)
            try? await Task.sleep(for: settings.jobDuration / 2)
            let manifest = try await writeBackup(job, tablet: index, started: started)
            final = ClusterAPI.JobUpdate(id: job.id, report: ClusterAPI.JobReport(
                phase: .completed, bytesDone: 1 << 20, storedBytes: 1 << 19, rate: 1_048_576,
                startedAt: started, endedAt: Date(), result: .completed, backupName: manifest.backupName,
                position: manifest.position.description,
                note: manifest.incremental ? "incremental after \(manifest.parentBackup ?? "?")" : "full (physical)"))
            jobsDone.add(1, ordering: .relaxed)
        } catch {
            // A job cut short by the simulator's own stop is not the cluster's failure: neither counted nor reported.
            if Task.isCancelled {
                states.withLock { $0[index].currentJob = nil }
                return
            }
            final.report.result = .failed
            final.report.endedAt = Date()
            final.report.error = (error as? CairnError)?.message ?? "\(error)"
            jobsFailed.add(1, ordering: .relaxed)
            logger.warning("simulated job failed", metadata: ["tablet": "\(tablet.alias)", "error": "\(final.error ?? "")"])
        }
        let report = final
        states.withLock { s in
            s[index].currentJob = nil
            s[index].unacknowledged.append(report)
        }
        if (try? await send(.POST, "/jobs/\(job.id)/progress", report, latency: reportLatency)) != nil {
            states.withLock { s in s[index].unacknowledged.removeAll { $0.id == report.id } }
        }
    }

    /// Decides full or incremental from the shard's real listing, as a tablet's
    /// BackupRunner does, and writes a small backup in the real layout:
    /// `STARTED`, one data file whose size and SHA-256 the manifest records, `MANIFEST` last.
    func writeBackup(_ job: ClusterAPI.Job, tablet index: Int, started: Date) async throws -> BackupManifest {
        let tablet = tablets[index]
        let repository = BackupRepository(storage: storage, logger: logger)
        let listing = try await repository.list(tablet.shard)
        let manifests = listing.compactMap(\.manifest)
        let decision = try BackupStrategy.decide(requested: job.backupType ?? .auto, backups: manifests,
                                                 strategy: settings.strategy, now: started)
        let taken = Set(listing.map(\.name))
        var time = Date(timeIntervalSince1970: started.timeIntervalSince1970.rounded(.down))
        var name = BackupName(time: time, tabletAlias: tablet.alias)
        while taken.contains(name.description) {
            time = time.addingTimeInterval(1)
            name = BackupName(time: time, tabletAlias: tablet.alias)
        }
        let sequence = states.withLock { s -> UInt64 in
            s[index].sequence += 100
            return s[index].sequence
        }
        var parent: BackupManifest? = nil
        if case .incremental(let p, _) = decision { parent = p }
        let data = Data("simulated \(parent == nil ? "full" : "incremental") backup \(name) of \(tablet.shard)\n".utf8)
        let fileName = parent == nil ? "backup.mbstream" : "binlog.000001"
        try await storage.writeAll(key: repository.key(tablet.shard, name.description, "STARTED"),
                                   data: Data(#"{"backup_name": "\#(name)"}"#.utf8))
        try await storage.writeAll(key: repository.key(tablet.shard, name.description, fileName), data: data)
        let file = ManifestFile(name: fileName, rawSize: Int64(data.count), storedSize: Int64(data.count),
                                sha256: SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined())
        let now = Date()
        let manifest = BackupManifest(
            backupName: name.description, keyspace: tablet.shard.keyspace, shard: tablet.shard.shard,
            tabletAlias: tablet.alias.description, hostname: "fleet-sim", method: parent == nil ? .physical : .binlog,
            incremental: parent != nil, parentBackup: parent?.backupName, fromPosition: parent?.position,
            position: position(tablet, sequence), purgedPosition: position(tablet, 0), startTime: time, finishTime: now,
            firstEventTime: parent?.finishTime, lastEventTime: parent == nil ? nil : now, serverID: tablet.alias.uid,
            serverVersion: "10.11.0-MariaDB", flavor: .mariadb, compression: .none, encryption: "none", files: [file])
        try await repository.commit(manifest, shard: tablet.shard)
        if let policy = settings.retention {
            // As a tablet's BackupRunner does after its backup: the history stays as long as the policy keeps it.
            _ = try await BackupPruner(shard: tablet.shard, storage: storage, logger: logger).prune(policy: policy, now: now, dryRun: false)
        }
        // When ctld's scheduler should come back, by the strategy: the next job's delay is measured from here.
        let schedule = BackupStrategy.schedule(backups: manifests + [manifest], strategy: settings.strategy, now: now)
        let due = [schedule.nextFull, schedule.nextIncremental].compactMap { $0 }.min()
        states.withLock { $0[index].nextDue = due }
        return manifest
    }

    func position(_ tablet: Tablet, _ sequence: UInt64) -> ReplicationPosition {
        ReplicationPosition(mariadb: MariaDBGTIDList([MariaDBGTID(domain: 0, server: tablet.alias.uid, sequence: sequence)]))
    }

    /// ctld's CPU and memory every 5 s; the tablets' health as ctld sees it every 15 s.
    func sample() async throws {
        var tick = 0
        while !Task.isCancelled {
            if let pid = settings.ctldPID, let usage = ProcessUsage.read(pid: pid) {
                self.usage.withLock { $0.append((Date(), usage)) }
            }
            if tick % 3 == 2, let list: [ClusterAPI.Tablet] = try? await request(.GET, "/tablets", Optional<Empty>.none, latency: nil) {
                let registered = states.withLock { s in Set(s.indices.filter { s[$0].registeredAt != nil }.map { tablets[$0].alias.description }) }
                let unhealthy = list.filter { registered.contains($0.alias) && !$0.healthy }.count
                if unhealthy > 0 { logger.warning("ctld reports simulated tablets unhealthy", metadata: ["count": "\(unhealthy)"]) }
                unhealthySeen.store(max(unhealthySeen.load(ordering: .relaxed), unhealthy), ordering: .relaxed)
            }
            tick += 1
            try await Task.sleep(for: .seconds(5))
        }
    }

    // MARK: - Transport

    struct Empty: Codable, Sendable {}

    func send<Body: Encodable & Sendable>(_ method: HTTPMethod, _ path: String, _ body: Body?, latency: SampleSet?) async throws {
        let _: Empty = try await request(method, path, body, latency: latency)
    }

    func request<Body: Encodable & Sendable, Result: Decodable>(_ method: HTTPMethod, _ path: String, _ body: Body?,
                                                                 latency: SampleSet?) async throws -> Result {
        var request = HTTPClientRequest(url: settings.ctldURL + ClusterAPI.prefix + path)
        request.method = method
        request.headers.add(name: "Authorization", value: "Bearer \(settings.token)")
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(data: try CairnJSON.encoder().encode(body)))
        }
        let start = ContinuousClock.now
        do {
            let response = try await http.execute(request, timeout: .seconds(60))
            let bytes = Data(buffer: try await response.body.collect(upTo: 64 * 1024 * 1024))
            if let latency {
                let elapsed = ContinuousClock.now - start
                latency.add(Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
            }
            guard (200..<300).contains(response.status.code) else {
                let error = (try? CairnJSON.decoder().decode(ClusterAPI.ErrorBody.self, from: bytes))
                    .map { CairnError(CairnError.Code($0.error.code), $0.error.message) }
                    ?? CairnError(.cluster, "ctld answered \(response.status.code) to \(method.rawValue) \(path)")
                recordFailure(method, path, "HTTP \(response.status.code): \(error.message)")
                throw error
            }
            if let empty = Empty() as? Result { return empty }
            return try CairnJSON.decoder().decode(Result.self, from: bytes)
        } catch let error as CairnError {
            throw error
        } catch let error as CancellationError {
            // The run ended with this call in flight: not a failure of ctld.
            throw error
        } catch {
            recordFailure(method, path, "\(error)")
            throw CairnError(.cluster, "cannot reach ctld at \(settings.ctldURL): \(error)")
        }
    }

    func recordFailure(_ method: HTTPMethod, _ path: String, _ reason: String) {
        failedRequests.add(1, ordering: .relaxed)
        // Aliases and job ids vary; the kind of call is what tells failures apart.
        let pattern = path.split(separator: "/").map { $0.contains(where: \.isNumber) ? "*" : String($0) }.joined(separator: "/")
        let key = "\(method.rawValue) \(pattern): \(reason.prefix(200))"
        failureReasons.withLock { reasons in
            if reasons[key] != nil || reasons.count < 20 { reasons[key, default: 0] += 1 }
        }
    }
}

/// One loop of the simulator as a service: stops at graceful shutdown.
struct FleetLoop: Service, CustomStringConvertible {
    let name: String
    let body: @Sendable () async throws -> Void

    var description: String { name }

    func run() async throws {
        try? await cancelWhenGracefulShutdown { try await body() }
    }
}
