#if canImport(Glibc)
import Glibc
#endif
import CairnCore
import CairnMySQL
import CairnSystem
import Foundation
import Logging

/// Fails with the install step when a tool the tests need is missing.
public func requireTools(_ names: [String] = ["mariadbd", "mariadb-install-db", "mariadb-backup", "mbstream", "mariadb-dump", "mariadb-binlog", "mariadb"]) throws {
    for name in names where !ChildProcess.isAvailable(name) {
        throw TestSupportError("\(name) is not installed; run scripts/install.sh first (it installs mariadb-server, mariadb-backup, mariadb-client and sysbench)")
    }
}

public struct TestSupportError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// A logger for tests: warnings and worse on stderr.
public let testLogger: Logger = {
    var logger = Logger(label: "cairn-test")
    logger.logLevel = ProcessInfo.processInfo.environment["CAIRN_TEST_LOG"].flatMap { Logger.Level(rawValue: $0) } ?? .warning
    return logger
}()

/// A real `mariadbd` in a private temporary directory, with binary logs in
/// ROW format and GTIDs, root without a password on its socket.
public final class TestServer: Sendable {
    public let directory: TemporaryDirectory
    public let mysqld: Mysqld
    public var dataDirectory: String { mysqld.options.dataDirectory }
    public var socketPath: String { mysqld.socketPath }
    public var port: Int? { mysqld.options.port }

    private init(directory: TemporaryDirectory, mysqld: Mysqld) {
        self.directory = directory
        self.mysqld = mysqld
    }

    /// Initializes and starts a server. `port` turns on TCP on 127.0.0.1 (for replication).
    public static func start(serverID: UInt32 = 1, port: Int? = nil, extraArguments: [String] = []) async throws -> TestServer {
        try requireTools()
        let dir = try TemporaryDirectory(prefix: "cairn-test-mysql")
        let datadir = dir.file("data")
        do {
            try await Mysqld.initializeDataDirectory(datadir, rootAuthentication: .noPassword, logger: testLogger)
            var options = MysqldOptions(dataDirectory: datadir, socketPath: dir.file("mysqld.sock"), port: port, serverID: serverID)
            options.innodbBufferPoolSize = "64M"
            options.innodbLogFileSize = "48M"
            options.errorLogPath = dir.file("mariadbd.err")
            options.extraArguments = extraArguments
            let mysqld = try await Mysqld.start(options, logger: testLogger)
            return TestServer(directory: dir, mysqld: mysqld)
        } catch {
            dir.remove()
            throw error
        }
    }

    /// Starts a server on an existing data directory (a restored one).
    public static func start(existingDataDirectory datadir: String, serverID: UInt32 = 2, user: String = "root") async throws -> TestServer {
        try requireTools()
        let dir = try TemporaryDirectory(prefix: "cairn-test-mysql")
        var options = MysqldOptions(dataDirectory: datadir, socketPath: dir.file("mysqld.sock"), port: nil, serverID: serverID)
        options.innodbBufferPoolSize = "64M"
        options.errorLogPath = dir.file("mariadbd.err")
        options.pidFilePath = dir.file("mariadbd.pid")
        options.extraArguments = ["--skip-slave-start"]
        do {
            let mysqld = try await Mysqld.start(options, user: user, logger: testLogger)
            return TestServer(directory: dir, mysqld: mysqld)
        } catch {
            dir.remove()
            throw error
        }
    }

    public var connectionConfiguration: MySQLConnectionConfiguration { mysqld.connectionConfiguration() }

    public func connect() async throws -> MySQLConnection {
        try await mysqld.connect()
    }

    /// Runs SQL and returns the result.
    @discardableResult
    public func query(_ sql: String) async throws -> MySQLResult {
        try await MySQLConnection.with(connectionConfiguration, logger: testLogger) { try await $0.query(sql) }
    }

    public func gtidBinlogPosition() async throws -> ReplicationPosition {
        try await MySQLConnection.with(connectionConfiguration, logger: testLogger) { try await $0.serverInfo().gtidBinlogPosition }
    }

    public func variable(_ name: String) async throws -> String? {
        try await query("SELECT @@\(name)").scalar
    }

    /// `CHECKSUM TABLE` of every base table of `database`, by table name.
    public func checksums(database: String = "sbtest") async throws -> [String: String] {
        let tables = try await query("SELECT table_name FROM information_schema.tables WHERE table_schema = \(MySQLConnection.quote(database)) AND table_type = 'BASE TABLE' ORDER BY table_name")
            .rows.compactMap { $0.first ?? nil }
        guard !tables.isEmpty else { return [:] }
        let list = tables.map { "\(MySQLConnection.quoteIdentifier(database)).\(MySQLConnection.quoteIdentifier($0))" }.joined(separator: ", ")
        let result = try await query("CHECKSUM TABLE \(list)")
        var out: [String: String] = [:]
        for row in result.rows { out[row[0] ?? ""] = row[1] ?? "NULL" }
        return out
    }

    /// Stops the server cleanly and removes its directory.
    public func stop() async {
        try? await mysqld.stop()
        directory.remove()
    }

    /// Kills the server with SIGKILL, keeping its files; ``restart()`` starts it again.
    public func crash() async {
        await mysqld.kill()
    }

    /// Starts a crashed or stopped server again on the same data directory and socket.
    public func restart() async throws -> TestServer {
        var options = mysqld.options
        // The old process's private secure_file_priv and tmpdir went with it.
        options.secureFileDirectory = nil
        options.temporaryDirectory = nil
        return TestServer(directory: directory, mysqld: try await Mysqld.start(options, logger: testLogger))
    }

    /// Stops the server but keeps its files (to restart or inspect).
    public func stopKeepingFiles() async throws {
        try await mysqld.stop()
    }
}

/// Runs `body` with a started server and always stops it.
public func withTestServer<T>(serverID: UInt32 = 1, port: Int? = nil, _ body: (TestServer) async throws -> T) async throws -> T {
    let server = try await TestServer.start(serverID: serverID, port: port)
    do {
        let result = try await body(server)
        await server.stop()
        return result
    } catch {
        await server.stop()
        throw error
    }
}
