import CairnCore
import CairnMySQL
import CairnSystem
import CairnTestSupport
import Foundation
import Synchronization
import Testing

/// Issue 13: a keyspace of two shards, each with its own mariadbd and
/// primary tablet, backed up together and brought back to one restore point.
@Suite("Keyspaces: every shard together, consistent restore points", .serialized)
struct KeyspaceTests {
    static let shards = ["-80", "80-"]
    static let aliases = ["-80": "zone1-100", "80-": "zone1-200"]

    /// Writes causally ordered pairs until stopped: row n on one shard,
    /// committed, then row n on the other; even n start on -80, odd on 80-.
    final class PairWriter: Sendable {
        let written = Mutex(0)
        let stop = Mutex(false)

        func run(_ connections: [String: MySQLConnection]) async throws {
            var n = 0
            while !stop.withLock({ $0 }) {
                let (first, second) = n % 2 == 0 ? ("-80", "80-") : ("80-", "-80")
                try await connections[first]!.query("INSERT INTO app.pairs VALUES (\(n), 1)")
                try await connections[second]!.query("INSERT INTO app.pairs VALUES (\(n), 2)")
                n += 1
                written.withLock { $0 = n }
            }
        }
    }

    /// The pair numbers a server holds, with whether it held them as first (1) or second (2).
    static func pairs(_ server: TestServer) async throws -> [Int: Int] {
        var result: [Int: Int] = [:]
        for row in try await server.query("SELECT n, side FROM app.pairs").rows {
            result[Int(row[0]!)!] = Int(row[1]!)!
        }
        return result
    }

    @Test("backup of a keyspace, a restore point under a causal workload, and both shards restored to it hold no effect without its cause")
    func restorePointIsConsistent() async throws {
        let cluster = try ClusterFixture()
        let work = try TemporaryDirectory(prefix: "cairn-keyspace")
        defer { work.remove() }
        var restored: [TestServer] = []
        do {
            try cluster.startControlServer()
            for shard in Self.shards {
                try cluster.startTablet(Self.aliases[shard]!, shard: "commerce/\(shard)", type: "primary")
            }
            try await cluster.waitForTablets(Array(Self.aliases.values))
            for alias in Self.aliases.values {
                _ = try await cluster.query(alias, "CREATE DATABASE app; CREATE TABLE app.pairs (n INT PRIMARY KEY, side INT NOT NULL)")
            }

            // One command backs up both shards, one line each.
            let first = try await cluster.cli(["backup", "commerce", "--concurrency", "2"])
            #expect(first.exitCode == 0, "\(first)\n\(cluster.logs())")
            for shard in Self.shards {
                #expect(first.stdout.contains("commerce/\(shard): backup ") && first.stdout.contains("completed on tablet"), "\(first)")
            }

            // The workload runs; a restore point is taken in its middle.
            var connections: [String: MySQLConnection] = [:]
            for shard in Self.shards { connections[shard] = try await MySQLConnection.connect(try cluster.mysql(Self.aliases[shard]!), logger: testLogger) }
            let writer = PairWriter()
            let workload = Task { [connections] in try await writer.run(connections) }
            try await cluster.waitUntil("the workload has written 200 pairs", timeout: 120) { writer.written.withLock { $0 } >= 200 }
            let point = try await cluster.cli(["restore-point", "commerce", "mid-load", "--json"])
            let writtenAtPoint = writer.written.withLock { $0 }
            try await cluster.waitUntil("the workload has written 200 more pairs", timeout: 120) { writer.written.withLock { $0 } >= writtenAtPoint + 200 }
            writer.stop.withLock { $0 = true }
            try await workload.value
            for connection in connections.values { await connection.close() }
            #expect(point.exitCode == 0, "\(point)\n\(cluster.logs())")
            let recorded = try CairnJSON.decoder().decode(RestorePoint.self, from: Data(point.stdout.utf8))
            #expect(Set(recorded.shards.keys) == Set(Self.shards))
            print("restore point under the pair workload: commits blocked for \(recorded.blockedMilliseconds) ms at most (\(recorded.shards.mapValues(\.blockedMilliseconds)))")

            // A name is taken once.
            let again = try await cluster.cli(["restore-point", "commerce", "mid-load"])
            #expect(again.exitCode == 1 && again.stderr.contains("restore point mid-load already exists"), "\(again)")

            // Not restorable until the shards' backups reach it; then it is.
            let before = try await cluster.cli(["restore-points", "commerce", "--json"])
            #expect(before.stdout.contains("\"restorable\" : false"), "\(before)")
            let second = try await cluster.cli(["backup", "commerce"])
            #expect(second.exitCode == 0, "\(second)\n\(cluster.logs())")
            let after = try await cluster.cli(["restore-points", "commerce"])
            #expect(after.exitCode == 0 && after.stdout.contains("mid-load") && after.stdout.contains("yes"), "\(after)")

            // Through ctld, a dry run resolves the point to the shard's position.
            let dry = try await cluster.cli(["restore", "commerce/-80", "--to-restore-point", "mid-load", "--dry-run", "--json"])
            #expect(dry.exitCode == 0 && dry.stdout.contains(recorded.shards["-80"]!.position.gtidText), "\(dry)")

            // The whole keyspace restored to the point, in parallel: every effect has its cause.
            let whole = try await CLI.run(["restore", "commerce", "--local", "--target-root", work.file("keyspace"),
                                           "--to-restore-point", "mid-load", "--storage", cluster.storageURL])
            #expect(whole.exitCode == 0, "\(whole)")
            for shard in Self.shards {
                #expect(whole.stdout.contains("commerce/\(shard): restored into \(work.file("keyspace"))/\(shard), position \(recorded.shards[shard]!.position)"), "\(whole)")
            }
            var held: [String: [Int: Int]] = [:]
            for shard in Self.shards {
                let server = try await TestServer.start(existingDataDirectory: work.file("keyspace/\(shard)"))
                restored.append(server)
                #expect(try await server.gtidBinlogPosition() == recorded.shards[shard]!.position)
                held[shard] = try await Self.pairs(server)
            }
            // One shard alone, to the same point, holds the same rows.
            let (single, singleServer) = try await Scenario.restoreAndStart(storage: cluster.storageURL, into: work.file("single"), shard: "commerce/-80",
                                                                            extra: ["--to-restore-point", "mid-load"])
            #expect(single.exitCode == 0, "\(single)")
            if let singleServer {
                restored.append(singleServer)
                #expect(try await Self.pairs(singleServer) == held["-80"])
            }
            // Through ctld a keyspace restores into each shard's replica; with none, nothing starts.
            let noReplica = try await cluster.cli(["restore", "commerce", "--to-restore-point", "mid-load"])
            #expect(noReplica.exitCode == 1 && noReplica.stderr.contains("nothing was restored: shard commerce/-80 has no healthy replica or rdonly tablet"), "\(noReplica)")
            // A keyspace needs one instant: --to-position names one shard's history.
            let refused = try await CLI.run(["restore", "commerce", "--local", "--target-root", work.file("refused"), "--to-position", "0-100-1",
                                             "--storage", cluster.storageURL])
            #expect(refused.exitCode == 2 && refused.stderr.contains("a keyspace is restored to one instant"), "\(refused)")
            let total = held.values.map(\.count).reduce(0, +)
            #expect(total > 0 && total < 2 * writer.written.withLock { $0 }, "the point is not in the middle of the workload: \(total) rows")
            var orphans: [Int] = []
            for n in 0..<writer.written.withLock({ $0 }) {
                let (first, second) = n % 2 == 0 ? ("-80", "80-") : ("80-", "-80")
                if held[second]![n] != nil && held[first]![n] == nil { orphans.append(n) }
            }
            #expect(orphans.isEmpty, "pairs whose second row was restored without the first: \(orphans.prefix(10))")
        } catch {
            for server in restored { await server.stop() }
            await cluster.stop()
            throw error
        }
        for server in restored { await server.stop() }
        await cluster.stop()
    }

