/// The one error type Cairn's libraries throw.
///
/// Every error carries a machine-readable ``Code`` and a message that is one
/// sentence for a human: what failed and what to do about it. Messages never
/// contain credentials.
public struct CairnError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What kind of failure this is; stable across releases so scripts and
    /// tests can match on it.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        public let name: String
        public init(_ name: String) { self.name = name }
        public var description: String { name }

        /// The command line or an argument was malformed.
        public static let usage = Code("usage")
        /// The configuration file or a configuration value is invalid.
        public static let configuration = Code("configuration")
        /// MariaDB refused, failed or could not be reached.
        public static let mysql = Code("mysql")
        /// A child process (mariadb-backup, mariadb-dump, ...) failed.
        public static let process = Code("process")
        /// The backup storage failed or refused a request.
        public static let storage = Code("storage")
        /// Something asked for does not exist.
        public static let notFound = Code("not_found")
        /// Stored bytes do not match what the manifest recorded.
        public static let integrity = Code("integrity")
        /// A restore target is not acceptable (for example, not empty).
        public static let restoreTarget = Code("restore_target")
        /// The backup chain cannot reach what was asked for.
        public static let chain = Code("chain")
        /// The binary logs needed for an incremental backup are gone.
        public static let binlogsPurged = Code("binlogs_purged")
        /// A manifest could not be read or has an unsupported format.
        public static let manifest = Code("manifest")
        /// A compression or decompression call failed.
        public static let compression = Code("compression")
        /// A local file or directory operation failed.
        public static let fileSystem = Code("file_system")
        /// A name asked for is taken (a restore point of that name exists).
        public static let alreadyExists = Code("already_exists")
        /// Something may still be in use (a backup that may still be running).
        public static let inUse = Code("in_use")
        /// The operation was cancelled.
        public static let cancelled = Code("cancelled")
        /// The control server or a tablet refused or failed a request.
        public static let cluster = Code("cluster")
        /// A request was not authorized.
        public static let unauthorized = Code("unauthorized")
        /// A service Cairn depends on cannot take the request now (etcd without quorum); retrying later can succeed.
        public static let unavailable = Code("unavailable")
        /// Anything else; the message says what.
        public static let `internal` = Code("internal")
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = clip(message, limit: CairnError.maximumMessageLength, keepingEnd: 300)
    }

    public var description: String { message }

    /// Longer messages lose their middle: a message that quotes a huge
    /// input (a request, a file) stays readable and keeps its advice at the end.
    public static let maximumMessageLength = 2_000
}

/// `text`, or when longer than `limit` characters, its start and (with
/// `keepingEnd`) its end around an ellipsis, `limit` characters in all: for
/// echoing user input, which can be of any length, in messages.
public func clip(_ text: some StringProtocol, limit: Int = 200, keepingEnd end: Int = 0) -> String {
    guard text.count > limit else { return String(text) }
    let tail = min(max(end, 0), limit - 1)
    return String(text.prefix(limit - 1 - tail)) + "…" + String(text.suffix(tail))
}
