import ArgumentParser
import CairnCluster
import CairnCore
import CairnEngine
import CairnStorage
import Foundation

// Verbs over a whole keyspace: `backup <keyspace>`, `restore-point`, `restore-points`.

/// One shard's line of a keyspace backup, in `--json`.
struct KeyspaceBackupShardJSON: Encodable {
    var shard: String
    var job: ClusterAPI.Job?
    var error: String?
}

struct KeyspaceBackupJSON: Encodable {
    var keyspace: String
    var shards: [KeyspaceBackupShardJSON]
}

extension BackupCommand {
    /// Backs up every shard ctld knows of `keyspace`, at most `--concurrency`
    /// at once, one line per shard as each ends; fails naming the shards that failed.
    func backUpKeyspace(_ keyspace: String, configuration: CairnConfiguration) async throws {
        _ = output.makeLogger()
        let client = try cluster.client(configuration)
        let shards = try await KeyspaceShards.of(keyspace, client: client)
        let request = { (shard: KeyspaceShard) in
            ClusterAPI.BackupRequest(keyspace: shard.keyspace, shard: shard.shard, tablet: nil, tabletType: tabletType, type: type, engine: engine)
        }
        var results: [KeyspaceBackupShardJSON] = []
        if async {
            for shard in shards {
                do {
                    let job = try await client.startBackup(request(shard))
                    results.append(KeyspaceBackupShardJSON(shard: shard.description, job: job))
                    if !output.json { Output.line("\(shard): backup job \(job.id) started on tablet \(shortTablet(job.tablet))") }
                } catch let error as CairnError {
                    results.append(KeyspaceBackupShardJSON(shard: shard.description, error: error.message))
                    if !output.json { Output.line("\(shard): not started: \(error.message)") }
                }
            }
        } else {
            if !output.json {
                Output.line("Backing up keyspace \"\(keyspace)\": \(shards.count) shard\(shards.count == 1 ? "" : "s"), at most \(concurrency) at once")
            }
            results = try await withThrowingTaskGroup(of: KeyspaceBackupShardJSON.self) { group in
                var pending = shards[...]
                var done: [KeyspaceBackupShardJSON] = []
                func startNext() {
                    guard let shard = pending.popFirst() else { return }
                    let one = request(shard)
                    group.addTask { await Self.backUpOne(shard, request: one, client: client) }
                }
                for _ in 0..<concurrency { startNext() }
                while let result = try await group.next() {
                    done.append(result)
                    if !output.json { Output.line(Self.line(for: result)) }
                    startNext()
                }
                return done.sorted { $0.shard < $1.shard }
            }
        }
        if output.json { try Output.json(KeyspaceBackupJSON(keyspace: keyspace, shards: results)) }
        let failed = results.filter { $0.error != nil || ($0.job.map { $0.isFinished && $0.result == .failed } ?? false) }
        guard failed.isEmpty else {
            let named = failed.map { "\($0.shard) (\($0.error ?? $0.job?.error ?? "failed"))" }.joined(separator: "; ")
            throw CairnError(.cluster, "the backup of keyspace \(keyspace) failed on \(failed.count) of \(results.count) shard\(results.count == 1 ? "" : "s"): \(named)")
        }
        if !async, !output.json {
            Output.line("Backed up every shard of keyspace \"\(keyspace)\" (\(results.count)).")
        }
    }

    /// Starts one shard's backup and polls it to its end; a failure is a result, not a throw.
    private static func backUpOne(_ shard: KeyspaceShard, request: ClusterAPI.BackupRequest, client: ClusterClient) async -> KeyspaceBackupShardJSON {
        do {
            var job = try await client.startBackup(request)
            while !job.isFinished {
                try await Task.sleep(for: .milliseconds(500))
                job = try await client.job(job.id)
            }
            return KeyspaceBackupShardJSON(shard: shard.description, job: job, error: job.result == .failed ? job.error ?? "failed" : nil)
        } catch let error as CairnError {
            return KeyspaceBackupShardJSON(shard: shard.description, error: error.message)
        } catch {
            return KeyspaceBackupShardJSON(shard: shard.description, error: "\(error)")
        }
    }

    static func line(for result: KeyspaceBackupShardJSON) -> String {
        if let error = result.error { return "\(result.shard): failed: \(error)" }
        guard let job = result.job else { return "\(result.shard): no job" }
        switch job.result {
        case .completed?:
            return "\(result.shard): backup \(job.backupName ?? "?") completed on tablet \(shortTablet(job.tablet)): \(job.note ?? "done"), position \(job.position ?? "?")"
        case .nothingToDo?:
            return "\(result.shard): no backup was needed: \(job.note ?? "nothing new")"
        default:
            return "\(result.shard): failed: \(job.error ?? "no reason given")"
        }
    }
}

