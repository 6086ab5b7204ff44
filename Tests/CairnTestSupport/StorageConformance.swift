import CairnCore
import CairnStorage
import Crypto
import Foundation
import NIOCore

/// The contract every ``BackupStorage`` backend must keep, as named checks.
/// Each backend's test suite runs every case against a live backend.
public enum StorageConformance {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    public typealias Check = @Sendable (any BackupStorage, String) async throws -> Void

    /// Case names, for parameterized tests.
    public static var caseNames: [String] { cases.map(\.0) }

    /// Runs the named case with keys under a fresh prefix.
    public static func run(_ name: String, on storage: any BackupStorage) async throws {
        guard let check = cases.first(where: { $0.0 == name })?.1 else {
            throw Failure(description: "no conformance case \(name)")
        }
        let prefix = "conformance-\(UInt32.random(in: 0...UInt32.max))/\(name)"
        try await check(storage, prefix)
    }

    static func expect(_ condition: Bool, _ message: @autoclosure () -> String) throws {
        if !condition { throw Failure(description: message()) }
    }

    static func randomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
        var generator = SplitMix64(seed: seed)
        var bytes = [UInt8](repeating: 0, count: count)
        var i = 0
        while i < count {
            var v = generator.next()
            for _ in 0..<8 where i < count {
                bytes[i] = UInt8(truncatingIfNeeded: v)
                v >>= 8
                i += 1
            }
        }
        return bytes
    }

    static func buffer(_ bytes: some Collection<UInt8>) -> ByteBuffer {
        var b = ByteBufferAllocator().buffer(capacity: bytes.count)
        b.writeBytes(bytes)
        return b
    }

    static func readAll(_ storage: any BackupStorage, _ key: String, range: Range<Int64>? = nil) async throws -> [UInt8] {
        let reader = try await storage.makeReader(key: key, range: range)
        var out: [UInt8] = []
        while let chunk = try await reader.read() { out.append(contentsOf: chunk.readableBytesView) }
        await reader.close()
        return out
    }

    static func isNotFound(_ body: () async throws -> Void) async -> Bool {
        do {
            try await body()
            return false
        } catch let error as CairnError {
            return error.code == .notFound
        } catch {
            return false
        }
    }

    static let cases: [(String, Check)] = [
        ("streamingRoundTrip", { storage, prefix in
            let key = "\(prefix)/data.bin"
            let parts = [randomBytes(1, seed: 1), randomBytes(3 * 1024 * 1024 + 17, seed: 2), randomBytes(70_000, seed: 3)]
            let writer = try await storage.makeWriter(key: key)
            for p in parts { try await writer.write(buffer(p)) }
            let stored = try await writer.finish()
            let expected = parts.flatMap { $0 }
            try expect(stored == Int64(expected.count), "finish() reported \(stored) bytes, wrote \(expected.count)")
            let back = try await readAll(storage, key)
            try expect(back == expected, "read back \(back.count) bytes that differ from the \(expected.count) written")
            let listed = try await storage.list(prefix: prefix)
            try expect(listed.map(\.key) == [key], "listing shows \(listed.map(\.key)), expected [\(key)]")
            try expect(listed.first?.size == Int64(expected.count), "listing reports size \(listed.first?.size ?? -1), expected \(expected.count)")
            try await storage.delete(keys: [key])
        }),
        ("invisibleUntilFinished", { storage, prefix in
            let key = "\(prefix)/pending"
            let writer = try await storage.makeWriter(key: key)
            try await writer.write(buffer(randomBytes(100_000, seed: 4)))
            let listed = try await storage.list(prefix: prefix)
            try expect(listed.isEmpty, "an unfinished object is listed: \(listed.map(\.key))")
            try expect(await isNotFound { _ = try await readAll(storage, key) }, "an unfinished object can be read")
            try await writer.finish()
            let after = try await storage.list(prefix: prefix)
            try expect(after.map(\.key) == [key], "a finished object is not listed")
            try await storage.delete(keys: [key])
        }),
        ("abortLeavesNothing", { storage, prefix in
            let key = "\(prefix)/aborted"
            let writer = try await storage.makeWriter(key: key)
            try await writer.write(buffer(randomBytes(6 * 1024 * 1024, seed: 5)))
            try await writer.write(buffer(randomBytes(1024, seed: 6)))
            await writer.abort()
            let listed = try await storage.list(prefix: prefix)
            try expect(listed.isEmpty, "an aborted object is listed: \(listed.map(\.key))")
            try expect(await isNotFound { _ = try await readAll(storage, key) }, "an aborted object can be read")
        }),
        ("emptyObject", { storage, prefix in
            let key = "\(prefix)/empty"
            let writer = try await storage.makeWriter(key: key)
            let stored = try await writer.finish()
            try expect(stored == 0, "an empty object reports \(stored) bytes")
            let back = try await readAll(storage, key)
            try expect(back.isEmpty, "an empty object reads back \(back.count) bytes")
            let listed = try await storage.list(prefix: prefix)
            try expect(listed.map(\.size) == [0], "an empty object is listed as \(listed)")
            try await storage.delete(keys: [key])
        }),
        ("rangedReads", { storage, prefix in
            let key = "\(prefix)/ranged"
            let bytes = randomBytes(2 * 1024 * 1024 + 333, seed: 7)
            try await storage.writeAll(key: key, data: Data(bytes))
            let size = Int64(bytes.count)
            for range in [Int64(0)..<10, 1_048_570..<1_048_590, (size - 3)..<size, 100..<(size), 5..<5] {
                let back = try await readAll(storage, key, range: range)
                let expected = Array(bytes[Int(range.lowerBound)..<Int(range.upperBound)])
                try expect(back == expected, "range \(range) read \(back.count) bytes that differ from the \(expected.count) expected")
            }
            try await storage.delete(keys: [key])
        }),
        ("listByPrefix", { storage, prefix in
            let keys = ["\(prefix)/a/b/1", "\(prefix)/a/b/2", "\(prefix)/a/bc/3", "\(prefix)/a/x", "\(prefix)/z/MANIFEST"]
            for (i, key) in keys.enumerated() { try await storage.writeAll(key: key, data: Data([UInt8(i)])) }
            let dir = try await storage.list(prefix: "\(prefix)/a/b/").map(\.key)
            try expect(dir == [keys[0], keys[1]], "list(a/b/) returned \(dir)")
            let partial = try await storage.list(prefix: "\(prefix)/a/b").map(\.key)
            try expect(partial == [keys[0], keys[1], keys[2]], "list(a/b) returned \(partial)")
            let all = try await storage.list(prefix: "\(prefix)/").map(\.key)
            try expect(all == keys.sorted(), "list of everything returned \(all)")
            let none = try await storage.list(prefix: "\(prefix)/nothing/").map(\.key)
            try expect(none.isEmpty, "list of a missing prefix returned \(none)")
            try await storage.delete(keys: keys)
            let after = try await storage.list(prefix: "\(prefix)/").map(\.key)
            try expect(after.isEmpty, "objects remain after delete: \(after)")
        }),
        ("overwriteReplaces", { storage, prefix in
            let key = "\(prefix)/replaced"
            try await storage.writeAll(key: key, data: Data(randomBytes(5000, seed: 8)))
            let second = randomBytes(300, seed: 9)
            try await storage.writeAll(key: key, data: Data(second))
            let back = try await readAll(storage, key)
            try expect(back == second, "an overwritten object reads back the old or mixed content")
            try await storage.delete(keys: [key])
        }),
        ("missingIsNotFound", { storage, prefix in
            try expect(await isNotFound { _ = try await readAll(storage, "\(prefix)/missing") }, "reading a missing key is not a not_found error")
            // Deleting what does not exist is not an error.
            try await storage.delete(keys: ["\(prefix)/missing"])
        }),
        ("largeObjectStreams", { storage, prefix in
            let key = "\(prefix)/large"
            let chunk = randomBytes(1024 * 1024, seed: 10)
            var hasher = SHA256()
            let writer = try await storage.makeWriter(key: key)
            for i in 0..<24 {
                var c = chunk
                c[0] = UInt8(i)
                hasher.update(data: c)
                try await writer.write(buffer(c))
            }
            try await writer.finish()
            let expected = hasher.finalize()
            var readHasher = SHA256()
            var total = 0
            let reader = try await storage.makeReader(key: key, range: nil)
            while let c = try await reader.read() {
                total += c.readableBytes
                c.withUnsafeReadableBytes { readHasher.update(bufferPointer: $0) }
            }
            await reader.close()
            try expect(total == 24 * 1024 * 1024, "read back \(total) bytes of \(24 * 1024 * 1024)")
            try expect(readHasher.finalize() == expected, "the large object's SHA-256 differs after a round trip")
            try await storage.delete(keys: [key])
        }),
        ("listsThousandsOfObjects", { storage, prefix in
            let count = 1_536
            try await withThrowingTaskGroup(of: Void.self) { group in
                for batch in 0..<16 {
                    group.addTask {
                        for i in stride(from: batch, to: count, by: 16) {
                            try await storage.writeAll(key: String(format: "\(prefix)/many/%05d", i), data: Data([1]))
                        }
                    }
                }
                try await group.waitForAll()
            }
            let listed = try await storage.list(prefix: "\(prefix)/many/")
            try expect(listed.count == count, "listed \(listed.count) of \(count) objects")
            try expect(Set(listed.map(\.key)).count == count, "the listing repeats keys")
            try await storage.delete(keys: listed.map(\.key))
            let after = try await storage.list(prefix: "\(prefix)/many/")
            try expect(after.isEmpty, "\(after.count) objects remain after deleting them all")
        }),
    ]
}

/// A small deterministic generator for test data.
public struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

extension StorageConformance {
    /// Unfinished uploads are discarded by `discardUnfinishedUploads`, and finished objects stay.
    public static func checkDiscardUnfinished(_ storage: any BackupStorage) async throws {
        let prefix = "conformance-\(UInt32.random(in: 0...UInt32.max))/discard"
        try await storage.writeAll(key: "\(prefix)/kept", data: Data([1, 2, 3]))
        let writer = try await storage.makeWriter(key: "\(prefix)/orphan")
        try await writer.write(buffer(randomBytes(6 * 1024 * 1024, seed: 11)))
        try await writer.write(buffer(randomBytes(6 * 1024 * 1024, seed: 12)))
        // The writer is abandoned, as by a crashed process.
        let discarded = try await storage.discardUnfinishedUploads(prefix: "\(prefix)/")
        try expect(discarded >= 1, "no unfinished upload was discarded")
        let listed = try await storage.list(prefix: "\(prefix)/").map(\.key)
        try expect(listed == ["\(prefix)/kept"], "after discarding, the listing is \(listed)")
        await writer.abort()
        try await storage.delete(keys: ["\(prefix)/kept"])
    }
}
