import CairnCore
import CairnStorage
import CairnSystem
import CairnTestSupport
import Foundation
import Logging
import Testing

/// Issue 6: retention and pruning that never break a chain, through the
/// built `cairn` binary, on file storage and on SeaweedFS.
@Suite("Retention and pruning", .serialized)
struct RetentionTests {
    let shard = try! KeyspaceShard(parsing: "commerce/0")
    let logger = testLogger

    static let policy = #"{"min_count": 2, "min_age": "1h", "pitr_window": "3d", "keep_daily": 7, "keep_weekly": 4, "keep_monthly": 3, "incomplete_after": "24h"}"#

    func writeConfig(_ work: TemporaryDirectory, bucket: String, retention: String? = RetentionTests.policy, name: String = "cairn.json") throws -> String {
        let path = work.file(name)
        let body = retention.map { #"{"bucket": "\#(bucket)", "retention": \#($0)}"# } ?? #"{"bucket": "\#(bucket)"}"#
        try Data(body.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    func json(_ result: CLI.Result) throws -> [String: Any] {
        guard let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any] else {
            throw TestSupportError("not a JSON object: \(result)")
        }
        return object
    }

    /// (backup, decision, rules) from `prune --json`.
    func decisions(_ object: [String: Any]) -> [(String, String, [String])] {
        (object["decisions"] as? [[String: Any]] ?? []).map { d in
            (d["backup"] as? String ?? "", d["decision"] as? String ?? "", (d["reasons"] as? [[String: Any]] ?? []).map { $0["rule"] as? String ?? "" })
        }
    }

    /// One sentence on stderr, no stack trace.
    func isOneSentence(_ stderr: String) -> Bool {
        let lines = stderr.split(separator: "\n").filter { !$0.contains(" info ") && !$0.contains(" warning ") }
        return lines.count == 1 && lines[0].hasPrefix("error: ")
    }

    /// What the policy asks for on `WeeksOfHistory`, worked out here from
    /// the calendar: the two newest full backups; yesterday's chain (the
    /// latest); every chain reaching into the last 3 days; the newest full
    /// backup of each of the last 7 days, 4 ISO weeks and 3 months.
    func expectedKept(_ history: WeeksOfHistory, at now: Date) -> Set<String> {
        var keep = Set(history.fulls.prefix(2).map(\.backupName))
        keep.formUnion(history.chains[0].map(\.backupName))
        let windowStart = now.addingTimeInterval(-3 * 86400)
        for chain in history.chains where chain.last!.startTime >= windowStart {
            keep.formUnion(chain.map(\.backupName))
        }
        let calendar: Calendar = {
            var c = Calendar(identifier: .gregorian)
            c.timeZone = TimeZone(identifier: "UTC")!
            return c
        }()
        let day = { (d: Date) in Int((d.timeIntervalSince1970 / 86400).rounded(.down)) }
        let week = { (d: Date) in Int((Double(day(d) + 3) / 7).rounded(.down)) }  // 1970-01-01 was a Thursday
        let month = { (d: Date) in calendar.component(.year, from: d) * 12 + calendar.component(.month, from: d) }
        for (count, period) in [(7, day), (4, week), (3, month)] {
            for n in 0..<count {
                if let newest = history.fulls.first(where: { period($0.startTime) == period(now) - n }) {
                    keep.insert(newest.backupName)
                }
            }
        }
        return keep
    }

    func name(_ date: Date) -> String { BackupName(time: date, tabletAlias: SyntheticBackups.alias).description }

    /// Six weeks of history with an abandoned, a running and an unreadable
    /// backup; a dry run, then the real prune; checks both against the policy
    /// and the restore planner against what is left. `backdate` makes the
    /// abandoned backup's objects look old where the backend allows it.
    func weeksOfHistory(storage: any BackupStorage, url: String, environment: [String: String],
                        backdate: ((String) throws -> Void)?) async throws {
        let work = try TemporaryDirectory(prefix: "cairn-retention")
        defer { work.remove() }
        let config = try writeConfig(work, bucket: url)
        let now = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))
        let history = WeeksOfHistory(days: 42, now: now, shard: shard)
        let written = try await history.write(to: storage, shard: shard)
        let abandoned = name(now.addingTimeInterval(-10 * 86400 + 3 * 3600 + 7))
        let running = name(now.addingTimeInterval(-20 * 60))
        let unreadable = name(now.addingTimeInterval(-50 * 86400))
        try await SyntheticBackups.writeIncomplete(name: abandoned, to: storage, shard: shard)
        try backdate?(abandoned)
        try await SyntheticBackups.writeIncomplete(name: running, to: storage, shard: shard, data: false)
        try await SyntheticBackups.writeUnreadable(name: unreadable, to: storage, shard: shard)

        // Not within two minutes of a time of day where the plan changes, so the runs below agree.
        _ = try await WeeksOfHistory.settledNow()
        let dryText = try await CLI.run(["prune", "commerce/0", "--config", config, "--dry-run"], environment: environment)
        #expect(dryText.exitCode == 0, "\(dryText)")
        #expect(dryText.stdout.contains("BACKUP") && dryText.stdout.contains("DECISION") && dryText.stdout.contains("REASON"))
        #expect(dryText.stdout.contains("Dry run:"), "\(dryText.stdout)")
        #expect(dryText.stderr.contains("warning: backup \(unreadable)"), "\(dryText.stderr)")

        let dry = try await CLI.run(["PruneBackups", "commerce/0", "--config", config, "--dry-run", "--json"], environment: environment)
        #expect(dry.exitCode == 0, "\(dry)")
        let dryObject = try json(dry)
        let dryDecisions = decisions(dryObject)
        let removalOrder = dryObject["removal_order"] as? [String] ?? []
        // Nothing changed.
        #expect(try await BackupRepository(storage: storage, logger: logger).list(shard).count == written.count + 3)

        // The command's own clock decides; the expectation uses it too.
        let planned = try #require((dryObject["now"] as? String).flatMap(UTCTime.parseRFC3339))
        #expect(abs(planned.timeIntervalSinceNow) < 300)
        let expected = expectedKept(history, at: planned)
        let completeNames = Set(written.map(\.backupName))
        let dryKept = Set(dryDecisions.filter { $0.1 == "keep" }.map(\.0))
        #expect(dryKept.intersection(completeNames) == expected,
                "kept but not asked for: \(dryKept.intersection(completeNames).subtracting(expected).sorted()); asked for but removed: \(expected.subtracting(dryKept).sorted())")
        func rules(_ n: String) -> [String] { dryDecisions.first { $0.0 == n }?.2 ?? [] }
        #expect(rules(running) == ["may_be_running"])
        #expect(rules(unreadable) == ["unreadable"])
        if backdate != nil {
            #expect(rules(abandoned) == ["incomplete_after"])
        } else {
            // Object stores set the modification time themselves: written just now, it may still be running.
            #expect(rules(abandoned) == ["may_be_running"])
        }
        #expect(rules(history.fulls[0].backupName).contains("min_count"))
        #expect(rules(history.chains[0].last!.backupName).contains("latest"))
        #expect(dryDecisions.contains { $0.2.contains("pitr_window") })
        #expect(dryDecisions.contains { $0.2.contains("keep_weekly") })
        for (backup, decision, why) in dryDecisions where completeNames.contains(backup) && decision == "remove" {
            #expect(why == ["not_needed"], "\(backup): \(why)")
        }

