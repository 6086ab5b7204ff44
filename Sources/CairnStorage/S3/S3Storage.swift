import CairnCore
import Foundation
import Logging

/// Backups in an S3 bucket (`s3://bucket/prefix`), in any S3-compatible
/// store, or in Google Cloud Storage through its XML API (`gs://`).
///
/// See ``S3ObjectWriter`` for uploads, ``S3ObjectReader`` for downloads,
/// ``S3RetryPolicy`` for retries and docs/STORAGE.md for the settings.
public final class S3Storage: BackupStorage {
    public let settings: S3Settings
    let client: S3Client

    public init(settings: S3Settings, logger: Logger) {
        self.settings = settings
        self.client = S3Client(settings: settings, logger: logger)
    }

    public var displayURL: String { settings.displayURL }

    /// `object_lock`: every PutObject and CreateMultipartUpload carries it.
    public var objectLock: ObjectLockConfig? { settings.objectLock }

    public func list(prefix: String) async throws -> [StorageObject] {
        let listed = try await client.listObjects(prefix: settings.objectKey(prefix))
        return listed.compactMap { object -> StorageObject? in
            guard let key = settings.storageKey(object.key) else { return nil }
            return StorageObject(key: key, size: object.size, lastModified: object.lastModified)
        }.sorted { $0.key < $1.key }
    }

    public func makeWriter(key: String) async throws -> any StorageWriter {
        try validateKey(key)
        return S3ObjectWriter(client: client, objectKey: settings.objectKey(key))
    }

    public func makeReader(key: String, range: Range<Int64>?) async throws -> any StorageReader {
        try validateKey(key)
        do {
            return try await S3ObjectReader.open(client: client, objectKey: settings.objectKey(key), range: range)
        } catch let error as CairnError where error.code == .notFound {
            throw CairnError(.notFound, "\(key) does not exist in \(displayURL)")
        }
    }

    public func delete(keys: [String]) async throws {
        for key in keys { try validateKey(key) }
        let objectKeys = keys.map(settings.objectKey)
        switch settings.flavor {
        case .s3:
            for start in stride(from: 0, to: objectKeys.count, by: 1000) {
                try await client.deleteObjects(objectKeys: Array(objectKeys[start..<min(start + 1000, objectKeys.count)]))
            }
        case .gcs:
            // Cloud Storage's XML API has no DeleteObjects: one DELETE per key.
            let client = self.client
            let width = max(4, settings.uploadConcurrency * 2)
            try await withThrowingTaskGroup(of: Void.self) { group in
                var running = 0
                for key in objectKeys {
                    if running >= width {
                        try await group.next()
                        running -= 1
                    }
                    group.addTask { try await client.deleteObject(objectKey: key) }
                    running += 1
                }
                try await group.waitForAll()
            }
        }
    }

    /// Unfinished multipart uploads under `prefix` (a storage key prefix).
    public func unfinishedUploads(prefix: String) async throws -> [(key: String, uploadID: String)] {
        try await client.listMultipartUploads(prefix: settings.objectKey(prefix)).compactMap { upload in
            settings.storageKey(upload.key).map { ($0, upload.uploadID) }
        }
    }

    public func discardUnfinishedUploads(prefix: String) async throws -> Int {
        let uploads = try await client.listMultipartUploads(prefix: settings.objectKey(prefix))
        for upload in uploads {
            try await client.abortMultipartUpload(objectKey: upload.key, uploadID: upload.uploadID)
        }
        return uploads.count
    }

    /// Creates the bucket when it does not exist (first setup, and tests);
    /// with `objectLock`, with S3 Object Lock enabled (and so versioning).
    public func createBucketIfMissing(objectLock: Bool = false) async throws {
        try await client.createBucket(objectLockEnabled: objectLock)
    }

    public func shutdown() async {
        await client.shutdown()
    }
}
