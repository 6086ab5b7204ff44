import CairnCore
import Foundation

/// What Cairn needs to know about a running MariaDB before backing it up.
public struct ServerInfo: Sendable, Hashable {
    public var serverID: UInt32
    public var version: String
    public var logBin: Bool
    public var binlogFormat: String
    public var dataDirectory: String
    /// `@@log_bin_basename`: where binary logs live, e.g. `/var/lib/mysql/binlog`.
    public var binlogBasename: String?
    /// `@@gtid_binlog_pos`: the last transaction written to the binary log, per domain.
    public var gtidBinlogPosition: ReplicationPosition
    public var flavor: ReplicationFlavor { .mariadb }
}

/// One binary log file on the server.
public struct BinaryLogFile: Sendable, Hashable {
    public var name: String
    public var size: Int64
}

extension MySQLConnection {
    /// Reads the server's identity and replication state.
    public func serverInfo() async throws -> ServerInfo {
        let r = try await query("SELECT @@server_id, @@version, @@log_bin, @@binlog_format, @@datadir, @@log_bin_basename, @@gtid_binlog_pos")
        guard let row = r.rows.first else {
            throw CairnError(.mysql, "MariaDB at \(configuration.endpoint) returned no server variables")
        }
        guard row[1]?.lowercased().contains("mariadb") == true else {
            throw CairnError(.mysql, "the server at \(configuration.endpoint) is \(row[1] ?? "unknown"), not MariaDB; this version of Cairn backs up MariaDB only")
        }
        return ServerInfo(
            serverID: UInt32(row[0] ?? "0") ?? 0,
            version: row[1] ?? "",
            logBin: row[2] == "1",
            binlogFormat: row[3] ?? "",
            dataDirectory: row[4] ?? "",
            binlogBasename: row[5],
            gtidBinlogPosition: ReplicationPosition(mariadb: try MariaDBGTIDList(parsing: row[6] ?? ""))
        )
    }

    /// `SHOW BINARY LOGS`, oldest first.
    public func binaryLogs() async throws -> [BinaryLogFile] {
        let r = try await query("SHOW BINARY LOGS")
        return r.rows.compactMap { row in
            guard let name = row.first ?? nil else { return nil }
            return BinaryLogFile(name: name, size: Int64(row.count > 1 ? row[1] ?? "0" : "0") ?? 0)
        }
    }

    /// The GTID position at the start of a binary log file: every
    /// transaction before it is in earlier files.
    public func binlogStartPosition(_ file: String) async throws -> ReplicationPosition {
        let text = try await scalar("SELECT BINLOG_GTID_POS(\(MySQLConnection.quote(file)), 4)")
        guard let text else {
            throw CairnError(.mysql, "MariaDB at \(configuration.endpoint) could not tell the GTID position at the start of \(file); the file may have been purged meanwhile, retry")
        }
        return ReplicationPosition(mariadb: try MariaDBGTIDList(parsing: text))
    }

    /// The oldest position still in the binary logs: transactions before it were purged.
    public func purgedPosition() async throws -> ReplicationPosition {
        guard let first = try await binaryLogs().first else { return .empty(.mariadb) }
        return try await binlogStartPosition(first.name)
    }
}
