#if canImport(Glibc)
import Glibc
#endif
import CairnCore
import CairnEtcd
import CairnMySQL
import CairnSystem
import Foundation
import Logging
import UnixSignals

/// `cairn up`: the embedded default. ctld plus keyspace `commerce`, shard
/// `0`, a primary `zone1-100` and a replica `zone1-101` that replicates from
/// it, each tablet with its own MariaDB under the directory, file storage
/// under `<dir>/backups`, the scheduler on. Every part is a child process
/// of this one, logging into `<dir>/logs`. With more shards (`--shards
/// -80,80-`) the n-th shard's tablets are `zone1-<n>00` and `zone1-<n>01`.
public struct LocalCluster: Sendable {
    public struct Options: Sendable {
        public var directory: String
        public var ctldPort: Int = 15999
        public var mysqlBasePort: Int = 17100
        /// The shards of keyspace `commerce`, each with a primary and a replica.
        public var shards: [String] = ["0"]
        /// The `cairn` executable to start the parts with.
        public var executable: String
        /// Keep ctld's state in an embedded three-member etcd cluster on
        /// loopback (`cairn up --topo etcd`) instead of SQLite.
        public var etcd = false
        /// The first etcd member's client port; member n uses `etcdBasePort + 2n` (client) and the next (peer).
        public var etcdBasePort: Int = 17200
        /// The etcd server binary (Debian's etcd-server).
        public var etcdExecutable = "/usr/bin/etcd"

        public init(directory: String, executable: String) {
            self.directory = directory
            self.executable = executable
        }
    }

    public let options: Options
    let logger: Logger

    public init(options: Options, logger: Logger) {
        self.options = options
        self.logger = logger
    }

    struct Part {
        var name: String
        var arguments: [String]
        /// Another program than `cairn` (an etcd member).
        var executable: String? = nil
    }

    /// The embedded etcd's members: name, client port, peer port.
    var etcdMembers: [(name: String, client: Int, peer: Int)] {
        (0..<3).map { ("etcd-m\($0)", options.etcdBasePort + 2 * $0, options.etcdBasePort + 2 * $0 + 1) }
    }
    var etcdEndpoints: [String] { etcdMembers.map { "127.0.0.1:\($0.client)" } }
    var topo: String { "etcd://\(etcdEndpoints.joined(separator: ","))/cairn" }

    var dir: String { options.directory }
    var tokenFile: String { "\(dir)/ctld/auth-token" }
    /// The tablets' credential, in ctld's data directory where ctld finds it.
    var tabletTokenFile: String { "\(dir)/ctld/\(TabletToken.fileName)" }
    var configFile: String { "\(dir)/config.json" }
    func socket(_ alias: String) -> String { "\(dir)/\(alias)/mysqld.sock" }

    /// Each shard with its primary's and replica's tablet uids: 100 and 101 for the first.
    var layout: [(shard: String, primary: Int, replica: Int)] {
        options.shards.enumerated().map { (index, shard) in (shard, 100 * (index + 1), 100 * (index + 1) + 1) }
    }
    var aliases: [String] { layout.flatMap { ["zone1-\($0.primary)", "zone1-\($0.replica)"] } }

    /// Writes the configuration, token and replication password when missing.
    /// The directory is private (0700): it holds the secrets, the backups and
    /// the MariaDB sockets.
    func prepare() throws {
        try FileSystem.createPrivateDirectory(dir)
        try FileSystem.createPrivateDirectory("\(dir)/ctld")
        for shard in options.shards {
            _ = try KeyspaceShard(keyspace: "commerce", shard: shard)
        }
        for sub in ["backups", "logs"] + aliases {
            try FileSystem.createDirectory("\(dir)/\(sub)")
        }
        if options.etcd {
            guard access(options.etcdExecutable, X_OK) == 0 else {
                throw CairnError(.configuration, "--topo etcd needs etcd at \(options.etcdExecutable); install Debian's etcd-server (scripts/install.sh does)")
            }
            try FileSystem.createPrivateDirectory("\(dir)/etcd")
        }
        guard aliases.allSatisfy({ socket($0).utf8.count < 100 }) else {
            throw CairnError(.usage, "the directory \(dir) is too deep for MariaDB's socket paths (107 bytes at most); choose a shorter --dir")
        }
        _ = try AuthToken.loadOrCreate(tokenFile)
        _ = try AuthToken.loadOrCreate(tabletTokenFile)
        let passwordFile = "\(dir)/replication-password"
        _ = try AuthToken.loadOrCreate(passwordFile)
        if !FileManager.default.fileExists(atPath: configFile) {
            // The tablets' MariaDB accounts authenticate by the OS user over the
            // socket (unix_socket), so a non-root user connects as itself.
            let user = Mysqld.currentUserName
            let mysqlUser = user == "root" ? "" : "\n  \"mysql_user\": \"\(user)\","
            let config = """
                {
                  "bucket": "file://\(dir)/backups",
                  "backup_strategy": { "full_backup_interval": "24h", "incremental_backup_interval": "1h" },
                  "ctld": "localhost:\(options.ctldPort)",\(mysqlUser)
                  "replication_password_file": "\(passwordFile)"
                }

                """
            guard FileManager.default.createFile(atPath: configFile, contents: Data(config.utf8)) else {
                throw CairnError(.fileSystem, "cannot write \(configFile)")
            }
        }
    }

