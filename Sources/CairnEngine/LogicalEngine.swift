import CairnCore
import CairnMySQL
import CairnStorage
import CairnSystem
import Foundation
import Logging
import NIOCore
import Synchronization

/// Full backups with `mariadb-dump --single-transaction`: every user
/// database's schema, data, routines, triggers and events, and the server's
/// accounts, at one consistent GTID position.
enum LogicalEngine {
    static let fileStem = "dump.sql"
    static let systemSchemas: Set<String> = ["mysql", "information_schema", "performance_schema", "sys"]

    static func backup(_ context: BackupContext, name: String, connection: MySQLConnection) async throws -> FullBackupResult {
        let schemas = try await connection.query("SELECT schema_name FROM information_schema.schemata ORDER BY schema_name")
            .rows.compactMap { $0.first ?? nil }.filter { !systemSchemas.contains($0) }
        var args = context.mysql.toolArguments + [
            "--single-transaction", "--master-data=2", "--gtid",
            "--routines", "--triggers", "--events", "--hex-blob",
            // Accounts as CREATE OR REPLACE USER, so a restore carries the source's.
            "--system=users", "--replace",
        ]
        if !schemas.isEmpty { args += ["--databases"] + schemas }
        context.logger.info("running mariadb-dump", metadata: ["databases": "\(schemas.joined(separator: ","))"])
        let process = try ChildProcess("mariadb-dump", arguments: args, environment: context.mysql.toolEnvironment,
                                       stdout: .pipe, stderr: .capture(limit: 64 * 1024), logger: context.logger)
        let tail = DumpTail()
        let fileName = fileStem + context.compression.fileSuffix
        let file: ManifestFile
        do {
            file = try await UploadPipeline.upload(
                from: ProcessOutputSource(process), to: context.storage,
                key: context.repository.key(context.shard, name, fileName), fileName: fileName,
                compression: context.compression, progress: context.progress,
                inspect: { tail.append($0) },
                beforeFinish: {
                    try await process.checkSuccess(doing: "mariadb-dump of \(context.mysql.endpoint)")
                    guard tail.text.contains("-- Dump completed") else {
                        throw CairnError(.process, "mariadb-dump's output ended without its completion line; the dump is incomplete, retry the backup")
                    }
                })
        } catch {
            process.kill()
            _ = await process.wait()
            throw error
        }
        let position = try parsePosition(dumpTail: tail.text)
        return FullBackupResult(files: [file], position: position)
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

    /// Loads a logical backup into a running temporary server.
    static func load(_ manifest: BackupManifest, into server: RestoreServer, context: RestoreContext) async throws {
        guard let file = manifest.files.first, manifest.files.count == 1 else {
            throw CairnError(.manifest, "logical backup \(manifest.backupName) should hold one data file but lists \(manifest.files.count)")
        }
        context.progress?.setPhase("loading \(manifest.backupName)")
        // The load is not written to the binary log: the restored server's
        // GTID state is set to the backup's position afterwards instead.
        let client = try ChildProcess("mariadb", arguments: server.clientArguments + ["--binary-mode", "--init-command=SET SESSION sql_log_bin=0"],
                                      environment: server.clientEnvironment, stdin: .pipe,
                                      stdout: .capture(limit: 16 * 1024), stderr: .capture(limit: 64 * 1024),
                                      logger: context.logger)
        do {
            _ = try await DownloadPipeline.download(
                file, key: context.repository.key(context.shard, manifest.backupName, file.name),
                from: context.storage, compression: manifest.compression,
                to: ProcessInputSink(client), progress: context.progress)
            try await client.checkSuccess(doing: "loading dump \(manifest.backupName) into the restored server")
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
