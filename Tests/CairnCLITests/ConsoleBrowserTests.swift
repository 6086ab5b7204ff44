import CairnCore
import CairnSystem
import CairnTestSupport
import Foundation
import Testing

/// ctld's web console in a real headless Chromium (issue 15 item 2), and
/// `cairn status` against the same cluster (item 4).
@Suite("ConsoleBrowser", .serialized)
struct ConsoleBrowserTests {
    static var repository: URL {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url
    }

    /// Screenshots stay here after the run: `.build/test-artifacts/console` (or `$CAIRN_TEST_ARTIFACTS/console`).
    static var artifacts: String {
        let root = ProcessInfo.processInfo.environment["CAIRN_TEST_ARTIFACTS"] ?? repository.appendingPathComponent(".build/test-artifacts").path
        return root + "/console"
    }

    func requireBrowser() throws -> String {
        let python = Self.repository.appendingPathComponent(".venv/bin/python3").path
        for (path, step) in [("/usr/bin/chromium", "chromium"), ("/usr/bin/chromedriver", "chromium-driver"), (python, "the .venv")] {
            guard FileManager.default.isExecutableFile(atPath: path) else {
                throw TestSupportError("\(path) is missing; run scripts/install.sh, which installs \(step)")
            }
        }
        return python
    }

    @Test("log in, see the shard and its backup, plan a restore, start a backup and see its job finish; cairn status shows the shard protected; the real ctld's and tablet's /metrics count both backups")
    func consoleInBrowser() async throws {
        let python = try requireBrowser()
        let cluster = try ClusterFixture()
        do {
            try cluster.startControlServer()
            try cluster.startTablet("zone1-100", type: "primary")
            try await cluster.waitForTablets(["zone1-100"])
            _ = try await cluster.query("zone1-100", "CREATE DATABASE shop; CREATE TABLE shop.items (id INT PRIMARY KEY); INSERT INTO shop.items VALUES (1), (2)")
            let backup = try await cluster.cli(["backup", "commerce/0", "--type", "full"])
            #expect(backup.exitCode == 0, "\(backup)\n\(cluster.logs())")
            let listing = try await cluster.cli(["backups", "commerce/0", "--json"])
            let backups = try #require((try JSONSerialization.jsonObject(with: Data(listing.stdout.utf8)) as? [String: Any])?["backups"] as? [[String: Any]])
            let name = try #require(backups.first?["name"] as? String)

            // ctld lists the shard again once the job has ended; cairn status then shows the backup.
            var status: [String: Any] = [:]
            try await cluster.waitUntil("cairn status shows the backup") {
                let result = try await cluster.cli(["status", "--json"])
                guard result.exitCode == 0, let json = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any],
                      let shard = (json["shards"] as? [[String: Any]])?.first else { return false }
                status = shard
                return (shard["last_backup"] as? [String: Any])?["name"] as? String == name
            }
            #expect(status["keyspace"] as? String == "commerce" && status["shard"] as? String == "0")
            #expect(status["protected"] as? Bool == true, "\(status)")
            #expect((status["problems"] as? [String])?.isEmpty == true, "\(status)")
            let text = try await cluster.cli(["status"])
            #expect(text.exitCode == 0, "\(text)")
            #expect(text.stdout.hasPrefix("1 shard: 1 protected, 0 not protected; 0 with problems."), "\(text)")
            let row = text.stdout.split(separator: "\n").first { $0.hasPrefix("commerce/0 ") }
            #expect(row?.contains(" yes ") == true && row?.contains("full") == true, "\(text)")

            // New commits, so the backup the browser starts (auto) has something to take: an incremental.
            _ = try await cluster.query("zone1-100", "INSERT INTO shop.items VALUES (3), (4)")
            let script = Self.repository.appendingPathComponent("Tests/Browser/console_test.py").path
            let output = try await ChildProcess.run(python, [script, "http://127.0.0.1:\(cluster.ctldPort)", cluster.token, "commerce", "0", name, Self.artifacts],
                                                    doing: "driving the console in headless Chromium (screenshots in \(Self.artifacts))")
            let seen = try #require(try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any])
            #expect((seen["job_text"] as? String)?.contains("completed") == true)

            // The backup the browser started is a real one, seen by the CLI too.
            let jobs = try await cluster.jobs(shard: "commerce/0")
            #expect(jobs.count == 2 && jobs.allSatisfy { $0["result"] as? String == "completed" }, "\(jobs)")
            // The real daemons' /metrics, as Prometheus scrapes them: ctld's with the client token, the tablet's with the tablet token.
            let ctldMetrics = "http://127.0.0.1:\(cluster.ctldPort)/metrics"
            #expect(try await PrometheusScrape.scrape(ctldMetrics, token: nil).status == 401)
            try await cluster.waitUntil("ctld's metrics count the browser's backup") {
                let scrape = try await PrometheusScrape.scrape(ctldMetrics, token: cluster.token)
                return scrape.value("cairn_shard_complete_backups", ["keyspace": "commerce", "shard": "0"]) == 2
            }
            let ctldScrape = try await PrometheusScrape.scrape(ctldMetrics, token: cluster.token)
            #expect(ctldScrape.value("cairn_shard_protected", ["keyspace": "commerce", "shard": "0"]) == 1)
            #expect(ctldScrape.value("cairn_jobs_finished_total", ["keyspace": "commerce", "shard": "0", "kind": "backup", "result": "completed"]) == 2)
            let agent = try #require(try await cluster.tabletStates().first?["agent_url"] as? String)
            #expect(try await PrometheusScrape.scrape(agent + "/metrics", token: cluster.token).status == 401)
            let tabletScrape = try await PrometheusScrape.scrape(agent + "/metrics", token: cluster.tabletToken)
            #expect(tabletScrape.status == 200)
            #expect(tabletScrape.value("cairn_tablet_jobs_finished_total", ["kind": "backup", "result": "completed"]) == 2)
            #expect(tabletScrape.value("cairn_tablet_mysqld_up") == 1)
            #expect(tabletScrape.value("cairn_tablet_job_running") == 0)

            for shot in ["2-shard.png", "4-job.png", "5-phone-shard.png"] {
                #expect(FileManager.default.fileExists(atPath: Self.artifacts + "/" + shot), "no screenshot \(shot)")
            }
        } catch {
            Issue.record("\(error)\n\(cluster.logs())")
        }
        await cluster.stop()
    }
}
