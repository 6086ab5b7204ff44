import ArgumentParser
import CairnCore
import CairnMySQL
import CairnStorage
import CairnSystem
import Foundation
import Logging

/// Options accepted before the verb as well as after it (`cairn --server X Backup ks/0`).
enum GlobalOptions {
    static let names = ["--server", "--auth-token-file"]

    /// Moves global options written before the verb to after it, where the verb parses them.
    static func hoist(_ arguments: [String]) -> [String] {
        var leading: [String] = []
        var i = 0
        while i < arguments.count {
            let arg = arguments[i]
            if names.contains(arg), i + 1 < arguments.count {
                leading += [arg, arguments[i + 1]]
                i += 2
            } else if names.contains(where: { arg.hasPrefix($0 + "=") }) {
                leading.append(arg)
                i += 1
            } else {
                break
            }
        }
        guard !leading.isEmpty, i < arguments.count else { return arguments }
        let verb = arguments[i]
        return [verb] + leading + arguments[(i + 1)...]
    }
}

/// Where backups are kept and how Cairn is configured.
struct StorageOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The configuration file (JSON; the seed's vtbackup.json works as is). Default: $CAIRN_CONFIG.", valueName: "file"))
    var config: String?

    @Option(name: .long, help: ArgumentHelp("The backup storage URL: file:///path, s3://bucket[/prefix] or gs://bucket[/prefix]; overrides the configuration's bucket.", valueName: "url"))
    var storage: String?

    /// Whether the verb reads storage itself rather than asking ctld.
    var isDirect: Bool {
        storage != nil || config != nil || ProcessInfo.processInfo.environment["CAIRN_CONFIG"] != nil
    }

    func loadConfiguration() throws -> CairnConfiguration {
        if let path = config ?? ProcessInfo.processInfo.environment["CAIRN_CONFIG"] {
            return try CairnConfiguration.load(file: path)
        }
        return CairnConfiguration()
    }

    func makeStorage(_ configuration: CairnConfiguration, logger: Logger) throws -> any BackupStorage {
        guard let url = storage ?? configuration.bucket else {
            throw CairnError(.usage, "no backup storage given; pass --storage URL (e.g. file:///var/backups/cairn) or --config with a \"bucket\"")
        }
        return try StorageFactory.make(url: url, configuration: configuration, logger: logger)
    }

    /// Opens the storage, runs `body`, and releases the storage's connections.
    func withStorage<T: Sendable>(_ configuration: CairnConfiguration, logger: Logger,
                                  _ body: (any BackupStorage) async throws -> T) async throws -> T {
        let storage = try makeStorage(configuration, logger: logger)
        return try await storage.shuttingDown { try await body(storage) }
    }
}

/// How to reach the local mysqld in direct mode.
struct MySQLOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The mysqld's Unix socket.", valueName: "path"))
    var mysqlSocket: String?

    @Option(name: .long, help: ArgumentHelp("The mysqld's TCP port on --mysql-host (instead of a socket).", valueName: "port"))
    var mysqlPort: Int?

    @Option(name: .long, help: ArgumentHelp("The mysqld's host for TCP connections.", valueName: "host"))
    var mysqlHost: String = "127.0.0.1"

    @Option(name: .long, help: ArgumentHelp("The MariaDB account (default: the configuration's mysql_user, else root).", valueName: "user"))
    var mysqlUser: String?

    @Option(name: .long, help: ArgumentHelp("A file holding the account's password (default: the configuration's mysql_password_file, else $MYSQL_PWD).", valueName: "file"))
    var mysqlPasswordFile: String?

    func connection(_ configuration: CairnConfiguration) throws -> MySQLConnectionConfiguration {
        let endpoint: MySQLConnectionConfiguration.Endpoint
        if let socket = mysqlSocket {
            // Tools run from other directories: pass them an absolute path.
            endpoint = .socket(URL(fileURLWithPath: socket).standardizedFileURL.path)
        } else if let port = mysqlPort {
            endpoint = .tcp(host: mysqlHost, port: port)
        } else {
            throw CairnError(.usage, "direct mode needs the server: pass --mysql-socket PATH (or --mysql-port PORT)")
        }
        var password = ProcessInfo.processInfo.environment["MYSQL_PWD"]
        if let file = mysqlPasswordFile ?? configuration.mysqlPasswordFile {
            guard let text = try? String(contentsOfFile: file, encoding: .utf8) else {
                throw CairnError(.configuration, "cannot read the MariaDB password file \(file)")
            }
            password = text.trimmingCharacters(in: .newlines)
        }
        return MySQLConnectionConfiguration(endpoint: endpoint, user: mysqlUser ?? configuration.mysqlUser ?? "root",
                                            password: password)
    }
}

/// Output and logging.
struct OutputOptions: ParsableArguments {
    @Flag(name: .long, help: "Print machine-readable JSON.")
    var json = false

    @Option(name: .long, help: ArgumentHelp("Log level on stderr: trace, debug, info, notice, warning, error (default: $CAIRN_LOG_LEVEL, else warning).", valueName: "level"))
    var logLevel: String?

    func makeLogger(label: String = "cairn", defaultLevel: String = "warning") -> Logger {
        let text = logLevel ?? ProcessInfo.processInfo.environment["CAIRN_LOG_LEVEL"] ?? defaultLevel
        let level = Logger.Level(rawValue: text.lowercased()) ?? .warning
        LoggingBootstrap.once(level: level)
        var logger = Logger(label: label)
        logger.logLevel = level
        return logger
    }
}

enum LoggingBootstrap {
    nonisolated(unsafe) static var done = false
    static func once(level: Logger.Level) {
        guard !done else { return }
        done = true
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }
}

/// Parses `--to-time`: an RFC 3339 time, taken to its second (everything
/// committed before that second).
func parseRestoreTime(_ text: String) throws -> Date {
    guard let date = UTCTime.parseRFC3339(text) else {
        throw CairnError(.usage, "--to-time \(text) is not an RFC 3339 time; write e.g. 2026-11-25T14:00:00Z")
    }
    return Date(timeIntervalSince1970: floor(date.timeIntervalSince1970))
}
