#if canImport(Glibc)
import Glibc
#endif
import CairnCore
import CairnSystem
import Foundation
import Logging
import NIOCore
import Synchronization

/// Backups in a directory (`file:///path`): a local disk or a shared mount.
///
/// A file is written to a hidden temporary name beside its final name,
/// `fsync`ed, renamed into place, and its directory `fsync`ed: a crash leaves
/// either nothing or the whole file, never a partial one under the real name.
///
/// Backups hold every row and the accounts' password hashes, so files are
/// created `0600` and directories `0700` unless the configuration widens
/// them (`storage_file_mode`, `storage_directory_mode`), e.g. for a group of
/// operators. Directories that already exist keep their permissions.
public struct FileStorage: BackupStorage {
    public let root: String
    /// Permissions of the files written.
    public let fileMode: mode_t
    /// Permissions of the directories created under the root.
    public let directoryMode: mode_t
    static let temporaryPrefix = ".cairn-tmp-"
    public static let defaultFileMode: mode_t = 0o600
    public static let defaultDirectoryMode: mode_t = 0o700

    public init(root: String, fileMode: mode_t = FileStorage.defaultFileMode,
                directoryMode: mode_t = FileStorage.defaultDirectoryMode) {
        var r = root
        while r.count > 1 && r.hasSuffix("/") { r.removeLast() }
        self.root = r
        self.fileMode = fileMode
        self.directoryMode = directoryMode
    }

    public var displayURL: String { "file://\(root)" }

    func path(_ key: String) -> String { "\(root)/\(key)" }

