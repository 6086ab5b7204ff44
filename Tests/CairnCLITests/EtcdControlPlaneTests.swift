#if canImport(Glibc)
import Glibc
#endif
import CairnCore
import CairnEtcd
import CairnSystem
import CairnTestSupport
import Foundation
import Testing

/// Two `cairn ctld` processes on one real three-member etcd cluster, with a
/// real tablet and mariadbd: the leader dies mid-schedule, etcd members die.
@Suite("ctld on etcd: two ctlds, leader failover, lost etcd members", .serialized)
struct EtcdControlPlaneTests {
    static let prefix = "cairn/failover"

    /// The leading ctld's identity, as etcd holds it.
    static func leader(_ client: EtcdClient) async throws -> String? {
        try await client.get("/\(prefix)/leader")?.text
    }

    static func scheduledBackups(_ cluster: ClusterFixture) async throws -> [[String: Any]] {
        try await cluster.jobs(shard: "commerce/0").filter { $0["kind"] as? String == "backup" && $0["scheduled"] as? Bool == true }
    }

    @Test("the leader ctld is killed mid-schedule: the other leads, the scheduled backup runs once, Backup works; one etcd member lost changes nothing, two refuse writes clearly until they return")
    func failover() async throws {
        let etcd = try await EtcdCluster.start()
        let cluster: ClusterFixture
        do {
            cluster = try ClusterFixture(extraConfiguration: #""backup_strategy": {"full_backup_interval": "1h"}"#)
        } catch {
            await etcd.remove()
            throw error
        }
        let client = try EtcdClient(endpoints: etcd.endpoints, logger: testLogger)
        let topo = etcd.topo(prefix: Self.prefix)
        let portA = try FreePorts.take(1)[0]
        var ctldA: ChildProcess? = nil
        do {
            // ctld A first, so that it leads; ctld B (the fixture's) second. The tablet and
            // the client verbs below are given both, A first, and fail over to B when A dies.
            ctldA = try CLI.start(["ctld", "--port", String(portA), "--data-dir", cluster.directory.file("ctld-a"), "--config", cluster.configFile,
                                   "--auth-token-file", cluster.tokenFile, "--tablet-token-file", cluster.tabletTokenFile,
                                   "--heartbeat-timeout", "6", "--topo", topo, "--leader-ttl", "6", "--log-level", "info"])
            try await cluster.waitUntil("ctld A leads") { try await Self.leader(client)?.contains(":\(portA) ") == true }
            try cluster.startControlServer(extra: ["--topo", topo, "--leader-ttl", "6"])
            let bothCtlds = "127.0.0.1:\(portA),\(cluster.server)"
            try cluster.startTablet("zone1-100", type: "primary", extra: ["--ctld", bothCtlds])
            try await cluster.waitForTablets(["zone1-100"])

            // A's scheduler starts the first full backup (there is none yet); A dies while it runs.
            // (Once the tablet took it: a job created but not yet handed over when A dies is failed and retried, rightly, but that is another test.)
            try await cluster.waitUntil("the scheduled backup runs on the tablet") {
                try await Self.scheduledBackups(cluster).first.map { $0["phase"] as? String != "pending" } == true
            }
            ctldA?.kill(SIGKILL)
            _ = await ctldA?.wait()
            try await cluster.waitUntil("ctld B leads", timeout: 60) { try await Self.leader(client)?.contains(":\(cluster.ctldPort) ") == true }
            try await cluster.waitUntil("the scheduled backup completes", timeout: 180) {
                try await Self.scheduledBackups(cluster).first?["result"] as? String == "completed"
            }
            // B's scheduler has planned the shard since: the next full backup is the strategy's hour away.
            try await cluster.waitUntil("B plans the shard's next backup") {
                let r = try await cluster.cli(["jobs", "commerce/0", "--json"])
                let object = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
                let schedule = (object?["schedule"] as? [[String: Any]])?.first { $0["shard"] as? String == "commerce/0" }
                guard let next = (schedule?["next_run"] as? String).flatMap(UTCTime.parseRFC3339) else { return false }
                return next > Date().addingTimeInterval(1800)
            }
            let scheduled = try await Self.scheduledBackups(cluster)
            #expect(scheduled.count == 1, "\(scheduled)")
            let listing = try await cluster.cli(["backups", "commerce/0", "--json"])
            let backups = (try JSONSerialization.jsonObject(with: Data(listing.stdout.utf8)) as? [String: Any])?["backups"] as? [[String: Any]] ?? []
            #expect(backups.count == 1 && backups.first?["status"] as? String == "complete", "\(listing)")

            // A backup through the surviving ctld, by a client given the dead one first.
            let manual = try await CLI.run(["--server", bothCtlds, "Backup", "commerce/0"], environment: ["CAIRN_AUTH_TOKEN": cluster.token])
            #expect(manual.exitCode == 0, "\(manual)\n\(cluster.logs())")

            // One etcd member lost: everything keeps working.
            await etcd.kill("m0")
            let withTwo = try await cluster.cli(["Backup", "commerce/0"])
            #expect(withTwo.exitCode == 0, "\(withTwo)\n\(cluster.logs())")

            // Two lost: writes are refused with a sentence about quorum; reads still answer.
            await etcd.kill("m1")
            let refused = try await cluster.cli(["Backup", "commerce/0"])
            #expect(refused.exitCode == 1 && refused.stderr.contains("quorum"), "\(refused)")
            let tablets = try await cluster.cli(["tablets"])
            #expect(tablets.exitCode == 0 && tablets.stdout.contains("zone1-100"), "\(tablets)")

            // They return: service resumes (the tablet is healthy again after its next heartbeat).
            try etcd.launch("m0")
            try etcd.launch("m1")
            try await etcd.waitForQuorum()
            try await cluster.waitUntil("a backup through ctld works again", timeout: 180) {
                try await cluster.cli(["Backup", "commerce/0"]).exitCode == 0
            }
            // Still one scheduled backup: no shard's job ran twice.
            #expect(try await Self.scheduledBackups(cluster).count == 1)
        } catch {
            if let ctldA { ctldA.kill(SIGKILL); _ = await ctldA.wait() }
            await client.shutdown()
            await cluster.stop()
            await etcd.remove()
            throw error
        }
        if let ctldA { ctldA.kill(SIGKILL); _ = await ctldA.wait() }
        await client.shutdown()
        await cluster.stop()
        await etcd.remove()
    }

    @Test("ctld refuses to start without etcd, and on a prefix holding another program's keys, with one sentence and exit 1")
    func refusals() async throws {
        let directory = try TemporaryDirectory(prefix: "cairn-ctld-etcd")
        defer { directory.remove() }
        let ports = try FreePorts.take(2)
        let unreachable = try await CLI.run(["ctld", "--port", String(ports[0]), "--data-dir", directory.file("a"),
                                             "--topo", "etcd://127.0.0.1:\(ports[1])/cairn"])
        #expect(unreachable.exitCode == 1 && unreachable.stderr.contains("etcd is unreachable at 127.0.0.1:\(ports[1])"), "\(unreachable)")

        let etcd = try await EtcdCluster.start(members: 1)
        do {
            let client = try EtcdClient(endpoints: etcd.endpoints, logger: testLogger)
            try await client.put("/shared/config", Data("someone else's".utf8))
            await client.shutdown()
            let foreign = try await CLI.run(["ctld", "--port", String(ports[0]), "--data-dir", directory.file("b"), "--topo", etcd.topo(prefix: "shared")])
            #expect(foreign.exitCode == 1 && foreign.stderr.contains("already holds keys that are not a Cairn cluster's"), "\(foreign)")
            let usage = try await CLI.run(["ctld", "--data-dir", directory.file("c"), "--migrate-from-sqlite", directory.file("x.sqlite")])
            #expect(usage.exitCode == 2, "\(usage)")
        } catch {
            await etcd.remove()
            throw error
        }
        await etcd.remove()
    }
}

@Suite("cairn up --topo etcd")
struct UpWithEtcdTests {
    /// Ctrl-C, as a user stops it (its parts run in their own process groups, so a SIGKILL would leave them behind).
    static func stop(_ up: ChildProcess) async -> ChildProcess.Exit {
        up.kill(SIGINT)
        let deadline = ContinuousClock.now + .seconds(180)
        while up.exitedStatus() == nil, ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(200))
        }
        if up.exitedStatus() == nil { up.kill(SIGKILL) }
        return await up.wait()
    }

    @Test("cairn up --topo etcd runs ctld on an embedded three-member etcd beside the tablets; Backup works; Ctrl-C stops everything, etcd too")
    func upWithEtcd() async throws {
        let directory = try TemporaryDirectory(prefix: "cairn-up-etcd")
        defer { directory.remove() }
        let ctldPort = try FreePorts.take(1)[0]
        let mysqlBase = try FreePorts.takeConsecutive(2)
        let etcdBase = try FreePorts.takeConsecutive(6)
        let up = try CLI.start(["up", "--dir", directory.path, "--port", String(ctldPort), "--mysql-base-port", String(mysqlBase),
                                "--topo", "etcd", "--etcd-base-port", String(etcdBase)])
        let endpoints = (0..<3).map { "127.0.0.1:\(etcdBase + 2 * $0)" }
        let client = try EtcdClient(endpoints: endpoints, logger: testLogger)
        do {
            let server = "localhost:\(ctldPort)"
            // Ready once both tablets are registered and healthy (in etcd: ctld keeps them there).
            let deadline = ContinuousClock.now + .seconds(300)
            var environment: [String: String] = [:]
            while true {
                if let exit = up.exitedStatus() {
                    Issue.record("cairn up stopped (\(exit)): \(await up.capturedError())")
                    await client.shutdown()
                    return
                }
                if environment.isEmpty, let token = try? String(contentsOfFile: directory.file("ctld/auth-token"), encoding: .utf8) {
                    environment = ["CAIRN_AUTH_TOKEN": token.trimmingCharacters(in: .whitespacesAndNewlines), "CAIRN_SERVER": server]
                }
                if !environment.isEmpty {
                    let tablets = try await CLI.run(["tablets", "--json"], environment: environment)
                    let states = (try? JSONSerialization.jsonObject(with: Data(tablets.stdout.utf8))) as? [[String: Any]] ?? []
                    if states.count == 2, states.allSatisfy({ $0["healthy"] as? Bool == true }) { break }
                }
                guard ContinuousClock.now < deadline else {
                    Issue.record("cairn up did not become ready: \(up.capturedErrorSoFar())")
                    _ = await Self.stop(up)
                    await client.shutdown()
                    return
                }
                try await Task.sleep(for: .milliseconds(500))
            }
            let keys = try await client.list(prefix: "/cairn/tablets/", keysOnly: true).map(\.key)
            #expect(keys == ["/cairn/tablets/zone1-100", "/cairn/tablets/zone1-101"])
            let backup = try await CLI.run(["Backup", "commerce/0"], environment: environment)
            #expect(backup.exitCode == 0, "\(backup)")

            let exit = await Self.stop(up)
            #expect(exit.code == 0, "\(exit)")
            // etcd stopped with it.
            do {
                _ = try await client.get("/cairn/cluster")
                Issue.record("etcd still answers after cairn up stopped")
            } catch let error as CairnError {
                #expect(error.message.contains("etcd is unreachable"), "\(error.message)")
            }
        } catch {
            _ = await Self.stop(up)
            await client.shutdown()
            throw error
        }
        await client.shutdown()
    }
}
