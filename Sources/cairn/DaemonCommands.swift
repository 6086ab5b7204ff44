import ArgumentParser
import CairnCluster
import CairnCore
import CairnEngine
import CairnEtcd
import CairnMySQL
import CairnSystem
import Foundation
import Logging

struct CtldCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ctld",
        abstract: "Run the control server (Vitess: vtctld).",
        discussion: """
            Keeps the topology and job history in SQLite under --data-dir, reads backups from the configured storage, \
            and runs the scheduler when the configuration has a backup_strategy. Every API call needs a bearer token: \
            clients the one from --auth-token-file (default <data-dir>/auth-token, generated on first start), tablets \
            the one from --tablet-token-file (default <data-dir>/tablet-token, generated on first start). \
            With --topo etcd://HOST:PORT[,HOST:PORT...]/PREFIX the topology and job history live in etcd instead, \
            shared by every ctld started with the same --topo (and the same tokens): each serves the API, one leads \
            and runs the scheduler and the heartbeat monitor. --migrate-from-sqlite FILE copies an existing \
            ctld.sqlite into an empty prefix first.
            """
    )

    @Option(name: .long, help: "The port to listen on.")
    var port: Int = 15999

    @Option(name: .long, help: ArgumentHelp("The address to listen on.", valueName: "addr"))
    var bind: String = "127.0.0.1"

    @Option(name: .long, help: ArgumentHelp("Where ctld keeps its database (and generated token).", valueName: "path"))
    var dataDir: String = "cairn-ctld"

    @Option(name: .long, help: ArgumentHelp("The auth token file (default: <data-dir>/auth-token, created when missing).", valueName: "file"))
    var authTokenFile: String?

    @Option(name: .long, help: ArgumentHelp("The tablets' token file (default: <data-dir>/tablet-token, created when missing).", valueName: "file"))
    var tabletTokenFile: String?

    @Option(name: .long, help: ArgumentHelp("Seconds without a heartbeat before a tablet is unhealthy and its job failed.", valueName: "seconds"))
    var heartbeatTimeout: Double = 10

    @Flag(name: .long, help: "Do not run the scheduler even when the configuration has a backup_strategy.")
    var noScheduler = false

    @Option(name: .long, help: ArgumentHelp("Finished jobs kept per shard, the newest, whatever their age.", valueName: "count"))
    var keepJobsPerShard: Int = JobRetention().keepPerShard

    @Option(name: .long, help: ArgumentHelp("Days finished jobs are kept, whatever their number.", valueName: "days"))
    var keepJobsDays: Double = JobRetention().keepYoungerThan / 86_400

    @Option(name: .long, help: ArgumentHelp("Keep the topology and jobs in etcd under PREFIX, shared with other ctlds (default: SQLite under --data-dir).", valueName: "etcd://HOST:PORT[,HOST:PORT...]/PREFIX"))
    var topo: String?

    @Option(name: .long, help: ArgumentHelp("With --topo: copy this ctld.sqlite into the empty etcd prefix, then serve.", valueName: "file"))
    var migrateFromSqlite: String?

    @Option(name: .long, help: ArgumentHelp("With --topo: the leader's etcd lease; another ctld leads within it when the leader is lost.", valueName: "seconds"))
    var leaderTtl: Int = 10

    func validate() throws {
        if migrateFromSqlite != nil, topo == nil {
            throw ValidationError("--migrate-from-sqlite copies into etcd; give --topo etcd://HOST:PORT/PREFIX too")
        }
        guard (3...300).contains(leaderTtl) else {
            throw ValidationError("--leader-ttl takes 3 to 300 seconds")
        }
    }

    @OptionGroup var storageOptions: StorageOptions
    @OptionGroup var output: OutputOptions

    func run() async throws {
        let logger = output.makeLogger(label: "ctld", defaultLevel: "info")
        let topology = try topo.map(EtcdTopology.init(parsing:))
        guard keepJobsPerShard >= 0, keepJobsDays >= 0 else {
            throw CairnError(.usage, "--keep-jobs-per-shard and --keep-jobs-days cannot be negative; use 0 to keep none by that measure")
        }
        let configuration = try storageOptions.loadConfiguration()
        let dataDir = URL(fileURLWithPath: dataDir).standardizedFileURL.path
        try FileSystem.createPrivateDirectory(dataDir)
        let token = try authTokenFile.map(AuthToken.read) ?? AuthToken.loadOrCreate("\(dataDir)/auth-token")
        var options = ControlServerOptions(dataDirectory: dataDir, configuration: configuration, authToken: token,
                                           schedulerEnabled: !noScheduler)
        options.bindAddress = bind
        options.port = port
        options.storageURL = storageOptions.storage
        options.heartbeatTimeout = heartbeatTimeout
        options.tabletToken = try tabletTokenFile.map(TabletToken.read)
        options.jobRetention = JobRetention(keepPerShard: keepJobsPerShard, keepYoungerThan: keepJobsDays * 86_400)
        options.topology = topology
        options.migrateFromSQLite = migrateFromSqlite.map { URL(fileURLWithPath: $0).standardizedFileURL.path }
        options.leaderLeaseTTL = leaderTtl
        let server = try await ControlServer.open(options: options, logger: logger)
        try await server.run { port in
            logger.info("ctld listening", metadata: ["address": "\(bind):\(port)"])
        }
    }
}

