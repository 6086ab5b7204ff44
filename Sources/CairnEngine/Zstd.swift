internal import CZstd
import CairnCore
import NIOCore

/// How backup data is compressed.
public struct CompressionSettings: Sendable, Hashable {
    /// `zstd` or `none`.
    public var algorithm: String
    public var level: Int
    /// zstd worker threads; 0 means one per core, at most ``defaultMaximumThreads``.
    public var threads: Int
    /// Whether zstd compresses on worker threads at all. Off: the caller's
    /// thread compresses, with no job buffers (a few MiB instead of tens);
    /// for small, frequent files such as archived binary log segments.
    public var multithreaded = true

    /// The most workers `threads: 0` starts. Each zstd worker adds buffers
    /// (8 MiB jobs at level 3, input and output), so memory grew with the
    /// machine: a 500 MB stream peaked at 126 MiB with one worker and 258 MiB
    /// with 16. Four keep up with what mariadb-backup streams.
    public static let defaultMaximumThreads = 4

    public init(algorithm: String = "zstd", level: Int = 3, threads: Int = 0) {
        self.algorithm = algorithm
        self.level = level
        self.threads = threads
    }

    public var info: CompressionInfo {
        algorithm == "none" ? .none : .zstd(level: level)
    }

    /// The suffix stored files get: `.zst` or nothing.
    public var fileSuffix: String { algorithm == "none" ? "" : ".zst" }

    public init(configuration: CairnConfiguration) {
        self.init(algorithm: configuration.compression, level: configuration.compressionLevel,
                  threads: configuration.compressionThreads)
    }
}

/// Streaming zstd compression (multi-threaded, with a content checksum in
/// every frame). Not thread-safe: one stream, one caller at a time.
final class ZstdCompressor {
    private let context: OpaquePointer
    private let outputChunk: Int

    /// `threads` nil: no worker threads (zstd's single-threaded streaming mode).
    init(level: Int, threads: Int?) throws {
        guard let context = ZSTD_createCCtx() else {
            throw CairnError(.compression, "could not create a zstd compression context (out of memory)")
        }
        self.context = context
        self.outputChunk = ZSTD_CStreamOutSize()
        try check(ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, Int32(level)), "setting the zstd level to \(level)")
        try check(ZSTD_CCtx_setParameter(context, ZSTD_c_checksumFlag, 1), "enabling zstd checksums")
        if let threads {
            let workers = threads > 0 ? threads : max(1, min(System.coreCount, CompressionSettings.defaultMaximumThreads))
            // Without libzstd's multi-threading the parameter is refused; single-threaded is still correct.
            _ = ZSTD_CCtx_setParameter(context, ZSTD_c_nbWorkers, Int32(workers))
        }
    }

    deinit { ZSTD_freeCCtx(context) }

    private func check(_ code: Int, _ what: String) throws {
        if ZSTD_isError(code) != 0 {
            throw CairnError(.compression, "zstd failed \(what): \(String(cString: ZSTD_getErrorName(code)))")
        }
    }

    /// Compresses `input`, appending whatever compressed bytes are ready to `output`.
    func compress(_ input: ByteBuffer, into output: inout ByteBuffer) throws {
        try run(input, directive: ZSTD_e_continue, into: &output)
    }

    /// Ends the frame, appending the remaining compressed bytes to `output`.
    func finish(into output: inout ByteBuffer) throws {
        try run(ByteBuffer(), directive: ZSTD_e_end, into: &output)
    }

    /// Compresses all of `input` in one call, as one frame that states its
    /// size, with a checksum. zstd reads `input` where it lies: unlike
    /// streaming it keeps no window buffer of its own (a copy of up to 2 MiB
    /// at level 3) and no block buffers, only its match tables (1.2 MiB at
    /// level 3 for a 4 MiB input, less for smaller ones), which it keeps in
    /// the context and reuses on the next call. The result is exactly the
    /// frame. zstd needs room for its worst case; when the frame came out
    /// much smaller, it is copied into a buffer of its own size, so that a
    /// held frame (the archiver's spool counts frames' bytes) never keeps the
    /// worst case allocated: in a process where such buffers come from the
    /// heap, their untouched pages may be resident already.
    func compressWhole(_ input: ByteBuffer) throws -> ByteBuffer {
        let bound = ZSTD_compressBound(input.readableBytes)
        var output = ByteBufferAllocator().buffer(capacity: bound)
        try input.withUnsafeReadableBytes { src in
            _ = try output.writeWithUnsafeMutableBytes(minimumWritableBytes: bound) { dst in
                let written = ZSTD_compress2(context, dst.baseAddress, dst.count, src.baseAddress, src.count)
                try check(written, "compressing")
                return written
            }
        }
        if output.capacity > 2 * output.readableBytes {
            var exact = ByteBufferAllocator().buffer(capacity: output.readableBytes)
            exact.writeImmutableBuffer(output)
            return exact
        }
        return output
    }

    private func run(_ input: ByteBuffer, directive: ZSTD_EndDirective, into output: inout ByteBuffer) throws {
        try input.withUnsafeReadableBytes { inPtr in
            var inBuffer = ZSTD_inBuffer(src: inPtr.baseAddress, size: inPtr.count, pos: 0)
            while true {
                var remaining = 0
                try output.writeWithUnsafeMutableBytes(minimumWritableBytes: outputChunk) { outPtr in
                    var outBuffer = ZSTD_outBuffer(dst: outPtr.baseAddress, size: outPtr.count, pos: 0)
                    remaining = ZSTD_compressStream2(context, &outBuffer, &inBuffer, directive)
                    try check(remaining, "compressing")
                    return outBuffer.pos
                }
                let consumed = inBuffer.pos == inBuffer.size
                if directive == ZSTD_e_end ? remaining == 0 : consumed { break }
            }
        }
    }
}

