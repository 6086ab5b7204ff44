import CairnTestSupport
import Foundation
import Testing

/// Issue 10: `restore` and `tablet --restore-from-backup` take their target
/// from the same options and refuse the same contradictions the same way.
@Suite("restore and tablet read the restore target alike")
struct RestoreTargetTests {
    /// The `error:` line of a run.
    func errorLine(_ result: CLI.Result) -> String? {
        result.stderr.split(separator: "\n").first { $0.hasPrefix("error: ") }.map(String.init)
    }

    @Test("tablet refuses --to-time with --to-position, as restore does, before touching anything")
    func timeAndPosition() async throws {
        let work = try TemporaryDirectory(prefix: "cairn-restore-target")
        defer { work.remove() }
        let store = work.file("backups")
        try FileManager.default.createDirectory(atPath: store, withIntermediateDirectories: true)
        let token = work.file("auth-token")
        try Data("token-0123456789abcdef\n".utf8).write(to: URL(fileURLWithPath: token))
        let datadir = work.file("data")
        let both = ["--to-time", "2026-11-25T14:00:00Z", "--to-position", "0-1-100"]

        let restore = try await CLI.run(["restore", "commerce/0", "--local", "--target-datadir", work.file("restored"),
                                         "--storage", "file://\(store)"] + both)
        #expect(restore.exitCode == 2, "\(restore)")
        #expect(errorLine(restore) == "error: choose one of --backup, --to-time, --to-position and --to-restore-point", "\(restore)")

        let tablet = try await CLI.run(["tablet", "--alias", "zone1-100", "--keyspace", "commerce", "--shard", "0", "--type", "replica",
                                        "--mysql-socket", work.file("mysql.sock"), "--mysql-datadir", datadir,
                                        "--ctld", "127.0.0.1:1", "--storage", "file://\(store)", "--auth-token-file", token,
                                        "--restore-from-backup"] + both)
        #expect(tablet.exitCode == 2, "\(tablet)")
        #expect(errorLine(tablet) == errorLine(restore), "\(tablet)")
        // Refused before it started anything: no mysqld data directory, nothing in storage.
        #expect(!FileManager.default.fileExists(atPath: datadir))
        #expect(try FileManager.default.contentsOfDirectory(atPath: store).isEmpty)
    }

    @Test("tablet refuses a restore target without --restore-from-backup")
    func targetWithoutRestore() async throws {
        let work = try TemporaryDirectory(prefix: "cairn-restore-target")
        defer { work.remove() }
        let datadir = work.file("data")
        let tablet = try await CLI.run(["tablet", "--alias", "zone1-100", "--keyspace", "commerce", "--shard", "0", "--type", "replica",
                                        "--mysql-socket", work.file("mysql.sock"), "--mysql-datadir", datadir,
                                        "--ctld", "127.0.0.1:1", "--storage", "file://\(work.file("backups"))",
                                        "--to-position", "0-1-100"])
        #expect(tablet.exitCode == 2, "\(tablet)")
        #expect(errorLine(tablet)?.contains("go with --restore-from-backup") == true, "\(tablet)")
        #expect(!FileManager.default.fileExists(atPath: datadir))
    }
}
