import CairnCore
import CairnStorage
import CairnSystem
import Crypto
import Foundation
import NIOCore
import Synchronization
import CairnMySQL

/// Streams one data file of a backup into storage: compress, encrypt (when
/// given a key), hash the stored bytes, count sizes, write. Memory holds a chunk or two whatever
/// the file's size.
public enum UploadPipeline {
    /// Uploads everything `source` yields to `key` and describes it for the manifest.
    /// `inspect` sees every raw chunk before compression (binlog scanning);
    /// `beforeFinish` runs at the end of the input and can still refuse the
    /// file (the producing process failed), in which case it is aborted.
    public static func upload(
        from source: any ByteSource,
        to storage: any BackupStorage,
        key: String,
        fileName: String,
        compression: CompressionSettings,
        encryption: FileKey? = nil,
        progress: TransferProgress?,
        inspect: (@Sendable (ByteBuffer) throws -> Void)? = nil,
        beforeFinish: (@Sendable () async throws -> Void)? = nil
    ) async throws -> ManifestFile {
        let writer = try await storage.makeWriter(key: key)
        let stage = try CompressStage(compression, encryption: encryption)
        var input = ReadAhead(source)
        do {
            while let chunk = try await input.next() {
                // A cancelled backup (the tablet shutting down) stops here and the upload is aborted.
                if Task.isCancelled { throw CairnError(.cancelled, "the upload of \(key) was cancelled") }
                try inspect?(chunk)
                progress?.add(raw: Int64(chunk.readableBytes))
                let out = try await stage.process(chunk)
                if out.readableBytes > 0 {
                    try await writer.write(out)
                    progress?.add(stored: Int64(out.readableBytes))
                }
            }
            let tail = try await stage.finish()
            if tail.readableBytes > 0 {
                try await writer.write(tail)
                progress?.add(stored: Int64(tail.readableBytes))
            }
            // The producer must have succeeded before the file becomes visible.
            try await beforeFinish?()
            let stored = try await writer.finish()
            let summary = stage.summary
            guard stored == summary.storedSize else {
                throw CairnError(.storage, "storage reported \(stored) bytes for \(key) but \(summary.storedSize) were written; the upload is not trustworthy, retry the backup")
            }
            return ManifestFile(name: fileName, rawSize: summary.rawSize, storedSize: summary.storedSize, sha256: summary.sha256)
        } catch {
            input.cancel()
            await writer.abort()
            throw error
        }
    }
}

extension UploadPipeline {
    /// Runs a backup tool and uploads its standard output as one data file of
    /// backup `name`. The file becomes visible only if the tool exits with 0
    /// and `check` accepts; otherwise the tool is killed and nothing stays.
    /// `doing` names the work in the error when the tool fails (default: the
    /// tool and the server). `completedLog` gets the tool's error output after
    /// it succeeded.
    static func uploadOutput(
        of tool: String, arguments: [String], context: BackupContext, name: String, fileName: String,
        errorLimit: Int = 64 * 1024,
        doing: String? = nil,
        inspect: (@Sendable (ByteBuffer) throws -> Void)? = nil,
        check: @escaping @Sendable () throws -> Void = {},
        completedLog: (@Sendable (String) -> Void)? = nil
    ) async throws -> ManifestFile {
        let process = try ChildProcess(tool, arguments: arguments, environment: context.mysql.toolEnvironment,
                                       stdout: .pipe, stderr: .capture(limit: errorLimit), logger: context.logger)
        do {
            // Cancelled, the tool is killed at once rather than at its next chunk of output.
            return try await withTaskCancellationHandler {
                try await upload(
                    from: ProcessOutputSource(process), to: context.storage,
                    key: context.repository.key(context.shard, name, fileName), fileName: fileName,
                    compression: context.compression, encryption: context.dataKey?.fileKey(fileName),
                    progress: context.progress, inspect: inspect,
                    beforeFinish: {
                        try await process.checkSuccess(doing: doing ?? "\(tool) of \(context.mysql.endpoint)")
                        try check()
                        completedLog?(await process.capturedError())
                    })
            } onCancel: {
                process.kill()
            }
        } catch {
            process.kill()
            _ = await process.wait()
            throw error
        }
    }
}

