internal import CMariaDB
import CairnCore
import CairnSystem
import Foundation
import Logging
import Synchronization

/// One binary log event as the server sent it: the 19-byte header, the body
/// and (when the server logs checksums) the 4-byte CRC32, exactly as in a
/// binary log file.
public struct ReceivedBinlogEvent: Sendable {
    public var bytes: [UInt8]

    public init(bytes: [UInt8]) { self.bytes = bytes }

    /// The event type code (header byte 4).
    public var type: UInt8 { bytes.count > 4 ? bytes[4] : 0 }
}

struct ReplicationHandle: @unchecked Sendable {
    var mysql: UnsafeMutablePointer<MYSQL>?
    var rpl: UnsafeMutablePointer<MARIADB_RPL>?
    var event: UnsafeMutablePointer<MARIADB_RPL_EVENT>?

    mutating func close() {
        if let event { mariadb_free_rpl_event(event) }
        if let rpl { mariadb_rpl_close(rpl) }
        if let mysql { mysql_close(mysql) }
        event = nil
        rpl = nil
        mysql = nil
    }
}

/// A replication connection that receives a MariaDB server's binary log as
/// a replica would (`COM_BINLOG_DUMP` through libmariadb's `mariadb_rpl_*`
/// API), starting after a GTID position, with its own server id.
///
/// The server sends a heartbeat event whenever it has nothing else to send
/// for `heartbeatSeconds`, so ``fetch(maxBytes:maxWait:)`` returns at least
/// that often even on an idle server: a caller that wants to stop (shutdown)
/// never waits longer than one heartbeat, and a blocking-pool thread is held
/// only for one fetch at a time. A read timeout of a few heartbeats turns a
/// silent, dead connection into an error.
public final class BinlogStream: Sendable {
    private let handle: Mutex<ReplicationHandle>
    public let endpoint: MySQLConnectionConfiguration.Endpoint

    /// The MariaDB error for "the GTID position is not in any binary log"
    /// (ER_MASTER_FATAL_ERROR_READING_BINLOG): purged, or never there.
    public static let fatalReadingBinlogError: UInt32 = 1236
    /// Heartbeat event type.
    public static let heartbeatEventType: UInt8 = 27

    private init(handle: ReplicationHandle, endpoint: MySQLConnectionConfiguration.Endpoint) {
        self.handle = Mutex(handle)
        self.endpoint = endpoint
    }

    deinit {
        handle.withLock { $0.close() }
    }

    /// Connects and asks for every transaction after `start` (an empty
    /// position: from the oldest binary log the server has).
    public static func open(_ configuration: MySQLConnectionConfiguration, replicaServerID: UInt32,
                            start: ReplicationPosition, heartbeatSeconds: Double = 1,
                            logger: Logger) async throws -> BinlogStream {
        let endpoint = configuration.endpoint
        let readTimeout = UInt32(max(10, (heartbeatSeconds * 5).rounded(.up)))
        let handle = try await Blocking.run { () throws -> ReplicationHandle in
            _ = mysql_server_init(0, nil, nil)
            guard let mysql = mysql_init(nil) else {
                throw CairnError(.mysql, "could not allocate a MariaDB connection (out of memory)")
            }
            var h = ReplicationHandle(mysql: mysql)
            do {
                var timeout = configuration.connectTimeoutSeconds
                mysql_options(mysql, MYSQL_OPT_CONNECT_TIMEOUT, &timeout)
                var read = readTimeout
                mysql_options(mysql, MYSQL_OPT_READ_TIMEOUT, &read)
                var protocolValue: UInt32
                let host: String?
                let port: UInt32
                let socket: String?
                switch endpoint {
                case .socket(let path):
                    protocolValue = MYSQL_PROTOCOL_SOCKET.rawValue
                    host = "localhost"; port = 0; socket = path
                case .tcp(let hostName, let p):
                    protocolValue = MYSQL_PROTOCOL_TCP.rawValue
                    host = hostName; port = UInt32(p); socket = nil
                }
                mysql_options(mysql, MYSQL_OPT_PROTOCOL, &protocolValue)
                guard mysql_real_connect(mysql, host, configuration.user, configuration.password, nil, port, socket, 0) != nil else {
                    let code = mysql_errno(mysql)
                    let message = String(cString: mysql_error(mysql))
                    throw CairnError(.mysql, "could not connect to MariaDB at \(endpoint) as \(configuration.user) to receive its binary log: \(message) (error \(code)); check that mysqld is running there and the credentials are right")
                }
                let heartbeatNanoseconds = UInt64(heartbeatSeconds * 1_000_000_000)
                let setup = [
                    // Events arrive with the checksums the server logs them with, as in its files.
                    "SET @master_binlog_checksum = @@global.binlog_checksum",
                    // MARIA_SLAVE_CAPABILITY_GTID: GTID events, GTID-based start.
                    "SET @mariadb_slave_capability = 4",
                    "SET @slave_connect_state = \(MySQLConnection.quote(start.gtidText))",
                    "SET @slave_gtid_strict_mode = 0",
                    "SET @slave_gtid_ignore_duplicates = 0",
                    "SET @master_heartbeat_period = \(heartbeatNanoseconds)",
                ]
                for sql in setup where mysql_real_query(mysql, sql, UInt(sql.utf8.count)) != 0 {
                    throw MySQLConnection.error(mysql, sql: sql, endpoint: endpoint)
                }
                guard let rpl = cairn_rpl_init(mysql) else {
                    throw CairnError(.mysql, "could not start a replication stream from \(endpoint) (mariadb_rpl_init failed; is Connector/C 3.3 or newer installed?)")
                }
                h.rpl = rpl
                _ = cairn_rpl_set_server_id(rpl, replicaServerID)
                _ = cairn_rpl_set_flags(rpl, 0)
                _ = cairn_rpl_set_start(rpl, 4)
                if mariadb_rpl_open(rpl) != 0 {
                    throw BinlogStream.streamError(mysql, rpl, endpoint: endpoint, doing: "asking for the binary log")
                }
                return h
            } catch {
                h.close()
                throw error
            }
        }
        logger.info("receiving the binary log", metadata: [
            "endpoint": "\(endpoint)", "after": "\(start)", "replica_server_id": "\(replicaServerID)",
        ])
        return BinlogStream(handle: handle, endpoint: endpoint)
    }

