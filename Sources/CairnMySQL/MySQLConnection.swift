internal import CMariaDB
import CairnCore
import CairnSystem
import Foundation
import Logging
import Synchronization

/// Where and as whom to connect to MariaDB.
public struct MySQLConnectionConfiguration: Sendable, Hashable {
    public enum Endpoint: Sendable, Hashable, CustomStringConvertible {
        case socket(String)
        case tcp(host: String, port: Int)

        public var description: String {
            switch self {
            case .socket(let path): "socket \(path)"
            case .tcp(let host, let port): "\(host):\(port)"
            }
        }
    }

    public var endpoint: Endpoint
    public var user: String
    /// Never logged or printed.
    public var password: String?
    public var database: String?
    public var connectTimeoutSeconds: UInt32

    public init(endpoint: Endpoint, user: String = "root", password: String? = nil,
                database: String? = nil, connectTimeoutSeconds: UInt32 = 10) {
        self.endpoint = endpoint
        self.user = user
        self.password = password
        self.database = database
        self.connectTimeoutSeconds = connectTimeoutSeconds
    }

    /// Environment for MariaDB's command-line tools so the password never
    /// appears in a process's arguments.
    public var toolEnvironment: [String: String] {
        guard let password else { return [:] }
        return ["MYSQL_PWD": password]
    }

    /// Connection arguments for MariaDB's command-line tools (without the password).
    public var toolArguments: [String] {
        var args: [String]
        switch endpoint {
        case .socket(let path): args = ["--socket=\(path)"]
        case .tcp(let host, let port): args = ["--host=\(host)", "--port=\(port)"]
        }
        args.append("--user=\(user)")
        return args
    }
}

/// An error MariaDB returned, with its code and message.
public struct MySQLServerError: Error, Sendable, CustomStringConvertible {
    public var code: UInt32
    public var sqlState: String
    public var message: String
    public var description: String { "error \(code) (\(sqlState)): \(message)" }
}

/// The rows of a query, as text.
public struct MySQLResult: Sendable {
    public var columns: [String]
    public var rows: [[String?]]

    /// The single value of a one-row, one-column result.
    public var scalar: String? { rows.first?.first ?? nil }

    /// The value of `column` in each row.
    public func values(_ column: String) -> [String?] {
        guard let i = columns.firstIndex(where: { $0.lowercased() == column.lowercased() }) else { return [] }
        return rows.map { $0[i] }
    }
}

struct MySQLHandle: @unchecked Sendable {
    var pointer: UnsafeMutablePointer<MYSQL>?
}

private let libraryInit: Void = {
    _ = mysql_server_init(0, nil, nil)
}()

/// A connection to MariaDB through Connector/C. Calls are serialized and run
/// on the blocking pool, off Swift's cooperative threads.
public final class MySQLConnection: Sendable {
    private let handle: Mutex<MySQLHandle>
    public let configuration: MySQLConnectionConfiguration
    private let logger: Logger

    private init(handle: MySQLHandle, configuration: MySQLConnectionConfiguration, logger: Logger) {
        self.handle = Mutex(handle)
        self.configuration = configuration
        self.logger = logger
    }

    deinit {
        handle.withLock { h in
            if let p = h.pointer { mysql_close(p) }
            h.pointer = nil
        }
    }

    /// Connects, or throws a sentence naming the endpoint and the server's reason.
    public static func connect(_ configuration: MySQLConnectionConfiguration, logger: Logger) async throws -> MySQLConnection {
        _ = libraryInit
        let handle = try await Blocking.run { () throws -> MySQLHandle in
            guard let mysql = mysql_init(nil) else {
                throw CairnError(.mysql, "could not allocate a MariaDB connection (out of memory)")
            }
            var timeout = configuration.connectTimeoutSeconds
            mysql_options(mysql, MYSQL_OPT_CONNECT_TIMEOUT, &timeout)
            var protocolValue: UInt32
            let host: String?
            let port: UInt32
            let socket: String?
            switch configuration.endpoint {
            case .socket(let path):
                protocolValue = MYSQL_PROTOCOL_SOCKET.rawValue
                host = "localhost"; port = 0; socket = path
            case .tcp(let h, let p):
                protocolValue = MYSQL_PROTOCOL_TCP.rawValue
                host = h; port = UInt32(p); socket = nil
            }
            mysql_options(mysql, MYSQL_OPT_PROTOCOL, &protocolValue)
            let flags = UInt(CLIENT_MULTI_STATEMENTS | CLIENT_MULTI_RESULTS)
            let connected = mysql_real_connect(mysql, host, configuration.user, configuration.password,
                                               configuration.database, port, socket, flags)
            guard connected != nil else {
                let code = mysql_errno(mysql)
                let message = String(cString: mysql_error(mysql))
                mysql_close(mysql)
                throw CairnError(.mysql, "could not connect to MariaDB at \(configuration.endpoint) as \(configuration.user): \(message) (error \(code)); check that mysqld is running there and the credentials are right")
            }
            return MySQLHandle(pointer: mysql)
        }
        return MySQLConnection(handle: handle, configuration: configuration, logger: logger)
    }

