import CairnCore
import CairnEngine
import CairnMySQL
import CairnStorage
import CairnTestSupport
import Foundation
import Testing

/// The backup and restore runners as a library, on the in-memory storage.
@Suite("Backup and restore runners", .serialized)
struct RunnerTests {
    func context(_ server: TestServer, _ storage: any BackupStorage, mysql: MySQLConnectionConfiguration? = nil) throws -> BackupContext {
        BackupContext(shard: try KeyspaceShard(parsing: "commerce/0"), tabletAlias: try TabletAlias(parsing: "zone1-100"),
                      storage: storage, mysql: mysql ?? server.connectionConfiguration, dataDirectory: server.dataDirectory,
                      compression: CompressionSettings(), logger: testLogger, progress: TransferProgress())
    }

    @Test("a logical backup of a server without user databases restores into a server that starts")
    func emptyLogical() async throws {
        try await withTestServer(serverID: 5) { server in
            let storage = MemoryStorage()
            let outcome = try await BackupRunner(context: try context(server, storage)).run(BackupRequest(type: .full, engine: .logical))
            guard case .completed(let manifest) = outcome else {
                Issue.record("expected a completed backup")
                return
            }
            #expect(manifest.files.map(\.name) == ["dump.sql.zst", "accounts.sql.zst"])
            let target = try TemporaryDirectory(prefix: "cairn-empty-restore")
            defer { target.remove() }
            let runner = RestoreRunner(context: RestoreContext(shard: try KeyspaceShard(parsing: "commerce/0"), storage: storage,
                                                               logger: testLogger, progress: nil))
            let result = try await runner.run(try await runner.plan(.latest), into: target.file("data"))
            #expect(result.position == manifest.position)
            let restored = try await TestServer.start(existingDataDirectory: target.file("data"))
            let schemas = try await restored.query("SELECT COUNT(*) FROM information_schema.schemata WHERE schema_name NOT IN ('mysql','information_schema','performance_schema','sys')").scalar
            await restored.stop()
            #expect(schemas == "0")
        }
    }

    @Test("a password-protected account backs up through the tools without the password reaching the manifest")
    func passwordAccount() async throws {
        try await withTestServer(serverID: 6) { server in
            let password = "s3cret-Pa55-for-test"
            try await server.query("CREATE USER 'cairn'@'localhost' IDENTIFIED BY '\(password)'; GRANT RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR, REPLICATION SLAVE ADMIN, SELECT, SHOW VIEW, EVENT, TRIGGER ON *.* TO 'cairn'@'localhost'; CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY); INSERT INTO app.t VALUES (1)")
            let storage = MemoryStorage()
            var account = server.connectionConfiguration
            account.user = "cairn"
            account.password = password
            for engine in [FullBackupEngine.physical, .logical] {
                let outcome = try await BackupRunner(context: try context(server, storage, mysql: account)).run(BackupRequest(type: .full, engine: engine))
                guard case .completed(let manifest) = outcome else {
                    Issue.record("expected a completed \(engine) backup")
                    continue
                }
                #expect(!String(decoding: try manifest.encoded(), as: UTF8.self).contains(password))
            }
            try await server.query("INSERT INTO app.t VALUES (2)")
            let incremental = try await BackupRunner(context: try context(server, storage, mysql: account)).run(BackupRequest(type: .incremental))
            guard case .completed(let manifest) = incremental else {
                Issue.record("expected a completed incremental")
                return
            }
            #expect(manifest.incremental && manifest.method == .binlog)
        }
    }
}
