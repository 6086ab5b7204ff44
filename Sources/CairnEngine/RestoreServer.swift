import CairnCore
import CairnMySQL
import CairnSystem
import Foundation
import Logging

/// A temporary `mariadbd` on a data directory being restored: networking
/// off, replication and the event scheduler off, binary logs on. Cairn
/// reaches it through a throw-away account created by `--init-file`, so the
/// restore works whatever accounts the backup carries, and drops it before
/// handing the directory over.
///
/// What it loads comes from storage, so it may have been edited: the server
/// reads and writes files only in an empty private `secure_file_priv`
/// directory (``Mysqld/start`` makes one), and neither it nor the client
/// feeding it honours `LOAD DATA LOCAL`, so a dump cannot read or write the
/// restore host's files that way.
final class RestoreServer: Sendable {
    static let account = "cairn_restore"

    let mysqld: Mysqld
    let scratch: String
    let password: String
    let logger: Logger

    var clientArguments: [String] { ["--socket=\(mysqld.socketPath)", "--user=\(RestoreServer.account)", "--local-infile=0"] }
    var clientEnvironment: [String: String] { ["MYSQL_PWD": password] }

    private init(mysqld: Mysqld, scratch: String, password: String, logger: Logger) {
        self.mysqld = mysqld
        self.scratch = scratch
        self.password = password
        self.logger = logger
    }

    static func start(dataDirectory: String, serverID: UInt32, logger: Logger) async throws -> RestoreServer {
        let scratch = try await FileSystem.Async.makeTemporaryDirectory(prefix: "cairn-restore")
        let password = (0..<24).map { _ in String("abcdefghijklmnopqrstuvwxyz0123456789".randomElement()!) }.joined()
        let initFile = "\(scratch)/init.sql"
        // The account may re-create every account of a dump, including the
        // PROXY grants that `GRANT` only lets a holder of PROXY ... WITH GRANT
        // OPTION give; an init file cannot GRANT that, so it is written directly.
        let sql = """
            SET SESSION sql_log_bin=0;
            CREATE OR REPLACE USER '\(account)'@'localhost' IDENTIFIED BY '\(password)';
            GRANT ALL PRIVILEGES ON *.* TO '\(account)'@'localhost' WITH GRANT OPTION;
            REPLACE INTO mysql.proxies_priv (Host, User, Proxied_host, Proxied_user, With_grant, Grantor)
                VALUES ('localhost', '\(account)', '%', '', 1, '\(account)@localhost');
            FLUSH PRIVILEGES;

            """
        guard FileManager.default.createFile(atPath: initFile, contents: Data(sql.utf8), attributes: [.posixPermissions: 0o600]) else {
            throw CairnError(.fileSystem, "could not write \(initFile); check free space in the temporary directory")
        }
        var options = MysqldOptions(dataDirectory: dataDirectory, socketPath: "\(scratch)/mysqld.sock", port: nil, serverID: serverID)
        options.errorLogPath = "\(scratch)/mariadbd.err"
        options.pidFilePath = "\(scratch)/mariadbd.pid"
        options.innodbBufferPoolSize = "256M"
        // The buffer pool is neither loaded (it would compete with the restore's own
        // I/O) nor dumped (the source's ib_buffer_pool stays for the real server).
        // Commits are not written or flushed one by one (the log is written
        // once a second): a restore that does not reach its clean shutdown is
        // unfinished anyway (its marker stays and it must run again), and the
        // shutdown writes and flushes everything committed. This is what lets a
        // replay go faster than the source wrote. InnoDB reads through the page
        // cache (`fsync`, not MariaDB's default `O_DIRECT`): the restore has just
        // written the data files, so with a buffer pool smaller than the data
        // the pages a replay needs come from memory instead of the disk. By
        // hand, both took the chain restore of docs/BENCHMARKS.md (100,008
        // transactions) from 43.5 to 22.1 s.
        options.extraArguments = ["--init-file=\(initFile)", "--skip-slave-start", "--event-scheduler=OFF",
                                  "--innodb-buffer-pool-load-at-startup=OFF", "--innodb-buffer-pool-dump-at-shutdown=OFF",
                                  "--innodb-flush-log-at-trx-commit=0", "--sync-binlog=0", "--innodb-doublewrite=0",
                                  "--innodb-flush-method=fsync",
                                  // Binary logs are replayed as relay logs under this name (RelayLogReplay); the
                                  // SQL thread writes what it applies to the binary log because MysqldOptions
                                  // turns log_slave_updates on, and RelayLogReplay checks that it did.
                                  "--relay-log=\(RelayLogReplay.relayBasename)"]
        do {
            let mysqld = try await Mysqld.start(options, user: account, password: password, logger: logger)
            try? FileManager.default.removeItem(atPath: initFile)
            return RestoreServer(mysqld: mysqld, scratch: scratch, password: password, logger: logger)
        } catch {
            try? FileManager.default.removeItem(atPath: scratch)
            throw error
        }
    }

    @discardableResult
    func withConnection<T: Sendable>(_ body: (MySQLConnection) async throws -> T) async throws -> T {
        try await MySQLConnection.with(mysqld.connectionConfiguration(user: RestoreServer.account, password: password),
                                       logger: logger, body)
    }

    /// Makes the server's GTID state exactly `position`: its binary log
    /// continues from there and it could replicate from the source.
    func setGTIDState(_ position: ReplicationPosition) async throws {
        var sql = "SET SESSION sql_log_bin=0; RESET MASTER;"
        if !position.isEmpty {
            let text = MySQLConnection.quote(position.gtidText)
            sql += " SET GLOBAL gtid_binlog_state=\(text); SET GLOBAL gtid_slave_pos=\(text);"
        } else {
            sql += " SET GLOBAL gtid_slave_pos='';"
        }
        try await withConnection { try await $0.query(sql) }
    }

    /// The server's `@@gtid_binlog_pos`.
    func binlogPosition() async throws -> ReplicationPosition {
        let text = try await withConnection { try await $0.scalar("SELECT @@gtid_binlog_pos") }
        return ReplicationPosition(mariadb: try MariaDBGTIDList(parsing: text ?? ""))
    }

    /// Sets `gtid_slave_pos` to what was applied, drops the restore account,
    /// and shuts the server down cleanly.
    func finish() async throws {
        try await withConnection {
            try await $0.query("SET SESSION sql_log_bin=0; SET GLOBAL gtid_slave_pos=@@gtid_binlog_pos; DROP USER IF EXISTS '\(RestoreServer.account)'@'localhost'")
        }
        try await mysqld.stop()
        try? FileManager.default.removeItem(atPath: scratch)
    }

    /// Stops the server at once after a failure.
    func abandon() async {
        await mysqld.kill()
        try? FileManager.default.removeItem(atPath: scratch)
    }

    var errorLogTail: String { mysqld.errorLogTail() }
}
