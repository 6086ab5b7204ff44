import CairnCore
import Foundation

extension CairnConfiguration {
    /// Reads and parses a configuration file.
    public static func load(file path: String) throws -> CairnConfiguration {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw CairnError(.configuration, "cannot read the configuration file \(path); check the path and its permissions")
        }
        return try parse(data, source: path)
    }
}