    /// Runs one or more statements and returns the rows of the last result set.
    @discardableResult
    public func query(_ sql: String) async throws -> MySQLResult {
        let endpoint = configuration.endpoint
        return try await Blocking.run { [self] in
            try handle.withLock { h -> MySQLResult in
                guard let mysql = h.pointer else {
                    throw CairnError(.mysql, "the MariaDB connection to \(endpoint) is closed")
                }
                if mysql_real_query(mysql, sql, UInt(sql.utf8.count)) != 0 {
                    throw MySQLConnection.error(mysql, sql: sql, endpoint: endpoint)
                }
                var last = MySQLResult(columns: [], rows: [])
                while true {
                    if let res = mysql_store_result(mysql) {
                        defer { mysql_free_result(res) }
                        let count = Int(mysql_num_fields(res))
                        var columns: [String] = []
                        if let fields = mysql_fetch_fields(res) {
                            for i in 0..<count { columns.append(String(cString: fields[i].name)) }
                        }
                        var rows: [[String?]] = []
                        while let row = mysql_fetch_row(res) {
                            let lengths = mysql_fetch_lengths(res)
                            var values: [String?] = []
                            values.reserveCapacity(count)
                            for i in 0..<count {
                                if let cell = row[i] {
                                    let len = Int(lengths?[i] ?? 0)
                                    let bytes = UnsafeRawBufferPointer(start: cell, count: len)
                                    values.append(String(decoding: bytes, as: UTF8.self))
                                } else {
                                    values.append(nil)
                                }
                            }
                            rows.append(values)
                        }
                        last = MySQLResult(columns: columns, rows: rows)
                    } else if mysql_field_count(mysql) != 0 {
                        throw MySQLConnection.error(mysql, sql: sql, endpoint: endpoint)
                    }
                    let next = mysql_next_result(mysql)
                    if next == -1 { break }
                    if next > 0 { throw MySQLConnection.error(mysql, sql: sql, endpoint: endpoint) }
                }
                return last
            }
        }
    }

    /// Connects, runs `body`, and closes the connection whatever happens.
    public static func with<T: Sendable>(_ configuration: MySQLConnectionConfiguration, logger: Logger,
                                         isolation: isolated (any Actor)? = #isolation,
                                         _ body: (MySQLConnection) async throws -> T) async throws -> T {
        let connection = try await connect(configuration, logger: logger)
        do {
            let result = try await body(connection)
            await connection.close()
            return result
        } catch {
            await connection.close()
            throw error
        }
    }

    /// The single value a query returns.
    public func scalar(_ sql: String) async throws -> String? {
        try await query(sql).scalar
    }

    /// Closes the connection.
    public func close() async {
        _ = try? await Blocking.run { [self] in
            handle.withLock { h in
                if let p = h.pointer { mysql_close(p) }
                h.pointer = nil
            }
        }
    }

    static func error(_ mysql: UnsafeMutablePointer<MYSQL>, sql: String, endpoint: MySQLConnectionConfiguration.Endpoint) -> CairnError {
        let code = mysql_errno(mysql)
        let message = String(cString: mysql_error(mysql))
        // Statements that carry a password are never repeated in messages.
        let lowered = sql.lowercased()
        let statement = lowered.contains("password") || lowered.contains("identified") ? "a statement with credentials"
            : sql.count > 120 ? String(sql.prefix(117)) + "..." : sql
        return CairnError(.mysql, "MariaDB at \(endpoint) refused \"\(statement)\": \(message) (error \(code))")
    }

    /// Quotes a string literal for SQL.
    public static func quote(_ value: String) -> String {
        var out = "'"
        for c in value.unicodeScalars {
            switch c {
            case "'": out += "''"
            case "\\": out += "\\\\"
            case "\0": out += "\\0"
            default: out.unicodeScalars.append(c)
            }
        }
        return out + "'"
    }

    /// Quotes an identifier for SQL.
    public static func quoteIdentifier(_ name: String) -> String {
        "`" + name.replacingOccurrences(of: "`", with: "``") + "`"
    }
}
