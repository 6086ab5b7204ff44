#if canImport(Glibc)
import Glibc
#endif
import CairnCore
import CairnSystem
import CairnTestSupport
import Foundation
import Testing

/// Issue 11 item 2: archiving in the cluster, with real ctld, tablets and mariadbd.
@Suite("Binary log archiving in the cluster", .serialized)
struct ClusterArchiveTests {
    func insertRows(_ cluster: ClusterFixture, _ alias: String, from: Int, count: Int) async throws {
        let values = (from..<(from + count)).map { "(\($0), 'row \($0)')" }.joined(separator: ",")
        _ = try await cluster.query(alias, "INSERT INTO sbtest.items VALUES \(values)")
    }

    func tablet(_ cluster: ClusterFixture, _ alias: String) async throws -> [String: Any]? {
        try await cluster.tabletStates().first { $0["alias"] as? String == alias }
    }

    /// The tablet's archive report has stored everything up to `position` (`0-100-42`, as @@gtid_binlog_pos says).
    func archived(_ cluster: ClusterFixture, _ alias: String, through position: String) async throws -> Bool {
        guard let archive = try await tablet(cluster, alias)?["archive"] as? [String: Any],
              archive["running"] as? Bool == true, let at = archive["archived_position"] as? String,
              let archivedPosition = try? ReplicationPosition(parsing: at),
              let wanted = try? ReplicationPosition(parsing: "MariaDB/" + position) else { return false }
        return archivedPosition.contains(wanted)
    }

    @Test("the primary archives, a replica does not; tablets, backups and metrics show the archiver; a restore reaches rows written after the last backup; a promoted replica continues the archive with no gap")
    func primaryArchivesAndFailover() async throws {
        let cluster = try ClusterFixture(extraConfiguration: #""backup_strategy": {"full_backup_interval": "24h", "binlog_archive_interval": "1s"}"#)
        do {
            try cluster.startControlServer(extra: ["--no-scheduler"])
            try cluster.startTablet("zone1-100", type: "primary")
            try cluster.startTablet("zone1-101", type: "replica")
            try await cluster.waitForTablets(["zone1-100", "zone1-101"], replicating: ["zone1-101"])
            _ = try await cluster.query("zone1-100", "CREATE DATABASE sbtest; CREATE TABLE sbtest.items (id INT PRIMARY KEY, name VARCHAR(64))")
            try await insertRows(cluster, "zone1-100", from: 0, count: 100)
            let backup = try await cluster.cli(["backup", "commerce/0", "--type", "full"])
            #expect(backup.exitCode == 0, "\(backup)\n\(cluster.logs())")

            // Rows after the backup reach storage only through the archive.
            try await insertRows(cluster, "zone1-100", from: 100, count: 100)
            let afterBackup = try await cluster.position("zone1-100")
            let checksumsAfterBackup = try await cluster.checksums("zone1-100")
            try await cluster.waitUntil("the primary's archiver has stored the rows written after the backup") {
                try await archived(cluster, "zone1-100", through: afterBackup)
            }
            let primary = try #require(try await tablet(cluster, "zone1-100")?["archive"] as? [String: Any])
            #expect(primary["lag_seconds"] as? Double != nil && primary["connected"] as? Bool == true, "\(primary)")
            let replica = try await tablet(cluster, "zone1-101")?["archive"] as? [String: Any]
            #expect(replica?["running"] as? Bool == false, "a replica does not archive: \(String(describing: replica))")
            let segments = try FileManager.default.contentsOfDirectory(atPath: cluster.directory.file("backups/commerce/0/binlog-archive"))
            #expect(segments.contains { $0.hasSuffix(".json") } && segments.contains { $0.hasSuffix(".binlog.zst") }, "\(segments)")

            let tabletsText = try await cluster.cli(["tablets"])
            #expect(tabletsText.exitCode == 0 && tabletsText.stdout.contains("ARCHIVE") && tabletsText.stdout.contains("archiving, lag"), "\(tabletsText)")
            let backupsJSON = try await cluster.cli(["backups", "commerce/0", "--json"])
            let archiver = try #require((try JSONSerialization.jsonObject(with: Data(backupsJSON.stdout.utf8)) as? [String: Any])?["archiver"] as? [String: Any],
                                        "\(backupsJSON)")
            #expect(archiver["tablet"] as? String == "zone1-100" && archiver["running"] as? Bool == true && archiver["lag_seconds"] as? Double != nil, "\(archiver)")
            let backupsText = try await cluster.cli(["backups", "commerce/0"])
            #expect(backupsText.stdout.contains("Archiver: tablet zone1-100, lag "), "\(backupsText)")
            let metrics = try await PrometheusScrape.scrape("http://127.0.0.1:\(cluster.ctldPort)/metrics", token: cluster.token)
            #expect(metrics.value("cairn_shard_archive_lag_seconds", ["keyspace": "commerce", "shard": "0"]) != nil, "\(metrics.body)")

            // A point after the last backup, restored into a new tablet (replication stays off, so only the archive can bring those rows).
            try cluster.startTablet("zone1-102", type: "replica", extra: ["--restore-from-backup", "--to-position", afterBackup])
            try await cluster.waitForTablets(["zone1-102"])
            #expect(try await cluster.checksums("zone1-102") == checksumsAfterBackup)
            #expect(try await cluster.position("zone1-102") == afterBackup)

            // Reparenting: the primary's tablet stops (its archiver stores what it has and gives up the lease);
            // the replica is promoted and its tablet restarted as the primary.
            try await insertRows(cluster, "zone1-100", from: 200, count: 50)
            let oldPrimaryEnd = try await cluster.position("zone1-100")
            try await cluster.waitUntil("the replica has the old primary's last rows") {
                try await cluster.position("zone1-101") == oldPrimaryEnd
            }
            let old = try #require(cluster.tablets["zone1-100"]?.process)
            old.kill(SIGTERM)
            _ = await old.wait()
            await cluster.killTablet("zone1-101")
            _ = try await cluster.query("zone1-101", "STOP SLAVE; RESET SLAVE ALL")
            try cluster.startTablet("zone1-101", type: "primary", extra: ["--replace"])
            try await insertRows(cluster, "zone1-101", from: 250, count: 50)
            let newPrimaryEnd = try await cluster.position("zone1-101")
            try await cluster.waitUntil("the new primary's archiver has continued the archive") {
                try await archived(cluster, "zone1-101", through: newPrimaryEnd)
            }
            let listing = try await cluster.cli(["backups", "commerce/0", "--json"])
            let object = try #require(try JSONSerialization.jsonObject(with: Data(listing.stdout.utf8)) as? [String: Any])
            let window = try #require(object["restorable_window"] as? [String: Any], "\(listing)")
            #expect((window["gaps"] as? [Any])?.isEmpty ?? true, "\(window)")
            #expect((object["archiver"] as? [String: Any])?["tablet"] as? String == "zone1-101", "\(object)")

            // The whole archive restores: the new primary's rows on top of the old primary's.
            let expected = try await cluster.checksums("zone1-101")
            try cluster.startTablet("zone1-103", type: "replica", extra: ["--restore-from-backup", "--to-position", newPrimaryEnd])
            try await cluster.waitForTablets(["zone1-103"])
            #expect(try await cluster.checksums("zone1-103") == expected)
        } catch {
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }
}