    /// Receives events: waits for the first one (at most about one
    /// heartbeat), then takes what keeps arriving until `maxBytes` or
    /// `maxWait` seconds. A heartbeat ends the batch and is returned like
    /// any event.
    public func fetch(maxBytes: Int = 1 << 20, maxWait: Double = 0.05) async throws -> [ReceivedBinlogEvent] {
        let endpoint = self.endpoint
        return try await Blocking.run { [self] in
            try handle.withLock { h -> [ReceivedBinlogEvent] in
                guard let mysql = h.mysql, let rpl = h.rpl else {
                    throw CairnError(.mysql, "the binary log stream from \(endpoint) is closed")
                }
                var events: [ReceivedBinlogEvent] = []
                var bytes = 0
                var started: ContinuousClock.Instant? = nil
                while true {
                    guard let event = mariadb_rpl_fetch(rpl, h.event) else {
                        // mariadb_rpl_fetch frees the event it was handed when it fails.
                        h.event = nil
                        if !events.isEmpty { return events }
                        throw BinlogStream.streamError(mysql, rpl, endpoint: endpoint, doing: "receiving the binary log")
                    }
                    h.event = event
                    var length = 0
                    guard let start = cairn_rpl_event_bytes(event, &length), length >= 19 else {
                        throw CairnError(.mysql, "the server at \(endpoint) sent a binary log event shorter than its header; reconnecting may help")
                    }
                    let received = ReceivedBinlogEvent(bytes: Array(UnsafeBufferPointer(start: start, count: length)))
                    events.append(received)
                    bytes += length
                    if received.type == BinlogStream.heartbeatEventType || bytes >= maxBytes { return events }
                    let now = ContinuousClock.now
                    if let started {
                        if started.duration(to: now) >= .milliseconds(Int(maxWait * 1000)) { return events }
                    } else {
                        started = now
                    }
                }
            }
        }
    }

    /// Ends the stream and the connection.
    public func close() async {
        _ = try? await Blocking.run { [self] in
            handle.withLock { $0.close() }
        }
    }

    static func streamError(_ mysql: UnsafeMutablePointer<MYSQL>, _ rpl: UnsafeMutablePointer<MARIADB_RPL>,
                            endpoint: MySQLConnectionConfiguration.Endpoint, doing: String) -> CairnError {
        var code = mysql_errno(mysql)
        var message = String(cString: mysql_error(mysql))
        if code == 0 {
            code = mariadb_rpl_errno(rpl)
            message = String(cString: mariadb_rpl_error(rpl))
        }
        if code == fatalReadingBinlogError {
            return CairnError(.binlogsPurged, "MariaDB at \(endpoint) cannot send its binary log from the requested position: \(message) (error \(code)); the binary logs holding it were purged before they were archived")
        }
        if code == 0 {
            return CairnError(.mysql, "MariaDB at \(endpoint) ended the binary log stream while \(doing); it may be shutting down, the archiver reconnects")
        }
        return CairnError(.mysql, "lost the binary log stream from MariaDB at \(endpoint) while \(doing): \(message) (error \(code)); the archiver reconnects")
    }
}
