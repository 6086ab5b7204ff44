import CairnCore
import CairnEngine
import CairnMySQL
import CairnStorage
import CairnTestSupport
import Foundation
import Synchronization
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

    /// A logical backup (uncompressed) whose dump was edited to end with
    /// `statement`, its manifest fixed to match, restored into a new directory.
    func restoreTamperedDump(appending statement: String, serverID: UInt32) async throws -> Result<RestoreResult, any Error> {
        try await withTestServer(serverID: serverID) { server in
            try await server.query("CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY); INSERT INTO app.t VALUES (1)")
            let storage = MemoryStorage()
            var backupContext = try context(server, storage)
            backupContext.compression = CompressionSettings(algorithm: "none")
            let outcome = try await BackupRunner(context: backupContext).run(BackupRequest(type: .full, engine: .logical))
            guard case .completed(let manifest) = outcome else { throw TestSupportError("expected a completed backup") }
            let shard = try KeyspaceShard(parsing: "commerce/0")
            let repository = BackupRepository(storage: storage, logger: testLogger)
            var dump = try await storage.readAll(key: repository.key(shard, manifest.backupName, "dump.sql"), limit: 64 << 20)
            dump.append(Data("\n\(statement)\n".utf8))
            try await Tampering.replaceFile("dump.sql", of: manifest.backupName, with: dump, in: storage, shard: shard)
            let target = try TemporaryDirectory(prefix: "cairn-tampered-restore")
            defer { target.remove() }
            let runner = RestoreRunner(context: RestoreContext(shard: shard, storage: storage, logger: testLogger, progress: nil))
            let plan = try await runner.plan(.latest)
            do {
                return .success(try await runner.run(plan, into: target.file("data")))
            } catch {
                return .failure(error)
            }
        }
    }

    @Test("a dump edited to SELECT ... INTO OUTFILE cannot write a file on the restore host")
    func restoreCannotWriteFiles() async throws {
        let path = "/tmp/cairn-outfile-\(UInt64.random(in: 0...UInt64.max))"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let result = try await restoreTamperedDump(appending: "SELECT 'written by a backup' INTO OUTFILE '\(path)';", serverID: 7)
        #expect(!FileManager.default.fileExists(atPath: path), "the restore server wrote \(path)")
        guard case .failure(let error) = result else {
            Issue.record("a dump the server refuses must fail the restore")
            return
        }
        #expect("\(error)".contains("secure-file-priv"), "\(error)")
    }

    @Test("a dump edited to LOAD DATA LOCAL INFILE cannot read a file of the restore host")
    func restoreCannotReadLocalFiles() async throws {
        let secret = try TemporaryDirectory(prefix: "cairn-local-secret")
        defer { secret.remove() }
        let marker = "local secret \(UInt64.random(in: 0...UInt64.max))"
        try Data(marker.utf8).write(to: URL(fileURLWithPath: secret.file("secret.txt")))
        let result = try await restoreTamperedDump(
            appending: "CREATE TABLE app.stolen (line TEXT); LOAD DATA LOCAL INFILE '\(secret.file("secret.txt"))' INTO TABLE app.stolen;",
            serverID: 8)
        guard case .failure(let error) = result else {
            Issue.record("the restore loaded a file of the restore host into the database")
            return
        }
        #expect("\(error)".lowercased().contains("local"), "\(error)")
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

    @Test("a backup lists its shard once and reads each MANIFEST once; the prune after it counts the backup it committed")
    func oneListing() async throws {
        try await withTestServer(serverID: 7) { server in
            let base = MemoryStorage()
            guard case .completed(let older) = try await BackupRunner(context: try context(server, base))
                .run(BackupRequest(type: .full, engine: .logical)) else {
                Issue.record("expected a completed backup")
                return
            }
            let storage = CountingStorage(base)
            let request = BackupRequest(type: .full, engine: .logical, retention: RetentionPolicy(minCount: 1))
            guard case .completed(let newer) = try await BackupRunner(context: try context(server, storage)).run(request) else {
                Issue.record("expected a completed backup")
                return
            }
            // The shard once; and the keyspace's restore points, whose retention runs with each shard's prune.
            #expect(storage.lists.withLock { $0 } == ["commerce/0/", "commerce/restore-points/"])
            #expect(storage.reads.withLock { $0 }.filter { $0.hasSuffix("/MANIFEST") } == ["commerce/0/\(older.backupName)/MANIFEST"])
            // Only with the new backup in its listing does the prune see that the older full backup is no longer needed.
            let left = try await BackupRepository(storage: base, logger: testLogger).list(try KeyspaceShard(parsing: "commerce/0"))
            #expect(left.map(\.name) == [newer.backupName])
        }
    }
}

/// Passes everything through to a real storage and records the prefixes
/// listed and the keys read.
final class CountingStorage: BackupStorage {
    let base: any BackupStorage
    let lists = Mutex<[String]>([])
    let reads = Mutex<[String]>([])

    init(_ base: any BackupStorage) {
        self.base = base
    }

    var displayURL: String { base.displayURL }
    func list(prefix: String) async throws -> [StorageObject] {
        lists.withLock { $0.append(prefix) }
        return try await base.list(prefix: prefix)
    }
    func makeWriter(key: String) async throws -> any StorageWriter { try await base.makeWriter(key: key) }
    func makeReader(key: String, range: Range<Int64>?) async throws -> any StorageReader {
        reads.withLock { $0.append(key) }
        return try await base.makeReader(key: key, range: range)
    }
    func delete(keys: [String]) async throws { try await base.delete(keys: keys) }
    func discardUnfinishedUploads(prefix: String) async throws -> Int { try await base.discardUnfinishedUploads(prefix: prefix) }
}
