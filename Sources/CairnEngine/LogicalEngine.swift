import CairnCore
import CairnMySQL
import CairnStorage
import CairnSystem
import Foundation
import Logging
import NIOCore
import Synchronization

/// Full backups with `mariadb-dump --single-transaction`: every user
/// database's schema, data, routines, triggers and events at one consistent
/// GTID position, and the server's accounts as a second file.
///
/// Accounts are dumped as the rows of the grant tables rather than with
/// `--system=users`, which fails on servers running with
/// `--skip-name-resolve` that have host-name accounts (their `SHOW CREATE
/// USER` finds no row); rows restore every account exactly.
enum LogicalEngine {
    static let fileStem = "dump.sql"
    static let accountsStem = "accounts.sql"
    static let systemSchemas: Set<String> = ["mysql", "information_schema", "performance_schema", "sys"]
    static let grantTables = ["global_priv", "db", "tables_priv", "columns_priv", "procs_priv", "proxies_priv", "roles_mapping"]

    static func backup(_ context: BackupContext, name: String, connection: MySQLConnection) async throws -> FullBackupResult {
        let schemas = try await connection.query("SELECT schema_name FROM information_schema.schemata ORDER BY schema_name")
            .rows.compactMap { $0.first ?? nil }.filter { !systemSchemas.contains($0) }
        var args = context.mysql.toolArguments + ["--single-transaction", "--master-data=2", "--gtid", "--hex-blob"]
        if schemas.isEmpty {
            // Nothing to dump but the position: name one system table and ask for none of it.
            args += ["--no-create-db", "--no-create-info", "--no-data", "--skip-triggers", "mysql", "db"]
        } else {
            args += ["--routines", "--triggers", "--events", "--databases"] + schemas
        }
        context.logger.info("running mariadb-dump", metadata: ["databases": "\(schemas.joined(separator: ","))"])
        let tail = DumpTail()
        let file = try await UploadPipeline.uploadOutput(
            of: "mariadb-dump", arguments: args, context: context, name: name, fileName: fileStem + context.compression.fileSuffix,
            inspect: { tail.append($0) },
            check: {
                guard tail.text.contains("-- Dump completed") else {
                    throw CairnError(.process, "mariadb-dump's output ended without its completion line; the dump is incomplete, retry the backup")
                }
            })
        let position = try parsePosition(dumpTail: tail.text)
        let accounts = try await backupAccounts(context, name: name)
        return FullBackupResult(files: [file, accounts], position: position)
    }

    /// The grant tables' rows as `REPLACE` statements.
    static func backupAccounts(_ context: BackupContext, name: String) async throws -> ManifestFile {
        let args = context.mysql.toolArguments + [
            "--single-transaction", "--no-create-info", "--replace", "--skip-triggers", "--hex-blob",
            "--skip-add-locks", "--skip-disable-keys", "mysql",
        ] + grantTables
        return try await UploadPipeline.uploadOutput(of: "mariadb-dump", arguments: args, context: context, name: name,
                                                     fileName: accountsStem + context.compression.fileSuffix,
                                                     doing: "mariadb-dump of the accounts of \(context.mysql.endpoint)")
    }

    /// Finds the dump's `-- SET GLOBAL gtid_slave_pos='...'` line (written near its end).
    static func parsePosition(dumpTail text: String) throws -> ReplicationPosition {
        let marker = "SET GLOBAL gtid_slave_pos='"
        for line in text.split(separator: "\n").reversed() {
            guard let range = line.range(of: marker) else { continue }
            let rest = line[range.upperBound...]
            guard let end = rest.firstIndex(of: "'") else { continue }
            return ReplicationPosition(mariadb: try MariaDBGTIDList(parsing: rest[..<end]))
        }
        throw CairnError(.process, "mariadb-dump did not report a GTID position; Cairn needs binary logging (log_bin) on the server, enable it and retry")
    }

    /// Loads a logical backup into a running temporary server: the
    /// databases, then the accounts, replacing the fresh directory's own
    /// (but not the restore's temporary account).
    static func load(_ manifest: BackupManifest, into server: RestoreServer, context: RestoreContext) async throws {
        guard let dump = manifest.files.first(where: { $0.name.hasPrefix(fileStem) }) else {
            throw CairnError(.manifest, "logical backup \(manifest.backupName) lists no \(fileStem) file")
        }
        context.progress?.setPhase("loading \(manifest.backupName)")
        try await feed(dump, of: manifest, into: server, context: context)
        if let accounts = manifest.files.first(where: { $0.name.hasPrefix(accountsStem) }) {
            context.progress?.setPhase("loading the accounts of \(manifest.backupName)")
            let ours = "User = '\(RestoreServer.account)' AND Host = 'localhost'"
            let clear = grantTables.map { table in
                table == "global_priv" || table == "proxies_priv"
                    ? "DELETE FROM mysql.\(table) WHERE NOT (\(ours));" : "DELETE FROM mysql.\(table);"
            }.joined(separator: "\n")
            try await feed(accounts, of: manifest, into: server, context: context,
                           prefix: clear + "\nUSE mysql;\n", suffix: "\nFLUSH PRIVILEGES;\n")
        }
    }

    /// Streams one stored SQL file into the server with the mariadb client.
    /// The load is not written to the binary log: the restored server's GTID
    /// state is set to the backup's position afterwards instead.
    static func feed(_ file: ManifestFile, of manifest: BackupManifest, into server: RestoreServer, context: RestoreContext,
                     prefix: String = "", suffix: String = "") async throws {
        let client = try ChildProcess("mariadb", arguments: server.clientArguments + ["--binary-mode", "--init-command=SET SESSION sql_log_bin=0"],
                                      environment: server.clientEnvironment, stdin: .pipe,
                                      stdout: .capture(limit: 16 * 1024), stderr: .capture(limit: 64 * 1024),
                                      logger: context.logger)
        do {
            if !prefix.isEmpty { try await client.write(ByteBuffer(string: prefix)) }
            _ = try await DownloadPipeline.download(
                file, key: context.repository.key(context.shard, manifest.backupName, file.name),
                from: context.storage, compression: manifest.compression,
                decryption: try context.fileKey(manifest, file),
                to: ProcessInputSink(client), progress: context.progress)
            if !suffix.isEmpty { try await client.write(ByteBuffer(string: suffix)) }
            try await client.checkSuccess(doing: "loading \(file.name) of backup \(manifest.backupName) into the restored server")
        } catch {
            client.kill()
            _ = await client.wait()
            throw error
        }
    }
}

/// Keeps the last 64 KiB of a stream: where mariadb-dump writes its position and completion line.
final class DumpTail: Sendable {
    let bytes = Mutex<[UInt8]>([])
    static let limit = 64 * 1024

    func append(_ chunk: ByteBuffer) {
        bytes.withLock { b in
            let view = chunk.readableBytesView
            if view.count >= DumpTail.limit {
                b = Array(view.suffix(DumpTail.limit))
            } else {
                b.append(contentsOf: view)
                if b.count > DumpTail.limit * 2 { b.removeFirst(b.count - DumpTail.limit) }
            }
        }
    }

    var text: String { bytes.withLock { String(decoding: $0.suffix(DumpTail.limit), as: UTF8.self) } }
}
