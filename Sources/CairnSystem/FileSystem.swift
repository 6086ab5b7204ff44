#if canImport(Glibc)
import Glibc
#endif
internal import CCairnSystem
import CairnCore
import Foundation

/// Small file-system helpers with clear errors.
public enum FileSystem {
    /// Whether `path` is missing, or an empty directory.
    public static func isMissingOrEmptyDirectory(_ path: String) throws -> Bool {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { return true }
        guard isDir.boolValue else {
            throw CairnError(.restoreTarget, "\(path) exists and is not a directory; choose an empty or new directory")
        }
        let entries = try FileManager.default.contentsOfDirectory(atPath: path)
        return entries.isEmpty
    }

    /// Creates `path` and its parents.
    public static func createDirectory(_ path: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw CairnError(.fileSystem, "could not create directory \(path): \(describe(error)); check that its parent exists and is writable")
        }
    }

    /// Creates `path` and its missing parents with permissions `mode` (exactly,
    /// whatever the umask); directories that exist are left as they are.
    public static func createDirectory(_ path: String, mode: UInt32) throws {  // mode_t, spelled out (see ChildProcess.pid)
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue { return }
        let parent = (path as NSString).deletingLastPathComponent
        if !parent.isEmpty, parent != path { try createDirectory(parent, mode: mode) }
        if mkdir(path, mode) != 0 {
            let code = errno
            if code == EEXIST, FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue { return }
            throw CairnError(.fileSystem, "could not create directory \(path): \(String(cString: strerror(code))); check that its parent exists and is writable")
        }
        _ = chmod(path, mode)
    }

    /// Creates `path` (and its parents) if missing and makes it `0700`: a
    /// directory for secrets and private state that only its owner may enter.
    public static func createPrivateDirectory(_ path: String) throws {
        try createDirectory(path)
        guard chmod(path, 0o700) == 0 else {
            throw CairnError(.fileSystem, "could not make directory \(path) private (mode 0700): \(String(cString: strerror(errno))); check its owner")
        }
    }

    /// Creates the secret file `path` holding `contents`: `O_CREAT|O_EXCL` at
    /// mode `0600`, so no other user can open it at any moment, and nothing
    /// already there (a file or a planted link) is followed or reused. Returns
    /// false, writing nothing, when `path` already exists.
    @discardableResult
    public static func createSecretFile(_ path: String, contents: String) throws -> Bool {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            if errno == EEXIST { return false }
            throw CairnError(.fileSystem, "could not create the secret file \(path): \(String(cString: strerror(errno))); check that its directory exists and is writable")
        }
        var failure: Int32? = nil
        let bytes = Array(contents.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, bytes.count - offset) }
            if n < 0 {
                if errno == EINTR { continue }
                failure = errno
                break
            }
            offset += n
        }
        if failure == nil, fsync(fd) != 0 { failure = errno }
        close(fd)
        if let failure {
            unlink(path)
            throw CairnError(.fileSystem, "could not write the secret file \(path): \(String(cString: strerror(failure))); check free space")
        }
        return true
    }

    /// Makes sure the private file `path` exists with mode `0600` (creating it
    /// empty when missing, narrowing it when wider), before a library such as
    /// SQLite opens it with its own, wider default.
    public static func ensurePrivateFile(_ path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw CairnError(.fileSystem, "could not create \(path): \(String(cString: strerror(errno))); check that its directory exists and is writable")
        }
        defer { close(fd) }
        guard fchmod(fd, 0o600) == 0 else {
            throw CairnError(.fileSystem, "could not make \(path) private (mode 0600): \(String(cString: strerror(errno))); check its owner")
        }
    }

    /// Removes everything inside `path`, keeping the directory itself.
    public static func emptyDirectory(_ path: String) throws {
        let fm = FileManager.default
        guard let entries = try? fm.contentsOfDirectory(atPath: path) else { return }
        for entry in entries {
            try fm.removeItem(atPath: (path as NSString).appendingPathComponent(entry))
        }
    }

    /// A new private directory under the system's temporary directory (or `parent`).
    public static func makeTemporaryDirectory(prefix: String, in parent: String? = nil) throws -> String {
        let base = parent ?? (ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp")
        var template = Array("\(base)/\(prefix).XXXXXX".utf8CString)
        guard let result = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw CairnError(.fileSystem, "could not create a temporary directory in \(base): \(String(cString: strerror(errno)))")
        }
        return String(cString: result)
    }

    /// A short, readable reason for a Foundation or POSIX error.
    public static func describe(_ error: any Error) -> String {
        if let e = error as? CairnError { return e.message }
        let ns = error as NSError
        if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
            return String(cString: strerror(Int32(underlying.code)))
        }
        if ns.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(ns.code))) }
        return ns.localizedDescription
    }

    /// `fsync` of a directory, so a rename inside it is durable.
    public static func syncDirectory(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else {
            throw CairnError(.fileSystem, "could not open directory \(path) to sync it: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        guard fsync(fd) == 0 else {
            throw CairnError(.fileSystem, "could not sync directory \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// Asks the kernel to start writing `length` bytes at `offset` of `fd` back
    /// to disk without waiting (`sync_file_range`), so dirty pages do not pile
    /// up until the final `fsync`. Advice only: a failure changes nothing.
    public static func startWriteback(fd: Int32, offset: Int64, length: Int64) {
        _ = ccairn_start_writeback(fd, offset, length)
    }

    /// The machine's host name.
    public static var hostname: String {
        var buf = [UInt8](repeating: 0, count: 256)
        gethostname(&buf, buf.count)
        return String(decoding: buf.prefix { $0 != 0 }, as: UTF8.self)
    }
}

extension FileSystem {
    /// The same helpers for async code: each runs on the blocking pool
    /// (``Blocking/run(_:)``), so walking or emptying a large directory never
    /// holds one of Swift's few cooperative threads.
    public enum Async {
        /// ``FileSystem/isMissingOrEmptyDirectory(_:)`` off the cooperative pool.
        public static func isMissingOrEmptyDirectory(_ path: String) async throws -> Bool {
            try await Blocking.run { try FileSystem.isMissingOrEmptyDirectory(path) }
        }

        /// ``FileSystem/createDirectory(_:)`` off the cooperative pool.
        public static func createDirectory(_ path: String) async throws {
            try await Blocking.run { try FileSystem.createDirectory(path) }
        }

        /// ``FileSystem/emptyDirectory(_:)`` off the cooperative pool.
        public static func emptyDirectory(_ path: String) async throws {
            try await Blocking.run { try FileSystem.emptyDirectory(path) }
        }

        /// Removes `path` and everything below it, off the cooperative pool, if
        /// it exists; for scratch directories, whose removal must not fail the
        /// work that used them.
        public static func removeIfPresent(_ path: String) async {
            _ = try? await Blocking.run { try FileManager.default.removeItem(atPath: path) }
        }

        /// ``FileSystem/makeTemporaryDirectory(prefix:in:)`` off the cooperative pool.
        public static func makeTemporaryDirectory(prefix: String, in parent: String? = nil) async throws -> String {
            try await Blocking.run { try FileSystem.makeTemporaryDirectory(prefix: prefix, in: parent) }
        }
    }
}
