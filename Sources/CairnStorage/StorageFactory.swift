import CairnCore
import Foundation
import Logging

/// Opens the storage a URL and configuration name.
public enum StorageFactory {
    /// - Parameters:
    ///   - url: the storage URL (`--storage`, or the configuration's `bucket`).
    ///   - configuration: S3 settings, concurrency, credentials file.
    ///   - environment: where `AWS_*` variables are read from.
    public static func make(url: String, configuration: CairnConfiguration,
                            environment: [String: String] = ProcessInfo.processInfo.environment,
                            logger: Logger) throws -> any BackupStorage {
        let location = try StorageLocation(parsing: url)
        switch location {
        case .file(let path):
            if configuration.objectLock != nil {
                throw CairnError(.configuration, "object_lock is set, but \(url) is file storage, which cannot lock files against deletion; remove object_lock, or store backups in an s3:// bucket created with Object Lock enabled")
            }
            return FileStorage(root: path, fileMode: mode_t(configuration.storageFileMode),
                               directoryMode: mode_t(configuration.storageDirectoryMode))
        case .s3, .gcs:
            let settings = try S3Settings.resolve(location: location, configuration: configuration, environment: environment)
            return S3Storage(settings: settings, logger: logger)
        }
    }
}