/// Compression, encryption and hashing of one stream, run on the blocking
/// pool. The hash is of the stored (encrypted) bytes, so `cairn verify`
/// needs no key.
final class CompressStage: Sendable {
    struct State: ~Copyable {
        var compressor: ZstdCompressor?
        var encryptor: EncryptingStream?
        /// Reused for the sealed bytes of every chunk, as `output` is for compressed ones.
        var sealed = ByteBuffer()
        var hasher = SHA256()
        var rawSize: Int64 = 0
        var storedSize: Int64 = 0
        var digest: String = ""
        /// Reused for every chunk once the previous one is written: large
        /// buffers of varying sizes, allocated anew, fragment the heap.
        var output = ByteBuffer()
    }
    let state: Mutex<State>

    // The compressor is only touched under the mutex, one call at a time.
    init(_ settings: CompressionSettings, encryption: FileKey? = nil) throws {
        let compressor = settings.algorithm == "none" ? nil : try ZstdCompressor(level: settings.level, threads: settings.multithreaded ? settings.threads : nil)
        state = Mutex(State(compressor: compressor, encryptor: encryption.map { EncryptingStream(key: $0.key) }))
    }

    /// Cancelled, the caller stops waiting for a chunk's compression: the
    /// upload is being aborted and the stage is not used again.
    func process(_ chunk: ByteBuffer) async throws -> ByteBuffer {
        try await Blocking.runAbandoningOnCancel { [self] in
            try state.withLock { s in
                s.rawSize += Int64(chunk.readableBytes)
                var out: ByteBuffer
                if let compressor = s.compressor {
                    s.output.clear()
                    try compressor.compress(chunk, into: &s.output)
                    out = s.output
                } else {
                    out = chunk
                }
                if s.encryptor != nil {
                    s.sealed.clear()
                    try s.encryptor?.update(out, into: &s.sealed)
                    out = s.sealed
                }
                out.withUnsafeReadableBytes { s.hasher.update(bufferPointer: $0) }
                s.storedSize += Int64(out.readableBytes)
                return out
            }
        }
    }

    func finish() async throws -> ByteBuffer {
        try await Blocking.runAbandoningOnCancel { [self] in
            try state.withLock { s in
                var out = ByteBufferAllocator().buffer(capacity: 64 * 1024)
                if let compressor = s.compressor {
                    try compressor.finish(into: &out)
                }
                if s.encryptor != nil {
                    var sealed = ByteBufferAllocator().buffer(capacity: out.readableBytes + 64 * 1024)
                    try s.encryptor?.update(out, into: &sealed)
                    try s.encryptor?.finish(into: &sealed)
                    out = sealed
                }
                out.withUnsafeReadableBytes { s.hasher.update(bufferPointer: $0) }
                s.storedSize += Int64(out.readableBytes)
                s.digest = s.hasher.finalize().map { String(format: "%02x", $0) }.joined()
                return out
            }
        }
    }

    var summary: (rawSize: Int64, storedSize: Int64, sha256: String) {
        state.withLock { ($0.rawSize, $0.storedSize, $0.digest) }
    }
}

/// Thrown by a sink whose consumer legitimately needs no more input (a
/// decoder that reached its stop position); the download ends early.
public struct ConsumerFinished: Error {
    public init() {}
}

