@testable import CairnEngine
import CairnCore
import CairnStorage
import CairnTestSupport
import Foundation
import NIOCore
import Testing

@Suite("Compression and the streaming pipeline")
struct PipelineTests {
    func bytes(_ count: Int, seed: UInt64) -> [UInt8] {
        var g = SplitMix64(seed: seed)
        // Compressible: runs of repeated random bytes.
        var out: [UInt8] = []
        out.reserveCapacity(count)
        while out.count < count {
            let b = UInt8(truncatingIfNeeded: g.next())
            out.append(contentsOf: repeatElement(b, count: min(count - out.count, Int(g.next() % 64) + 1)))
        }
        return out
    }

    struct ArraySource: ByteSource {
        let chunks: [[UInt8]]
        let index = Counter()
        func next() async throws -> ByteBuffer? {
            let i = index.next()
            guard i < chunks.count else { return nil }
            return ByteBuffer(bytes: chunks[i])
        }
    }

    final class Counter: Sendable {
        let value = Synchronization.Mutex(0)
        func next() -> Int { value.withLock { v in defer { v += 1 }; return v } }
    }

    final class CollectingSink: ByteSink, Sendable {
        let data = Synchronization.Mutex<[UInt8]>([])
        func write(_ chunk: ByteBuffer) async throws { data.withLock { $0.append(contentsOf: chunk.readableBytesView) } }
        var bytes: [UInt8] { data.withLock { $0 } }
    }

    @Test("data streamed up through zstd and SHA-256 comes back identical, with sizes and hash recorded", arguments: ["zstd", "none"])
    func roundTrip(algorithm: String) async throws {
        let storage = MemoryStorage()
        let chunks = [bytes(1, seed: 1), bytes(3_000_000, seed: 2), bytes(700_000, seed: 3), bytes(0, seed: 4), bytes(5, seed: 5)]
        let settings = CompressionSettings(algorithm: algorithm, level: 3, threads: 2)
        let file = try await UploadPipeline.upload(from: ArraySource(chunks: chunks), to: storage, key: "ks/0/b/data",
                                                   fileName: "data", compression: settings, progress: nil)
        let raw = chunks.flatMap { $0 }
        #expect(file.rawSize == Int64(raw.count))
        let stored = try await storage.readAll(key: "ks/0/b/data")
        #expect(file.storedSize == Int64(stored.count))
        if algorithm == "zstd" { #expect(file.storedSize < file.rawSize / 2) }
        let sink = CollectingSink()
        let result = try await DownloadPipeline.download(file, key: "ks/0/b/data", from: storage, compression: settings.info,
                                                         to: sink, progress: nil)
        #expect(result.completed)
        #expect(sink.bytes == raw)
        try await DownloadPipeline.verify(file, key: "ks/0/b/data", from: storage, progress: nil)
    }

    @Test("one altered stored byte is refused, naming the file")
    func damage() async throws {
        let storage = MemoryStorage()
        let file = try await UploadPipeline.upload(from: ArraySource(chunks: [bytes(2_000_000, seed: 9)]), to: storage,
                                                   key: "ks/0/b/data", fileName: "data",
                                                   compression: CompressionSettings(), progress: nil)
        storage.corrupt(key: "ks/0/b/data", at: Int(file.storedSize / 2))
        await #expect {
            _ = try await DownloadPipeline.download(file, key: "ks/0/b/data", from: storage, compression: .zstd(level: 3),
                                                    to: CollectingSink(), progress: nil)
        } throws: { error in
            guard let e = error as? CairnError else { return false }
            return e.code == .integrity && e.message.contains("ks/0/b/data")
        }
        await #expect(throws: CairnError.self) {
            try await DownloadPipeline.verify(file, key: "ks/0/b/data", from: storage, progress: nil)
        }
    }

    @Test("a failing producer leaves nothing stored")
    func producerFailure() async throws {
        let storage = MemoryStorage()
        await #expect(throws: CairnError.self) {
            _ = try await UploadPipeline.upload(from: ArraySource(chunks: [bytes(100_000, seed: 1)]), to: storage,
                                                key: "ks/0/b/data", fileName: "data", compression: CompressionSettings(),
                                                progress: nil, beforeFinish: { throw CairnError(.process, "the tool failed") })
        }
        #expect(try await storage.list(prefix: "").isEmpty)
    }

    @Test("a buffer compressed whole in one call comes back whole, compressible or not, and the context serves the next one")
    func compressWhole() throws {
        // The archiver keeps one context for its life and compresses each sealed segment in one call.
        let compressor = try ZstdCompressor(level: 3, threads: nil)
        var noise = SplitMix64(seed: 5)
        let incompressible = (0..<200_000).map { _ in UInt8(truncatingIfNeeded: noise.next()) }
        for input in [bytes(4 << 20, seed: 11), bytes(1000, seed: 12), incompressible, bytes(300_000, seed: 13)] {
            let stored = try compressor.compressWhole(ByteBuffer(bytes: input))
            let decompressor = try ZstdDecompressor()
            decompressor.feed(stored)
            var out: [UInt8] = []
            while let piece = try decompressor.next(maxBytes: 1 << 20) { out.append(contentsOf: piece.readableBytesView) }
            try decompressor.finish()
            #expect(out == input)
            if input != incompressible { #expect(stored.readableBytes < input.count / 2) }
        }
    }

    @Test("a truncated zstd stream is an integrity error")
    func truncated() throws {
        let compressor = try ZstdCompressor(level: 3, threads: 0)
        var out = ByteBuffer()
        try compressor.compress(ByteBuffer(bytes: bytes(500_000, seed: 3)), into: &out)
        try compressor.finish(into: &out)
        let cut = out.getSlice(at: 0, length: out.readableBytes - 10)!
        let decompressor = try ZstdDecompressor()
        decompressor.feed(cut)
        while try decompressor.next(maxBytes: 1 << 20) != nil {}
        #expect(throws: CairnError.self) { try decompressor.finish() }
    }

    @Test("a highly compressible stream comes back whole, in bounded pieces, however it is chunked", arguments: [1 << 30, 1000])
    func boundedPieces(storedChunk: Int) throws {
        // 48 MiB of zeros compresses to a few kilobytes: without a bound one
        // stored chunk would expand into a single 48 MiB write.
        let compressor = try ZstdCompressor(level: 3, threads: 0)
        var stored = ByteBuffer()
        try compressor.compress(ByteBuffer(repeating: 0, count: 48 << 20), into: &stored)
        try compressor.compress(ByteBuffer(bytes: bytes(100_000, seed: 7)), into: &stored)
        try compressor.finish(into: &stored)
        let decompressor = try ZstdDecompressor()
        var total = 0
        var largest = 0
        var tail: [UInt8] = []
        while stored.readableBytes > 0 {
            decompressor.feed(stored.readSlice(length: min(storedChunk, stored.readableBytes))!)
            while let piece = try decompressor.next(maxBytes: 4 << 20) {
                total += piece.readableBytes
                largest = max(largest, piece.readableBytes)
                if total > 48 << 20 { tail.append(contentsOf: piece.readableBytesView.suffix(total - (48 << 20))) }
            }
        }
        try decompressor.finish()
        #expect(total == (48 << 20) + 100_000)
        #expect(largest <= (4 << 20) + (256 << 10))
        #expect(tail == bytes(100_000, seed: 7))
    }
}

import Synchronization