    public func list(prefix: String) async throws -> [StorageObject] {
        let root = self.root
        let display = displayURL
        return try await Blocking.run {
            // Walk only the deepest directory the prefix names.
            var base = ""
            if let slash = prefix.lastIndex(of: "/") { base = String(prefix[..<slash]) }
            let start = base.isEmpty ? root : "\(root)/\(base)"
            var result: [StorageObject] = []
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: root, isDirectory: &isDir), isDir.boolValue else {
                throw CairnError(.storage, "the storage directory \(root) does not exist; create it or fix the storage URL \(display)")
            }
            guard FileManager.default.fileExists(atPath: start, isDirectory: &isDir), isDir.boolValue else { return [] }
            func walk(_ dir: String, _ relative: String) throws {
                let entries: [String]
                do {
                    entries = try FileManager.default.contentsOfDirectory(atPath: dir)
                } catch {
                    throw CairnError(.storage, "could not list \(dir) in \(display): \(FileSystem.describe(error))")
                }
                for entry in entries where !entry.hasPrefix(FileStorage.temporaryPrefix) {
                    let full = "\(dir)/\(entry)"
                    let key = relative.isEmpty ? entry : "\(relative)/\(entry)"
                    var st = stat()
                    guard lstat(full, &st) == 0 else { continue }
                    if (st.st_mode & S_IFMT) == S_IFDIR {
                        // Only descend where keys can still match the prefix.
                        if (key + "/").hasPrefix(prefix) || prefix.hasPrefix(key + "/") {
                            try walk(full, key)
                        }
                    } else if (st.st_mode & S_IFMT) == S_IFREG, key.hasPrefix(prefix) {
                        let modified = Date(timeIntervalSince1970: Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9)
                        result.append(StorageObject(key: key, size: Int64(st.st_size), lastModified: modified))
                    }
                }
            }
            try walk(start, base)
            return result.sorted { $0.key < $1.key }
        }
    }

    public func makeWriter(key: String) async throws -> any StorageWriter {
        try validateKey(key)
        let final = path(key)
        let display = displayURL
        let root = self.root
        let (fileMode, directoryMode) = (self.fileMode, self.directoryMode)
        let fd = try await Blocking.run { () throws -> (Int32, String) in
            let dir = (final as NSString).deletingLastPathComponent
            do {
                try FileSystem.createDirectory(dir, mode: directoryMode)
            } catch {
                throw CairnError(.storage, "cannot write to \(display): creating \(dir) failed (\(FileSystem.describe(error))); check that \(root) exists and is writable")
            }
            let temp = "\(dir)/\(FileStorage.temporaryPrefix)\((final as NSString).lastPathComponent).\(UInt64.random(in: 0...UInt64.max))"
            let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, fileMode)
            guard fd >= 0 else {
                throw CairnError(.storage, "cannot write to \(display): creating a file in \(dir) failed (\(String(cString: strerror(errno)))); check that \(root) is writable")
            }
            // The umask may have narrowed a widened mode; the configured one is what the operator asked for.
            if fileMode != FileStorage.defaultFileMode { _ = fchmod(fd, fileMode) }
            return (fd, temp)
        }
        return FileStorageWriter(fd: fd.0, temporaryPath: fd.1, finalPath: final, root: root, displayURL: display)
    }

    public func makeReader(key: String, range: Range<Int64>?) async throws -> any StorageReader {
        try validateKey(key)
        let p = path(key)
        let display = displayURL
        let fd = try await Blocking.run { () throws -> Int32 in
            let fd = open(p, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else {
                if errno == ENOENT {
                    throw CairnError(.notFound, "\(key) does not exist in \(display)")
                }
                throw CairnError(.storage, "cannot read \(key) in \(display): \(String(cString: strerror(errno)))")
            }
            return fd
        }
        return FileStorageReader(fd: fd, key: key, range: range, displayURL: display)
    }

    public func discardUnfinishedUploads(prefix: String) async throws -> Int {
        let root = self.root
        return try await Blocking.run {
            var base = ""
            if let slash = prefix.lastIndex(of: "/") { base = String(prefix[..<slash]) }
            let start = base.isEmpty ? root : "\(root)/\(base)"
            guard let walker = FileManager.default.enumerator(atPath: start) else { return 0 }
            var removed = 0
            while let relative = walker.nextObject() as? String {
                let name = (relative as NSString).lastPathComponent
                let key = base.isEmpty ? relative : "\(base)/\(relative)"
                if name.hasPrefix(FileStorage.temporaryPrefix), key.hasPrefix(prefix) || prefix.isEmpty {
                    if unlink("\(start)/\(relative)") == 0 { removed += 1 }
                }
            }
            return removed
        }
    }

    public func delete(keys: [String]) async throws {
        let root = self.root
        let display = displayURL
        for key in keys { try validateKey(key) }
        try await Blocking.run {
            var directories: Set<String> = []
            for key in keys {
                let p = "\(root)/\(key)"
                if unlink(p) != 0 && errno != ENOENT {
                    throw CairnError(.storage, "could not delete \(key) in \(display): \(String(cString: strerror(errno)))")
                }
                directories.insert((p as NSString).deletingLastPathComponent)
            }
            // Remove directories left empty, up to the root.
            for dir in directories.sorted(by: { $0.count > $1.count }) {
                var d = dir
                while d.count > root.count, d.hasPrefix(root + "/") {
                    if rmdir(d) != 0 { break }
                    d = (d as NSString).deletingLastPathComponent
                }
                try? FileSystem.syncDirectory((dir as NSString).deletingLastPathComponent)
            }
        }
    }
}

final class FileStorageWriter: StorageWriter {
    struct State {
        var fd: Int32
        var written: Int64 = 0
        /// Bytes up to here have been handed to the kernel's writeback.
        var writebackStarted: Int64 = 0
        var done = false
    }
    /// How much to write before starting its writeback: the final fsync then
    /// waits for the last few MiB, not for the whole file.
    static let writebackStep: Int64 = 8 << 20
    let state: Mutex<State>
    let temporaryPath: String
    let finalPath: String
    let root: String
    let displayURL: String

    init(fd: Int32, temporaryPath: String, finalPath: String, root: String, displayURL: String) {
        self.state = Mutex(State(fd: fd))
        self.temporaryPath = temporaryPath
        self.finalPath = finalPath
        self.root = root
        self.displayURL = displayURL
    }

    deinit {
        // A writer dropped without finish() or abort() leaves no file behind.
        state.withLock { s in
            if !s.done {
                close(s.fd)
                unlink(temporaryPath)
            }
        }
    }