    var parts: [Part] {
        let common = ["--config", configFile, "--log-level", "info"]
        func tablet(_ uid: Int, _ type: String, shard: String) -> Part {
            let alias = "zone1-\(uid)"
            return Part(name: alias, arguments: ["tablet", "--alias", alias, "--keyspace", "commerce", "--shard", shard, "--type", type,
                                                 "--mysql-socket", socket(alias), "--mysql-datadir", "\(dir)/\(alias)/data",
                                                 "--mysql-port", String(options.mysqlBasePort + uid - 100),
                                                 "--ctld", "localhost:\(options.ctldPort)", "--tablet-token-file", tabletTokenFile] + common)
        }
        let initialCluster = etcdMembers.map { "\($0.name)=http://127.0.0.1:\($0.peer)" }.joined(separator: ",")
        // A data directory that already holds a member ignores the --initial-* flags: a second `cairn up` reuses it.
        let etcd: [Part] = !options.etcd ? [] : etcdMembers.map { member in
            Part(name: member.name, arguments: [
                "--name", member.name, "--data-dir", "\(dir)/etcd/\(member.name)",
                "--listen-client-urls", "http://127.0.0.1:\(member.client)", "--advertise-client-urls", "http://127.0.0.1:\(member.client)",
                "--listen-peer-urls", "http://127.0.0.1:\(member.peer)", "--initial-advertise-peer-urls", "http://127.0.0.1:\(member.peer)",
                "--initial-cluster", initialCluster, "--initial-cluster-state", "new", "--initial-cluster-token", "cairn-up",
            ], executable: options.etcdExecutable)
        }
        let topology = options.etcd ? ["--topo", topo] : []
        return etcd + [
            Part(name: "ctld", arguments: ["ctld", "--port", String(options.ctldPort), "--data-dir", "\(dir)/ctld",
                                           "--auth-token-file", tokenFile, "--tablet-token-file", tabletTokenFile] + topology + common),
        ] + layout.flatMap { [tablet($0.primary, "primary", shard: $0.shard), tablet($0.replica, "replica", shard: $0.shard)] }
    }

    /// The summary's lines for the tablets, aligned.
    var tabletLines: String {
        layout.flatMap { shard in
            [(shard.primary, "primary"), (shard.replica, "replica")].map { uid, type in
                "  zone1-\(uid)   \(type) of commerce/\(shard.shard): MariaDB on socket \(socket("zone1-\(uid)")), port \(options.mysqlBasePort + uid - 100)"
            }
        }.joined(separator: "\n")
    }

