import CairnCore
import Foundation
import NIOCore

/// One stored object.
public struct StorageObject: Sendable, Hashable {
    /// The key, relative to the storage root: `commerce/0/<backup>/MANIFEST`.
    public var key: String
    public var size: Int64
    public var lastModified: Date?

    public init(key: String, size: Int64, lastModified: Date?) {
        self.key = key
        self.size = size
        self.lastModified = lastModified
    }
}

/// Where backups are kept: a file system path or an object store bucket.
///
/// The contract every backend keeps, checked by one shared conformance suite:
/// - ``makeWriter(key:)`` streams bytes of unknown length; nothing is visible
///   under the key until ``StorageWriter/finish()`` returns, and when it
///   returns the bytes are durable. ``StorageWriter/abort()`` leaves nothing.
///   Callers write a backup's `MANIFEST` only after every data file's
///   `finish()` returned, which makes the manifest the commit point.
/// - ``makeReader(key:range:)`` streams the object, or a byte range of it,
///   in chunks; memory stays bounded whatever the object's size.
/// - ``list(prefix:)`` returns every object whose key starts with `prefix`,
///   however many there are, sorted by key.
/// - ``delete(keys:)`` removes objects; keys that do not exist are ignored.
public protocol BackupStorage: Sendable {
    /// The storage's URL without credentials, for messages.
    var displayURL: String { get }

    func list(prefix: String) async throws -> [StorageObject]
    func makeWriter(key: String) async throws -> any StorageWriter
    /// `range` is a half-open byte range; nil reads the whole object.
    func makeReader(key: String, range: Range<Int64>?) async throws -> any StorageReader
    func delete(keys: [String]) async throws

    /// Discards uploads under `prefix` that were started and never finished
    /// (an object store's pending multipart uploads, a file system's hidden
    /// temporary files), left behind by a backup that crashed or lost its
    /// connection. Called before a backup of the shard starts; Cairn runs
    /// one backup at a time per shard, so nothing under the prefix is live.
    /// Returns how many were discarded.
    @discardableResult
    func discardUnfinishedUploads(prefix: String) async throws -> Int

    /// Releases connections and threads. The storage is unusable afterwards.
    func shutdown() async

    /// The S3 Object Lock retention every upload carries (`object_lock`),
    /// if any: a prune keeps what it still locks rather than try to delete it.
    var objectLock: ObjectLockConfig? { get }
}

extension BackupStorage {
    public func shutdown() async {}

    public var objectLock: ObjectLockConfig? { nil }

    /// Runs `body`, then releases the storage's connections (``shutdown()``)
    /// whether `body` returned or threw.
    public func shuttingDown<T>(isolation: isolated (any Actor)? = #isolation,
                                after body: () async throws -> T) async throws -> T {
        do {
            let result = try await body()
            await shutdown()
            return result
        } catch {
            await shutdown()
            throw error
        }
    }
}

/// A streaming upload of one object.
public protocol StorageWriter: AnyObject, Sendable {
    /// Appends bytes. May apply back-pressure by suspending.
    func write(_ chunk: ByteBuffer) async throws
    /// Makes the object durable and visible; returns the number of bytes stored.
    @discardableResult
    func finish() async throws -> Int64
    /// Discards everything written; nothing becomes visible.
    func abort() async
}

/// A streaming download of one object.
public protocol StorageReader: AnyObject, Sendable {
    /// The next chunk, or nil at the end.
    func read() async throws -> ByteBuffer?
    func close() async
}

extension BackupStorage {
    /// Reads a small object whole (manifests).
    public func readAll(key: String, limit: Int = 64 * 1024 * 1024) async throws -> Data {
        let reader = try await makeReader(key: key, range: nil)
        var data = Data()
        do {
            while let chunk = try await reader.read() {
                data.append(contentsOf: chunk.readableBytesView)
                guard data.count <= limit else {
                    throw CairnError(.storage, "\(key) in \(displayURL) is larger than \(limit) bytes; it is not a file Cairn wrote")
                }
            }
        } catch {
            await reader.close()
            throw error
        }
        await reader.close()
        return data
    }

    /// Writes a small object whole.
    public func writeAll(key: String, data: Data) async throws {
        let writer = try await makeWriter(key: key)
        do {
            var buffer = ByteBufferAllocator().buffer(capacity: data.count)
            buffer.writeBytes(data)
            try await writer.write(buffer)
            try await writer.finish()
        } catch {
            await writer.abort()
            throw error
        }
    }

    /// Whether an object exists under exactly `key`.
    public func exists(key: String) async throws -> Bool {
        try await list(prefix: key).contains { $0.key == key }
    }
}

/// Checks that a storage key is a safe relative path.
func validateKey(_ key: String) throws {
    guard !key.isEmpty, !key.hasPrefix("/"), !key.hasSuffix("/"),
          !key.split(separator: "/", omittingEmptySubsequences: false).contains(where: { $0.isEmpty || $0 == "." || $0 == ".." }) else {
        throw CairnError(.internal, "invalid storage key \"\(key)\"")
    }
}
