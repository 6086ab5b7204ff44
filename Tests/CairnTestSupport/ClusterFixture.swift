#if canImport(Glibc)
import Glibc
#endif
import CairnCore
import CairnMySQL
import CairnSystem
import Foundation
import Synchronization

/// A cluster of separate `cairn` processes for tests: ctld and tablets, each
/// tablet managing its own real mariadbd, on free loopback ports, with file
/// storage in a temporary directory.
public final class ClusterFixture: @unchecked Sendable {
    public let directory: TemporaryDirectory
    public let ctldPort: Int
    public let token: String
    public var tokenFile: String { directory.file("auth-token") }
    /// What tablets present to ctld, and ctld to tablets.
    public let tabletToken: String
    public var tabletTokenFile: String { directory.file("tablet-token") }
    public var configFile: String { directory.file("config.json") }
    public var storageURL: String { "file://\(directory.file("backups"))" }
    public var server: String { "localhost:\(ctldPort)" }
    private(set) var ctld: ChildProcess?
    public typealias Tablet = (process: ChildProcess, datadir: String, socket: String, mysqlPort: Int)
    private let tabletTable = Mutex<[String: Tablet]>([:])
    public var tablets: [String: Tablet] { tabletTable.withLock { $0 } }
    private var retired: [ChildProcess] = []

    /// Writes the configuration (file storage, replication credentials, and the given extra JSON members).
    public init(extraConfiguration: String = "") throws {
        try requireTools()
        directory = try TemporaryDirectory(prefix: "cairn-cluster")
        ctldPort = try FreePorts.take(1)[0]
        token = (0..<32).map { _ in String("abcdef0123456789".randomElement()!) }.joined()
        tabletToken = (0..<32).map { _ in String("abcdef0123456789".randomElement()!) }.joined()
        try FileManager.default.createDirectory(atPath: directory.file("backups"), withIntermediateDirectories: true)
        guard FileManager.default.createFile(atPath: tokenFile, contents: Data((token + "\n").utf8)),
              FileManager.default.createFile(atPath: tabletTokenFile, contents: Data((tabletToken + "\n").utf8)),
              FileManager.default.createFile(atPath: directory.file("replication-password"), contents: Data("repl-secret-\(token.prefix(8))\n".utf8)) else {
            throw TestSupportError("cannot write into \(directory.path)")
        }
        let config = """
            {
              "bucket": "\(storageURL)",
              "ctld": "\(server)",
              "replication_password_file": "\(directory.file("replication-password"))"\(extraConfiguration.isEmpty ? "" : ",\n  " + extraConfiguration)
            }
            """
        guard FileManager.default.createFile(atPath: configFile, contents: Data(config.utf8)) else {
            throw TestSupportError("cannot write \(configFile)")
        }
    }

    /// Environment for client verbs: the token, no configuration.
    public var clientEnvironment: [String: String] { ["CAIRN_AUTH_TOKEN": token, "CAIRN_SERVER": server] }

    /// Runs a client verb against this cluster's ctld.
    public func cli(_ arguments: [String]) async throws -> CLI.Result {
        try await CLI.run(arguments, environment: clientEnvironment)
    }

    public func startControlServer(heartbeatTimeout: Double = 6, extra: [String] = []) throws {
        ctld = try CLI.start(["ctld", "--port", String(ctldPort), "--data-dir", directory.file("ctld"), "--config", configFile,
                              "--auth-token-file", tokenFile, "--tablet-token-file", tabletTokenFile, "--heartbeat-timeout", String(heartbeatTimeout), "--log-level", "info"] + extra)
    }

    /// Kills ctld without warning (its state must survive in its database).
    public func killControlServer() async {
        ctld?.kill(SIGKILL)
        _ = await ctld?.wait()
        ctld = nil
    }

    /// Starts `cairn tablet` for `alias` with its own data directory and MariaDB port.
    public func startTablet(_ alias: String, shard: String = "commerce/0", type: String, extra: [String] = []) throws {
        let parts = shard.split(separator: "/").map(String.init)
        let datadir = directory.file("\(alias)/data")
        let socket = directory.file("\(alias).sock")
        let mysqlPort = try tablets[alias]?.mysqlPort ?? FreePorts.take(1)[0]
        let process = try CLI.start(["tablet", "--alias", alias, "--keyspace", parts[0], "--shard", parts[1], "--type", type,
                                     "--mysql-socket", socket, "--mysql-datadir", datadir, "--mysql-port", String(mysqlPort),
                                     "--ctld", server, "--config", configFile, "--tablet-token-file", tabletTokenFile,
                                     "--heartbeat-interval", "1", "--log-level", "info"] + extra)
        if let old = tablets[alias]?.process { retired.append(old) }
        tabletTable.withLock { $0[alias] = (process, datadir, socket, mysqlPort) }
    }

