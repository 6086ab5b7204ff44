#if canImport(Glibc)
import Glibc
#endif
import CairnCore
import CairnSystem
import CairnStorage
import NIOCore
import Synchronization

/// Where bytes come from: a child process's output, a file, a storage object.
public protocol ByteSource: Sendable {
    /// The next chunk, or nil at the end.
    func next() async throws -> ByteBuffer?
}

/// Where bytes go: a child process's input, a file.
public protocol ByteSink: Sendable {
    func write(_ chunk: ByteBuffer) async throws
}

/// A child process's standard output as a source.
public struct ProcessOutputSource: ByteSource {
    public let process: ChildProcess
    public var chunkSize: Int = 1 << 20

    public init(_ process: ChildProcess) { self.process = process }

    public func next() async throws -> ByteBuffer? {
        try await process.read(maxBytes: chunkSize)
    }
}

/// A child process's standard input as a sink.
public struct ProcessInputSink: ByteSink {
    public let process: ChildProcess

    public init(_ process: ChildProcess) { self.process = process }

    public func write(_ chunk: ByteBuffer) async throws {
        try await process.write(chunk)
    }
}

/// A storage object's reader as a source.
public struct StorageSource: ByteSource {
    public let reader: any StorageReader

    public init(_ reader: any StorageReader) { self.reader = reader }

    public func next() async throws -> ByteBuffer? { try await reader.read() }
}

/// A local file read in chunks (binary logs).
public final class FileSource: ByteSource {
    private let state: Mutex<(fd: Int32, offset: Int64)>
    public let path: String
    let chunkSize: Int

    public init(path: String, chunkSize: Int = 1 << 20) throws {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw CairnError(.fileSystem, "could not open \(path): \(String(cString: strerror(errno)))")
        }
        self.state = Mutex((fd, 0))
        self.path = path
        self.chunkSize = chunkSize
    }

    deinit { state.withLock { _ = close($0.fd) } }

    public func next() async throws -> ByteBuffer? {
        try await Blocking.run { [self] in
            try state.withLock { s -> ByteBuffer? in
                var buffer = ByteBufferAllocator().buffer(capacity: chunkSize)
                let fd = s.fd
                let offset = s.offset
                let size = chunkSize
                let path = self.path
                let n = try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: size) { ptr in
                    while true {
                        let r = pread(fd, ptr.baseAddress, size, off_t(offset))
                        if r >= 0 { return r }
                        if errno == EINTR { continue }
                        throw CairnError(.fileSystem, "reading \(path) failed: \(String(cString: strerror(errno)))")
                    }
                }
                s.offset += Int64(n)
                return n == 0 ? nil : buffer
            }
        }
    }
}

/// Reads a source one chunk ahead, so producing the next chunk (a pipe
/// read, a download) overlaps with consuming this one.
struct ReadAhead {
    let source: any ByteSource
    private var pending: Task<ByteBuffer?, any Error>

    init(_ source: any ByteSource) {
        self.source = source
        self.pending = Task { try await source.next() }
    }

    mutating func next() async throws -> ByteBuffer? {
        let chunk = try await pending.value
        if chunk != nil {
            let source = self.source
            pending = Task { try await source.next() }
        }
        return chunk
    }

    func cancel() { pending.cancel() }
}
