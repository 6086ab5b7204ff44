import CairnSystem
import Foundation

/// A private directory under /tmp that the test removes when done.
public struct TemporaryDirectory: Sendable {
    public let path: String

    public init(prefix: String) throws {
        path = try FileSystem.makeTemporaryDirectory(prefix: prefix)
    }

    public func file(_ name: String) -> String { "\(path)/\(name)" }

    public func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}
