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

/// One shard's line of a keyspace restore, in `--json`.
struct KeyspaceRestoreShardJSON: Encodable {
    var shard: String
    var plan: RestorePlanSummary?
    var targetDatadir: String?
    var reachedPosition: String?
    var job: ClusterAPI.Job?
    var error: String?

    enum CodingKeys: String, CodingKey {
        case shard, plan, job, error
        case targetDatadir = "target_datadir"
        case reachedPosition = "reached_position"
    }
}

struct KeyspaceRestoreJSON: Encodable {
    var keyspace: String
    var target: String
    var shards: [KeyspaceRestoreShardJSON]
}

extension RestoreCommand {
    func validate() throws {
        guard case .keyspace(let keyspace) = scope else {
            if targetRoot != nil { throw ValidationError("--target-root is for a keyspace; one shard restores into --target-datadir") }
            return
        }
        guard restoreTarget.toRestorePoint != nil || restoreTarget.toTime != nil else {
            throw ValidationError("a keyspace is restored to one instant: pass --to-restore-point NAME (consistent across shards) or --to-time T; --backup and --to-position name one shard's history, so give <keyspace>/<shard> with them")
        }
        if local {
            guard targetRoot != nil, targetDatadir == nil else {
                throw ValidationError("a keyspace in direct mode restores each shard into <root>/<shard>: pass --target-root PATH (not --target-datadir), e.g. `cairn restore \(keyspace) --local --target-root /restore --to-restore-point NAME`")
            }
        } else if targetRoot != nil || targetDatadir != nil || tablet != nil {
            throw ValidationError("through ctld a keyspace is restored into each shard's replica tablet, chosen by ctld's topology; --target-root and --target-datadir are for --local, and --tablet names one shard's tablet")
        }
    }

    func restoreKeyspace(_ keyspace: String, parameters: ClusterAPI.RestoreParameters) async throws {
        let results = local ? try await restoreKeyspaceLocally(keyspace, parameters: parameters)
                            : try await restoreKeyspaceThroughControlServer(keyspace, parameters: parameters)
        let target = parameters.restorePoint.map { "restore point \($0)" } ?? parameters.toTime.map { "time \(UTCTime.rfc3339($0, fractional: false))" } ?? "?"
        if output.json { try Output.json(KeyspaceRestoreJSON(keyspace: keyspace, target: target, shards: results)) }
        let failed = results.filter { $0.error != nil }
        guard failed.isEmpty else {
            let named = failed.map { "\($0.shard) (\($0.error!))" }.joined(separator: "; ")
            throw CairnError(.chain, "the restore of keyspace \(keyspace) to \(target) failed on \(failed.count) of \(results.count) shard\(results.count == 1 ? "" : "s"): \(named)")
        }
        if !output.json, !dryRun, !async {
            Output.line("Restored every shard of keyspace \"\(keyspace)\" (\(results.count)) to \(target).")
        }
    }

    /// Plans every shard first (nothing is written unless each can reach the
    /// target), then restores them in parallel into `<root>/<shard>`.
    private func restoreKeyspaceLocally(_ keyspace: String, parameters: ClusterAPI.RestoreParameters) async throws -> [KeyspaceRestoreShardJSON] {
        let configuration = try storageOptions.loadConfiguration()
        let logger = output.makeLogger()
        let root = URL(fileURLWithPath: targetRoot!).standardizedFileURL.path
        let replay = binlogReplay
        let keyring = try MasterKeyring.load(configuration.encryption)
        return try await storageOptions.withStorage(configuration, logger: logger) { storage in
            let shards: [KeyspaceShard]
            if let name = parameters.restorePoint {
                let point = try await RestorePointRepository(storage: storage, logger: logger).load(keyspace: keyspace, name: name)
                shards = try point.shards.keys.sorted().map { try KeyspaceShard(keyspace: keyspace, shard: $0) }
            } else {
                shards = try await BackupRepository(storage: storage, logger: logger).shards().filter { $0.keyspace == keyspace }
            }
            guard !shards.isEmpty else {
                throw CairnError(.notFound, "storage \(storage.displayURL) holds no shard of keyspace \(keyspace)")
            }
            var planned: [(shard: KeyspaceShard, plan: RestorePlan, directory: String)] = []
            for shard in shards {
                let runner = RestoreRunner(context: RestoreContext(shard: shard, storage: storage, logger: logger, progress: nil, replay: replay,
                                                                   keyring: keyring))
                do {
                    let target = try await parameters.resolvingRestorePoint(for: shard, in: storage, logger: logger).target()
                    let directory = "\(root)/\(shard.shard)"
                    let plan = try await runner.plan(target)
                    try runner.checkKeys(plan)
                    try RestoreRunner.checkTarget(directory)
                    planned.append((shard, plan, directory))
                } catch let error as CairnError {
                    throw CairnError(error.code, "nothing was restored: \(shard) cannot be: \(error.message)")
                }
            }
            if dryRun {
                for (shard, plan, directory) in planned where !output.json {
                    Output.line("Restore of \(shard) to \(plan.target) into \(directory) would apply:")
                    Output.line(RestorePlanSummary(plan).table())
                }
                if !output.json { Output.line("Dry run: nothing was changed.") }
                return planned.map { KeyspaceRestoreShardJSON(shard: $0.shard.description, plan: RestorePlanSummary($0.plan), targetDatadir: $0.directory) }
            }
            if !output.json { Output.line("Restoring keyspace \"\(keyspace)\": \(planned.count) shards into \(root), in parallel") }
            return await withTaskGroup(of: KeyspaceRestoreShardJSON.self, returning: [KeyspaceRestoreShardJSON].self) { group in
                for (shard, plan, directory) in planned {
                    group.addTask {
                        var line = KeyspaceRestoreShardJSON(shard: shard.description, plan: RestorePlanSummary(plan), targetDatadir: directory)
                        do {
                            let runner = RestoreRunner(context: RestoreContext(shard: shard, storage: storage, logger: logger, progress: nil, replay: replay,
                                                                   keyring: keyring))
                            line.reachedPosition = try await runner.run(plan, into: directory).position.description
                        } catch let error as CairnError {
                            line.error = error.message
                        } catch {
                            line.error = "\(error)"
                        }
                        return line
                    }
                }
                var lines: [KeyspaceRestoreShardJSON] = []
                for await line in group {
                    lines.append(line)
                    if !output.json {
                        Output.line(line.error.map { "\(line.shard): failed: \($0)" }
                                    ?? "\(line.shard): restored into \(line.targetDatadir ?? "?"), position \(line.reachedPosition ?? "?")")
                    }
                }
                return lines.sorted { $0.shard < $1.shard }
            }
        }
    }

