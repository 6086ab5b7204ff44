#if canImport(Glibc)
import Glibc
#endif
import CairnCore
import CairnStorage
import CairnTestSupport
import Foundation
import Testing
import CairnSystem

/// Issue 2: bad input gets one clear sentence and a non-zero exit with
/// nothing written; damage is found; an interrupted backup is never complete.
@Suite("Failures are clear and leave nothing behind", .serialized)
struct FailureTests {
    func files(under path: String) -> [String] {
        (FileManager.default.enumerator(atPath: path)?.allObjects as? [String] ?? []).filter {
            var isDir: ObjCBool = false
            return FileManager.default.fileExists(atPath: "\(path)/\($0)", isDirectory: &isDir) && !isDir.boolValue
        }
    }

    /// One sentence on stderr, no stack trace.
    func isOneSentence(_ stderr: String) -> Bool {
        let lines = stderr.split(separator: "\n").filter { !$0.hasPrefix("usage:") && !$0.contains(" info ") && !$0.contains(" warning ") }
        return lines.count == 1 && lines[0].hasPrefix("error: ") && !stderr.contains("Fatal error") && !stderr.contains("Stack")
    }

    @Test("bad input fails with one sentence and writes nothing to storage")
    func badInput() async throws {
        try await withTestServer { server in
            let work = try TemporaryDirectory(prefix: "cairn-bad-input")
            defer { work.remove() }
            let store = work.file("backups")
            try FileManager.default.createDirectory(atPath: store, withIntermediateDirectories: true)
            let storage = "file://\(store)"

            let malformed = try await CLI.run(["backup", "commerce", "--local", "--mysql-socket", server.socketPath, "--storage", storage])
            #expect(malformed.exitCode == 2, "\(malformed)")
            // A bare keyspace is a keyspace-wide backup, which goes through ctld, not --local.
            #expect(malformed.stderr.contains("--local backs up one mysqld, so it takes <keyspace>/<shard>"), "\(malformed)")
            let badShard = try await CLI.run(["backup", "commerce/x-y", "--local", "--mysql-socket", server.socketPath, "--storage", storage])
            #expect(badShard.exitCode == 2 && badShard.stderr.contains("invalid shard \"x-y\""), "\(badShard)")

            let noServer = try await CLI.run(["backup", "commerce/0", "--local", "--mysql-socket", work.file("nothing.sock"), "--storage", storage])
            #expect(noServer.exitCode == 1, "\(noServer)")
            #expect(noServer.stderr.contains(work.file("nothing.sock")), "\(noServer)")
            #expect(isOneSentence(noServer.stderr), "\(noServer.stderr)")

            // A regular file where the storage directory should be: nothing can be written under it.
            let blocker = work.file("not-a-directory")
            #expect(FileManager.default.createFile(atPath: blocker, contents: Data("x".utf8)))
            let unwritable = try await CLI.run(["backup", "commerce/0", "--local", "--mysql-socket", server.socketPath, "--storage", "file://\(blocker)/backups"])
            #expect(unwritable.exitCode == 1, "\(unwritable)")
            #expect(unwritable.stderr.contains(blocker), "\(unwritable)")
            #expect(isOneSentence(unwritable.stderr), "\(unwritable.stderr)")

            let config = work.file("bad.json")
            try Data(#"{"bucket": "\#(storage)", "upload_concurency": 4}"#.utf8).write(to: URL(fileURLWithPath: config))
            let unknownKey = try await CLI.run(["backup", "commerce/0", "--local", "--mysql-socket", server.socketPath, "--config", config])
            #expect(unknownKey.exitCode == 1, "\(unknownKey)")
            #expect(unknownKey.stderr.contains("\"upload_concurency\""), "\(unknownKey)")
            #expect(isOneSentence(unknownKey.stderr), "\(unknownKey.stderr)")

            let badType = try await CLI.run(["backup", "commerce/0", "--local", "--mysql-socket", server.socketPath, "--storage", storage, "--type", "weekly"])
            #expect(badType.exitCode == 2, "\(badType)")

            #expect(files(under: store).isEmpty, "storage holds \(files(under: store))")
        }
    }

    @Test("restore refuses a non-empty target and leaves it untouched")
    func nonEmptyTarget() async throws {
        try await withTestServer { server in
            let work = try TemporaryDirectory(prefix: "cairn-nonempty")
            defer { work.remove() }
            let storage = "file://\(work.file("backups"))"
            try FileManager.default.createDirectory(atPath: work.file("backups"), withIntermediateDirectories: true)
            try await server.query("CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY); INSERT INTO app.t VALUES (1)")
            let backup = try await Scenario.backup(server, storage: storage)
            #expect(backup.exitCode == 0, "\(backup)")

            let target = work.file("target")
            try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
            #expect(FileManager.default.createFile(atPath: "\(target)/precious", contents: Data("keep me".utf8)))
            let restore = try await CLI.run(["restore", "commerce/0", "--local", "--target-datadir", target, "--storage", storage])
            #expect(restore.exitCode == 1, "\(restore)")
            #expect(restore.stderr.contains("not empty") && restore.stderr.contains(target), "\(restore)")
            #expect(try FileManager.default.contentsOfDirectory(atPath: target) == ["precious"])
            #expect(try String(contentsOfFile: "\(target)/precious", encoding: .utf8) == "keep me")
        }
    }

    @Test("a stored file altered by one byte is named by verify and refused by restore", arguments: ["physical", "logical"])
    func corruption(engine: String) async throws {
        try await withTestServer { server in
            let work = try TemporaryDirectory(prefix: "cairn-corrupt")
            defer { work.remove() }
            let store = work.file("backups")
            try FileManager.default.createDirectory(atPath: store, withIntermediateDirectories: true)
            let storage = "file://\(store)"
            try await Sysbench(server: server, tables: 2, tableSize: 2_000).prepare()
            let backup = try await Scenario.backup(server, storage: storage, extra: ["--engine", engine])
            #expect(backup.exitCode == 0, "\(backup)")
            let name = try #require(try Scenario.backupObject(backup)["backup_name"] as? String)

            let clean = try await CLI.run(["verify", "commerce/0", "--storage", storage])
            #expect(clean.exitCode == 0, "\(clean)")

            let dataFile = engine == "physical" ? "backup.mbstream.zst" : "dump.sql.zst"
            let path = "\(store)/commerce/0/\(name)/\(dataFile)"
            var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
            bytes[bytes.count / 2] ^= 0x01
            try bytes.write(to: URL(fileURLWithPath: path))

            let verify = try await CLI.run(["verify", "commerce/0", "--storage", storage])
            #expect(verify.exitCode == 1, "\(verify)")
            #expect(verify.stdout.contains("\(name)/\(dataFile)") && verify.stdout.contains("SHA-256"), "\(verify)")

            let target = work.file("restored")
            let restore = try await CLI.run(["restore", "commerce/0", "--local", "--target-datadir", target, "--storage", storage])
            #expect(restore.exitCode == 1, "\(restore)")
            #expect(restore.stderr.contains(dataFile), "\(restore)")
            // Nothing half-restored is left to be mistaken for a data directory.
            #expect((try? FileManager.default.contentsOfDirectory(atPath: target))?.isEmpty ?? true)
        }
    }

    @Test("a backup killed midway is listed as incomplete, never complete, and the next backup succeeds")
    func killedMidway() async throws {
        try await withTestServer { server in
            let work = try TemporaryDirectory(prefix: "cairn-killed")
            defer { work.remove() }
            let store = work.file("backups")
            try FileManager.default.createDirectory(atPath: store, withIntermediateDirectories: true)
            let storage = "file://\(store)"
            try await Sysbench(server: server, tables: 4, tableSize: 60_000).prepare()

            let child = try CLI.start(["backup", "commerce/0", "--local", "--mysql-socket", server.socketPath,
                                       "--storage", storage, "--type", "full"])
            // Wait until data is flowing into storage, then kill it without warning.
            // (The data file's temporary file: STARTED is written through one too, first.)
            var sawData = false
            for _ in 0..<600 {
                let all = files(under: store)
                if all.contains(where: { $0.contains(".cairn-tmp-backup.mbstream") }) {
                    sawData = true
                    break
                }
                try await Task.sleep(for: .milliseconds(20))
            }
            child.kill(SIGKILL)
            _ = await child.wait()
            #expect(sawData, "the backup never started writing data")

            let listing = try await CLI.run(["backups", "commerce/0", "--storage", storage, "--json"])
            #expect(listing.exitCode == 0, "\(listing)")
            let object = try #require(try JSONSerialization.jsonObject(with: Data(listing.stdout.utf8)) as? [String: Any])
            let backups = try #require(object["backups"] as? [[String: Any]])
            #expect(backups.count == 1)
            #expect(backups.first?["status"] as? String == "incomplete")

            let restore = try await CLI.run(["restore", "commerce/0", "--local", "--target-datadir", work.file("r"), "--storage", storage, "--dry-run"])
            #expect(restore.exitCode == 1, "an incomplete backup must not be restorable: \(restore)")

            let next = try await Scenario.backup(server, storage: storage)
            #expect(next.exitCode == 0, "\(next)")
            let after = try await CLI.run(["backups", "commerce/0", "--storage", storage, "--json"])
            let statuses = try #require((try JSONSerialization.jsonObject(with: Data(after.stdout.utf8)) as? [String: Any])?["backups"] as? [[String: Any]])
                .map { $0["status"] as? String }
            #expect(statuses == ["incomplete", "complete"])
            // The killed backup's half-written file was discarded by the next backup.
            #expect(!files(under: store).contains { $0.contains(".cairn-tmp-") })
        }
    }
}
