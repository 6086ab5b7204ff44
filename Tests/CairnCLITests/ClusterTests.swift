#if canImport(Glibc)
import Glibc
#endif
import AsyncHTTPClient
import CairnCluster
import CairnCore
import CairnMySQL
import CairnSystem
import CairnTestSupport
import Foundation
import Testing
import NIOCore
import NIOHTTP1

/// Issue 5: the cluster, as separate processes with real mariadbd.
@Suite("The cluster: ctld, tablets, client verbs", .serialized)
struct ClusterTests {
    func insertRows(_ cluster: ClusterFixture, from: Int, count: Int) async throws {
        let values = (from..<(from + count)).map { "(\($0), 'row \($0)')" }.joined(separator: ",")
        _ = try await cluster.query("zone1-100", "INSERT INTO sbtest.items VALUES \(values)")
    }

    /// ctld, primary zone1-100 and replica zone1-101 of commerce/0 replicating, and `rows` rows in sbtest.items.
    func startPrimaryAndReplica(_ cluster: ClusterFixture, rows: Int) async throws {
        try cluster.startControlServer()
        try cluster.startTablet("zone1-100", type: "primary")
        try cluster.startTablet("zone1-101", type: "replica")
        try await cluster.waitForTablets(["zone1-100", "zone1-101"], replicating: ["zone1-101"])
        _ = try await cluster.query("zone1-100", "CREATE DATABASE sbtest; CREATE TABLE sbtest.items (id INT PRIMARY KEY, name VARCHAR(64))")
        try await insertRows(cluster, from: 0, count: rows)
    }

    @Test("the seed's Backup command, --async, backups, restores into a replica and into a new tablet at a time")
    func seedWorkflow() async throws {
        let cluster = try ClusterFixture()
        do {
            try await startPrimaryAndReplica(cluster, rows: 100)

            // The seed's command, with cairn in place of vtctlclient.
            let backup = try await cluster.cli(["--server", cluster.server, "Backup", "commerce/0"])
            #expect(backup.exitCode == 0, "\(backup)\n\(cluster.logs())")
            let lines = backup.stdout.split(separator: "\n").map(String.init)
            #expect(lines.first == "Starting backup for keyspace \"commerce\", shard \"0\" on tablet 100", "\(backup)")
            #expect(lines.last?.hasPrefix("Backup ") == true && lines.last?.contains(".zone1-100 completed") == true, "\(backup)")

            let listing = try await cluster.cli(["backups", "commerce/0", "--json"])
            #expect(listing.exitCode == 0, "\(listing)")
            let backups = try #require((try JSONSerialization.jsonObject(with: Data(listing.stdout.utf8)) as? [String: Any])?["backups"] as? [[String: Any]])
            #expect(backups.count == 1 && backups[0]["tablet_alias"] as? String == "zone1-100" && backups[0]["status"] as? String == "complete")

            // --async returns at once with the seed's sentence; the job completes.
            try await insertRows(cluster, from: 100, count: 50)
            let async = try await cluster.cli(["Backup", "commerce/0", "--async"])
            #expect(async.exitCode == 0 && async.stdout == "Backup initiated, please check tablet 100 logs for progress.\n", "\(async)")
            try await cluster.waitUntil("the async backup completes") {
                try await cluster.jobs().first?["result"] as? String == "completed"
            }

            // A point in time between two incrementals, restored into a new tablet.
            try await insertRows(cluster, from: 150, count: 50)
            try await Task.sleep(for: .milliseconds(1200))
            let atT = try await cluster.checksums("zone1-100")
            let positionAtT = try await cluster.position("zone1-100")
            let t = Date(timeIntervalSince1970: floor(Date().timeIntervalSince1970))
            try await Task.sleep(for: .milliseconds(1200))
            try await insertRows(cluster, from: 200, count: 50)
            let covering = try await cluster.cli(["Backup", "commerce/0"])
            #expect(covering.exitCode == 0, "\(covering)")
            try cluster.startTablet("zone1-102", type: "replica",
                                    extra: ["--restore-from-backup", "--to-time", UTCTime.rfc3339(t, fractional: false)])
            try await cluster.waitForTablets(["zone1-102"])
            #expect(try await cluster.checksums("zone1-102") == atT)
            #expect(try await cluster.position("zone1-102") == positionAtT)
            let restoredState = try await cluster.tabletStates().first { $0["alias"] as? String == "zone1-102" }
            let replication = restoredState?["replication"] as? [String: Any]
            #expect(replication?["running"] as? Bool == false && (replication?["note"] as? String)?.contains("point in time") == true,
                    "\(String(describing: restoredState))")

            // A restore to latest into the replica catches up with the primary.
            let restore = try await cluster.cli(["restore", "commerce/0", "--tablet", "zone1-101"])
            #expect(restore.exitCode == 0 && restore.stdout.contains("replicating"), "\(restore)\n\(cluster.logs())")
            try await insertRows(cluster, from: 250, count: 50)
            let primaryPosition = try await cluster.position("zone1-100")
            try await cluster.waitUntil("the restored replica catches up") {
                try await cluster.position("zone1-101") == primaryPosition
            }
            #expect(try await cluster.checksums("zone1-101") == (try await cluster.checksums("zone1-100")))

            // A primary is never restored over.
            let overPrimary = try await cluster.cli(["restore", "commerce/0", "--tablet", "zone1-100"])
            #expect(overPrimary.exitCode == 1 && overPrimary.stderr.contains("primary"), "\(overPrimary)")

            // remove-backup through ctld refuses to break a chain, naming the dependents.
            let all = try await cluster.cli(["backups", "commerce/0", "--json"])
            let names = try #require((try JSONSerialization.jsonObject(with: Data(all.stdout.utf8)) as? [String: Any])?["backups"] as? [[String: Any]])
                .filter { $0["status"] as? String == "complete" }.compactMap { $0["name"] as? String }
            let refused = try await cluster.cli(["remove-backup", "commerce/0", names[0]])
            #expect(refused.exitCode == 1 && refused.stderr.contains(names[1]) && refused.stderr.contains("--force"), "\(refused)")
            let removed = try await cluster.cli(["RemoveBackup", "commerce/0", names.last!])
            #expect(removed.exitCode == 0, "\(removed)")
            let after = try await cluster.cli(["backups", "commerce/0"])
            #expect(!after.stdout.contains(names.last!), "\(after)")
        } catch {
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }

