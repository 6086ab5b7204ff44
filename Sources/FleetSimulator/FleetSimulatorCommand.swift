import ArgumentParser
import CairnCluster
import CairnCore
import CairnStorage
import Foundation
import Logging
import Synchronization

/// `cairn-fleet-sim`: N simulated tablets against a real ctld, for
/// `make bench-scale` (docs/BENCHMARKS.md). A tool, not a test double: the
/// tests of real tablets do not use it.
@main
struct FleetSimulatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cairn-fleet-sim",
        abstract: "Runs N simulated tablets against a real ctld and reports its CPU, memory, API latency and scheduling delay.")

    @Option(help: "ctld's address, host:port.")
    var ctld: String = "127.0.0.1:15999"

    @Option(help: "ctld's tablet token file (<ctld data dir>/tablet-token): the simulated tablets' credential.")
    var tabletTokenFile: String?

    @Option(help: "Before tablet tokens: the token file; now read as --tablet-token-file.")
    var authTokenFile: String?

    @Option(help: "The configuration file ctld runs with (its bucket, backup_strategy and retention are used).")
    var config: String

    @Option(help: "How many shards, one primary tablet each.")
    var shards: Int = 100

    @Option(help: "How long to run, in seconds.")
    var seconds: Int = 300

    @Option(help: "Seconds between a tablet's heartbeats.")
    var heartbeatInterval: Double = 2

    @Option(help: "Seconds a simulated job takes before it writes its backup.")
    var jobSeconds: Double = 1

    @Option(help: "ctld's process id, for CPU and memory samples.")
    var ctldPid: Int32?

    @Option(help: "Write the report as JSON to this file.")
    var report: String?

    func run() async throws {
        var logger = Logger(label: "cairn-fleet-sim")
        logger.logLevel = .warning
        let data = try Data(contentsOf: URL(fileURLWithPath: config))
        let configuration = try CairnConfiguration.parse(data, source: config)
        guard let strategy = configuration.backupStrategy, let bucket = configuration.bucket else {
            throw ValidationError("\(config) needs a bucket and a backup_strategy, as ctld's scheduler does")
        }
        guard let tokenFile = tabletTokenFile ?? authTokenFile else {
            throw ValidationError("pass --tablet-token-file <ctld data dir>/tablet-token")
        }
        let token = try TabletToken.read(tokenFile)
        let storage = try StorageFactory.make(url: bucket, configuration: configuration, logger: logger)
        let settings = FleetSettings(ctldURL: "http://\(ctld)", token: token, shards: shards,
                                     heartbeatInterval: .milliseconds(Int(heartbeatInterval * 1000)),
                                     jobDuration: .milliseconds(Int(jobSeconds * 1000)),
                                     duration: .seconds(seconds), strategy: strategy, retention: configuration.retention,
                                     ctldPID: ctldPid)
        let fleet = SimulatedFleet(settings: settings, storage: storage, logger: logger)
        try await fleet.run()
        await storage.shutdown()
        let result = FleetReport(fleet)
        print(result.text)
        if let report {
            try CairnJSON.encoder(pretty: true).encode(result).write(to: URL(fileURLWithPath: report))
        }
    }
}

/// What one run measured.
struct FleetReport: Codable {
    var shards: Int
    var seconds: Int
    /// ctld's average CPU over the run, as a share of one core (1.0 = 100%).
    var ctldCPU: Double?
    var ctldRSSStartBytes: Int64?
    var ctldRSSEndBytes: Int64?
    var ctldRSSMaxBytes: Int64?
    var heartbeatLatency: SampleSet.Summary
    var reportLatency: SampleSet.Summary
    /// Scheduled jobs after a shard's first: arrival minus the time the strategy made them due.
    var laterJobDelay: SampleSet.Summary
    /// A shard's first scheduled job: arrival minus registration plus the shard's spread offset.
    var firstJobDelay: SampleSet.Summary
    var laterJobsOver5s: Int
    var shardsWithoutBackup: Int
    var jobsDone: Int
    var jobsFailed: Int
    var refusedJobs: Int
    var failedRequests: Int
    /// "count× reason", the most frequent first.
    var failureReasons: [String]
    var maxUnhealthyTablets: Int

    init(_ fleet: SimulatedFleet) {
        shards = fleet.tablets.count
        let samples = fleet.usage.withLock { $0 }
        seconds = Int(fleet.settings.duration.components.seconds)
        if let first = samples.first, let last = samples.last, last.0 > first.0 {
            ctldCPU = (last.1.cpuSeconds - first.1.cpuSeconds) / last.0.timeIntervalSince(first.0)
            // The first minute is start-up (registrations, first full backups); memory is compared after it.
            let settled = samples.first { $0.0.timeIntervalSince(first.0) >= 60 } ?? first
            ctldRSSStartBytes = settled.1.residentBytes
            ctldRSSEndBytes = last.1.residentBytes
            ctldRSSMaxBytes = samples.map(\.1.residentBytes).max()
        }
        heartbeatLatency = fleet.heartbeatLatency.summary()
        reportLatency = fleet.reportLatency.summary()
        laterJobDelay = fleet.laterJobDelay.summary()
        firstJobDelay = fleet.firstJobDelay.summary()
        laterJobsOver5s = fleet.laterJobDelay.count(over: 5)
        shardsWithoutBackup = fleet.states.withLock { $0.filter { $0.nextDue == nil }.count }
        jobsDone = fleet.jobsDone.load(ordering: .relaxed)
        jobsFailed = fleet.jobsFailed.load(ordering: .relaxed)
        refusedJobs = fleet.refusedJobs.load(ordering: .relaxed)
        failedRequests = fleet.failedRequests.load(ordering: .relaxed)
        failureReasons = fleet.failureReasons.withLock { $0 }.sorted { ($1.value, $0.key) < ($0.value, $1.key) }.map { "\($0.value)x \($0.key)" }
        maxUnhealthyTablets = fleet.unhealthySeen.load(ordering: .relaxed)
    }

    var text: String {
        func s(_ v: Double) -> String { String(format: "%.2f s", v) }
        func mib(_ v: Int64?) -> String { v.map { String(format: "%.0f MiB", Double($0) / 1048576) } ?? "-" }
        return """
            shards \(shards), \(seconds) s
              ctld CPU (share of one core)   \(ctldCPU.map { String(format: "%.0f%%", $0 * 100) } ?? "-")
              ctld RSS after 1 min / end / max  \(mib(ctldRSSStartBytes)) / \(mib(ctldRSSEndBytes)) / \(mib(ctldRSSMaxBytes))
              heartbeat latency p50 / p99 / max  \(s(heartbeatLatency.p50)) / \(s(heartbeatLatency.p99)) / \(s(heartbeatLatency.max)) (\(heartbeatLatency.count))
              job report latency p50 / p99       \(s(reportLatency.p50)) / \(s(reportLatency.p99)) (\(reportLatency.count))
              later jobs late p50 / p99 / max    \(s(laterJobDelay.p50)) / \(s(laterJobDelay.p99)) / \(s(laterJobDelay.max)) (\(laterJobDelay.count) jobs, \(laterJobsOver5s) over 5 s)
              first jobs late max                \(s(firstJobDelay.max)) (\(firstJobDelay.count) shards; \(shardsWithoutBackup) without a backup)
              jobs done / failed / refused       \(jobsDone) / \(jobsFailed) / \(refusedJobs)
              failed API requests                \(failedRequests)
              tablets wrongly unhealthy (max)    \(maxUnhealthyTablets)
            """ + failureReasons.map { "\n    failed: \($0)" }.joined()
    }
}