    func write(_ chunk: ByteBuffer) async throws {
        try await Blocking.run { [self] in
            try state.withLock { s in
                guard !s.done else { throw CairnError(.internal, "write after finish or abort") }
                try chunk.withUnsafeReadableBytes { ptr in
                    var offset = 0
                    while offset < ptr.count {
                        let r = Glibc.write(s.fd, ptr.baseAddress! + offset, ptr.count - offset)
                        if r < 0 {
                            if errno == EINTR { continue }
                            throw CairnError(.storage, "writing \(finalPath) failed: \(String(cString: strerror(errno))); check free space and permissions in \(displayURL)")
                        }
                        offset += r
                    }
                }
                s.written += Int64(chunk.readableBytes)
                if s.written - s.writebackStarted >= FileStorageWriter.writebackStep {
                    FileSystem.startWriteback(fd: s.fd, offset: s.writebackStarted, length: s.written - s.writebackStarted)
                    s.writebackStarted = s.written
                }
            }
        }
    }

    func finish() async throws -> Int64 {
        try await Blocking.run { [self] in
            try state.withLock { s in
                guard !s.done else { throw CairnError(.internal, "finish after finish or abort") }
                s.done = true
                if fsync(s.fd) != 0 {
                    let reason = String(cString: strerror(errno))
                    close(s.fd)
                    unlink(temporaryPath)
                    throw CairnError(.storage, "making \(finalPath) durable failed: \(reason)")
                }
                close(s.fd)
                guard rename(temporaryPath, finalPath) == 0 else {
                    let reason = String(cString: strerror(errno))
                    unlink(temporaryPath)
                    throw CairnError(.storage, "renaming into \(finalPath) failed: \(reason)")
                }
                // The new name, and each directory created for it, must survive a crash.
                var dir = (finalPath as NSString).deletingLastPathComponent
                try FileSystem.syncDirectory(dir)
                for _ in 0..<3 where dir.count > root.count {
                    dir = (dir as NSString).deletingLastPathComponent
                    try FileSystem.syncDirectory(dir)
                }
                return s.written
            }
        }
    }

    func abort() async {
        _ = try? await Blocking.run { [self] in
            state.withLock { s in
                guard !s.done else { return }
                s.done = true
                close(s.fd)
                unlink(temporaryPath)
            }
        }
    }
}

final class FileStorageReader: StorageReader {
    struct State {
        var fd: Int32
        var offset: Int64
        var closed = false
    }
    let state: Mutex<State>
    let end: Int64?
    let key: String
    let displayURL: String
    static let chunkSize = 1 << 20

    init(fd: Int32, key: String, range: Range<Int64>?, displayURL: String) {
        self.state = Mutex(State(fd: fd, offset: range?.lowerBound ?? 0))
        self.end = range?.upperBound
        self.key = key
        self.displayURL = displayURL
    }

    deinit {
        state.withLock { s in if !s.closed { Glibc.close(s.fd) } }
    }

    func read() async throws -> ByteBuffer? {
        try await Blocking.run { [self] in
            try state.withLock { s -> ByteBuffer? in
                guard !s.closed else { return nil }
                var want = FileStorageReader.chunkSize
                if let end { want = Int(max(0, min(Int64(want), end - s.offset))) }
                if want == 0 { return nil }
                var buffer = ByteBufferAllocator().buffer(capacity: want)
                let offset = s.offset
                let fd = s.fd
                let n = try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: want) { ptr in
                    while true {
                        let r = pread(fd, ptr.baseAddress, want, off_t(offset))
                        if r >= 0 { return r }
                        if errno == EINTR { continue }
                        throw CairnError(.storage, "reading \(key) in \(displayURL) failed: \(String(cString: strerror(errno)))")
                    }
                }
                if n == 0 { return nil }
                s.offset += Int64(n)
                return buffer
            }
        }
    }

    func close() async {
        state.withLock { s in
            if !s.closed {
                Glibc.close(s.fd)
                s.closed = true
            }
        }
    }
}
