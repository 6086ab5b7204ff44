#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
internal import CCairnSystem
import CairnCore
import Foundation
import Logging
import NIOCore
import Synchronization

/// A child process started with `posix_spawn`, with its standard streams
/// connected to pipes that Cairn reads and writes in chunks, so data flows
/// through without ever being held whole. Blocking calls run on ``Blocking``.
public final class ChildProcess: Sendable {
    public enum Input: Sendable {
        /// `/dev/null`.
        case null
        /// A pipe that ``write(_:)`` feeds.
        case pipe
        /// An existing file descriptor, duplicated into the child.
        case fileDescriptor(Int32)
    }

    public enum Output: Sendable {
        /// `/dev/null`.
        case null
        /// A pipe that ``read(maxBytes:)`` drains.
        case pipe
        /// An existing file descriptor, duplicated into the child.
        case fileDescriptor(Int32)
        /// Read in the background; the last `limit` bytes are kept for error messages.
        case capture(limit: Int)
    }

    public struct Exit: Sendable, Equatable, CustomStringConvertible {
        public var code: Int32?
        public var signal: Int32?
        public init(code: Int32?, signal: Int32?) {
            self.code = code
            self.signal = signal
        }
        /// Decodes a `waitpid` status.
        init(waitStatus raw: Int32) {
            if raw & 0x7f == 0 { self.init(code: (raw >> 8) & 0xff, signal: nil) } else { self.init(code: nil, signal: raw & 0x7f) }
        }
        public var succeeded: Bool { code == 0 }
        public var description: String {
            if let code { return "exit status \(code)" }
            if let signal { return "signal \(signal)" }
            return "an unknown status"
        }
    }

    public let pid: Int32  // pid_t; spelled out so the public API does not depend on an internally imported C module
    /// The program's name, for messages.
    public let name: String
    private let stdinFD: Mutex<Int32?>
    private let stdoutFD: Int32?
    private let stderrCapture: Task<String, Never>?
    private let stdoutCapture: Task<String, Never>?
    private let stderrTail = CaptureBuffer()
    private let stdoutTail = CaptureBuffer()
    let exitStatusStore: Mutex<Exit?>

    /// Starts `executable` (a path, or a name searched on `PATH`).
    public init(
        _ executable: String,
        arguments: [String],
        environment: [String: String] = [:],
        workingDirectory: String? = nil,
        stdin: Input = .null,
        stdout: Output = .capture(limit: 64 * 1024),
        stderr: Output = .capture(limit: 64 * 1024),
        newProcessGroup: Bool = false,
        logger: Logger? = nil
    ) throws {
        ignoreSIGPIPEOnce
        let path = try ChildProcess.resolve(executable)
        name = (executable as NSString).lastPathComponent

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }

        var flags: Int32 = 0
        // Children start with default signal handling whatever Cairn ignores.
        var defaultSignals = sigset_t()
        sigemptyset(&defaultSignals)
        sigaddset(&defaultSignals, SIGPIPE)
        sigaddset(&defaultSignals, SIGINT)
        sigaddset(&defaultSignals, SIGTERM)
        posix_spawnattr_setsigdefault(&attributes, &defaultSignals)
        flags |= Int32(POSIX_SPAWN_SETSIGDEF)
        var emptyMask = sigset_t()
        sigemptyset(&emptyMask)
        posix_spawnattr_setsigmask(&attributes, &emptyMask)
        flags |= Int32(POSIX_SPAWN_SETSIGMASK)
        if newProcessGroup {
            posix_spawnattr_setpgroup(&attributes, 0)
            flags |= Int32(POSIX_SPAWN_SETPGROUP)
        }
        posix_spawnattr_setflags(&attributes, Int16(flags))

        // File descriptors this side keeps, and the child's ends to close after spawning.
        var closeAfterSpawn: [Int32] = []
        var parentStdin: Int32? = nil
        var parentStdout: Int32? = nil
        var parentStderr: Int32? = nil
        defer { for fd in closeAfterSpawn { close(fd) } }