    @Test("a drill through ctld runs on the replica's host, leaves its server serving, and its outcome reaches cairn status and the metrics")
    func drillThroughControlServer() async throws {
        let cluster = try ClusterFixture()
        do {
            try await startPrimaryAndReplica(cluster, rows: 100)
            let backup = try await cluster.cli(["backup", "commerce/0"])
            #expect(backup.exitCode == 0, "\(backup)\n\(cluster.logs())")

            let drill = try await cluster.cli(["drill", "commerce/0"])
            #expect(drill.exitCode == 0, "\(drill)\n\(cluster.logs())")
            #expect(drill.stdout.contains("on tablet 101"), "\(drill)")
            #expect(drill.stdout.contains("passed") && drill.stdout.contains("recorded the reference"), "\(drill)")
            let job = try #require(try await cluster.jobs().first)
            #expect(job["kind"] as? String == "drill" && job["tablet"] as? String == "zone1-101", "\(job)")
            // The replica kept replicating through the drill.
            try await insertRows(cluster, from: 100, count: 10)
            try await cluster.waitUntil("the replica catches up after the drill") {
                try await cluster.query("zone1-101", "SELECT COUNT(*) FROM sbtest.items").scalar == "110"
            }
            // The record reached ctld's inventory: status and metrics show the passed drill.
            try await cluster.waitUntil("cairn status shows the drill") {
                let status = try await cluster.cli(["status", "--json"])
                return status.stdout.contains("\"passed\" : true") || status.stdout.contains("\"passed\": true")
            }
            let scrape = try await PrometheusScrape.scrape("http://\(cluster.server)/metrics", token: cluster.token)
            #expect(scrape.value("cairn_shard_last_drill_success", ["keyspace": "commerce", "shard": "0"]) == 1)
            #expect((scrape.value("cairn_shard_last_drill_restore_seconds", ["keyspace": "commerce", "shard": "0"]) ?? 0) > 0)
        } catch {
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }

    @Test("with drill_interval, ctld drills each shard on its replica's host once a backup exists, and not again before the interval")
    func scheduledDrills() async throws {
        let cluster = try ClusterFixture(extraConfiguration: #""backup_strategy": {"full_backup_interval": "24h", "drill_interval": "1h"}"#)
        do {
            try await startPrimaryAndReplica(cluster, rows: 20)
            // The backup scheduler takes the first full backup; the drill scheduler drills it.
            try await cluster.waitUntil("a scheduled drill completes", timeout: 180) {
                try await cluster.jobs().contains { $0["kind"] as? String == "drill" && $0["result"] as? String == "completed" }
            }
            let drills = try await cluster.jobs().filter { $0["kind"] as? String == "drill" }
            #expect(drills.count == 1, "\(drills)")
            #expect(drills.first?["tablet"] as? String == "zone1-101" && drills.first?["scheduled"] as? Bool == true, "\(drills)")
            // Not again within the interval (a few scheduler ticks later).
            try await Task.sleep(for: .seconds(25))
            #expect(try await cluster.jobs().filter { $0["kind"] as? String == "drill" }.count == 1)
            let records = try FileManager.default.contentsOfDirectory(atPath: cluster.directory.file("backups/commerce/0/drills")).filter { $0.hasSuffix(".json") }
            #expect(records.count == 1 && records[0].hasSuffix(".zone1-101.json"), "\(records)")
        } catch {
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }

    @Test("requests without the token, or with a wrong one, get 401; unknown shards name the known ones")
    func authAndUnknownShards() async throws {
        let cluster = try ClusterFixture()
        do {
            try cluster.startControlServer()
            try cluster.startTablet("zone1-100", type: "primary")
            try await cluster.waitForTablets(["zone1-100"])

            var request = HTTPClientRequest(url: "http://\(cluster.server)/api/v1/tablets")
            request.method = .GET
            let bare = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
            #expect(bare.status.code == 401)
            request.headers.add(name: "Authorization", value: "Bearer not-the-token-at-all")
            let wrong = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
            #expect(wrong.status.code == 401)

            let cli = try await CLI.run(["tablets", "--server", cluster.server], environment: ["CAIRN_AUTH_TOKEN": "wrong-token-0123456789"])
            #expect(cli.exitCode == 1 && cli.stderr.contains("auth token"), "\(cli)")
            let unknown = try await cluster.cli(["Backup", "commerce/7"])
            #expect(unknown.exitCode == 1 && unknown.stderr.contains("commerce/7") && unknown.stderr.contains("known: commerce/0"), "\(unknown)")
            let unknownList = try await cluster.cli(["backups", "nothing/0"])
            #expect(unknownList.exitCode == 1 && unknownList.stderr.contains("known: commerce/0"), "\(unknownList)")
            try await cluster.waitUntil("ctld logs the refusals") {
                cluster.logs().contains("refused a request without a valid auth token")
            }
        } catch {
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }

    @Test("a tablet killed during a backup fails its job within a heartbeat timeout, and the next backup succeeds")
    func tabletKilledDuringBackup() async throws {
        let cluster = try ClusterFixture()
        do {
            try cluster.startControlServer(heartbeatTimeout: 4)
            try cluster.startTablet("zone1-100", type: "primary")
            try await cluster.waitForTablets(["zone1-100"])
            try await Sysbench(socketPath: cluster.tablets["zone1-100"]!.socket, tables: 4, tableSize: 60_000).prepare()

            let started = try await cluster.cli(["Backup", "commerce/0", "--async"])
            #expect(started.exitCode == 0, "\(started)")
            try await cluster.waitUntil("the backup is copying", timeout: 60) {
                try await cluster.jobs().first?["phase"] as? String == "copying"
            }
            await cluster.killTablet("zone1-100")
            try await cluster.waitUntil("ctld fails the job", timeout: 60) {
                try await cluster.jobs().first?["result"] as? String == "failed"
            }
            let job = try await cluster.jobs().first!
            #expect((job["error"] as? String)?.contains("heartbeats") == true, "\(job)")

            let stored = try await CLI.run(["backups", "commerce/0", "--storage", cluster.storageURL, "--json"])
            let statuses = try #require((try JSONSerialization.jsonObject(with: Data(stored.stdout.utf8)) as? [String: Any])?["backups"] as? [[String: Any]])
                .map { $0["status"] as? String }
            #expect(!statuses.contains("complete"), "storage holds a complete backup from the killed tablet: \(statuses)")

            try cluster.startTablet("zone1-100", type: "primary")
            try await cluster.waitForTablets(["zone1-100"])
            let next = try await cluster.cli(["Backup", "commerce/0"])
            #expect(next.exitCode == 0, "\(next)\n\(cluster.logs())")
        } catch {
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }

    /// Waits for `process` to exit for at most `seconds`; nil when it has not (it is then killed).
    func exit(of process: ChildProcess, within seconds: Int) async -> ChildProcess.Exit? {
        await withTaskGroup(of: ChildProcess.Exit?.self) { group in
            group.addTask { await process.wait() }
            group.addTask {
                try? await Task.sleep(for: .seconds(seconds))
                return nil
            }
            let first = await group.next() ?? nil
            if first == nil { process.kill(SIGKILL) }
            group.cancelAll()
            await group.waitForAll()
            return first
        }
    }

    @Test("a tablet stopped with SIGTERM during a backup cancels it, reports it failed, stops its mysqld cleanly, and backs up after a restart")
    func tabletStoppedDuringBackup() async throws {
        // A high zstd level on one thread keeps the backup streaming long enough to be stopped midway.
        let slowCompression = #""compression_level": 15, "compression_threads": 1"#
        let cluster = try ClusterFixture(extraConfiguration: slowCompression)
        do {
            try cluster.startControlServer()
            try cluster.startTablet("zone1-100", type: "primary")
            try await cluster.waitForTablets(["zone1-100"])
            let tablet = try #require(cluster.tablets["zone1-100"])
            try await Sysbench(socketPath: tablet.socket, tables: 2, tableSize: 50_000).prepare()

            let started = try await cluster.cli(["Backup", "commerce/0", "--async"])
            #expect(started.exitCode == 0, "\(started)")
            try await cluster.waitUntil("the backup is copying", timeout: 60) {
                try await cluster.jobs().first?["phase"] as? String == "copying"
            }
            tablet.process.kill(SIGTERM)
            // The issue's bound: the tablet exits within 30 s, having stopped its mysqld.
            let exit = await exit(of: tablet.process, within: 30)
            #expect(exit?.code == 0, "the tablet did not exit cleanly within 30 s after SIGTERM: \(String(describing: exit))\n\(cluster.logs())")
            let errorLog = "\(tablet.datadir)/mariadbd.err"
            let logAtStop = (try? String(contentsOfFile: errorLog, encoding: .utf8)) ?? ""
            #expect(logAtStop.contains("Shutdown complete"), "mysqld did not shut down cleanly: \(logAtStop.suffix(2000))")
            #expect(!FileManager.default.fileExists(atPath: "\(tablet.datadir)/mariadbd.pid"), "mysqld still runs after its tablet stopped")

            // ctld has the job as failed, naming the shutdown, from the tablet's own report
            // (ctld may record it a moment after the tablet exits on a loaded machine).
            try await cluster.waitUntil("ctld has recorded the job's end", timeout: 20) {
                try await cluster.jobs().first?["result"] != nil
            }
            let job = try #require(try await cluster.jobs().first)
            #expect(job["result"] as? String == "failed" && job["phase"] as? String == "failed", "\(job)\n\(cluster.logs())")
            #expect(job["error"] as? String == "cancelled: the tablet is shutting down", "\(job)\n\(cluster.logs())")
            let listed = try await cluster.cli(["jobs"])
            #expect(listed.exitCode == 0 && listed.stdout.contains("cancelled: the tablet is shutting down"), "\(listed)")

            // Nothing committed: storage holds no complete backup.
            let stored = try await CLI.run(["backups", "commerce/0", "--storage", cluster.storageURL, "--json"])
            let storedJSON = try #require(try JSONSerialization.jsonObject(with: Data(stored.stdout.utf8)) as? [String: Any], "\(stored)")
            let statuses = try #require(storedJSON["backups"] as? [[String: Any]]).map { $0["status"] as? String }
            #expect(!statuses.contains("complete"), "storage holds a complete backup from the stopped tablet: \(statuses)")

            // The tablet said it was going away: ctld sends it nothing until it is back.
            let gone = try await cluster.tabletStates().first { $0["alias"] as? String == "zone1-100" }
            #expect(gone?["healthy"] as? Bool == false && gone?["current_job"] == nil, "\(String(describing: gone))")

            // Restarted, mysqld needs no crash recovery, and the next backup succeeds (at the default compression).
            let config = try String(contentsOfFile: cluster.configFile, encoding: .utf8)
            try config.replacingOccurrences(of: ",\n  " + slowCompression, with: "")
                .write(toFile: cluster.configFile, atomically: true, encoding: .utf8)
            try cluster.startTablet("zone1-100", type: "primary")
            try await cluster.waitForTablets(["zone1-100"])
            let logAfterStart = (try? String(contentsOfFile: errorLog, encoding: .utf8)) ?? ""
            let startLog = logAfterStart.dropFirst(logAtStop.count)
            #expect(!startLog.isEmpty && !startLog.contains("crash recovery"), "mysqld recovered from a crash: \(startLog.suffix(2000))")
            let next = try await cluster.cli(["Backup", "commerce/0"])
            #expect(next.exitCode == 0, "\(next)\n\(cluster.logs())")
        } catch {
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }

    @Test("the scheduler runs full and incremental backups on two shards, one job at a time, and carries on after ctld restarts")
    func scheduler() async throws {
        let cluster = try ClusterFixture(extraConfiguration: #""backup_strategy": {"full_backup_interval": "30s", "incremental_backup_interval": "5s"}"#)
        let shards = ["customer/-80", "customer/80-"]
        let writer = Task {
            var i = 0
            while !Task.isCancelled {
                for alias in ["zone1-100", "zone1-200"] {
                    _ = try? await cluster.query(alias, "INSERT INTO app.ticks VALUES (\(i))")
                }
                i += 1
                try? await Task.sleep(for: .milliseconds(700))
            }
        }
        do {
            try cluster.startControlServer()
            try cluster.startTablet("zone1-100", shard: shards[0], type: "primary")
            try cluster.startTablet("zone1-200", shard: shards[1], type: "primary")
            try await cluster.waitForTablets(["zone1-100", "zone1-200"])
            for alias in ["zone1-100", "zone1-200"] {
                _ = try await cluster.query(alias, "CREATE DATABASE IF NOT EXISTS app; CREATE TABLE IF NOT EXISTS app.ticks (n INT)")
            }
            try await Task.sleep(for: .seconds(40))
            await cluster.killControlServer()
            let restart = Date()
            // Down for longer than an incremental interval: a missed slot.
            try await Task.sleep(for: .seconds(8))
            try cluster.startControlServer()
            try await Task.sleep(for: .seconds(15))
            writer.cancel()

            for shard in shards {
                let jobs = try await cluster.jobs(shard: shard).filter { $0["scheduled"] as? Bool == true }.reversed()
                let finished = jobs.filter { $0["result"] != nil }
                #expect(finished.count >= 6, "\(shard): \(finished.count) scheduled jobs finished")
                // One job at a time per shard.
                var lastEnd = Date.distantPast
                for job in finished {
                    let start = try #require(UTCTime.parseRFC3339(job["started_at"] as? String ?? job["created_at"] as? String ?? ""))
                    #expect(start >= lastEnd, "\(shard): job \(job["id"]!) started before the previous one ended")
                    lastEnd = try #require(UTCTime.parseRFC3339(job["ended_at"] as? String ?? ""))
                }
                // The sequence: a full backup first, incrementals on it, a full one again after 30s.
                let listing = try await cluster.cli(["backups", shard, "--json"])
                let backups = try #require((try JSONSerialization.jsonObject(with: Data(listing.stdout.utf8)) as? [String: Any])?["backups"] as? [[String: Any]])
                let kinds = backups.filter { $0["status"] as? String == "complete" }.map { $0["type"] as? String }
                #expect(kinds.first == "full", "\(shard): \(kinds)")
                #expect(kinds.filter { $0 == "full" }.count >= 2, "\(shard): \(kinds)")
                #expect(kinds.filter { $0 == "incremental" }.count >= 3, "\(shard): \(kinds)")
                #expect(backups.allSatisfy { ($0["restorable"] as? Bool) == true || $0["status"] as? String != "complete" })
                // After the restart: the missed slot ran once, not as a burst, and the schedule went on.
                let afterRestart = finished.filter {
                    (UTCTime.parseRFC3339($0["created_at"] as? String ?? "") ?? .distantPast) > restart
                }
                #expect(!afterRestart.isEmpty, "\(shard): nothing ran after ctld restarted")
                let firstFew = afterRestart.filter {
                    (UTCTime.parseRFC3339($0["created_at"] as? String ?? "") ?? .distantPast).timeIntervalSince(restart) < 8 + 3
                }
                #expect(firstFew.count <= 1, "\(shard): \(firstFew.count) jobs in a burst after the restart")
            }
        } catch {
            writer.cancel()
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }
}