    /// Restores each shard into one of its replica tablets (the first healthy
    /// non-primary by alias); every shard must have one before any starts.
    private func restoreKeyspaceThroughControlServer(_ keyspace: String, parameters: ClusterAPI.RestoreParameters) async throws -> [KeyspaceRestoreShardJSON] {
        let configuration = try storageOptions.loadConfiguration()
        _ = output.makeLogger()
        let client = try cluster.client(configuration)
        var shards = try await KeyspaceShards.of(keyspace, client: client)
        if let name = parameters.restorePoint {
            // Every shard of the point, whether or not it has tablets now.
            guard let status = try await client.restorePoints(keyspace: keyspace).first(where: { $0.point.name == name }) else {
                throw CairnError(.notFound, "there is no restore point \(name) in keyspace \(keyspace); list them with `cairn restore-points \(keyspace)`")
            }
            shards = try status.point.shards.keys.sorted().map { try KeyspaceShard(keyspace: keyspace, shard: $0) }
        }
        let tablets = try await client.tablets()
        var targets: [(shard: KeyspaceShard, tablet: String)] = []
        for shard in shards {
            let candidates = tablets.filter { $0.keyspace == shard.keyspace && $0.shard == shard.shard && $0.type != .primary && $0.healthy }
            guard let tablet = candidates.map(\.alias).sorted().first else {
                throw CairnError(.cluster, "nothing was restored: shard \(shard) has no healthy replica or rdonly tablet to restore into; start one (`cairn tablet --type replica ...`), or restore in direct mode with --local --target-root")
            }
            targets.append((shard, tablet))
        }
        // Every shard is planned before any replica is wiped.
        if !dryRun {
            for (shard, tablet) in targets {
                do {
                    _ = try await client.startRestore(ClusterAPI.RestoreRequest(keyspace: shard.keyspace, shard: shard.shard, tablet: tablet,
                                                                                parameters: parameters, dryRun: true))
                } catch let error as CairnError {
                    throw CairnError(error.code, "nothing was restored: \(shard) cannot be: \(error.message)")
                }
            }
        }
        var results: [KeyspaceRestoreShardJSON] = []
        var started: [(shard: KeyspaceShard, job: ClusterAPI.Job)] = []
        for (shard, tablet) in targets {
            let request = ClusterAPI.RestoreRequest(keyspace: shard.keyspace, shard: shard.shard, tablet: tablet, parameters: parameters, dryRun: dryRun)
            do {
                let response = try await client.startRestore(request)
                if let job = response.job {
                    started.append((shard, job))
                    if !output.json { Output.line("\(shard): restore job \(job.id) started on tablet \(shortTablet(job.tablet))") }
                } else {
                    results.append(KeyspaceRestoreShardJSON(shard: shard.description, plan: response.plan))
                    if !output.json, let plan = response.plan {
                        Output.line("Restore of \(shard) to \(plan.target) into tablet \(tablet) would apply:")
                        Output.line(plan.table())
                    }
                }
            } catch let error as CairnError {
                results.append(KeyspaceRestoreShardJSON(shard: shard.description, error: error.message))
                if !output.json { Output.line("\(shard): not started: \(error.message)") }
            }
        }
        if async || dryRun {
            return (results + started.map { KeyspaceRestoreShardJSON(shard: $0.shard.description, job: $0.job) }).sorted { $0.shard < $1.shard }
        }
        let finished = await withTaskGroup(of: KeyspaceRestoreShardJSON.self, returning: [KeyspaceRestoreShardJSON].self) { group in
            for (shard, job) in started {
                group.addTask {
                    do {
                        var current = job
                        while !current.isFinished {
                            try await Task.sleep(for: .milliseconds(500))
                            current = try await client.job(job.id)
                        }
                        return KeyspaceRestoreShardJSON(shard: shard.description, reachedPosition: current.position, job: current,
                                                        error: current.result == .completed ? nil : current.error ?? "failed")
                    } catch {
                        return KeyspaceRestoreShardJSON(shard: shard.description, job: job, error: (error as? CairnError)?.message ?? "\(error)")
                    }
                }
            }
            var lines: [KeyspaceRestoreShardJSON] = []
            for await line in group {
                lines.append(line)
                if !output.json {
                    Output.line(line.error.map { "\(line.shard): failed: \($0)" }
                                ?? "\(line.shard): restored tablet \(shortTablet(line.job?.tablet ?? "?")) to \(line.reachedPosition ?? "?")")
                }
            }
            return lines
        }
        return (results + finished).sorted { $0.shard < $1.shard }
    }
}