        let real = try await CLI.run(["prune", "commerce/0", "--config", config, "--json"], environment: environment)
        #expect(real.exitCode == 0, "\(real)")
        let realObject = try json(real)
        // The dry run listed exactly what the real run did.
        #expect(decisions(realObject).map { "\($0.0) \($0.1) \($0.2)" } == dryDecisions.map { "\($0.0) \($0.1) \($0.2)" })
        #expect(realObject["removed"] as? [String] == removalOrder)
        let left = try await BackupRepository(storage: storage, logger: logger).list(shard)
        #expect(Set(left.map(\.name)) == dryKept)
        #expect(left.allSatisfy { !$0.removalStarted })

        // Every second of the window that restored before restores now; so does every kept full backup.
        let after = left.compactMap(\.manifest)
        var checked = 0
        var t = planned.addingTimeInterval(-3 * 86400)
        while t <= planned {
            if (try? RestorePlanner.plan(backups: written, target: .time(t))) != nil {
                #expect((try? RestorePlanner.plan(backups: after, target: .time(t))) != nil, "time \(UTCTime.rfc3339(t)) no longer restores")
                checked += 1
            }
            t = t.addingTimeInterval(97)
        }
        #expect(checked > 1000)
        for full in after where !full.incremental {
            #expect((try? RestorePlanner.plan(backups: after, target: .backup(full.backupName))) != nil)
        }
        // The real binary agrees: a restore dry run to the start of the window's oldest kept chain.
        let windowChain = history.chains.last { $0.last!.startTime >= planned.addingTimeInterval(-3 * 86400) }!
        let target = UTCTime.rfc3339(windowChain[1].startTime.addingTimeInterval(-60), fractional: false)
        let restore = try await CLI.run(["restore", "commerce/0", "--local", "--target-datadir", work.file("never-created"),
                                         "--config", config, "--to-time", target, "--dry-run", "--json"], environment: environment)
        #expect(restore.exitCode == 0, "\(restore)")
        #expect(restore.stdout.contains(windowChain[0].backupName))

