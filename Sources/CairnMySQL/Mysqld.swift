#if canImport(Glibc)
import Glibc
#endif
import CairnCore
import CairnSystem
import Foundation
import Logging

/// How to run one `mariadbd`.
public struct MysqldOptions: Sendable, Hashable {
    public var dataDirectory: String
    /// The Unix socket (at most 107 bytes long).
    public var socketPath: String
    /// A TCP port on 127.0.0.1, or nil to keep networking off.
    public var port: Int?
    public var bindAddress: String = "127.0.0.1"
    public var serverID: UInt32
    /// Write binary logs (ROW format, GTIDs) under this base name; nil turns them off.
    public var binlogBasename: String?
    public var innodbBufferPoolSize: String = "128M"
    public var innodbLogFileSize: String? = nil
    public var errorLogPath: String
    public var pidFilePath: String
    /// `secure_file_priv`: the only directory `SELECT ... INTO OUTFILE`,
    /// `LOAD DATA INFILE` and `LOAD_FILE()` may touch. Nil makes ``Mysqld/start``
    /// create an empty private one for the server's lifetime; Cairn never
    /// starts a server that may read or write any file its OS user can.
    public var secureFileDirectory: String? = nil
    /// `tmpdir`. Nil makes ``Mysqld/start`` create a private one for the
    /// server's lifetime: a starting mariadbd deletes every `#sql*` file in
    /// its tmpdir (`mysql_rm_tmp_tables`), so servers that share one (a
    /// restore or drill server beside a tablet's, or the servers of a test
    /// run) would delete each other's temporary tables in use.
    public var temporaryDirectory: String? = nil
    public var extraArguments: [String] = []

    /// Defaults that keep every file of the instance under `dataDirectory`
    /// except the socket, which may need a shorter path.
    public init(dataDirectory: String, socketPath: String, port: Int? = nil, serverID: UInt32,
                binlogs: Bool = true) {
        self.dataDirectory = dataDirectory
        self.socketPath = socketPath
        self.port = port
        self.serverID = serverID
        self.binlogBasename = binlogs ? (dataDirectory as NSString).appendingPathComponent("binlog") : nil
        self.errorLogPath = (dataDirectory as NSString).appendingPathComponent("mariadbd.err")
        self.pidFilePath = (dataDirectory as NSString).appendingPathComponent("mariadbd.pid")
    }

    /// The `mariadbd` command line.
    public var arguments: [String] {
        var args = [
            "--no-defaults",
            "--datadir=\(dataDirectory)",
            "--socket=\(socketPath)",
            "--pid-file=\(pidFilePath)",
            "--log-error=\(errorLogPath)",
            "--server-id=\(serverID)",
            "--innodb-buffer-pool-size=\(innodbBufferPoolSize)",
            "--skip-name-resolve",
            "--gtid-strict-mode=ON",
            "--log-slave-updates=ON",
            // Clients may not make the server read files from their host.
            "--local-infile=0",
        ]
        if let secureFileDirectory { args.append("--secure-file-priv=\(secureFileDirectory)") }
        if let temporaryDirectory { args.append("--tmpdir=\(temporaryDirectory)") }
        if let innodbLogFileSize { args.append("--innodb-log-file-size=\(innodbLogFileSize)") }
        if let port {
            args += ["--port=\(port)", "--bind-address=\(bindAddress)"]
        } else {
            args.append("--skip-networking")
        }
        if let binlogBasename {
            args += ["--log-bin=\(binlogBasename)", "--binlog-format=ROW"]
        }
        if geteuid() == 0 {
            args.append("--user=root")
        }
        return args + extraArguments
    }
}

/// A `mariadbd` that Cairn started: for tests, the local cluster and the
/// temporary servers of a restore. It initializes data directories, starts
/// the server, waits until it answers and stops it cleanly.
public final class Mysqld: Sendable {
    public let options: MysqldOptions
    let process: ChildProcess
    let logger: Logger
    /// The private `secure_file_priv` directory made for this server, removed when it stops.
    let ownedFileDirectory: String?

    public var socketPath: String { options.socketPath }
    public var pid: Int32 { process.pid }

    /// How tools and connections reach this server as `user` (root by default, no password).
    public func connectionConfiguration(user: String = "root", password: String? = nil) -> MySQLConnectionConfiguration {
        MySQLConnectionConfiguration(endpoint: .socket(options.socketPath), user: user, password: password)
    }

    /// Who can log in to a freshly initialized data directory.
    public enum RootAuthentication: Sendable {
        /// root without a password at localhost, 127.0.0.1 and ::1: anyone on
        /// the host is root in MariaDB, over TCP too when networking is on.
        /// For test servers only.
        case noPassword
        /// root and the current OS user, through the Unix socket only
        /// (`unix_socket`: the OS user must match) and no account on TCP.
        /// Servers the tablet initializes, restored data directories.
        case unixSocket
    }

    /// Creates a new data directory with `mariadb-install-db`.
    public static func initializeDataDirectory(_ path: String, rootAuthentication: RootAuthentication,
                                               logger: Logger) async throws {
        try await FileSystem.Async.createDirectory(path)
        // A private temporary directory: bootstraps running side by side must not share /tmp's temporary tables.
        let scratch = try await FileSystem.Async.makeTemporaryDirectory(prefix: "cairn-install-db")
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        var args = ["--no-defaults", "--datadir=\(path)", "--skip-test-db", "--tmpdir=\(scratch)"]
        switch rootAuthentication {
        case .noPassword:
            args.append("--auth-root-authentication-method=normal")
        case .unixSocket:
            args += ["--auth-root-authentication-method=socket", "--auth-root-socket-user=\(currentUserName)"]
        }
        if geteuid() == 0 { args.append("--user=root") }
        logger.debug("initializing data directory", metadata: ["datadir": "\(path)"])
        try await ChildProcess.run("mariadb-install-db", args, doing: "initializing the MariaDB data directory \(path)", logger: logger)
    }