/// Streaming zstd decompression that checks frames are complete.
final class ZstdDecompressor {
    private let context: OpaquePointer
    private let outputChunk: Int
    /// The last return value: 0 when a frame has just ended.
    private var lastHint = 0
    private var sawInput = false

    init() throws {
        guard let context = ZSTD_createDCtx() else {
            throw CairnError(.compression, "could not create a zstd decompression context (out of memory)")
        }
        self.context = context
        self.outputChunk = ZSTD_DStreamOutSize()
    }

    deinit { ZSTD_freeDCtx(context) }

    /// What zstd has not read yet of the fed input; nil once it is consumed
    /// and its output flushed.
    private var pending: ByteBuffer?

    /// Takes the next chunk of stored bytes; ``next(maxBytes:)`` then yields its output.
    func feed(_ input: ByteBuffer) {
        pending = input
        if input.readableBytes > 0 { sawInput = true }
    }

    /// Whether fed input remains for ``next(maxBytes:)``.
    var hasInput: Bool { pending != nil }

    /// Up to about `maxBytes` of output from the fed input, or nil once it is
    /// all consumed and flushed. Output per call is bounded whatever the
    /// compression ratio (a run of zeros can expand a thousandfold).
    func next(maxBytes: Int) throws -> ByteBuffer? {
        // Calling zstd again with no input after a frame ended would start a
        // new frame and report a nonzero hint, so a drained chunk ends here.
        guard var input = pending else { return nil }
        // Room for one step past maxBytes, so the buffer never grows.
        var out = ByteBufferAllocator().buffer(capacity: maxBytes + outputChunk)
        var inputDone = false
        let consumed = try input.withUnsafeReadableBytes { inPtr in
            var inBuffer = ZSTD_inBuffer(src: inPtr.baseAddress, size: inPtr.count, pos: 0)
            while out.readableBytes < maxBytes {
                var produced = 0
                let before = inBuffer.pos
                try out.writeWithUnsafeMutableBytes(minimumWritableBytes: outputChunk) { outPtr in
                    // One output chunk per step keeps a piece within maxBytes + outputChunk.
                    var outBuffer = ZSTD_outBuffer(dst: outPtr.baseAddress, size: outputChunk, pos: 0)
                    let r = ZSTD_decompressStream(context, &outBuffer, &inBuffer)
                    if ZSTD_isError(r) != 0 {
                        throw CairnError(.integrity, "the stored data is not valid zstd (\(String(cString: ZSTD_getErrorName(r))))")
                    }
                    if outBuffer.pos > 0 || inBuffer.pos > before { lastHint = r }
                    produced = outBuffer.pos
                    return outBuffer.pos
                }
                // The input is used up once consumed and the output space was not filled.
                if inBuffer.pos == inBuffer.size && produced < outputChunk {
                    inputDone = true
                    break
                }
            }
            return inBuffer.pos
        }
        input.moveReaderIndex(forwardBy: consumed)
        pending = inputDone ? nil : input
        return out.readableBytes > 0 ? out : nil
    }

    /// Throws when the stream ended in the middle of a frame.
    func finish() throws {
        if sawInput && lastHint != 0 {
            throw CairnError(.integrity, "the stored data ends in the middle of a zstd frame (truncated)")
        }
    }
}