/// Streams one stored data file back: hash and count the stored bytes,
/// decompress, hand the raw bytes to a sink. The hash and size are checked
/// at the end; a mismatch is an integrity error naming the file.
public enum DownloadPipeline {
    /// `transform` may stop the stream early by returning false after the
    /// bytes it passed on (a point-in-time cut); the stored bytes are then
    /// not all read and the hash is not checked.
    public static func download(
        _ file: ManifestFile,
        key: String,
        from storage: any BackupStorage,
        compression: CompressionInfo,
        decryption: FileKey? = nil,
        to sink: any ByteSink,
        progress: TransferProgress?,
        transform: (@Sendable (ByteBuffer) throws -> (ByteBuffer, continue: Bool))? = nil
    ) async throws -> (rawBytes: Int64, completed: Bool) {
        let stage = try DecompressStage(compression: compression, decryption: decryption, file: "stored file \(key)")
        let reader = try await storage.makeReader(key: key, range: nil)
        var input = ReadAhead(StorageSource(reader))
        // One piece is written while the next is decompressed, as `zstd -d |`
        // would overlap them; a piece's bytes count once the sink took it.
        var writing: Task<Int, any Error>?
        var rawBytes: Int64 = 0
        /// Waits for the piece in flight; false when the consumer finished early.
        func settle() async throws -> Bool {
            guard let task = writing else { return true }
            writing = nil
            let bytes: Int
            do {
                bytes = try await task.value
            } catch is ConsumerFinished {
                return false
            } catch {
                // The consumer gave up: damaged bytes it could not parse are the
                // likely cause, so read the rest and let the hash tell.
                if let damage = try? await stage.diagnose(rest: &input, file: file, key: key) {
                    throw damage
                }
                throw error
            }
            rawBytes += Int64(bytes)
            progress?.add(raw: Int64(bytes))
            return true
        }
        func stopEarly() async -> (rawBytes: Int64, completed: Bool) {
            input.cancel()
            await reader.close()
            return (rawBytes, false)
        }
        /// Hands the pieces starting with `first` to the sink; false when the consumer stopped.
        func pass(_ first: ByteBuffer?) async throws -> Bool {
            var next = first
            while var piece = next {
                var keepGoing = true
                if let transform { (piece, keepGoing) = try transform(piece) }
                if piece.readableBytes > 0 {
                    guard try await settle() else { return false }
                    let handed = piece
                    writing = Task {
                        try await sink.write(handed)
                        return handed.readableBytes
                    }
                }
                if !keepGoing {
                    _ = try await settle()
                    return false
                }
                next = try await stage.nextPiece()
            }
            return true
        }
        do {
            while let chunk = try await input.next() {
                if Task.isCancelled { throw CairnError(.cancelled, "the download of \(key) was cancelled") }
                progress?.add(stored: Int64(chunk.readableBytes))
                guard try await pass(try await stage.feed(chunk)) else { return await stopEarly() }
            }
            // An encrypted file's last chunk opens only at its end.
            guard try await pass(try await stage.endOfInput()) else { return await stopEarly() }
            guard try await settle() else { return await stopEarly() }
            await reader.close()
            let (storedSize, digest) = try await stage.finish()
            guard storedSize == file.storedSize else {
                throw CairnError(.integrity, "stored file \(key) is \(storedSize) bytes but its manifest says \(file.storedSize); the backup is damaged, restore another one")
            }
            guard digest == file.sha256 else {
                throw CairnError(.integrity, "stored file \(key) does not match the SHA-256 in its manifest; the backup is damaged, restore another one")
            }
            return (rawBytes, true)
        } catch {
            await abandon(writing)
            input.cancel()
            await reader.close()
            if let error = error as? CairnError, error.code == .integrity, !error.message.contains(key) {
                throw CairnError(.integrity, "stored file \(key) is damaged: \(error.message); restore another backup")
            }
            throw error
        }
    }

    /// Waits out a write still in flight after a failure, so nothing writes to
    /// the sink once the download has returned; its own outcome no longer matters.
    static func abandon(_ task: Task<Int, any Error>?) async {
        guard let task else { return }
        task.cancel()
        _ = await task.result
    }

    /// Reads a stored file and checks its size and SHA-256 without decompressing.
    public static func verify(_ file: ManifestFile, key: String, from storage: any BackupStorage,
                              progress: TransferProgress?) async throws {
        let reader = try await storage.makeReader(key: key, range: nil)
        var input = ReadAhead(StorageSource(reader))
        let hasher = Mutex(SHA256())
        var size: Int64 = 0
        do {
            while let chunk = try await input.next() {
                size += Int64(chunk.readableBytes)
                progress?.add(stored: Int64(chunk.readableBytes))
                try await Blocking.run { hasher.withLock { h in chunk.withUnsafeReadableBytes { h.update(bufferPointer: $0) } } }
            }
        } catch {
            input.cancel()
            await reader.close()
            throw error
        }
        await reader.close()
        guard size == file.storedSize else {
            throw CairnError(.integrity, "\(key) is \(size) bytes but its manifest says \(file.storedSize)")
        }
        let digest = hasher.withLock { $0.finalize() }.map { String(format: "%02x", $0) }.joined()
        guard digest == file.sha256 else {
            throw CairnError(.integrity, "\(key) does not match the SHA-256 in its manifest")
        }
    }
}

/// Hashing, decryption and decompression of one downloaded stream, on the
/// blocking pool. Every encrypted chunk is authenticated before any of its
/// bytes go on, so a damaged or forged file never reaches the consumer.
final class DecompressStage: Sendable {
    struct State: ~Copyable {
        var decompressor: ZstdDecompressor?
        var decryptor: DecryptingStream?
    }
    let state: Mutex<State>
    /// The SHA-256 and size of the stored bytes, apart from `state` so that
    /// a chunk is hashed while it is decompressed.
    let stored = Mutex<(hasher: SHA256, size: Int64)>((SHA256(), 0))

