import CairnCore
import CairnMySQL
import CairnTestSupport
import Foundation
import Testing

/// `cairn drill --local`: a physical backup restored into a scratch
/// directory and checked; exit 0 when it passes, 1 with the reason when not.
@Suite("cairn drill", .serialized)
struct DrillCLITests {
    @Test("a physical backup's drill passes and records the reference; a damaged backup's drill exits 1 and says why")
    func physicalDrill() async throws {
        let work = try TemporaryDirectory(prefix: "cairn-drill-cli")
        defer { work.remove() }
        let storage = try ScenarioStorage.file(work.file("backups"))
        try await withTestServer(serverID: 31) { server in
            try await server.query("CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(20)); INSERT INTO app.t VALUES (1, 'one'), (2, 'two')")
            let backup = try await Scenario.backup(server, storage: storage, extra: ["--engine", "physical", "--type", "full"])
            #expect(backup.exitCode == 0, "\(backup)")
            let name = try #require(try Scenario.backupObject(backup)["backup_name"] as? String)

            let drill = try await Scenario.run(["drill", "commerce/0", "--local", "--scratch-dir", work.file("scratch"), "--json"], storage: storage)
            #expect(drill.exitCode == 0, "\(drill)")
            let record = try #require(try JSONSerialization.jsonObject(with: Data(drill.stdout.utf8)) as? [String: Any])
            #expect(record["passed"] as? Bool == true)
            #expect(record["reference"] as? String == "recorded")
            #expect(record["full_backup"] as? String == name)
            let tables = try #require(record["tables"] as? [[String: Any]])
            #expect(tables.map { $0["table"] as? String } == ["app.t"])
            #expect(tables.first?["check"] as? String == "OK")
            let sourceChecksum = try await server.query("CHECKSUM TABLE app.t EXTENDED").values("Checksum").first ?? nil
            #expect(tables.first?["checksum"] as? String == sourceChecksum)
            // Nothing restored stays behind.
            #expect(try FileManager.default.contentsOfDirectory(atPath: work.file("scratch")).isEmpty)

            // A byte flipped in a stored data file: the drill fails, names the file, exits 1, and is recorded.
            let dataDirectory = work.file("backups/commerce/0/\(name)")
            let file = try #require(try FileManager.default.contentsOfDirectory(atPath: dataDirectory).filter { !["MANIFEST", "STARTED"].contains($0) }.sorted().first)
            var data = try Data(contentsOf: URL(fileURLWithPath: "\(dataDirectory)/\(file)"))
            data[data.count / 2] ^= 0x20
            try data.write(to: URL(fileURLWithPath: "\(dataDirectory)/\(file)"))
            try await Task.sleep(for: .seconds(1.1))
            let failed = try await Scenario.run(["drill", "commerce/0", "--local", "--scratch-dir", work.file("scratch")], storage: storage)
            #expect(failed.exitCode == 1, "\(failed)")
            #expect(failed.stdout.contains("FAILED") && failed.stdout.contains(file), "\(failed)")
            let records = try FileManager.default.contentsOfDirectory(atPath: work.file("backups/commerce/0/drills")).filter { $0.hasSuffix(".json") }
            #expect(records.count == 2, "\(records)")
            #expect(try FileManager.default.contentsOfDirectory(atPath: work.file("scratch")).isEmpty)
        }
    }

    @Test("--tablet goes through ctld and --scratch-dir with --local: mixing them is a usage error")
    func usage() async throws {
        let result = try await CLI.run(["drill", "commerce/0", "--local", "--tablet", "zone1-101", "--storage", "file:///tmp/none"])
        #expect(result.exitCode == 2, "\(result)")
        #expect(result.stderr.contains("--tablet"), "\(result)")
    }
}