    /// Kills a tablet without warning; its mysqld keeps running.
    public func killTablet(_ alias: String) async {
        guard let t = tablets[alias] else { return }
        t.process.kill(SIGKILL)
        _ = await t.process.wait()
    }

    /// A connection to a tablet's mysqld as root.
    public func mysql(_ alias: String) throws -> MySQLConnectionConfiguration {
        guard let tablet = tablets[alias] else { throw TestSupportError("no tablet \(alias) was started") }
        return MySQLConnectionConfiguration(endpoint: .socket(tablet.socket), user: "root")
    }

    public func query(_ alias: String, _ sql: String) async throws -> MySQLResult {
        try await MySQLConnection.with(try mysql(alias), logger: testLogger) { try await $0.query(sql) }
    }

    public func checksums(_ alias: String, database: String = "sbtest") async throws -> [String: String] {
        let tables = try await query(alias, "SELECT table_name FROM information_schema.tables WHERE table_schema = '\(database)' ORDER BY table_name")
            .rows.compactMap { $0.first ?? nil }
        guard !tables.isEmpty else { return [:] }
        let result = try await query(alias, "CHECKSUM TABLE " + tables.map { "`\(database)`.`\($0)`" }.joined(separator: ", "))
        var out: [String: String] = [:]
        for row in result.rows { out[row[0] ?? ""] = row[1] ?? "NULL" }
        return out
    }

    public func position(_ alias: String) async throws -> String {
        try await query(alias, "SELECT @@gtid_binlog_pos").scalar ?? ""
    }

    /// The tablets as `cairn tablets --json` shows them.
    public func tabletStates() async throws -> [[String: Any]] {
        let r = try await cli(["tablets", "--json"])
        guard r.exitCode == 0 else { throw TestSupportError("tablets failed: \(r)") }
        return try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [[String: Any]] ?? []
    }

    /// Jobs, newest first, as `cairn jobs --json` shows them.
    public func jobs(shard: String? = nil, limit: Int = 200) async throws -> [[String: Any]] {
        let r = try await cli(["jobs"] + (shard.map { [$0] } ?? []) + ["--limit", String(limit), "--json"])
        guard r.exitCode == 0 else { throw TestSupportError("jobs failed: \(r)") }
        let object = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        return object?["jobs"] as? [[String: Any]] ?? []
    }

    /// Waits until `condition` holds, polling.
    public func waitUntil(_ what: String, timeout: Double = 120, _ condition: () async throws -> Bool) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if (try? await condition()) == true { return }
            try await Task.sleep(for: .milliseconds(300))
        }
        throw TestSupportError("timed out after \(Int(timeout))s waiting until \(what)\n\(logs())")
    }

    /// Waits until every named tablet is healthy (replicas also replicating).
    public func waitForTablets(_ aliases: [String], replicating: [String] = []) async throws {
        try await waitUntil("tablets \(aliases) are healthy") {
            let states = try await tabletStates()
            return aliases.allSatisfy { alias in
                guard let t = states.first(where: { $0["alias"] as? String == alias }), t["healthy"] as? Bool == true else { return false }
                if replicating.contains(alias) {
                    return (t["replication"] as? [String: Any])?["running"] as? Bool == true
                }
                return true
            }
        }
    }

    /// The tails of the processes' output, for failure messages.
    public func logs() -> String {
        var text = ""
        if let ctld { text += "--- ctld\n" + String(ctld.capturedErrorSoFar().suffix(3000)) }
        for (alias, t) in tablets.sorted(by: { $0.key < $1.key }) {
            text += "\n--- \(alias)\n" + String(t.process.capturedErrorSoFar().suffix(3000))
        }
        return text
    }

    /// Stops tablets (which stop their mysqlds) and ctld, then removes everything.
    public func stop() async {
        for (_, t) in tablets {
            t.process.kill(SIGTERM)
        }
        for (_, t) in tablets {
            await ClusterFixture.waitOrKill(t.process, seconds: 60)
        }
        for p in retired { await ClusterFixture.waitOrKill(p, seconds: 5) }
        // mysqlds whose tablet was killed are still running: stop them through their pid files.
        for (_, t) in tablets {
            if let pid = try? String(contentsOfFile: "\(t.datadir)/mariadbd.pid", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines),
               let p = Int32(pid) {
                kill(p, SIGKILL)
            }
        }
        if let ctld {
            ctld.kill(SIGTERM)
            await ClusterFixture.waitOrKill(ctld, seconds: 20)
        }
        try? await Task.sleep(for: .milliseconds(300))
        directory.remove()
    }

    static func waitOrKill(_ process: ChildProcess, seconds: Double) async {
        let timer = Task {
            try await Task.sleep(for: .seconds(seconds))
            process.kill(SIGKILL)
        }
        _ = await process.wait()
        timer.cancel()
    }
}