enum KeyspaceShards {
    /// The shards of `keyspace` that have registered tablets, sorted.
    static func of(_ keyspace: String, client: ClusterClient) async throws -> [KeyspaceShard] {
        let tablets = try await client.tablets()
        let shards = Set(tablets.filter { $0.keyspace == keyspace }.compactMap { try? KeyspaceShard(keyspace: $0.keyspace, shard: $0.shard) })
        guard !shards.isEmpty else {
            let known = Set(tablets.map(\.keyspace)).sorted()
            throw CairnError(.notFound, "ctld knows no shard of keyspace \(keyspace); known keyspaces: \(known.isEmpty ? "none (no tablet has registered)" : known.joined(separator: ", "))")
        }
        return shards.sorted()
    }
}

struct RestorePointCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore-point",
        abstract: "Record one consistent instant across every shard of a keyspace.",
        discussion: """
            Through ctld: blocks commits on every primary of the keyspace together (BACKUP STAGE BLOCK_COMMIT), \
            reads each one's GTID position, releases them all, and stores the point under the keyspace. \
            If a shard fails, or blocking takes longer than --max-block, everything is released and nothing is recorded. \
            Restore a shard to it with `cairn restore <keyspace>/<shard> --to-restore-point NAME`.
            """,
        aliases: ["CreateRestorePoint"]
    )

    @Argument(help: ArgumentHelp("The keyspace.", valueName: "keyspace"))
    var keyspace: String

    @Argument(help: ArgumentHelp("The point's name: letters, digits, '.', '_' and '-'.", valueName: "name"))
    var name: String

    @Option(name: .long, help: ArgumentHelp("How long waiting for every primary to block commits may take (1ms to 60s).", valueName: "duration"))
    var maxBlock: String = "2s"

    @OptionGroup var storageOptions: StorageOptions
    @OptionGroup var cluster: ClusterOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        do {
            try KeyspaceShard.validateKeyspace(keyspace)
            try RestorePoint.validateName(name)
            _ = try parseMaximumBlock(maxBlock)
        } catch let error as CairnError {
            throw ValidationError(error)
        }
    }

    func run() async throws {
        let configuration = try storageOptions.loadConfiguration()
        _ = output.makeLogger()
        let point = try await cluster.client(configuration).createRestorePoint(
            ClusterAPI.RestorePointRequest(keyspace: keyspace, name: name, maximumBlockMilliseconds: try parseMaximumBlock(maxBlock)))
        if output.json {
            try Output.json(point)
            return
        }
        Output.line("Restore point \(point.name) of keyspace \"\(point.keyspace)\" created at \(UTCTime.rfc3339(point.createdAt, fractional: false)): commits were blocked for \(point.blockedMilliseconds) ms at most, on \(point.shards.count) primar\(point.shards.count == 1 ? "y" : "ies").")
        var table = TextTable(header: ["SHARD", "POSITION", "TABLET", "BLOCKED"])
        for (shard, part) in point.shards.sorted(by: { $0.key < $1.key }) {
            table.rows.append([shard, part.position.description, part.tablet, "\(part.blockedMilliseconds) ms"])
        }
        Output.line(table.render())
    }
}

struct RestorePointsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restore-points",
        abstract: "List a keyspace's restore points and whether every shard can restore each one yet.",
        discussion: "Reads storage directly with --storage or --config; otherwise asks ctld. A point is restorable once every shard's backups reach its position.",
        aliases: ["ListRestorePoints"]
    )

    @Argument(help: ArgumentHelp("The keyspace.", valueName: "keyspace"))
    var keyspace: String

    @OptionGroup var storageOptions: StorageOptions
    @OptionGroup var cluster: ClusterOptions
    @OptionGroup var output: OutputOptions

    func validate() throws {
        do { try KeyspaceShard.validateKeyspace(keyspace) } catch let error as CairnError { throw ValidationError(error) }
    }

    func run() async throws {
        let configuration = try storageOptions.loadConfiguration()
        let logger = output.makeLogger()
        let statuses: [RestorePointStatus]
        if storageOptions.isDirect {
            statuses = try await storageOptions.withStorage(configuration, logger: logger) { storage in
                try await RestorePointRepository(storage: storage, logger: logger).statuses(keyspace: keyspace)
            }
        } else {
            statuses = try await cluster.client(configuration).restorePoints(keyspace: keyspace)
        }
        if output.json {
            try Output.json(statuses)
            return
        }
        guard !statuses.isEmpty else {
            Output.line("No restore points in keyspace \(keyspace).")
            return
        }
        var table = TextTable(header: ["NAME", "CREATED", "SHARDS", "BLOCKED", "RESTORABLE"])
        for status in statuses {
            let point = status.point
            table.rows.append([point.name, UTCTime.rfc3339(point.createdAt, fractional: false),
                               point.shards.keys.sorted().joined(separator: ","), "\(point.blockedMilliseconds) ms",
                               status.restorable ? "yes" : "not yet: \(status.unreachable.keys.sorted().joined(separator: ","))"])
        }
        Output.line(table.render())
        for status in statuses where !status.restorable {
            for (shard, reason) in status.unreachable.sorted(by: { $0.key < $1.key }) {
                Output.note("\(status.point.name), \(keyspace)/\(shard): \(reason)")
            }
        }
    }
}
