import CairnCore
import CairnMySQL
import CairnTestSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing
@testable import CairnCluster

/// A tablet agent that is never started: its API and job queue, without mysqld or ctld.
func makeIdleTablet(_ directory: TemporaryDirectory) throws -> TabletAgent {
    var configuration = CairnConfiguration()
    configuration.bucket = "file://\(directory.file("backups"))"
    let options = TabletAgentOptions(alias: TabletAlias(cell: "zone1", uid: 100), shard: try KeyspaceShard(keyspace: "commerce", shard: "0"),
                                     type: .primary, mysqlSocket: directory.file("none.sock"), mysqlDataDirectory: directory.file("data"),
                                     mysql: MySQLConnectionConfiguration(endpoint: .socket(directory.file("none.sock")), user: "root"),
                                     ctldAddress: "127.0.0.1:9", authToken: ControlServerHarness.token, configuration: configuration)
    return try TabletAgent(options: options, logger: testLogger)
}

func job(_ id: Int64) -> ClusterAPI.Job {
    ClusterAPI.Job(id: id, keyspace: "commerce", shard: "0", tablet: "zone1-100", kind: .backup, scheduled: false, createdAt: Date())
}

@Suite("Tablet jobs")
struct TabletJobTests {
    @Test("a tablet takes one job at a time and none once it is shutting down")
    func oneAtATime() async throws {
        let directory = try TemporaryDirectory(prefix: "cairn-tablet-routes")
        defer { directory.remove() }
        let tablet = try makeIdleTablet(directory)
        try await Application(router: tablet.buildRouter()).test(.router) { client in
            #expect(try await client.call(.post, "/jobs", json: job(1)).status == .accepted)
            let busy = try await client.call(.post, "/jobs", json: job(2))
            #expect(busy.status == .conflict)
            #expect(busy.errorMessage == "tablet zone1-100 is busy with job 1")
            #expect(tablet.jobs.forHeartbeat().current == 1)

            tablet.jobs.ended(ClusterAPI.JobUpdate(id: 1, report: ClusterAPI.JobReport(phase: .completed, result: .completed)))
            #expect(try await client.call(.post, "/jobs", json: job(3)).status == .accepted)
            tablet.jobs.ended(ClusterAPI.JobUpdate(id: 3, report: ClusterAPI.JobReport(phase: .failed, result: .failed)))

            tablet.jobs.close()
            let closed = try await client.call(.post, "/jobs", json: job(4))
            #expect(closed.status == .conflict)
            #expect(closed.errorMessage?.contains("tablet zone1-100 is shutting down") == true)
        }
        // The runner gets the jobs taken before the queue closed, in order, and then ends.
        var delivered: [Int64] = []
        for await queued in tablet.jobs.jobs { delivered.append(queued.id) }
        #expect(delivered == [1, 3])
        // Both ends wait for ctld's acknowledgement; a heartbeat carries them until then.
        let (current, finished) = tablet.jobs.forHeartbeat()
        #expect(current == nil && finished.map(\.id) == [1, 3])
        tablet.jobs.acknowledged([1])
        #expect(tablet.jobs.forHeartbeat().finished.map(\.id) == [3])
    }
}

@Suite("Scheduler decisions")
struct SchedulerDecisionTests {
    let now = Date(timeIntervalSince1970: 1_714_557_600)
    var strategy: BackupStrategyConfig {
        BackupStrategyConfig(fullBackupInterval: ConfigDuration(seconds: 86400), incrementalBackupInterval: ConfigDuration(seconds: 30))
    }

    func plan(runAt offset: TimeInterval?, computedAgo age: TimeInterval) -> SchedulerState.Entry {
        SchedulerState.Entry(run: offset.map { BackupScheduleRule.Run(at: now.addingTimeInterval($0), kind: "incremental", reason: "due") },
                             computedAt: now.addingTimeInterval(-age), note: nil)
    }

    @Test("a shard with a running job starts nothing, even when a run is overdue")
    func busy() {
        #expect(ShardSchedulePlanner.step(jobRunning: true, plan: plan(runAt: -600, computedAgo: 1), now: now) == .busy)
        #expect(ShardSchedulePlanner.step(jobRunning: true, plan: nil, now: now) == .busy)
    }

    @Test("no plan, no planned run, or a plan older than the refresh is planned again")
    func replan() {
        #expect(ShardSchedulePlanner.step(jobRunning: false, plan: nil, now: now) == .replan)
        #expect(ShardSchedulePlanner.step(jobRunning: false, plan: plan(runAt: nil, computedAgo: 1), now: now) == .replan)
        #expect(ShardSchedulePlanner.step(jobRunning: false, plan: plan(runAt: 600, computedAgo: ShardSchedulePlanner.refresh + 1), now: now) == .replan)
    }

    @Test("a fresh plan waits until its run is due, then starts it")
    func dueOrNot() {
        #expect(ShardSchedulePlanner.step(jobRunning: false, plan: plan(runAt: 600, computedAgo: 1), now: now) == .wait)
        let due = plan(runAt: 0, computedAgo: 1)
        #expect(ShardSchedulePlanner.step(jobRunning: false, plan: due, now: now) == .start(due.run!))
        let late = plan(runAt: -30, computedAgo: 30)
        #expect(ShardSchedulePlanner.step(jobRunning: false, plan: late, now: now) == .start(late.run!))
    }

    @Test("a run that could not start is retried after the strategy's delay, naming why")
    func retry() throws {
        let run = try #require(plan(runAt: 0, computedAgo: 1).run)
        let next = ShardSchedulePlanner.retry(run, after: CairnError(.cluster, "no healthy primary"), strategy: strategy, now: now)
        let retry = try #require(next.run)
        #expect(retry.at == now.addingTimeInterval(30))
        #expect(retry.kind == "incremental" && retry.reason == "retrying: no healthy primary")
        #expect(ShardSchedulePlanner.step(jobRunning: false, plan: next, now: now) == .wait)
        #expect(ShardSchedulePlanner.step(jobRunning: false, plan: next, now: retry.at) == .start(retry))
    }
}