struct TabletCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tablet",
        abstract: "Run a tablet agent beside one mysqld (Vitess: vttablet + mysqlctld).",
        discussion: """
            Adopts the mysqld answering on --mysql-socket, or starts one on --mysql-datadir (initializing an empty \
            directory). Registers with ctld, heartbeats, and runs backups and restores of its mysqld as jobs. With \
            --restore-from-backup it first restores the shard's latest chain (or a point in time) into the empty data \
            directory, then registers.
            """
    )

    @Option(name: .long, help: ArgumentHelp("The tablet's alias, <cell>-<uid>.", valueName: "alias"))
    var alias: String

    @Option(name: .long, help: "The keyspace.")
    var keyspace: String

    @Option(name: .long, parsing: .unconditional, help: "The shard (key ranges such as -80 are taken as values).")
    var shard: String

    @Option(name: .long, help: "The tablet's type.")
    var type: ClusterAPI.TabletType

    @Option(name: .long, help: ArgumentHelp("The mysqld's data directory.", valueName: "path"))
    var mysqlDatadir: String

    @Option(name: .long, help: ArgumentHelp("The control server, host:port, or several separated by commas (ctlds sharing one etcd topology; heartbeats and reports fail over along them). Default: the configuration's ctld, else localhost:15999.", valueName: "host:port[,...]"))
    var ctld: String?

    @Option(name: .long, help: "The port of the tablet's own API (0 picks a free one).")
    var port: Int = 0

    @Option(name: .long, help: ArgumentHelp("The address the tablet's API listens on.", valueName: "addr"))
    var bind: String = "127.0.0.1"

    @Option(name: .long, help: ArgumentHelp("The file holding ctld's tablet token, <ctld data dir>/tablet-token (default: $CAIRN_TABLET_TOKEN).", valueName: "file"))
    var tabletTokenFile: String?

    @Option(name: .long, help: ArgumentHelp("Before tablet tokens: the file holding the token for ctld; now read as --tablet-token-file.", valueName: "file"))
    var authTokenFile: String?

    @Flag(name: .long, help: "Take the alias over even while another agent holds it (ctld refuses that otherwise).")
    var replace = false

    @Flag(name: .long, help: "Restore into the empty data directory before registering.")
    var restoreFromBackup = false

    @OptionGroup(title: "With --restore-from-backup") var restoreTarget: RestoreTargetOptions

    @Option(name: .long, help: ArgumentHelp("Seconds between heartbeats.", valueName: "seconds"))
    var heartbeatInterval: Double = 2

    @Option(name: .long, help: ArgumentHelp("Where restore drills make their scratch directory (default: the system's temporary directory); it needs room for a copy of the shard.", valueName: "path"))
    var drillDirectory: String?

    @OptionGroup var storageOptions: StorageOptions
    @OptionGroup var mysqlOptions: MySQLOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        if restoreTarget.isGiven && !restoreFromBackup {
            throw ValidationError("--backup, --to-time and --to-position go with --restore-from-backup")
        }
    }

    func run() async throws {
        let logger = output.makeLogger(label: "tablet \(alias)", defaultLevel: "info")
        let shard = try KeyspaceShard(keyspace: keyspace, shard: self.shard)
        let alias = try TabletAlias(parsing: self.alias)
        guard alias.cell != nil else {
            throw CairnError(.usage, "--alias \(self.alias) needs a cell: write <cell>-<uid>, e.g. zone1-100")
        }
        let configuration = try storageOptions.loadConfiguration()
        let mysql = try mysqlOptions.connection(configuration)
        guard case .socket(let socket) = mysql.endpoint else {
            throw CairnError(.usage, "a tablet reaches its mysqld through --mysql-socket")
        }
        // The tablet token; --auth-token-file and CAIRN_AUTH_TOKEN are still read, as the same thing.
        let token: String
        let environment = ProcessInfo.processInfo.environment
        if let file = tabletTokenFile ?? authTokenFile {
            token = try TabletToken.read(file)
        } else if let env = environment["CAIRN_TABLET_TOKEN"] ?? environment["CAIRN_AUTH_TOKEN"], !env.isEmpty {
            token = env
        } else {
            throw CairnError(.usage, "no tablet token for ctld: pass --tablet-token-file <ctld data dir>/tablet-token or set CAIRN_TABLET_TOKEN")
        }
        var options = TabletAgentOptions(alias: alias, shard: shard, type: type, mysqlSocket: socket,
                                         mysqlDataDirectory: URL(fileURLWithPath: mysqlDatadir).standardizedFileURL.path,
                                         mysql: mysql, ctldAddress: ctld ?? configuration.ctld ?? "localhost:15999",
                                         authToken: token, configuration: configuration)
        // With a socket, --mysql-port is the server's TCP port: a managed mysqld listens there and replicas connect to it.
        options.mysqlPort = mysqlOptions.mysqlPort
        options.port = port
        options.bindAddress = bind
        options.replace = replace
        options.storageURL = storageOptions.storage
        options.heartbeatInterval = .milliseconds(Int(heartbeatInterval * 1000))
        options.drillDirectory = drillDirectory.map { URL(fileURLWithPath: $0).standardizedFileURL.path }
        if restoreFromBackup {
            options.restoreFromBackup = try restoreTarget.parameters()
        }
        try await TabletAgent(options: options, logger: logger).run()
    }
}

