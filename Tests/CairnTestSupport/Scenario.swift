import CairnCore
import CairnMySQL
import CairnStorage
import CairnSystem
import Foundation
import Logging

/// A recorded instant of the source: its position, its tables' checksums, and the time.
public struct Snapshot: Sendable, CustomStringConvertible {
    public var position: ReplicationPosition
    public var checksums: [String: String]
    public var time: Date

    public static func take(_ server: TestServer) async throws -> Snapshot {
        Snapshot(position: try await server.gtidBinlogPosition(), checksums: try await server.checksums(), time: Date())
    }

    public var description: String { "\(position) at \(UTCTime.rfc3339(time))" }
}

/// Where a scenario's backups are kept, and how the `cairn` binary is told:
/// `--storage file:///...`, or, for an object store, `--config` naming a
/// configuration file (bucket, endpoint, retries, concurrency) with the
/// credentials in the process environment, as an operator would set it up.
public struct ScenarioStorage: Sendable, CustomStringConvertible {
    /// The storage URL (`file:///path`, `s3://bucket/prefix`).
    public let url: String
    /// The configuration file the CLI reads, if any (its `bucket` is `url`).
    public let configFile: String?
    /// Added to the CLI's environment (`AWS_ACCESS_KEY_ID`, ...).
    public let environment: [String: String]

    /// Storage given to the CLI with `--storage url` alone.
    public init(url: String) {
        self.init(url: url, configFile: nil, environment: [:])
    }

    public init(url: String, configFile: String?, environment: [String: String]) {
        self.url = url
        self.configFile = configFile
        self.environment = environment
    }

    /// A directory, created if missing, as `file://` storage.
    public static func file(_ directory: String) throws -> ScenarioStorage {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        return ScenarioStorage(url: "file://\(directory)")
    }

    /// A bucket (created if missing) on a SeaweedFS, under `prefix`: writes
    /// `<configDirectory>/cairn.json` with `bucket` and `s3_endpoint` plus
    /// `settings` (e.g. `"upload_concurrency": 4`); the keys go in the environment.
    /// `objectLockBucket` creates the bucket with S3 Object Lock enabled.
    public static func s3(_ server: SeaweedFS, bucket: String, prefix: String, configDirectory: String,
                          settings: [String: any Sendable] = [:], objectLockBucket: Bool = false) async throws -> ScenarioStorage {
        try await server.createBucket(bucket, objectLock: objectLockBucket)
        let url = prefix.isEmpty ? "s3://\(bucket)" : "s3://\(bucket)/\(prefix)"
        var object: [String: Any] = ["bucket": url, "s3_endpoint": server.endpoint]
        for (key, value) in settings { object[key] = value }
        try FileManager.default.createDirectory(atPath: configDirectory, withIntermediateDirectories: true)
        let path = "\(configDirectory)/cairn.json"
        try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys])
            .write(to: URL(fileURLWithPath: path))
        return ScenarioStorage(url: url, configFile: path, environment: [
            "AWS_ACCESS_KEY_ID": SeaweedFS.accessKey,
            "AWS_SECRET_ACCESS_KEY": SeaweedFS.secretKey,
        ])
    }

    /// What the CLI gets on its command line.
    public var arguments: [String] { configFile.map { ["--config", $0] } ?? ["--storage", url] }

    /// The same storage opened in the test process, as the CLI opens it.
    public func open(logger: Logger = testLogger) throws -> any BackupStorage {
        let configuration = try configFile.map { try CairnConfiguration.load(file: $0) } ?? CairnConfiguration()
        let env = ProcessInfo.processInfo.environment.merging(environment) { _, mine in mine }
        return try StorageFactory.make(url: url, configuration: configuration, environment: env, logger: logger)
    }

    /// Runs `body` on the opened storage and releases its connections.
    public func withStorage<T: Sendable>(_ body: (any BackupStorage) async throws -> T) async throws -> T {
        let storage = try open()
        return try await storage.shuttingDown { try await body(storage) }
    }

    /// Every stored key under `prefix` (e.g. `commerce/0/`), sorted.
    public func keys(under prefix: String) async throws -> [String] {
        try await withStorage { try await $0.list(prefix: prefix).map(\.key) }
    }

    public var description: String { configFile.map { "\(url) (--config \($0))" } ?? url }
}

/// Helpers for end-to-end scenarios with the cairn binary.
public enum Scenario {
    /// `cairn backup <shard> --local ...` against `server`, returning the result.
    public static func backup(_ server: TestServer, storage: String, shard: String = "commerce/0",
                              extra: [String] = []) async throws -> CLI.Result {
        try await backup(server, storage: ScenarioStorage(url: storage), shard: shard, extra: extra)
    }

    /// `cairn backup <shard> --local ...` against `server` into `storage`.
    public static func backup(_ server: TestServer, storage: ScenarioStorage, shard: String = "commerce/0",
                              extra: [String] = []) async throws -> CLI.Result {
        try await run(["backup", shard, "--local", "--mysql-socket", server.socketPath,
                       "--mysql-datadir", server.dataDirectory, "--json"] + extra, storage: storage)
    }

    /// `cairn <arguments>` with `storage`'s options and environment added.
    public static func run(_ arguments: [String], storage: ScenarioStorage) async throws -> CLI.Result {
        try await CLI.run(arguments + storage.arguments, environment: storage.environment)
    }

    /// The backup manifest JSON object printed by `backup --json`.
    public static func backupObject(_ result: CLI.Result) throws -> [String: Any] {
        let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        guard let backup = object?["backup"] as? [String: Any] else {
            throw TestSupportError("backup --json printed no backup: \(result)")
        }
        return backup
    }

    /// Restores with the CLI into a new directory, starts a server on it and returns it.
    public static func restoreAndStart(storage: String, into target: String, shard: String = "commerce/0",
                                       extra: [String] = []) async throws -> (CLI.Result, TestServer?) {
        try await restoreAndStart(storage: ScenarioStorage(url: storage), into: target, shard: shard, extra: extra)
    }

    /// Restores from `storage` with the CLI into a new directory, starts a server on it and returns it.
    public static func restoreAndStart(storage: ScenarioStorage, into target: String, shard: String = "commerce/0",
                                       extra: [String] = []) async throws -> (CLI.Result, TestServer?) {
        let result = try await run(["restore", shard, "--local", "--target-datadir", target] + extra, storage: storage)
        guard result.exitCode == 0 else { return (result, nil) }
        let server = try await TestServer.start(existingDataDirectory: target)
        return (result, server)
    }

    /// Replays the source's binary logs from `from` to `to` (inclusive) into `target`.
    public static func replaySourceBinlogs(from: ReplicationPosition, to: ReplicationPosition,
                                           source: TestServer, target: TestServer) async throws {
        let logs = try await source.connect().binaryLogs().map { "\(source.dataDirectory)/\($0.name)" }
        var args: [String] = []
        if !from.isEmpty { args.append("--start-position=\(from.gtidText)") }
        args.append("--stop-position=\(to.gtidText)")
        let pipe = try ChildProcess.makePipe()
        let decoder = try ChildProcess("mariadb-binlog", arguments: args + logs, stdout: .fileDescriptor(pipe.write))
        let client = try ChildProcess("mariadb", arguments: ["--socket=\(target.socketPath)", "--user=root", "--binary-mode"],
                                      stdin: .fileDescriptor(pipe.read))
        close(pipe.read)
        close(pipe.write)
        try await decoder.checkSuccess(doing: "decoding the source's binary logs")
        try await client.checkSuccess(doing: "applying the source's binary logs")
    }
}
