import CairnSystem
import Foundation

/// Runs the built `cairn` binary as a separate process, as a user would.
public enum CLI {
    public struct Result: Sendable, CustomStringConvertible {
        public var exitCode: Int32
        public var stdout: String
        public var stderr: String
        public var description: String { "exit \(exitCode)\nstdout: \(stdout)\nstderr: \(stderr)" }
    }

    /// The `cairn` executable beside the test binary (or `$CAIRN_BINARY`).
    public static var binaryPath: String {
        if let path = ProcessInfo.processInfo.environment["CAIRN_BINARY"] { return path }
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        // The test binary may sit inside a .xctest bundle directory.
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent("cairn").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent(".build/debug/cairn").path
    }

    /// Runs `cairn args...` to completion.
    public static func run(_ arguments: [String], environment: [String: String] = [:]) async throws -> Result {
        guard FileManager.default.isExecutableFile(atPath: binaryPath) else {
            throw TestSupportError("the cairn binary is not built at \(binaryPath); run `swift build` first")
        }
        let child = try ChildProcess(binaryPath, arguments: arguments, environment: environment,
                                     stdout: .capture(limit: 4 * 1024 * 1024), stderr: .capture(limit: 1024 * 1024))
        let exit = await child.wait()
        return Result(exitCode: exit.code ?? (128 + (exit.signal ?? 0)),
                      stdout: await child.capturedOutput(), stderr: await child.capturedError())
    }

    /// Starts `cairn args...` without waiting (to kill it midway).
    public static func start(_ arguments: [String], environment: [String: String] = [:]) throws -> ChildProcess {
        try ChildProcess(binaryPath, arguments: arguments, environment: environment,
                         stdout: .capture(limit: 1024 * 1024), stderr: .capture(limit: 1024 * 1024))
    }
}
