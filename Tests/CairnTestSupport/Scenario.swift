import CairnCore
import CairnMySQL
import CairnSystem
import Foundation

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

/// Helpers for end-to-end scenarios with the cairn binary.
public enum Scenario {
    /// `cairn backup <shard> --local ...` against `server`, returning the result.
    public static func backup(_ server: TestServer, storage: String, shard: String = "commerce/0",
                              extra: [String] = []) async throws -> CLI.Result {
        try await CLI.run(["backup", shard, "--local", "--mysql-socket", server.socketPath,
                           "--mysql-datadir", server.dataDirectory, "--storage", storage, "--json"] + extra)
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
        let result = try await CLI.run(["restore", shard, "--local", "--target-datadir", target, "--storage", storage] + extra)
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
