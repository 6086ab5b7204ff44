#if canImport(Glibc)
import Glibc
#endif
import CairnCore
import CairnMySQL
import CairnSystem
import Foundation
import Logging

/// The tablet's mysqld (the mysqlctld part of a tablet): adopts a server
/// already running on the socket, or starts one on the data directory
/// (initializing an empty one), and can stop and start it around a restore.
actor TabletMysqld {
    let socketPath: String
    let dataDirectory: String
    let port: Int?
    let serverID: UInt32
    let connection: MySQLConnectionConfiguration
    let logger: Logger
    /// The server this tablet started, if it did.
    private var managed: Mysqld?

    init(socketPath: String, dataDirectory: String, port: Int?, serverID: UInt32,
         connection: MySQLConnectionConfiguration, logger: Logger) {
        self.socketPath = socketPath
        self.dataDirectory = dataDirectory
        self.port = port
        self.serverID = serverID
        self.connection = connection
        self.logger = logger
    }

    /// Whether the server answers.
    func isUp() async -> Bool {
        (try? await MySQLConnection.with(withTimeout(2), logger: logger) { try await $0.scalar("SELECT 1") }) == "1"
    }

    private func withTimeout(_ seconds: UInt32) -> MySQLConnectionConfiguration {
        var c = connection
        c.connectTimeoutSeconds = seconds
        return c
    }

    /// Runs `body` with a fresh connection and closes it.
    @discardableResult
    func withConnection<T: Sendable>(_ body: (MySQLConnection) async throws -> T) async throws -> T {
        try await MySQLConnection.with(connection, logger: logger, body)
    }

    /// Makes sure a server runs: adopt, or start (initializing an empty data directory).
    ///
    /// An initialized server has no account on TCP: root (and the OS user
    /// the tablet runs as) log in through the socket by `unix_socket`, and
    /// replicas use the replication account with its generated password.
    func ensureRunning() async throws {
        if await isUp() { return }
        if try await FileSystem.Async.isMissingOrEmptyDirectory(dataDirectory) {
            logger.info("initializing an empty data directory", metadata: ["datadir": "\(dataDirectory)"])
            try await Mysqld.initializeDataDirectory(dataDirectory, rootAuthentication: .unixSocket, logger: logger)
        }
        try await start()
    }

    /// Starts mysqld on the data directory, managed by this tablet.
    func start() async throws {
        var options = MysqldOptions(dataDirectory: dataDirectory, socketPath: socketPath, port: port, serverID: serverID)
        options.innodbBufferPoolSize = "128M"
        logger.info("starting mysqld", metadata: ["datadir": "\(dataDirectory)", "socket": "\(socketPath)", "port": "\(port.map(String.init) ?? "none")"])
        managed = try await Mysqld.start(options, user: connection.user, password: connection.password, logger: logger)
    }

    /// Stops the server, whether this tablet started it or adopted it.
    func stop() async throws {
        if let managed {
            try await managed.stop()
            self.managed = nil
            return
        }
        guard await isUp() else { return }
        let pidFile = try await withConnection { c in
            let file = try await c.scalar("SELECT @@pid_file") ?? ""
            _ = try? await c.query("SHUTDOWN")
            return file
        }
        // Wait until the server process is gone: its pid file disappears on a clean shutdown.
        let path = pidFile.hasPrefix("/") ? pidFile : "\(dataDirectory)/\(pidFile)"
        for _ in 0..<1200 {
            if !FileManager.default.fileExists(atPath: path), !(await isUp()) { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw CairnError(.mysql, "mysqld on \(socketPath) did not shut down within 120s; stop it by hand and retry")
    }

    /// Stops a managed server at tablet shutdown.
    func shutdown() async {
        if let managed {
            try? await managed.stop()
            self.managed = nil
        }
    }

    /// The server's replication from its primary, if configured.
    func replicationStatus() async -> ClusterAPI.ReplicationStatus? {
        guard let r = try? await withConnection({ try await $0.query("SHOW SLAVE STATUS") }), let row = r.rows.first else { return nil }
        func value(_ name: String) -> String? {
            guard let i = r.columns.firstIndex(of: name) else { return nil }
            return row[i]
        }
        let running = value("Slave_IO_Running") == "Yes" && value("Slave_SQL_Running") == "Yes"
        let host = value("Master_Host") ?? "?"
        let port = value("Master_Port") ?? "?"
        var note: String? = nil
        if !running {
            note = [value("Last_IO_Error"), value("Last_SQL_Error")].compactMap { $0 }.filter { !$0.isEmpty }.first ?? "replication is stopped"
        }
        return ClusterAPI.ReplicationStatus(running: running, lagSeconds: value("Seconds_Behind_Master").flatMap { Int($0) },
                                            source: "\(host):\(port)", note: note)
    }

    /// Replicates from `host:port` from the server's own GTID position.
    func replicate(fromHost host: String, port: Int, user: String, password: String) async throws {
        try await withConnection { c in
            try await c.query("STOP SLAVE")
            try await c.query("CHANGE MASTER TO MASTER_HOST=\(MySQLConnection.quote(host)), MASTER_PORT=\(port), MASTER_USER=\(MySQLConnection.quote(user)), MASTER_PASSWORD=\(MySQLConnection.quote(password)), MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1")
            try await c.query("START SLAVE")
            try await c.query("SET GLOBAL read_only=ON")
        }
    }

    /// Creates the replication account on a primary (not written to the binary log).
    func ensureReplicationAccount(user: String, password: String) async throws {
        try await withConnection { c in
            try await c.query("SET SESSION sql_log_bin=0; CREATE USER IF NOT EXISTS \(MySQLConnection.quote(user))@'%' IDENTIFIED BY \(MySQLConnection.quote(password)); GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO \(MySQLConnection.quote(user))@'%'")
        }
    }

    func stopReplication() async {
        _ = try? await withConnection { try await $0.query("STOP SLAVE") }
    }

    func position() async -> String? {
        try? await withConnection { try await $0.serverInfo().gtidBinlogPosition.description }
    }
}