        func makePipe() throws -> (read: Int32, write: Int32) {
            var fds: [Int32] = [-1, -1]
            guard ccairn_pipe_cloexec(&fds) == 0 else {
                throw CairnError(.process, "could not create a pipe for \(executable): \(String(cString: strerror(errno)))")
            }
            // A larger pipe (1 MiB, the default limit for unprivileged processes) lets
            // the child run ahead while Cairn compresses; failure only costs speed.
            _ = ccairn_set_pipe_size(fds[1], 1 << 20)
            return (fds[0], fds[1])
        }

        switch stdin {
        case .null:
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        case .pipe:
            let p = try makePipe()
            posix_spawn_file_actions_adddup2(&actions, p.read, 0)
            closeAfterSpawn.append(p.read)
            parentStdin = p.write
        case .fileDescriptor(let fd):
            posix_spawn_file_actions_adddup2(&actions, fd, 0)
        }
        for (target, output) in [(Int32(1), stdout), (Int32(2), stderr)] {
            switch output {
            case .null:
                posix_spawn_file_actions_addopen(&actions, target, "/dev/null", O_WRONLY, 0)
            case .pipe, .capture:
                let p = try makePipe()
                posix_spawn_file_actions_adddup2(&actions, p.write, target)
                closeAfterSpawn.append(p.write)
                if target == 1 { parentStdout = p.read } else { parentStderr = p.read }
            case .fileDescriptor(let fd):
                posix_spawn_file_actions_adddup2(&actions, fd, target)
            }
        }
        // Nothing else of Cairn's leaks into the child, whatever its close-on-exec flag.
        ccairn_spawn_addclosefrom(&actions, 3)

        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        let argv = [path] + arguments
        let envp = env.map { "\($0.key)=\($0.value)" }

        var childPID: pid_t = 0
        let rc = withCStrings(argv) { cArgv in
            withCStrings(envp) { cEnvp in
                posix_spawn(&childPID, path, &actions, &attributes, cArgv, cEnvp)
            }
        }
        guard rc == 0 else {
            for fd in [parentStdin, parentStdout, parentStderr].compactMap({ $0 }) { close(fd) }
            throw CairnError(.process, "could not start \(path): \(String(cString: strerror(rc)))")
        }
        pid = childPID
        logger?.debug("started child process", metadata: ["program": "\(name)", "pid": "\(childPID)"])
        stdinFD = Mutex(parentStdin)
        exitStatusStore = Mutex(nil)

