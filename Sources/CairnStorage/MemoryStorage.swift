import CairnCore
import Foundation
import NIOCore
import Synchronization

/// Backups in memory, for fast unit tests of code above the storage. It
/// keeps the same contract as the real backends and passes the same
/// conformance suite; it is never a stand-in for them in integration tests.
public final class MemoryStorage: BackupStorage {
    struct Object {
        var bytes: [UInt8]
        var modified: Date
    }
    let objects = Mutex<[String: Object]>([:])

    public init() {}

    public var displayURL: String { "memory://" }

    public func list(prefix: String) async throws -> [StorageObject] {
        objects.withLock { objects in
            objects.filter { $0.key.hasPrefix(prefix) }
                .map { StorageObject(key: $0.key, size: Int64($0.value.bytes.count), lastModified: $0.value.modified) }
                .sorted { $0.key < $1.key }
        }
    }

    public func makeWriter(key: String) async throws -> any StorageWriter {
        try validateKey(key)
        return MemoryStorageWriter(storage: self, key: key)
    }

    public func makeReader(key: String, range: Range<Int64>?) async throws -> any StorageReader {
        try validateKey(key)
        guard let object = objects.withLock({ $0[key] }) else {
            throw CairnError(.notFound, "\(key) does not exist in \(displayURL)")
        }
        let lower = Int(min(range?.lowerBound ?? 0, Int64(object.bytes.count)))
        let upper = Int(min(range?.upperBound ?? Int64(object.bytes.count), Int64(object.bytes.count)))
        return MemoryStorageReader(bytes: Array(object.bytes[lower..<max(lower, upper)]))
    }

    public func delete(keys: [String]) async throws {
        objects.withLock { objects in
            for key in keys { objects[key] = nil }
        }
    }

    public func discardUnfinishedUploads(prefix: String) async throws -> Int { 0 }

    func store(_ key: String, _ bytes: [UInt8]) {
        objects.withLock { $0[key] = Object(bytes: bytes, modified: Date()) }
    }

    /// Replaces one byte of a stored object (tests of corruption).
    public func corrupt(key: String, at offset: Int) {
        objects.withLock { objects in
            objects[key]?.bytes[offset] ^= 0xff
        }
    }
}

final class MemoryStorageWriter: StorageWriter {
    let storage: MemoryStorage
    let key: String
    let pending = Mutex<[UInt8]?>([])

    init(storage: MemoryStorage, key: String) {
        self.storage = storage
        self.key = key
    }

    func write(_ chunk: ByteBuffer) async throws {
        try pending.withLock { p in
            guard p != nil else { throw CairnError(.internal, "write after finish or abort") }
            p!.append(contentsOf: chunk.readableBytesView)
        }
    }

    func finish() async throws -> Int64 {
        let bytes = try pending.withLock { p -> [UInt8] in
            guard let bytes = p else { throw CairnError(.internal, "finish after finish or abort") }
            p = nil
            return bytes
        }
        storage.store(key, bytes)
        return Int64(bytes.count)
    }

    func abort() async {
        pending.withLock { $0 = nil }
    }
}

final class MemoryStorageReader: StorageReader {
    let remaining: Mutex<ArraySlice<UInt8>>

    init(bytes: [UInt8]) {
        remaining = Mutex(bytes[...])
    }

    func read() async throws -> ByteBuffer? {
        remaining.withLock { rest in
            guard !rest.isEmpty else { return nil }
            let n = min(rest.count, 256 * 1024)
            var buffer = ByteBufferAllocator().buffer(capacity: n)
            buffer.writeBytes(rest.prefix(n))
            rest = rest.dropFirst(n)
            return buffer
        }
    }

    func close() async {
        remaining.withLock { $0 = [] }
    }
}