    /// Starts everything, waits until the cluster is usable, prints how to
    /// use it, and stops everything cleanly on SIGINT or SIGTERM.
    public func run(print say: @Sendable (String) -> Void) async throws {
        try prepare()
        // Signals end the wait below; the parts get SIGTERM from us.
        let signals = await UnixSignalsSequence(trapping: .sigint, .sigterm)

        var children: [(Part, ChildProcess)] = []
        func stopAll() async {
            for (part, child) in children.reversed() {
                child.kill(SIGTERM)
                await LocalCluster.wait(for: child, killingAfter: .seconds(60))
                logger.info("stopped \(part.name)")
            }
        }
        do {
            for part in parts {
                let log = open("\(dir)/logs/\(part.name).log", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
                guard log >= 0 else { throw CairnError(.fileSystem, "cannot open \(dir)/logs/\(part.name).log") }
                defer { close(log) }
                let child = try ChildProcess(part.executable ?? options.executable, arguments: part.arguments, stdout: .fileDescriptor(log),
                                             stderr: .fileDescriptor(log), newProcessGroup: true, logger: logger)
                children.append((part, child))
                say("started \(part.name) (log: \(dir)/logs/\(part.name).log)")
                if part.name == etcdMembers.last?.name, options.etcd { try await waitForEtcd(children: children) }
                if part.name == "ctld" { try await waitForControlServer(children: children) }
            }
            try await waitUntilReady(children: children)
        } catch {
            await stopAll()
            throw error
        }
        say("""

            Cairn local cluster is up under \(dir):
              ctld        localhost:\(options.ctldPort) (auth token in \(tokenFile))\(options.etcd ? "\n  etcd        \(topo) (three members, data in \(dir)/etcd)" : "")
            \(tabletLines)
              backups     file://\(dir)/backups (scheduler: full every 24h, incremental every 1h)

            Try, from the directory that holds cairn-local:
              cairn --server localhost:\(options.ctldPort) Backup commerce/\(options.shards[0])
              cairn backups commerce/\(options.shards[0])
              cairn tablets
              cairn jobs\(options.shards.count > 1 ? """

              cairn backup commerce
              cairn restore-point commerce before-change
              cairn restore-points commerce
            """ : "")
              mariadb --socket=\(socket("zone1-100")) --user=\(Mysqld.currentUserName)

            Logs are in \(dir)/logs. Press Ctrl-C to stop everything.
            """)
        // Until a signal, or until a part dies.
        let running = children
        let reason = await withTaskGroup(of: String?.self) { group in
            group.addTask {
                for await signal in signals { return "\(signal)" }
                return nil
            }
            group.addTask {
                while !Task.isCancelled {
                    if let died = exitedPart(running) { return died }
                    try? await Task.sleep(for: .milliseconds(200))
                }
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first ?? "signal"
        }
        say("stopping the local cluster (\(reason))...")
        await stopAll()
        say("stopped.")
    }

    /// Waits for `child` to exit; kills it when it has not after `limit`.
    static func wait(for child: ChildProcess, killingAfter limit: Duration) async {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                _ = await child.wait()
                return true
            }
            group.addTask {
                try? await Task.sleep(for: limit)
                return false
            }
            if await group.next() == false { child.kill(SIGKILL) }
            group.cancelAll()
            await group.waitForAll()
        }
    }

    /// Waits until the embedded etcd has elected a leader and takes writes.
    func waitForEtcd(children: [(Part, ChildProcess)]) async throws {
        let client = try EtcdClient(endpoints: etcdEndpoints, logger: logger)
        let deadline = ContinuousClock.now + .seconds(60)
        do {
            while ContinuousClock.now < deadline {
                if (try? await client.put("/cairn-up-ready", Data("1".utf8))) != nil {
                    await client.shutdown()
                    return
                }
                try checkAlive(children)
                try await Task.sleep(for: .milliseconds(200))
            }
        } catch {
            await client.shutdown()
            throw error
        }
        await client.shutdown()
        throw CairnError(.cluster, "the embedded etcd did not elect a leader within 60s; see \(dir)/logs/etcd-m0.log")
    }

    func waitForControlServer(children: [(Part, ChildProcess)]) async throws {
        let client = ClusterClient(address: "localhost:\(options.ctldPort)", token: try AuthToken.read(tokenFile))
        for _ in 0..<600 {
            if (try? await client.tablets()) != nil { return }
            try checkAlive(children)
            try await Task.sleep(for: .milliseconds(100))
        }
        throw CairnError(.cluster, "ctld did not answer on localhost:\(options.ctldPort) within 60s; see \(dir)/logs/ctld.log")
    }

    func waitUntilReady(children: [(Part, ChildProcess)]) async throws {
        let client = ClusterClient(address: "localhost:\(options.ctldPort)", token: try AuthToken.read(tokenFile))
        for _ in 0..<1800 {
            let tablets = (try? await client.tablets()) ?? []
            let ready = layout.allSatisfy { shard in
                tablets.contains { $0.alias == "zone1-\(shard.primary)" && $0.healthy }
                    && tablets.contains { $0.alias == "zone1-\(shard.replica)" && $0.healthy && $0.replication?.running == true }
            }
            if ready { return }
            try checkAlive(children)
            try await Task.sleep(for: .milliseconds(100))
        }
        throw CairnError(.cluster, "the tablets did not become healthy within 180s; see the logs in \(dir)/logs")
    }

    func checkAlive(_ children: [(Part, ChildProcess)]) throws {
        if let died = exitedPart(children) {
            throw CairnError(.cluster, "\(died) while starting; see \(dir)/logs")
        }
    }

    /// "<part> stopped (<status>)" for the first part that has exited, with the end of its log.
    func exitedPart(_ children: [(Part, ChildProcess)]) -> String? {
        for (part, child) in children {
            if let exit = child.exitedStatus() {
                let log = (try? String(contentsOfFile: "\(dir)/logs/\(part.name).log", encoding: .utf8)) ?? ""
                return "\(part.name) stopped (\(exit))\(ChildProcess.summarize(log))"
            }
        }
        return nil
    }
}