    init(compression: CompressionInfo, decryption: FileKey? = nil, file: String = "the stored file") throws {
        let decryptor = decryption.map { DecryptingStream(key: $0.key, file: file) }
        switch compression.algorithm {
        case "zstd": state = Mutex(State(decompressor: try ZstdDecompressor(), decryptor: decryptor))
        case "none": state = Mutex(State(decompressor: nil, decryptor: decryptor))
        default:
            throw CairnError(.manifest, "the backup uses compression \"\(compression.algorithm)\", which this Cairn cannot read; upgrade Cairn")
        }
    }

    /// Decrypts (when encrypted) and decompresses `stored`, returning the first piece.
    static func open(_ stored: ByteBuffer, last: Bool, _ s: inout State) throws -> ByteBuffer? {
        var plain = stored
        if s.decryptor != nil {
            if last {
                plain = try s.decryptor?.finish() ?? ByteBuffer()
            } else {
                plain = try s.decryptor?.update(stored) ?? ByteBuffer()
            }
        } else if last {
            return nil
        }
        guard let d = s.decompressor else { return plain.readableBytes > 0 ? plain : nil }
        guard plain.readableBytes > 0 else { return nil }
        d.feed(plain)
        return try d.next(maxBytes: DecompressStage.maximumPiece)
    }

    /// The raw bytes held back until the end of the stored stream (an
    /// encrypted file's last chunk), first piece; nil when there are none.
    func endOfInput() async throws -> ByteBuffer? {
        guard state.withLock({ $0.decryptor != nil }) else { return nil }
        return try await Blocking.run { [self] in
            try state.withLock { s in try DecompressStage.open(ByteBuffer(), last: true, &s) }
        }
    }

    /// The most raw bytes handed to the consumer at once.
    /// A piece stays below the 4 MiB mmap threshold (see `Blocking`), so its
    /// memory is reused from the heap instead of mapped and zeroed afresh.
    static let maximumPiece = 1 << 20

    /// Hashes and counts the next stored chunk and returns its first piece of
    /// raw bytes (the chunk itself when stored uncompressed); ``nextPiece()``
    /// gives the rest. The hash runs on one blocking thread while the chunk
    /// is decrypted and decompressed on another, as `sha256sum` beside
    /// `zstd -d` would: checking every byte adds no time to the critical path
    /// when a core is free.
    func feed(_ chunk: ByteBuffer) async throws -> ByteBuffer? {
        async let hashed: Void = Blocking.run { [self] in hash(chunk) }
        let piece = try await Blocking.run { [self] in
            try state.withLock { s in try DecompressStage.open(chunk, last: false, &s) }
        }
        try await hashed
        return piece
    }

    private func hash(_ chunk: ByteBuffer) {
        stored.withLock { stored in
            chunk.withUnsafeReadableBytes { stored.hasher.update(bufferPointer: $0) }
            stored.size += Int64(chunk.readableBytes)
        }
    }

    private func storedDigest() -> (Int64, String) {
        stored.withLock { stored in (stored.size, stored.hasher.finalize().map { String(format: "%02x", $0) }.joined()) }
    }

    /// The next piece of raw bytes from the fed chunk, at most ``maximumPiece``;
    /// nil, without a trip to the blocking pool, when it is used up.
    func nextPiece() async throws -> ByteBuffer? {
        guard state.withLock({ $0.decompressor?.hasInput ?? false }) else { return nil }
        return try await Blocking.run { [self] in
            try state.withLock { s in try s.decompressor?.next(maxBytes: DecompressStage.maximumPiece) }
        }
    }

    func finish() async throws -> (Int64, String) {
        try await Blocking.run { [self] in
            try state.withLock { s in try s.decompressor?.finish() }
            return storedDigest()
        }
    }

    /// Hashes the rest of the stored stream without decompressing it and
    /// returns an integrity error when the file does not match its manifest.
    func diagnose(rest input: inout ReadAhead, file: ManifestFile, key: String) async throws -> CairnError? {
        while let chunk = try await input.next() {
            try await Blocking.run { [self] in hash(chunk) }
        }
        let (size, digest) = try await Blocking.run { [self] in storedDigest() }
        if size != file.storedSize || digest != file.sha256 {
            return CairnError(.integrity, "stored file \(key) does not match the SHA-256 in its manifest; the backup is damaged, restore another one")
        }
        return nil
    }
}