        // A second prune has nothing left to do.
        let again = try await CLI.run(["prune", "commerce/0", "--config", config, "--json"], environment: environment)
        #expect(again.exitCode == 0, "\(again)")
        #expect((try json(again)["removed"] as? [String]) == [])
    }

    @Test("weeks of history on file storage: prune keeps exactly what the policy asks, and the window stays restorable")
    func weeksOnFiles() async throws {
        let work = try TemporaryDirectory(prefix: "cairn-retention-files")
        defer { work.remove() }
        let root = work.file("backups")
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let storage = FileStorage(root: root)
        try await weeksOfHistory(storage: storage, url: "file://\(root)", environment: [:]) { name in
            let dir = "\(root)/commerce/0/\(name)"
            let old = Date().addingTimeInterval(-10 * 86400)
            for file in try FileManager.default.contentsOfDirectory(atPath: dir) {
                try FileManager.default.setAttributes([.modificationDate: old], ofItemAtPath: "\(dir)/\(file)")
            }
        }
    }

    @Test("weeks of history on SeaweedFS: the same, through s3://", .seaweedFS)
    func weeksOnS3() async throws {
        let server = try SharedSeaweedFS.server()
        let storage = server.storage(bucket: SharedSeaweedFS.bucket, prefix: "weeks")
        let environment = ["AWS_ACCESS_KEY_ID": SeaweedFS.accessKey, "AWS_SECRET_ACCESS_KEY": SeaweedFS.secretKey,
                           "AWS_ENDPOINT_URL_S3": server.endpoint, "AWS_REGION": "us-east-1"]
        try await storage.shuttingDown {
            try await weeksOfHistory(storage: storage, url: "s3://\(SharedSeaweedFS.bucket)/weeks", environment: environment, backdate: nil)
        }
    }

    /// `strace` injects SIGKILL into `cairn prune` when it is about to
    /// delete one chosen object of the backup at position `index` in the
    /// removal order: the real process dies at an exact point between
    /// deletions, with no hook in Cairn's code. (The points are unlinks:
    /// strace 6.1's path filter does not match a rename's target.)
    @Test("a prune killed between deletions leaves whole or plainly incomplete backups, and the next prune finishes", arguments: [
        (0, "MANIFEST"),                       // marked, MANIFEST still there
        (0, "STARTED"),                        // MANIFEST gone, data still there
        (0, BackupRepository.removingMarker),  // everything gone but the marker; the next backup untouched
        (5, "MANIFEST"),
        (17, "STARTED"),
        (35, "MANIFEST"),                      // the last removal: the oldest full backup
    ])
    func killedPrune(index: Int, file: String) async throws {
        let work = try TemporaryDirectory(prefix: "cairn-prune-killed")
        defer { work.remove() }
        let root = work.file("backups")
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let storage = FileStorage(root: root)
        let now = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))
        let written = try await WeeksOfHistory(days: 10, now: now, shard: shard).write(to: storage, shard: shard)
        let config = try writeConfig(work, bucket: "file://\(root)", retention: #"{"min_count": 1}"#)
        let dry = try await CLI.run(["prune", "commerce/0", "--config", config, "--dry-run", "--json"])
        #expect(dry.exitCode == 0, "\(dry)")
        let dryObject = try json(dry)
        let kept = Set(decisions(dryObject).filter { $0.1 == "keep" }.map(\.0))
        let order = dryObject["removal_order"] as? [String] ?? []
        #expect(order.count == 36 && kept.count == written.count - 36, "\(order.count) removals, \(kept.count) kept")
        let victim = order[index]

        let calls = "unlink,unlinkat"
        let child = try ChildProcess("strace", arguments: [
            "-f", "-qq", "-o", "/dev/null", "-P", "\(root)/commerce/0/\(victim)/\(file)",
            "-e", "trace=\(calls)", "-e", "inject=\(calls):signal=KILL",
            CLI.binaryPath, "prune", "commerce/0", "--config", config,
        ], stdout: .null, stderr: .capture(limit: 64 * 1024))
        let exit = await child.wait()
        #expect(exit.signal == 9 || exit.code == 137, "the prune was not killed: \(exit)")

        // Whatever it left: the backups before the victim in the order are gone, the victim is whole or
        // plainly incomplete (marked for removal), and every complete backup's files check out.
        let left = try await BackupRepository(storage: storage, logger: logger).list(shard)
        let leftNames = Set(left.map(\.name))
        #expect(leftNames.isDisjoint(with: order.prefix(index)), "removed before the kill: \(order.prefix(index))")
        #expect(leftNames.isSuperset(of: order.dropFirst(index + 1)))
        for backup in left where !backup.isComplete {
            #expect(backup.name == victim && backup.removalStarted, "\(backup.name) is incomplete without a removal marker")
        }
        #expect(left.first { $0.name == victim }?.removalStarted == true)
        let verify = try await CLI.run(["verify", "commerce/0", "--storage", "file://\(root)", "--json"])
        #expect(verify.exitCode == 0, "\(verify)")

        let finish = try await CLI.run(["prune", "commerce/0", "--config", config, "--json"])
        #expect(finish.exitCode == 0, "\(finish)")
        let finished = decisions(try json(finish))
        #expect(finished.first { $0.0 == victim }?.2 == ["removal_interrupted"])
        #expect(Set(try await BackupRepository(storage: storage, logger: logger).list(shard).map(\.name)) == kept)
    }

    @Test("remove-backup refuses to break a chain, naming its dependents; --force removes them too and says so")
    func removeBackup() async throws {
        let work = try TemporaryDirectory(prefix: "cairn-remove-backup")
        defer { work.remove() }
        let root = work.file("backups")
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let storage = FileStorage(root: root)
        let now = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))
        let history = WeeksOfHistory(days: 3, now: now, shard: shard)
        _ = try await history.write(to: storage, shard: shard)
        let url = "file://\(root)"
        let chain = history.chains[1]

        let refused = try await CLI.run(["remove-backup", "commerce/0", chain[1].backupName, "--storage", url])
        #expect(refused.exitCode == 1, "\(refused)")
        #expect(refused.stderr.contains(chain[2].backupName) && refused.stderr.contains(chain[3].backupName), "\(refused)")
        #expect(refused.stderr.contains("--force") && isOneSentence(refused.stderr), "\(refused.stderr)")
        #expect(try await BackupRepository(storage: storage, logger: logger).list(shard).count == 13)

        let dry = try await CLI.run(["RemoveBackup", "commerce/0", chain[1].backupName, "--storage", url, "--force", "--dry-run"])
        #expect(dry.exitCode == 0, "\(dry)")
        #expect(dry.stdout.contains("Would remove") && dry.stdout.contains("nothing was changed"), "\(dry)")
        #expect(try await BackupRepository(storage: storage, logger: logger).list(shard).count == 13)

        let forced = try await CLI.run(["remove-backup", "commerce/0", chain[1].backupName, "--storage", url, "--force"])
        #expect(forced.exitCode == 0, "\(forced)")
        #expect(forced.stdout.contains("because of --force") && forced.stdout.contains(chain[2].backupName) && forced.stdout.contains(chain[3].backupName), "\(forced)")
        let left = Set(try await BackupRepository(storage: storage, logger: logger).list(shard).map(\.name))
        #expect(left.isDisjoint(with: chain.dropFirst().map(\.backupName)) && left.contains(chain[0].backupName))

        let single = try await CLI.run(["remove-backup", "commerce/0", history.chains[2][3].backupName, "--storage", url, "--json"])
        #expect(single.exitCode == 0, "\(single)")
        #expect(try json(single)["removed"] as? [String] == [history.chains[2][3].backupName])

        let missing = try await CLI.run(["remove-backup", "commerce/0", "2020-01-01.000000.zone1-100", "--storage", url])
        #expect(missing.exitCode == 1 && missing.stderr.contains("no backup named"), "\(missing)")
    }

    @Test("bad policies are refused when the configuration loads, naming the key", arguments: [
        (#"{"min_count": 0}"#, "retention.min_count"),
        (#"{"min_count": -3}"#, "retention.min_count"),
        (#"{"keep_weekly": -1}"#, "retention.keep_weekly"),
        (#"{"pitr_window": "3 days"}"#, "retention.pitr_window"),
        (#"{"min_age": "forever"}"#, "retention.min_age"),
        (#"{"incomplete_after": "10m"}"#, "retention.incomplete_after"),
        (#"{"keep_yearly": 2}"#, "retention.keep_yearly"),
    ])
    func badPolicies(_ retention: String, _ key: String) async throws {
        let work = try TemporaryDirectory(prefix: "cairn-bad-policy")
        defer { work.remove() }
        try FileManager.default.createDirectory(atPath: work.file("backups"), withIntermediateDirectories: true)
        let config = try writeConfig(work, bucket: "file://\(work.file("backups"))", retention: retention)
        for verb in [["prune", "commerce/0"], ["backups", "commerce/0"]] {
            let result = try await CLI.run(verb + ["--config", config])
            #expect(result.exitCode == 1, "\(result)")
            #expect(result.stderr.contains(key) && isOneSentence(result.stderr), "\(result.stderr)")
        }
    }

    @Test("prune without a policy refuses, saying where to put one")
    func noPolicy() async throws {
        let work = try TemporaryDirectory(prefix: "cairn-no-policy")
        defer { work.remove() }
        try FileManager.default.createDirectory(atPath: work.file("backups"), withIntermediateDirectories: true)
        let config = try writeConfig(work, bucket: "file://\(work.file("backups"))", retention: nil)
        let result = try await CLI.run(["prune", "commerce/0", "--config", config])
        #expect(result.exitCode == 1, "\(result)")
        #expect(result.stderr.contains("no retention policy") && result.stderr.contains("\"retention\""), "\(result.stderr)")
        let usage = try await CLI.run(["prune", "commerce", "--config", config])
        #expect(usage.exitCode == 2, "\(usage)")
    }

    @Test("a backup in direct mode prunes after it commits, when a policy is configured")
    func pruneAfterBackup() async throws {
        try await withTestServer { server in
            let work = try TemporaryDirectory(prefix: "cairn-backup-prunes")
            defer { work.remove() }
            let root = work.file("backups")
            try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
            try await server.query("CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY); INSERT INTO app.t VALUES (1)")
            let config = try writeConfig(work, bucket: "file://\(root)", retention: #"{"min_count": 1}"#)
            func backup(_ type: String) async throws -> [String: Any] {
                let result = try await CLI.run(["backup", "commerce/0", "--local", "--mysql-socket", server.socketPath,
                                                "--mysql-datadir", server.dataDirectory, "--config", config,
                                                "--engine", "logical", "--type", type, "--json"])
                #expect(result.exitCode == 0, "\(result)")
                return try json(result)
            }
            let first = try await backup("full")
            try await server.query("INSERT INTO app.t VALUES (2)")
            let second = try await backup("incremental")
            try await Task.sleep(for: .seconds(1.1))
            let third = try await backup("full")
            func name(_ o: [String: Any]) -> String { (o["backup"] as? [String: Any])?["backup_name"] as? String ?? "" }
            // The first backups' prunes had nothing to remove: each one's chain was the latest.
            #expect((first["prune"] as? [String: Any])?["removed"] as? [String] == [])
            #expect((second["prune"] as? [String: Any])?["removed"] as? [String] == [])
            // The new full backup is the only one min_count 1 keeps: the old chain goes, its incremental first.
            #expect((third["prune"] as? [String: Any])?["removed"] as? [String] == [name(second), name(first)])
            let left = try await BackupRepository(storage: FileStorage(root: root), logger: logger).list(shard)
            #expect(left.map(\.name) == [name(third)])
        }
    }
}
