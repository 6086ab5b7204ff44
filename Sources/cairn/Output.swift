#if canImport(Glibc)
import Glibc
#endif
import CairnCore
import CairnEngine
import Foundation

/// Everything the command line prints goes through here: results to
/// stdout, errors and progress to stderr.
enum Output {
    static func line(_ text: String) {
        FileHandle.standardOutput.write(Data((text + "\n").utf8))
    }

    static func error(_ message: String) {
        FileHandle.standardError.write(Data("error: \(message)\n".utf8))
    }

    static func note(_ message: String) {
        FileHandle.standardError.write(Data("\(message)\n".utf8))
    }

    /// Prints `value` as pretty JSON with RFC 3339 times.
    static func json<T: Encodable>(_ value: T) throws {
        line(String(decoding: try CairnJSON.encoder(pretty: true).encode(value), as: UTF8.self))
    }

    static var stderrIsTerminal: Bool { isatty(2) == 1 }

    /// Shows bytes done and rate on the terminal while `body` runs.
    static func withProgress<T: Sendable>(_ progress: TransferProgress, enabled: Bool,
                                          _ body: () async throws -> T) async throws -> T {
        guard enabled && stderrIsTerminal else { return try await body() }
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                while !Task.isCancelled {
                    try? await Task.sleep(for: .milliseconds(500))
                    if Task.isCancelled { break }
                    let text = "\(progress.phase): \(formatBytes(progress.rawBytes)) (\(formatBytes(progress.storedBytes)) stored), \(formatBytes(Int64(progress.rate)))/s"
                    FileHandle.standardError.write(Data("\r\u{1b}[2K\(text)".utf8))
                }
            }
            // The reporter has stopped before its line is cleared, so no late line is left behind.
            let result: Result<T, any Error>
            do { result = .success(try await body()) } catch { result = .failure(error) }
            group.cancelAll()
            try? await group.waitForAll()
            FileHandle.standardError.write(Data("\r\u{1b}[2K".utf8))
            return try result.get()
        }
    }
}