    /// The name of the OS user Cairn runs as.
    public static var currentUserName: String {
        if let pw = getpwuid(geteuid()), let name = pw.pointee.pw_name { return String(cString: name) }
        return "root"
    }

    private init(options: MysqldOptions, process: ChildProcess, ownedFileDirectory: String?, logger: Logger) {
        self.options = options
        self.process = process
        self.ownedFileDirectory = ownedFileDirectory
        self.logger = logger
    }

    /// Starts `mariadbd` and returns once it accepts connections as `user`.
    public static func start(_ options: MysqldOptions, user: String = "root", password: String? = nil,
                             timeoutSeconds: Double = 120, logger: Logger) async throws -> Mysqld {
        try? FileManager.default.removeItem(atPath: options.socketPath)
        var options = options
        var ownedFileDirectory: String? = nil
        if options.secureFileDirectory == nil || options.temporaryDirectory == nil {
            // One private directory: `files/` for secure_file_priv, `tmp/` for tmpdir.
            let directory = try await FileSystem.Async.makeTemporaryDirectory(prefix: "cairn-mysqld-files")
            ownedFileDirectory = directory
            do {
                if options.secureFileDirectory == nil {
                    try await FileSystem.Async.createDirectory("\(directory)/files")
                    options.secureFileDirectory = "\(directory)/files"
                }
                if options.temporaryDirectory == nil {
                    try await FileSystem.Async.createDirectory("\(directory)/tmp")
                    options.temporaryDirectory = "\(directory)/tmp"
                }
            } catch {
                try? FileManager.default.removeItem(atPath: directory)
                throw error
            }
        }
        let process: ChildProcess
        do {
            process = try ChildProcess("mariadbd", arguments: options.arguments,
                                       stdout: .null, stderr: .capture(limit: 16 * 1024), logger: logger)
        } catch {
            if let ownedFileDirectory { try? FileManager.default.removeItem(atPath: ownedFileDirectory) }
            throw error
        }
        let server = Mysqld(options: options, process: process, ownedFileDirectory: ownedFileDirectory, logger: logger)
        logger.debug("starting mariadbd", metadata: ["datadir": "\(options.dataDirectory)", "pid": "\(process.pid)"])
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        let config = MySQLConnectionConfiguration(endpoint: .socket(options.socketPath), user: user, password: password,
                                                  connectTimeoutSeconds: 2)
        while true {
            if let exit = server.process.exitedStatus() {
                server.removeFileDirectory()
                throw CairnError(.mysql, "mariadbd on \(options.dataDirectory) stopped while starting (\(exit))\(ChildProcess.summarize(server.errorLogTail()))")
            }
            if FileManager.default.fileExists(atPath: options.socketPath),
               let connection = try? await MySQLConnection.connect(config, logger: logger) {
                await connection.close()
                return server
            }
            if Date() > deadline {
                process.kill(SIGKILL)
                _ = await process.wait()
                server.removeFileDirectory()
                throw CairnError(.mysql, "mariadbd on \(options.dataDirectory) did not accept connections within \(Int(timeoutSeconds))s\(ChildProcess.summarize(server.errorLogTail()))")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    /// The last lines of the server's error log.
    public func errorLogTail(lines: Int = 5) -> String {
        guard let text = try? String(contentsOfFile: options.errorLogPath, encoding: .utf8) else { return "" }
        let important = text.split(separator: "\n").filter { $0.contains("[ERROR]") }
        let chosen = important.isEmpty ? text.split(separator: "\n").suffix(lines) : important.suffix(lines)
        return chosen.joined(separator: "\n")
    }

    /// Opens a connection as `user`.
    public func connect(user: String = "root", password: String? = nil) async throws -> MySQLConnection {
        try await MySQLConnection.connect(connectionConfiguration(user: user, password: password), logger: logger)
    }

    /// Stops the server cleanly (SIGTERM, which makes mariadbd shut down
    /// normally) and waits; kills it if it has not stopped in `timeoutSeconds`.
    public func stop(timeoutSeconds: Double = 120) async throws {
        if let exit = process.exitedStatus() {
            logger.debug("mariadbd already stopped", metadata: ["status": "\(exit)"])
            removeFileDirectory()
            return
        }
        process.kill(SIGTERM)
        // Unstructured on purpose, and owned here: the waiter is awaited and
        // the timer cancelled below. As child tasks they would inherit the
        // caller's cancellation (a tablet stopping mid-job), and the timer
        // would then either kill mariadbd at once or never, where the rule is
        // a clean shutdown with SIGKILL only after `timeoutSeconds`.
        let waiter = Task { await process.wait() }
        let timer = Task {
            try await Task.sleep(for: .seconds(timeoutSeconds))
            process.kill(SIGKILL)
        }
        let exit = await waiter.value
        timer.cancel()
        removeFileDirectory()
        guard exit.succeeded else {
            throw CairnError(.mysql, "mariadbd on \(options.dataDirectory) did not shut down cleanly (\(exit))\(ChildProcess.summarize(errorLogTail()))")
        }
    }

    /// Kills the server at once (tests of crashes, cleanup after failures).
    public func kill() async {
        process.kill(SIGKILL)
        _ = await process.wait()
        removeFileDirectory()
    }

    /// Removes the `secure_file_priv` directory made for this server (once it has stopped).
    func removeFileDirectory() {
        if let ownedFileDirectory { try? FileManager.default.removeItem(atPath: ownedFileDirectory) }
    }
}