        if case .capture(let limit) = stdout, let fd = parentStdout {
            let tail = stdoutTail
            stdoutCapture = Task.detached { await ChildProcess.drain(fd: fd, limit: limit, into: tail) }
            stdoutFD = nil
        } else {
            stdoutCapture = nil
            stdoutFD = parentStdout
        }
        if case .capture(let limit) = stderr, let fd = parentStderr {
            let tail = stderrTail
            stderrCapture = Task.detached { await ChildProcess.drain(fd: fd, limit: limit, into: tail) }
        } else {
            stderrCapture = nil
            if let fd = parentStderr { close(fd) }
        }
    }

    deinit {
        if let fd = stdinFD.withLock({ $0 }) { close(fd) }
        if let fd = stdoutFD { close(fd) }
    }

    /// Finds an executable by name on `PATH`, or checks a given path.
    public static func resolve(_ executable: String) throws -> String {
        if executable.contains("/") {
            guard access(executable, X_OK) == 0 else {
                throw CairnError(.process, "\(executable) is not an executable file")
            }
            return executable
        }
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for dir in path.split(separator: ":").map(String.init) + ["/usr/sbin", "/sbin"] {
            let candidate = "\(dir)/\(executable)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        throw CairnError(.process, "\(executable) is not installed or not on PATH; run scripts/install.sh (it installs the MariaDB server, client and backup tools)")
    }

    /// Whether `executable` can be found.
    public static func isAvailable(_ executable: String) -> Bool {
        (try? resolve(executable)) != nil
    }

    /// Reads up to `maxBytes` of the child's standard output; nil at its end.
    public func read(maxBytes: Int = 1 << 20) async throws -> ByteBuffer? {
        guard let fd = stdoutFD else {
            throw CairnError(.internal, "the standard output of \(name) is not a pipe")
        }
        let name = self.name
        return try await Blocking.run {
            var buffer = ByteBufferAllocator().buffer(capacity: maxBytes)
            // Fill the buffer (a pipe hands out at most what it holds per read), so
            // one trip to the blocking pool moves up to maxBytes, not 64 KiB.
            let n = try buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: maxBytes) { ptr in
                var filled = 0
                while filled < maxBytes {
                    let r = Glibc.read(fd, ptr.baseAddress! + filled, maxBytes - filled)
                    if r > 0 {
                        filled += r
                        continue
                    }
                    if r == 0 { break }
                    if errno == EINTR { continue }
                    throw CairnError(.process, "reading the output of \(name) failed: \(String(cString: strerror(errno)))")
                }
                return filled
            }
            return n == 0 ? nil : buffer
        }
    }

    /// Writes all of `buffer` to the child's standard input.
    public func write(_ buffer: ByteBuffer) async throws {
        guard let fd = stdinFD.withLock({ $0 }) else {
            throw CairnError(.internal, "the standard input of \(name) is closed or not a pipe")
        }
        let name = self.name
        try await Blocking.run {
            try buffer.withUnsafeReadableBytes { ptr in
                var offset = 0
                while offset < ptr.count {
                    let r = Glibc.write(fd, ptr.baseAddress! + offset, ptr.count - offset)
                    if r < 0 {
                        if errno == EINTR { continue }
                        if errno == EPIPE {
                            throw CairnError(.process, "\(name) stopped reading its input")
                        }
                        throw CairnError(.process, "writing to \(name) failed: \(String(cString: strerror(errno)))")
                    }
                    offset += r
                }
            }
        }
    }

    /// Closes the child's standard input so it sees the end of its input.
    public func closeInput() {
        if let fd = stdinFD.withLock({ fd -> Int32? in defer { fd = nil }; return fd }) {
            close(fd)
        }
    }

    /// Sends `signal` to the child (and its process group when it has its own).
    public func kill(_ signal: Int32 = SIGKILL) {
        guard exitStatusStore.withLock({ $0 }) == nil else { return }
        _ = Glibc.kill(pid, signal)
    }

    /// Waits for the child to exit; also closes its input.
    public func wait() async -> Exit {
        closeInput()
        if let status = exitStatusStore.withLock({ $0 }) { return status }
        let pid = self.pid
        // A child may run for as long as a server does: its wait gets a thread of its own.
        let status: Exit = await Blocking.runOnOwnThread(name: "wait \(name)") {
            var raw: Int32 = 0
            while true {
                let r = waitpid(pid, &raw, 0)
                if r == pid { break }
                if r < 0 && errno == EINTR { continue }
                return Exit(code: nil, signal: nil)
            }
            return Exit(waitStatus: raw)
        }
        // Two waiters race for one child: the one that reaped it has the real status.
        return exitStatusStore.withLock { recorded in
            if recorded == nil || status.code != nil || status.signal != nil { recorded = status }
            return recorded ?? status
        }
    }

    /// What the child wrote to its standard error (the tail, when long), once it has closed it.
    public func capturedError() async -> String {
        await stderrCapture?.value ?? ""
    }

    /// What the child wrote to its standard output when it was captured.
    public func capturedOutput() async -> String {
        await stdoutCapture?.value ?? ""
    }

    /// Waits and throws a clear error when the child did not exit with 0.
    public func checkSuccess(doing what: String) async throws {
        let status = await wait()
        let errorText = await capturedError()
        guard status.succeeded else {
            throw CairnError(.process, "\(what) failed: \(name) ended with \(status)\(ChildProcess.summarize(errorText))")
        }
    }

    /// The last meaningful lines of a tool's error output, for an error message.
    public static func summarize(_ text: String, lines: Int = 3) -> String {
        let meaningful = text.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        guard !meaningful.isEmpty else { return "" }
        return ": " + meaningful.suffix(lines).joined(separator: " | ")
    }

    /// What the child has written to its standard error so far (the tail), without waiting.
    public func capturedErrorSoFar() -> String {
        stderrTail.text
    }

    static func drain(fd: Int32, limit: Int, into tail: CaptureBuffer) async -> String {
        // Drains until the child closes the pipe, which may be when it exits.
        await Blocking.runOnOwnThread(name: "drain") {
            var chunk = [UInt8](repeating: 0, count: 16 * 1024)
            while true {
                let r = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
                if r < 0 && errno == EINTR { continue }
                if r <= 0 { break }
                tail.append(chunk[0..<r], limit: limit)
            }
            close(fd)
            tail.trim(to: limit)
        }
        return tail.text
    }

    /// Runs a program to completion and returns its standard output; throws
    /// with its error output when it fails. Cancelled, the program is killed.
    @discardableResult
    public static func run(_ executable: String, _ arguments: [String], environment: [String: String] = [:],
                           doing what: String, logger: Logger? = nil) async throws -> String {
        let child = try ChildProcess(executable, arguments: arguments, environment: environment,
                                     stdout: .capture(limit: 4 * 1024 * 1024), logger: logger)
        try await withTaskCancellationHandler {
            try await child.checkSuccess(doing: what)
        } onCancel: {
            child.kill()
        }
        return await child.capturedOutput()
    }
}

