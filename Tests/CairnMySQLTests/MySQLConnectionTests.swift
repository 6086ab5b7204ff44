import CairnCore
import CairnMySQL
import CairnTestSupport
import Foundation
import Testing

@Suite("MariaDB access", .serialized)
struct MySQLConnectionTests {
    @Test("a socket where no server listens is a sentence naming it")
    func noServer() async throws {
        let dir = try TemporaryDirectory(prefix: "cairn-nosock")
        defer { dir.remove() }
        await #expect {
            _ = try await MySQLConnection.connect(.init(endpoint: .socket(dir.file("none.sock"))), logger: testLogger)
        } throws: { error in
            guard let e = error as? CairnError else { return false }
            return e.code == .mysql && e.message.contains(dir.file("none.sock")) && e.message.contains("check that mysqld is running")
        }
    }

    @Test("a server starting beside another leaves the other's temporary tables alone (each has its own tmpdir)")
    func privateTemporaryDirectories() async throws {
        try await withTestServer(serverID: 8) { first in
            // A temporary table lives as #sql files in the server's tmpdir for as long as its connection does.
            let c = try await first.connect()
            try await c.query("CREATE DATABASE app; CREATE TEMPORARY TABLE app.scratch (n INT) ENGINE=MyISAM")
            try await c.query("INSERT INTO app.scratch VALUES (1), (2)")
            let tmpdir = try #require(try await c.query("SELECT @@tmpdir").scalar)
            func temporaryFiles() throws -> Set<String> {
                Set(try FileManager.default.contentsOfDirectory(atPath: tmpdir).filter { $0.hasPrefix("#sql") })
            }
            let before = try temporaryFiles()
            #expect(!before.isEmpty)
            // A starting mariadbd deletes every #sql file in its tmpdir (mysql_rm_tmp_tables).
            try await withTestServer(serverID: 9) { _ in }
            #expect(try temporaryFiles().isSuperset(of: before))
            #expect(try await c.query("SELECT COUNT(*) FROM app.scratch").scalar == "2")
            try await c.query("DROP TEMPORARY TABLE app.scratch")
            await c.close()
        }
    }

    @Test("queries return rows and NULLs; server errors carry the code and message, never a password")
    func queriesAndErrors() async throws {
        try await withTestServer(serverID: 3) { server in
            let c = try await server.connect()
            let r = try await c.query("SELECT 1 AS one, NULL AS nothing, 'x''y' AS quoted")
            #expect(r.columns == ["one", "nothing", "quoted"])
            #expect(r.rows == [["1", nil, "x'y"]])
            await #expect {
                try await c.query("SELECT * FROM no_such_db.no_such_table")
            } throws: { error in
                (error as? CairnError).map { $0.message.contains("1146") || $0.message.contains("1049") } == true
            }
            await #expect {
                try await c.query("CREATE USER x IDENTIFIED BY 'hunter2-secret'; SELECT * FROM nope.nope")
            } throws: { error in
                (error as? CairnError).map { !$0.message.contains("hunter2-secret") } == true
            }
            let info = try await c.serverInfo()
            #expect(info.serverID == 3 && info.logBin && info.binlogFormat == "ROW")
            await c.close()
        }
    }

    @Test("mysqld stops cleanly and a second start on the same data directory keeps the data")
    func restart() async throws {
        let server = try await TestServer.start(serverID: 4)
        do {
            try await server.query("CREATE DATABASE keep; CREATE TABLE keep.t (id INT); INSERT INTO keep.t VALUES (42)")
            try await server.stopKeepingFiles()
            let again = try await TestServer.start(existingDataDirectory: server.dataDirectory, serverID: 4)
            #expect(try await again.query("SELECT id FROM keep.t").scalar == "42")
            await again.stop()
        } catch {
            await server.stop()
            throw error
        }
        server.directory.remove()
    }
}