struct TabletsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tablets",
        abstract: "List the tablets ctld knows, with their type, health and replication.",
        aliases: ["ListAllTablets", "GetTablets"]
    )

    @Argument(help: .shardFilter, transform: KeyspaceShard.init(parsing:))
    var shard: KeyspaceShard?

    @OptionGroup var cluster: ClusterOptions
    @OptionGroup var output: OutputOptions

    func run() async throws {
        _ = output.makeLogger()
        let tablets = try await cluster.client().tablets().filter { shard == nil || $0.shardID == shard?.description }
        if output.json {
            try Output.json(tablets)
            return
        }
        let archiving = tablets.contains { $0.archive != nil }
        var table = TextTable(header: ["ALIAS", "SHARD", "TYPE", "HEALTH", "REPLICATION", "POSITION", "JOB"] + (archiving ? ["ARCHIVE"] : []))
        for t in tablets {
            var replication = "-"
            if let r = t.replication {
                replication = r.running ? "running, lag \(r.lagSeconds.map { "\($0)s" } ?? "?")" : "off: \(r.note ?? "stopped")"
            }
            table.rows.append([t.alias, t.shardID, t.type.rawValue, t.healthy ? (t.serving ? "serving" : "healthy") : "unhealthy",
                               replication, t.position ?? "-", t.currentJob.map(String.init) ?? "-"]
                              + (archiving ? [t.archive.map { $0.running || $0.error != nil ? $0.summary : "-" } ?? "-"] : []))
        }
        Output.line(tablets.isEmpty ? "No tablets have registered." : table.render())
    }
}

struct JobsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jobs",
        abstract: "List recent backup and restore jobs, newest first, and what the scheduler runs next.",
        aliases: ["ListJobs", "GetJobs"]
    )

    @Argument(help: .shardFilter, transform: KeyspaceShard.init(parsing:))
    var shard: KeyspaceShard?

    @Option(name: .long, help: "How many jobs to show.")
    var limit: Int = 20

    @OptionGroup var cluster: ClusterOptions
    @OptionGroup var output: OutputOptions

    func run() async throws {
        _ = output.makeLogger()
        let response = try await cluster.client().jobs(shard: shard, limit: limit)
        if output.json {
            try Output.json(response)
            return
        }
        var table = TextTable(header: ["ID", "SHARD", "TABLET", "KIND", "BY", "PHASE", "STARTED", "ENDED", "RESULT", "BACKUP", "ERROR"])
        for j in response.jobs {
            table.rows.append([String(j.id), j.shardID, j.tablet, j.kind.rawValue, j.scheduled ? "scheduler" : "client", j.phase.rawValue,
                               UTCTime.rfc3339(j.startedAt ?? j.createdAt, fractional: false),
                               j.endedAt.map { UTCTime.rfc3339($0, fractional: false) } ?? "-",
                               j.result?.rawValue ?? "running", j.backupName ?? "-", j.error ?? ""])
        }
        Output.line(response.jobs.isEmpty ? "No jobs yet." : table.render())
        for s in response.schedule {
            Output.line("Next for \(s.shard): " + (s.nextRun.map { "\(s.nextKind ?? "backup") at \(UTCTime.rfc3339($0, fractional: false))" } ?? "nothing planned") + (s.note.map { " (\($0))" } ?? ""))
        }
    }
}