private let ignoreSIGPIPEOnce: Void = {
    // A child that stops reading must surface as an EPIPE error, not kill Cairn.
    signal(SIGPIPE, SIG_IGN)
}()

private func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    pointers.append(nil)
    defer { for p in pointers { free(p) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}

extension ChildProcess {
    /// Records an exit status obtained elsewhere (a non-blocking `waitpid`).
    public func recordExit(_ exit: Exit) {
        exitStatusStore.withLock { if $0 == nil { $0 = exit } }
    }

    /// The exit status, if the child has been waited for.
    public func recordedExit() -> Exit? {
        exitStatusStore.withLock { $0 }
    }

    /// The exit status if the child has ended, without waiting for it: the
    /// recorded one, or one reaped now and recorded, so `wait()` does not
    /// wait again.
    public func exitedStatus() -> Exit? {
        if let exit = recordedExit() { return exit }
        var raw: Int32 = 0
        guard waitpid(pid, &raw, WNOHANG) == pid else { return nil }
        let exit = Exit(waitStatus: raw)
        recordExit(exit)
        return exit
    }
}

extension ChildProcess {
    /// A pipe whose ends close on exec, for connecting two children
    /// (`mariadb-binlog | mariadb`). The caller closes both ends after
    /// starting the children.
    public static func makePipe() throws -> (read: Int32, write: Int32) {
        var fds: [Int32] = [-1, -1]
        guard ccairn_pipe_cloexec(&fds) == 0 else {
            throw CairnError(.process, "could not create a pipe: \(String(cString: strerror(errno)))")
        }
        return (fds[0], fds[1])
    }
}

/// The last bytes a child wrote to one of its streams.
final class CaptureBuffer: Sendable {
    let bytes = Mutex<[UInt8]>([])

    func append(_ chunk: ArraySlice<UInt8>, limit: Int) {
        bytes.withLock { kept in
            kept.append(contentsOf: chunk)
            if kept.count > limit * 2 { kept.removeFirst(kept.count - limit) }
        }
    }

    /// Keeps only the last `limit` bytes.
    func trim(to limit: Int) {
        bytes.withLock { kept in
            if kept.count > limit { kept.removeFirst(kept.count - limit) }
        }
    }

    var text: String {
        bytes.withLock { String(decoding: $0, as: UTF8.self) }
    }
}