    @Test("a restore point that cannot block one shard in time releases the other and records nothing")
    func abandonedRestorePoint() async throws {
        let cluster = try ClusterFixture()
        do {
            try cluster.startControlServer()
            for shard in Self.shards {
                try cluster.startTablet(Self.aliases[shard]!, shard: "commerce/\(shard)", type: "primary")
            }
            try await cluster.waitForTablets(Array(Self.aliases.values))
            for alias in Self.aliases.values {
                _ = try await cluster.query(alias, "CREATE DATABASE app; CREATE TABLE app.pairs (n INT PRIMARY KEY, side INT NOT NULL)")
            }
            // Another backup stage on 80-'s server (as a running mariadb-backup holds): only one runs
            // at a time, so 80- cannot prepare; -80, prepared meanwhile, must be released.
            let blocker = try await MySQLConnection.connect(try cluster.mysql(Self.aliases["80-"]!), logger: testLogger)
            try await blocker.query("BACKUP STAGE START")
            let point = try await cluster.cli(["restore-point", "commerce", "never", "--max-block", "1s"])
            try await blocker.query("BACKUP STAGE END")
            await blocker.close()
            #expect(point.exitCode == 1, "\(point)")
            #expect(point.stderr.contains("restore point never was not created") && point.stderr.contains("shard 80-")
                    && point.stderr.contains("holds its backup stage for another backup"), "\(point)")

            // -80 commits again at once, and nothing was recorded.
            _ = try await cluster.query(Self.aliases["-80"]!, "INSERT INTO app.pairs VALUES (1, 1)")
            let listed = try await cluster.cli(["restore-points", "commerce"])
            #expect(listed.exitCode == 0 && listed.stdout.contains("No restore points"), "\(listed)")
        } catch {
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }

    @Test("with restore_point_interval, ctld creates restore points of a keyspace on its own")
    func scheduledRestorePoints() async throws {
        let cluster = try ClusterFixture(extraConfiguration: #""backup_strategy": { "full_backup_interval": "24h", "restore_point_interval": "1m" }"#)
        do {
            try cluster.startControlServer()
            try cluster.startTablet("zone1-100", shard: "commerce/-80", type: "primary")
            try await cluster.waitForTablets(["zone1-100"])
            try await cluster.waitUntil("ctld has created a restore point", timeout: 60) {
                let listed = try await cluster.cli(["restore-points", "commerce", "--json"])
                return listed.exitCode == 0 && listed.stdout.contains("\"name\" : \"auto-")
            }
            let listed = try await cluster.cli(["restore-points", "commerce"])
            #expect(listed.stdout.split(separator: "\n").filter { $0.hasPrefix("auto-") }.count == 1, "one point per interval: \(listed)")
        } catch {
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }
}
