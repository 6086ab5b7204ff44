#if canImport(Glibc)
import Glibc
#endif
import CairnCore
import CairnMySQL
import CairnStorage
import CairnSystem
import CairnTestSupport
import Foundation
import Testing

/// Issue 11: continuous binary log archiving with `cairn archive`, and
/// restores that reach every archived transaction.
@Suite("Continuous binary log archiving", .serialized)
struct ArchiveTests {
    static let interval = 2

    @Test("archiving under load survives SIGKILL of the archiver and of the source; restores reach the archive exactly")
    func archiveScenario() async throws {
        let work = try TemporaryDirectory(prefix: "cairn-archive")
        defer { work.remove() }
        let storage = try ScenarioStorage.file(work.file("backups"))
        var source = try await TestServer.start(serverID: 1)
        var archiver: ChildProcess? = nil
        do {
            let bench = Sysbench(server: source, tables: 2, tableSize: 2_000)
            try await bench.prepare()
            let full = try await Scenario.backup(source, storage: storage)
            #expect(full.exitCode == 0, "\(full)")

            archiver = try startArchiver(source, storage: storage)
            try await bench.write(events: 300)
            let a = try await Snapshot.take(source)
            try await bench.write(events: 300)
            let b = try await Snapshot.take(source)
            // A quiet second after B, so a time just after it separates B from what follows.
            try await Task.sleep(for: .seconds(2))
            try await waitForArchive(storage, reaching: b.position, archiver: archiver!)

            // SIGKILL the archiver while sysbench writes, then start it again.
            var load = try bench.startWriting(rate: 100)
            try await Task.sleep(for: .seconds(1))
            archiver!.kill(SIGKILL)
            _ = await archiver!.wait()
            try await Task.sleep(for: .milliseconds(500))
            archiver = try startArchiver(source, storage: storage)
            try await Task.sleep(for: .seconds(1))
            await load.stop()
            let c = try await Snapshot.take(source)
            try await waitForArchive(storage, reaching: c.position, archiver: archiver!)

            // SIGKILL the source mid-load: what the archiver received is stored within the interval.
            load = try bench.startWriting(rate: 100)
            try await Task.sleep(for: .seconds(2))
            await source.crash()
            await load.stop()
            try await Task.sleep(for: .seconds(Self.interval + 1))
            let atCrash = try await archivedSegments(storage)
            let reached = try #require(atCrash.last?.position)
            let reachedTime = try #require(atCrash.last?.lastEventTime)
            source = try await source.restart()
            let sourceEnd = try await source.gtidBinlogPosition()
            let sourceSums = try await source.checksums()
            #expect(sourceEnd.contains(reached))
            // The source's transactions the archive did not get were committed at most interval + 1 s after its newest one.
            let lastSourceTime = sourceEnd == reached ? nil : try await lastTransactionTime(source, after: reached)
            if let lastSourceTime {
                let lost = lastSourceTime.timeIntervalSince(reachedTime)
                #expect(lost <= Double(Self.interval + 1), "the archive lost \(lost) s of writes (newest archived \(reachedTime), newest on the source \(lastSourceTime))")
            }
            // The restore of what was archived at the crash equals the source at that position:
            // replaying the source's own binary log from there gives the source's data.
            let (atCrashRestore, crashServer) = try await Scenario.restoreAndStart(
                storage: storage, into: work.file("at-crash"), extra: ["--to-position", reached.gtidText])
            #expect(atCrashRestore.exitCode == 0, "\(atCrashRestore)")
            if let crashServer {
                let restoredPosition = try await crashServer.gtidBinlogPosition()
                #expect(restoredPosition == reached)
                if sourceEnd != reached {
                    try await Scenario.replaySourceBinlogs(from: reached, to: sourceEnd, source: source, target: crashServer)
                }
                let replayedSums = try await crashServer.checksums()
                #expect(replayedSums == sourceSums, "the restore at \(reached) plus the source's binary log after it differs from the source")
                await crashServer.stop()
            }

            // The archiver reconnected to the restarted source by itself.
            try await bench.write(events: 300)
            let d = try await Snapshot.take(source)
            try await waitForArchive(storage, reaching: d.position, archiver: archiver!)
            archiver!.kill(SIGTERM)
            let stopped = await archiver!.wait()
            let archiverLog = await archiver!.capturedError()
            #expect(stopped.succeeded, "the archiver did not stop cleanly: \(archiverLog)")
            archiver = nil

            let listing = try await Scenario.run(["backups", "commerce/0"], storage: storage)
            #expect(listing.exitCode == 0 && listing.stdout.contains("Restorable window") && listing.stdout.contains(d.position.description), "\(listing)")
            #expect(!listing.stdout.contains("Gap:"), "\(listing)")
            let json = try await Scenario.run(["backups", "commerce/0", "--json"], storage: storage)
            let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
            let window = try #require(object?["restorable_window"] as? [String: Any], "\(json)")
            #expect(window["to_position"] as? String == d.position.description)
            #expect((window["gaps"] as? [Any])?.isEmpty == true)

            try await ChainTests.expectRestore(storage: storage, into: work.file("latest"), equals: d, extra: [])
            try await ChainTests.expectRestore(storage: storage, into: work.file("at-a"), equals: a, extra: ["--to-position", a.position.gtidText])
            let afterB = Date(timeIntervalSince1970: floor(b.time.timeIntervalSince1970) + 1)
            try await ChainTests.expectRestore(storage: storage, into: work.file("at-b"), equals: b,
                                               extra: ["--to-time", UTCTime.rfc3339(afterB, fractional: false)])
            try await ChainTests.expectRestore(storage: storage, into: work.file("at-c"), equals: c, extra: ["--to-position", c.position.gtidText])

            // A missing segment is a gap: latest is refused and names it, earlier points still restore.
            let segments = try await archivedSegments(storage)
            let middle = try #require(segments.dropLast().first { $0.fromPosition.contains(a.position) && $0.sequence > segments[0].sequence },
                                      "no segment after A to remove: \(segments.map(\.manifestName))")
            try FileManager.default.removeItem(atPath: work.file("backups/commerce/0/binlog-archive/\(middle.manifestName)"))
            let refused = try await Scenario.run(["restore", "commerce/0", "--local", "--target-datadir", work.file("refused")], storage: storage)
            #expect(refused.exitCode == 1 && refused.stderr.contains("gap") && refused.stderr.contains(ArchiveSegmentManifest.stem(middle.sequence)), "\(refused)")
            let gapListing = try await Scenario.run(["backups", "commerce/0"], storage: storage)
            #expect(gapListing.stdout.contains("Gap:"), "\(gapListing)")
            try await ChainTests.expectRestore(storage: storage, into: work.file("before-gap"), equals: a, extra: ["--to-position", a.position.gtidText])
        } catch {
            archiver?.kill(SIGKILL)
            await source.stop()
            throw error
        }
        archiver?.kill(SIGKILL)
        await source.stop()
    }

    @Test("binary logs purged before they were archived are a named gap: latest is refused, points before it restore")
    func purgedBeforeArchiving() async throws {
        try await withTestServer { source in
            let work = try TemporaryDirectory(prefix: "cairn-archive-purged")
            defer { work.remove() }
            let storage = try ScenarioStorage.file(work.file("backups"))
            let bench = Sysbench(server: source, tables: 2, tableSize: 1_000)
            try await bench.prepare()
            let full = try await Scenario.backup(source, storage: storage)
            #expect(full.exitCode == 0, "\(full)")
            let atFull = try await Snapshot.take(source)
            // Writes the archiver will never see: their binary log is purged before it starts.
            try await bench.write(events: 200)
            try await source.query("FLUSH BINARY LOGS")
            let newest = try #require(try await source.connect().binaryLogs().last?.name)
            // The server keeps a file until its binlog checkpoint passes it; purge until it is gone.
            for _ in 0..<100 {
                try await source.query("PURGE BINARY LOGS TO \(MySQLConnection.quote(newest))")
                if try await source.connect().binaryLogs().first?.name == newest { break }
                try await Task.sleep(for: .milliseconds(200))
            }
            #expect(try await source.connect().binaryLogs().first?.name == newest)
            try await bench.write(events: 200)
            let after = try await Snapshot.take(source)

            let archiver = try startArchiver(source, storage: storage)
            do {
                try await waitForArchive(storage, reaching: after.position, archiver: archiver)
            } catch {
                archiver.kill(SIGKILL)
                throw error
            }
            archiver.kill(SIGTERM)
            #expect(await archiver.wait().succeeded)

            let listing = try await Scenario.run(["backups", "commerce/0"], storage: storage)
            #expect(listing.exitCode == 0 && listing.stdout.contains("Gap:") && listing.stdout.contains("purged"), "\(listing)")
            let latest = try await Scenario.run(["restore", "commerce/0", "--local", "--target-datadir", work.file("latest")], storage: storage)
            #expect(latest.exitCode == 1 && latest.stderr.contains("gap") && latest.stderr.contains(atFull.position.gtidText), "\(latest)")
            try await ChainTests.expectRestore(storage: storage, into: work.file("at-full"), equals: atFull,
                                               extra: ["--to-position", atFull.position.gtidText])
        }
    }

    @Test("an incremental taken while the archiver runs under load joins the archive: latest, a point inside the incremental and one after it restore exactly, no transaction twice")
    func incrementalWhileArchiving() async throws {
        let work = try TemporaryDirectory(prefix: "cairn-archive-incremental")
        defer { work.remove() }
        let storage = try ScenarioStorage.file(work.file("backups"))
        let source = try await TestServer.start(serverID: 1)
        var archiver: ChildProcess? = nil
        do {
            let bench = Sysbench(server: source, tables: 2, tableSize: 2_000)
            try await bench.prepare()
            let full = try await Scenario.backup(source, storage: storage)
            #expect(full.exitCode == 0, "\(full)")
            archiver = try startArchiver(source, storage: storage)
            try await bench.write(events: 300)
            let a = try await Snapshot.take(source)

            // The incremental runs while sysbench writes and the archiver archives the same transactions.
            let load = try bench.startWriting(rate: 100)
            try await Task.sleep(for: .seconds(1))
            let incremental = try await Scenario.backup(source, storage: storage, extra: ["--type", "incremental"])
            try await Task.sleep(for: .seconds(1))
            await load.stop()
            #expect(incremental.exitCode == 0, "\(incremental)")
            let incrementalEnd = try ReplicationPosition(parsing: try #require(Scenario.backupObject(incremental)["position"] as? String))

            try await bench.write(events: 300)
            let b = try await Snapshot.take(source)
            try await waitForArchive(storage, reaching: b.position, archiver: archiver!)
            archiver!.kill(SIGTERM)
            _ = await archiver!.wait()
            archiver = nil

            // The archive overlaps the incremental; the plan replays each transaction once.
            let segments = try await archivedSegments(storage)
            #expect(segments.first.map { incrementalEnd.contains($0.fromPosition) } == true, "the archive starts before the incremental's end")
            let dryRun = try await Scenario.run(["restore", "commerce/0", "--local", "--target-datadir", work.file("plan"), "--dry-run"], storage: storage)
            #expect(dryRun.exitCode == 0 && dryRun.stdout.contains("incremental") && dryRun.stdout.contains("segment"), "\(dryRun)")
            // A point inside the incremental's range restores from the chain alone.
            let dryRunAtA = try await Scenario.run(["restore", "commerce/0", "--local", "--target-datadir", work.file("plan-a"), "--dry-run",
                                                    "--to-position", a.position.gtidText], storage: storage)
            #expect(dryRunAtA.exitCode == 0 && dryRunAtA.stdout.contains("incremental") && !dryRunAtA.stdout.contains("archived segment"), "\(dryRunAtA)")
            try await ChainTests.expectRestore(storage: storage, into: work.file("latest"), equals: b, extra: [])
            try await ChainTests.expectRestore(storage: storage, into: work.file("at-a"), equals: a, extra: ["--to-position", a.position.gtidText])
            try await ChainTests.expectRestore(storage: storage, into: work.file("at-b"), equals: b, extra: ["--to-position", b.position.gtidText])
        } catch {
            archiver?.kill(SIGKILL)
            await source.stop()
            throw error
        }
        archiver?.kill(SIGKILL)
        await source.stop()
    }

    func startArchiver(_ source: TestServer, storage: ScenarioStorage) throws -> ChildProcess {
        try CLI.start(["archive", "commerce/0", "--local", "--mysql-socket", source.socketPath,
                       "--interval", "\(Self.interval)s", "--log-level", "warning"] + storage.arguments,
                      environment: storage.environment)
    }

    func archivedSegments(_ storage: ScenarioStorage) async throws -> [ArchiveSegmentManifest] {
        try await storage.withStorage { store in
            try await BackupRepository(storage: store, logger: testLogger).listArchive(try KeyspaceShard(parsing: "commerce/0")).segments
        }
    }

    /// Waits until the archive holds `position` (the archiver stores at least every interval).
    func waitForArchive(_ storage: ScenarioStorage, reaching position: ReplicationPosition, archiver: ChildProcess) async throws {
        for _ in 0..<240 {
            if let newest = try await archivedSegments(storage).last, newest.position.contains(position) { return }
            if let exit = archiver.exitedStatus() {
                throw TestSupportError("the archiver exited (\(exit)): \(await archiver.capturedError())")
            }
            try await Task.sleep(for: .milliseconds(500))
        }
        throw TestSupportError("the archive did not reach \(position) in 2 minutes; newest segment: \(String(describing: try await archivedSegments(storage).last?.position))")
    }

    /// The newest transaction time in the source's binary logs after `position`, from `mariadb-binlog`.
    func lastTransactionTime(_ source: TestServer, after position: ReplicationPosition) async throws -> Date? {
        let logs = try await source.connect().binaryLogs().map { "\(source.dataDirectory)/\($0.name)" }
        let decoder = try ChildProcess("mariadb-binlog", arguments: ["--start-position=\(position.gtidText)"] + logs,
                                       environment: ["TZ": "UTC"], stdout: .capture(limit: 64 * 1024 * 1024), stderr: .capture(limit: 64 * 1024))
        try await decoder.checkSuccess(doing: "decoding the source's binary logs")
        let text = await decoder.capturedOutput()
        // "#261130 12:34:56 server id 1  end_log_pos 1234 CRC32 0x...  GTID 0-1-42 trans"
        var newest: Date? = nil
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyMMdd H:mm:ss"
        for line in text.split(separator: "\n") where line.hasPrefix("#") && line.contains(" GTID ") {
            // The hour is padded with a space: "#261130  9:05:01".
            let parts = line.dropFirst().split(separator: " ", maxSplits: 2)
            guard parts.count >= 2, let date = formatter.date(from: "\(parts[0]) \(parts[1])") else { continue }
            newest = max(newest ?? date, date)
        }
        return newest
    }
}
