import CairnCore
import CairnStorage
import CairnTestSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing
@testable import CairnCluster

/// ctld's `/metrics` and `GET /api/v1/status` (issue 15 items 1 and 4), and
/// the pure summary behind both.
@Suite("Observability")
struct ObservabilityTests {
    let shard = try! KeyspaceShard(keyspace: "commerce", shard: "0")

    /// A full backup two hours ago (one minute long) and an incremental 30 minutes ago (ten seconds long).
    func writeHistory(_ storage: any BackupStorage, now: Date) async throws -> (full: BackupManifest, incremental: BackupManifest) {
        let fullStart = now.addingTimeInterval(-7200).rounded()
        let full = try await SyntheticBackups.writeComplete(
            SyntheticBackups.manifest(shard: shard, start: fullStart, finish: fullStart.addingTimeInterval(60), parent: nil, seq: 10),
            to: storage, shard: shard)
        let incStart = now.addingTimeInterval(-1800).rounded()
        let incremental = try await SyntheticBackups.writeComplete(
            SyntheticBackups.manifest(shard: shard, start: incStart, finish: incStart.addingTimeInterval(10), parent: full, seq: 20),
            to: storage, shard: shard)
        return (full, incremental)
    }

    @Test("/metrics: refused without the client token; with it, Prometheus's parser reads each shard's backup, window and job failures")
    func metricsScrape() async throws {
        let harness = try ControlServerHarness()
        let now = Date()
        let (full, incremental) = try await writeHistory(harness.storage, now: now)
        let app = Application(router: harness.server.buildRouter(), configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        defer { harness.directory.remove() }
        try await app.test(.live) { client in
            #expect(try await client.call(.post, "/tablets", json: ControlServerHarness.registration()).status == .ok)
            let beat = ClusterAPI.Heartbeat(alias: "zone1-100", type: .primary, healthy: true, serving: true, replication: nil,
                                            position: nil, currentJob: nil, finishedJobs: [])
            #expect(try await client.call(.post, "/tablets/zone1-100/heartbeat", json: beat).status == .ok)
            // A backup job the tablet reports failed, twice (a tablet repeats a final report until it is acknowledged): one failure.
            let job = try await harness.server.store.createJob(shard: shard, tablet: "zone1-100", scheduled: false) { $0.kind = .backup }
            let report = ClusterAPI.JobUpdate(id: job.id, report: ClusterAPI.JobReport(phase: .failed, result: .failed, error: "disk full"))
            for _ in 0..<2 {
                #expect(try await client.call(.post, "/jobs/\(job.id)/progress", json: report).status == .ok)
            }
            // The inventory lists storage as its background service does.
            try await ShardInventoryRefresher(server: harness.server).pass(BackupRepository(storage: harness.storage, logger: testLogger))

            let port = try #require(client.port)
            let url = "http://127.0.0.1:\(port)/metrics"
            #expect(try await PrometheusScrape.scrape(url, token: nil).status == 401)
            #expect(try await PrometheusScrape.scrape(url, token: "not-the-token-0123456789").status == 401)
            // The tablets' token is not the client's.
            #expect(try await PrometheusScrape.scrape(url, token: ControlServerHarness.tabletToken).status == 401)

            let scrape = try await PrometheusScrape.scrape(url, token: ControlServerHarness.token)
            #expect(scrape.status == 200)
            let labels = ["keyspace": "commerce", "shard": "0"]
            #expect(scrape.value("cairn_shard_last_backup_timestamp_seconds", labels) == incremental.finishTime.timeIntervalSince1970)
            #expect(scrape.value("cairn_shard_last_backup_duration_seconds", labels) == 10)
            #expect(scrape.value("cairn_shard_last_backup_bytes", labels) == Double(incremental.storedSize))
            let age = try #require(scrape.value("cairn_shard_last_backup_age_seconds", labels))
            #expect(age >= 1790 && age < 1790 + 3600)
            #expect(scrape.value("cairn_shard_last_full_backup_timestamp_seconds", labels) == full.finishTime.timeIntervalSince1970)
            #expect(scrape.value("cairn_shard_restorable_window_start_timestamp_seconds", labels) == full.finishTime.timeIntervalSince1970)
            #expect(scrape.value("cairn_shard_restorable_window_end_timestamp_seconds", labels) == incremental.startTime.timeIntervalSince1970)
            #expect(scrape.value("cairn_shard_protected", labels) == 1)
            #expect(scrape.value("cairn_shard_complete_backups", labels) == 2)
            #expect(scrape.value("cairn_job_failures_total", labels.merging(["kind": "backup"]) { a, _ in a }) == 1)
            #expect(scrape.value("cairn_jobs_finished_total", labels.merging(["kind": "backup", "result": "failed"]) { a, _ in a }) == 1)
            #expect(scrape.value("cairn_tablet_healthy", ["alias": "zone1-100"]) == 1)
            #expect(scrape.value("cairn_ctld_shards") == 1)
            // Hooks for archiving and drills stay absent until something sets them.
            #expect(!scrape.samples.contains { $0.name.hasPrefix("cairn_shard_last_drill") || $0.name == "cairn_shard_archive_lag_seconds" })
            // Every family carries its help text and the right type.
            #expect(scrape.family("cairn_shard_last_backup_timestamp_seconds")?.type == "gauge")
            #expect(scrape.family("cairn_job_failures")?.type == "counter")
            #expect(scrape.families.allSatisfy { !$0.help.isEmpty })
        }
    }

    @Test("a drill outcome and an archive lag, once recorded, are exported")
    func hooksExport() async throws {
        let harness = try ControlServerHarness()
        let now = Date()
        _ = try await writeHistory(harness.storage, now: now)
        try await harness.test { client in
            #expect(try await client.call(.post, "/tablets", json: ControlServerHarness.registration()).status == .ok)
            try await ShardInventoryRefresher(server: harness.server).pass(BackupRepository(storage: harness.storage, logger: testLogger))
            harness.server.inventory.recordDrill("commerce/0", .init(finishedAt: now, passed: false, restoreSeconds: 42, detail: "table t1 differs"))
            harness.server.inventory.setArchiveLag("commerce/0", seconds: 7)
            let response = try await client.execute(uri: "/metrics", method: .get, headers: [.authorization: "Bearer \(ControlServerHarness.token)"])
            let text = String(buffer: response.body)
            #expect(text.contains(#"cairn_shard_last_drill_success{keyspace="commerce",shard="0"} 0"#))
            #expect(text.contains(#"cairn_shard_last_drill_restore_seconds{keyspace="commerce",shard="0"} 42"#))
            #expect(text.contains(#"cairn_shard_archive_lag_seconds{keyspace="commerce",shard="0"} 7"#))
            let status = try await client.call(.get, "/status").decode(ClusterAPI.FleetStatus.self)
            #expect(status.shards.first?.problems.contains("the last restore drill failed: table t1 differs") == true)
        }
    }

    @Test("cairn status shows the archive lag the archiving tablet last reported, and - for a shard where none archives")
    func statusShowsArchiveLag() async throws {
        let harness = try ControlServerHarness()
        _ = try await writeHistory(harness.storage, now: Date())
        try await harness.test { client in
            #expect(try await client.call(.post, "/tablets", json: ControlServerHarness.registration()).status == .ok)
            var other = ControlServerHarness.registration("zone1-200")
            other.shard = "80-"
            #expect(try await client.call(.post, "/tablets", json: other).status == .ok)
            try await ShardInventoryRefresher(server: harness.server).pass(BackupRepository(storage: harness.storage, logger: testLogger))
            harness.server.inventory.setArchiveLag("commerce/0", seconds: 2.34)
            let status = try await client.call(.get, "/status").decode(ClusterAPI.FleetStatus.self)
            #expect(status.shards.map(\.id) == ["commerce/0", "commerce/80-"])
            #expect(status.shards.map(\.archiveLagSeconds) == [2.34, nil])
            let lines = StatusReport.render(status, showAll: true, limit: 40).split(separator: "\n").map(String.init)
            let header = try #require(lines.first(where: { $0.hasPrefix("SHARD") }))
            let column = try #require(header.range(of: "ARCHIVE LAG")).lowerBound.utf16Offset(in: header)
            func cell(_ shard: String) throws -> String {
                let row = try #require(lines.first(where: { $0.hasPrefix(shard + " ") }))
                return String(row.dropFirst(column).prefix { $0 != " " })
            }
            #expect(try cell("commerce/0") == "2.3s")
            #expect(try cell("commerce/80-") == "-")
            // Minutes behind reads as an age, like the other columns.
            #expect(StatusReport.lagText(754) == "12m")
        }
    }

    @Test("a drill record in storage reaches the metrics, the status and the console; a newer one replaces it")
    func drillRecordsObserved() async throws {
        let harness = try ControlServerHarness()
        let now = Date()
        let (full, _) = try await writeHistory(harness.storage, now: now)
        let drills = DrillRepository(storage: harness.storage, logger: testLogger)
        var passed = DrillRecord(name: DrillRecord.name(startedAt: now.addingTimeInterval(-600), ranOn: "zone1-101"), keyspace: "commerce",
                                 shard: "0", ranOn: "zone1-101", target: "backup \(full.backupName)", startedAt: now.addingTimeInterval(-600))
        passed.passed = true
        passed.restoreSeconds = 12
        passed.reference = .recorded
        passed.finishedAt = now.addingTimeInterval(-590)
        try await drills.save(passed)
        let passedName = passed.name
        try await harness.test { client in
            #expect(try await client.call(.post, "/tablets", json: ControlServerHarness.registration()).status == .ok)
            let refresher = ShardInventoryRefresher(server: harness.server)
            try await refresher.pass(BackupRepository(storage: harness.storage, logger: testLogger))
            func metrics() async throws -> String {
                String(buffer: try await client.execute(uri: "/metrics", method: .get, headers: [.authorization: "Bearer \(ControlServerHarness.token)"]).body)
            }
            #expect(try await metrics().contains(#"cairn_shard_last_drill_success{keyspace="commerce",shard="0"} 1"#))
            #expect(try await metrics().contains(#"cairn_shard_last_drill_restore_seconds{keyspace="commerce",shard="0"} 12"#))

            // A newer drill failed: once the shard is listed again, everything shows it.
            var failed = DrillRecord(name: DrillRecord.name(startedAt: now.addingTimeInterval(-60), ranOn: "zone1-101"), keyspace: "commerce",
                                     shard: "0", ranOn: "zone1-101", target: "backup \(full.backupName)", startedAt: now.addingTimeInterval(-60))
            failed.failure = "the data restored at 0-1-10 differs from what drill x restored at the same point: app.orders"
            failed.restoreSeconds = 13
            failed.finishedAt = now.addingTimeInterval(-50)
            try await drills.save(failed)
            harness.server.inventory.markStale("commerce/0")
            try await refresher.pass(BackupRepository(storage: harness.storage, logger: testLogger))
            #expect(try await metrics().contains(#"cairn_shard_last_drill_success{keyspace="commerce",shard="0"} 0"#))
            let status = try await client.call(.get, "/status").decode(ClusterAPI.FleetStatus.self)
            #expect(status.shards.first?.problems.contains { $0.hasPrefix("the last restore drill failed: the data restored at 0-1-10 differs") } == true)
            #expect(status.shards.first?.protected == true)

            // The console's shard page lists both drills, the failed one first, with its problem.
            let login = try await client.execute(uri: "/login", method: .post, headers: [.contentType: "application/x-www-form-urlencoded"],
                                                 body: ByteBuffer(string: "token=\(ControlServerHarness.token)"))
            let cookie = String(try #require(login.headers[.setCookie]).prefix { $0 != ";" })
            let page = String(buffer: try await client.execute(uri: "/ui/shards/commerce/0", method: .get, headers: [.cookie: cookie]).body)
            let failedAt = try #require(page.range(of: failed.name))
            let passedAt = try #require(page.range(of: passedName))
            #expect(failedAt.lowerBound < passedAt.lowerBound)
            #expect(page.contains("app.orders"))
            #expect(page.contains("Run restore drill"))
        }
    }

    @Test("GET /status: a protected shard, and one without backups whose problems are named")
    func fleetStatus() async throws {
        let harness = try ControlServerHarness()
        let now = Date()
        let (_, incremental) = try await writeHistory(harness.storage, now: now)
        try await harness.test { client in
            #expect(try await client.call(.post, "/tablets", json: ControlServerHarness.registration()).status == .ok)
            var empty = ControlServerHarness.registration("zone1-200")
            empty.shard = "80-"
            #expect(try await client.call(.post, "/tablets", json: empty).status == .ok)
            // Before any listing, nothing is claimed.
            let before = try await client.call(.get, "/status").decode(ClusterAPI.FleetStatus.self)
            #expect(before.shards.map(\.protected) == [nil, nil])
            #expect(before.shards[0].problems.contains("ctld has not listed its backups yet"))

            try await ShardInventoryRefresher(server: harness.server).pass(BackupRepository(storage: harness.storage, logger: testLogger))
            let status = try await client.call(.get, "/status").decode(ClusterAPI.FleetStatus.self)
            #expect(status.shards.map(\.id) == ["commerce/0", "commerce/80-"])
            let good = status.shards[0], bad = status.shards[1]
            #expect(good.protected == true)
            #expect(good.lastBackup?.name == incremental.backupName)
            #expect(good.window?.end == incremental.startTime)
            #expect(bad.protected == false)
            #expect(bad.problems.contains("there is no complete backup"))
            // Registered, never heartbeat: not healthy.
            #expect(bad.problems.contains("tablet zone1-200 (primary) is not healthy"))
            // The tablet token does not read the fleet status.
            #expect(try await client.call(.get, "/status", token: ControlServerHarness.tabletToken).status == .unauthorized)
        }
    }

    @Test("the protection summary: window from the first full's finish to the newest incremental's start; a broken newest link is named")
    func protectionSummary() throws {
        let t0 = Date(timeIntervalSince1970: 1_800_000_000)
        let full = SyntheticBackups.manifest(shard: shard, start: t0, finish: t0.addingTimeInterval(100), parent: nil, seq: 1)
        let inc = SyntheticBackups.manifest(shard: shard, start: t0.addingTimeInterval(3600), finish: t0.addingTimeInterval(3610), parent: full, seq: 2)
        var orphan = SyntheticBackups.manifest(shard: shard, start: t0.addingTimeInterval(7200), finish: t0.addingTimeInterval(7210), parent: inc, seq: 3)
        orphan.parentBackup = "2000-01-01.000000.zone1-100"
        let p = ShardProtection(manifests: [full, inc, orphan])
        #expect(p.window == .init(start: t0.addingTimeInterval(100), end: t0.addingTimeInterval(3600)))
        #expect(p.lastBackup?.name == orphan.backupName)
        #expect(p.problems.count == 1 && p.problems[0].hasPrefix("the newest backup \(orphan.backupName) cannot be restored"))
        #expect(p.isProtected(now: t0.addingTimeInterval(3600 + 100), maximumAge: 3600))
        #expect(!p.isProtected(now: t0.addingTimeInterval(3600 * 3), maximumAge: 3600))
        // A lone full backup: restorable to its snapshot only.
        let lone = ShardProtection(manifests: [full])
        #expect(lone.window == .init(start: t0, end: t0))
        #expect(ShardProtection(manifests: []).problems == ["there is no complete backup"])
        #expect(ShardProtection.maximumAge(strategy: BackupStrategyConfig(fullBackupInterval: .init(seconds: 86_400),
                                                                          incrementalBackupInterval: .init(seconds: 3600))) == 7200)
    }

    @Test("cairn status fits a screen: shards with problems first, the rest counted past the limit, one line per shown problem")
    func statusReportFitsAScreen() {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        func shard(_ i: Int, problems: [String]) -> ClusterAPI.ShardStatus {
            ClusterAPI.ShardStatus(keyspace: "big", shard: String(format: "%03d", i), protected: problems.isEmpty,
                                   lastBackup: nil, lastBackupAgeSeconds: 90, window: nil, completeBackups: 1, lastDrill: nil,
                                   tablets: 2, healthyTablets: 2, runningJob: nil, nextBackup: nil, listedAt: now, problems: problems)
        }
        var shards = (0..<60).map { shard($0, problems: []) }
        shards[17] = shard(17, problems: ["there is no complete backup", "tablet zone1-1 (replica) is not healthy"])
        shards[42] = shard(42, problems: ["the last backup job (9) failed: disk full"])
        let status = ClusterAPI.FleetStatus(generatedAt: now, maximumAgeSeconds: 7200, shards: shards)
        let lines = StatusReport.render(status, showAll: false, limit: 10).split(separator: "\n").map(String.init)
        #expect(lines[0] == "60 shards: 58 protected, 2 not protected; 2 with problems.")
        // The header, then the two troubled shards first.
        #expect(lines[2].hasPrefix("big/017 ") && lines[3].hasPrefix("big/042 "))
        #expect(lines.count(where: { $0.hasPrefix("big/") && $0.contains(" yes ") }) == 8)
        #expect(lines.contains("50 more shard(s) not shown (0 of them with problems); --all shows them."))
        #expect(lines.contains("big/017: there is no complete backup (and 1 more)"))
        #expect(lines.contains("big/042: the last backup job (9) failed: disk full"))
        #expect(lines.count <= 16)
        let all = StatusReport.render(status, showAll: true, limit: 10).split(separator: "\n")
        #expect(all.count(where: { $0.hasPrefix("big/") && !$0.contains(":") }) == 60)
    }

    @Test("every metric the example alert rules name is one Cairn exports")
    func alertRulesNameExportedMetrics() throws {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        let rules = try String(contentsOf: url.appendingPathComponent("dist/prometheus/cairn-alerts.yml"), encoding: .utf8)
        let named = Set(rules.matches(of: /cairn_[a-z_]+/).map { String($0.output) })
        #expect(named.count >= 8)
        for name in named {
            #expect(MetricCatalog.help[name] != nil, "the alert rules name \(name), which Cairn does not export")
        }
    }

    @Test("a tablet's own metrics parse with Prometheus's parser: job counts, last backup, mysqld and replication")
    func tabletMetrics() async throws {
        let metrics = TabletMetrics()
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        metrics.jobEnded(kind: .backup, report: ClusterAPI.JobReport(phase: .completed, storedBytes: 1234, startedAt: start,
                                                                      endedAt: start.addingTimeInterval(12), result: .completed))
        metrics.jobEnded(kind: .backup, report: ClusterAPI.JobReport(phase: .failed, result: .failed, error: "disk full"))
        metrics.heartbeatFailed()
        let beat = ClusterAPI.Heartbeat(alias: "zone1-101", type: .replica, healthy: true, serving: true,
                                        replication: .init(running: true, lagSeconds: 3, source: nil, note: nil),
                                        position: nil, currentJob: 9, finishedJobs: [])
        // Served from a live socket, so the parser reads exactly what Prometheus would.
        let router = Router()
        let body = metrics.render(beat, shard: shard)
        router.get("metrics") { _, _ in body }
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)))
        try await app.test(.live) { client in
            let scrape = try await PrometheusScrape.scrape("http://127.0.0.1:\(try #require(client.port))/metrics", token: nil)
            #expect(scrape.value("cairn_tablet_jobs_finished_total", ["kind": "backup", "result": "completed"]) == 1)
            #expect(scrape.value("cairn_tablet_jobs_finished_total", ["kind": "backup", "result": "failed"]) == 1)
            #expect(scrape.value("cairn_tablet_last_backup_bytes") == 1234)
            #expect(scrape.value("cairn_tablet_last_backup_duration_seconds") == 12)
            #expect(scrape.value("cairn_tablet_heartbeat_failures_total") == 1)
            #expect(scrape.value("cairn_tablet_mysqld_up") == 1)
            #expect(scrape.value("cairn_tablet_job_running") == 1)
            #expect(scrape.value("cairn_tablet_replication_lag_seconds") == 3)
            #expect(scrape.value("cairn_tablet_info", ["alias": "zone1-101", "type": "replica"]) == 1)
        }
    }
}

extension Date {
    /// Whole seconds, as manifests store them.
    func rounded() -> Date { Date(timeIntervalSince1970: timeIntervalSince1970.rounded(.down)) }
}
