public import Foundation

/// A length of time written as in the configuration: `90s`, `30m`, `24h`,
/// `7d`, or combined, `1h30m`.
public struct ConfigDuration: Hashable, Sendable, Comparable, CustomStringConvertible {
    public let seconds: Int64

    public init(seconds: Int64) { self.seconds = seconds }

    public init?(parsing text: String) {
        let chars = Array(text.trimmingCharacters(in: .whitespaces))
        guard !chars.isEmpty else { return nil }
        var total: Int64 = 0
        var number: Int64? = nil
        for c in chars {
            if let digit = c.wholeNumberValue, c.isASCII {
                let (m, o1) = (number ?? 0).multipliedReportingOverflow(by: 10)
                let (a, o2) = m.addingReportingOverflow(Int64(digit))
                guard !o1, !o2 else { return nil }
                number = a
                continue
            }
            guard let n = number else { return nil }
            let unit: Int64
            switch c {
            case "s": unit = 1
            case "m": unit = 60
            case "h": unit = 3600
            case "d": unit = 86400
            case "w": unit = 7 * 86400
            default: return nil
            }
            let (p, o1) = n.multipliedReportingOverflow(by: unit)
            let (t, o2) = total.addingReportingOverflow(p)
            guard !o1, !o2 else { return nil }
            total = t
            number = nil
        }
        guard number == nil else { return nil }  // a trailing number without a unit
        seconds = total
    }

    public var timeInterval: TimeInterval { TimeInterval(seconds) }

    public var description: String {
        if seconds == 0 { return "0s" }
        var rest = seconds
        var out = ""
        for (unit, name) in [(Int64(86400), "d"), (3600, "h"), (60, "m"), (1, "s")] where rest >= unit {
            out += "\(rest / unit)\(name)"
            rest %= unit
        }
        return out
    }

    public static func < (a: ConfigDuration, b: ConfigDuration) -> Bool { a.seconds < b.seconds }
}

/// The full/incremental strategy: `backup_strategy` in the configuration.
public struct BackupStrategyConfig: Hashable, Sendable {
    public var fullBackupInterval: ConfigDuration
    public var incrementalBackupInterval: ConfigDuration?
    /// `restore_point_interval`: ctld creates a restore point of every keyspace this often.
    public var restorePointInterval: ConfigDuration?
    /// `delta_backup_interval`: between full backups, a physical delta this
    /// long after the chain's newest full backup or delta (optional).
    public var deltaBackupInterval: ConfigDuration?
    /// `drill_interval`: ctld runs a restore drill of every shard this often (on a replica's host when it can).
    public var drillInterval: ConfigDuration?
    /// `binlog_archive_interval`: the primary tablet of every shard archives
    /// its binary log continuously, storing a segment at least this often.
    public var binlogArchiveInterval: ConfigDuration?

    public init(fullBackupInterval: ConfigDuration, incrementalBackupInterval: ConfigDuration?) {
        self.fullBackupInterval = fullBackupInterval
        self.incrementalBackupInterval = incrementalBackupInterval
    }
}

/// Which engine takes full backups.
public enum FullBackupEngine: String, Sendable, Hashable, CaseIterable, Codable {
    case physical
    case logical
}

/// `encryption`: the master keys (docs/CONFIGURATION.md). Only file paths
/// and ids live here; the keys themselves are read by the engine.
public struct EncryptionConfig: Hashable, Sendable {
    /// A key file: base64 of 32 bytes, and the id it is known by (nil: derived from the key).
    public struct KeyFile: Hashable, Sendable {
        public var path: String
        public var keyID: String?
        public init(path: String, keyID: String? = nil) {
            self.path = path
            self.keyID = keyID
        }
    }
    /// `key_file` and `key_id`: the current key, which new backups and segments are encrypted under.
    public var current: KeyFile
    /// `previous_key_files`: older keys, used only to read what they wrapped.
    public var previous: [KeyFile]

    public init(current: KeyFile, previous: [KeyFile] = []) {
        self.current = current
        self.previous = previous
    }

    static func parse(_ reader: ConfigReader) throws -> EncryptionConfig {
        try reader.rejectUnknownKeys(["key_file", "key_id", "previous_key_files"])
        guard let file = try reader.string("key_file"), !file.isEmpty else {
            throw CairnError(.configuration, "the configuration \(reader.source) sets encryption without encryption.key_file; add the path of a file holding a base64 32-byte key, or remove encryption")
        }
        let current = KeyFile(path: file, keyID: try keyID(reader.string("key_id"), reader.name("key_id"), reader.source))
        var previous: [KeyFile] = []
        for (index, entry) in try reader.array("previous_key_files").enumerated() {
            let name = "\(reader.name("previous_key_files"))[\(index)]"
            switch entry {
            case .string(let path) where !path.isEmpty:
                previous.append(KeyFile(path: path))
            case .object(let object):
                let item = ConfigReader(source: reader.source, object: object, path: name)
                try item.rejectUnknownKeys(["key_file", "key_id"])
                guard let path = try item.string("key_file"), !path.isEmpty else {
                    throw CairnError(.configuration, "\(name) in \(reader.source) has no key_file; give the path of an older key file")
                }
                previous.append(KeyFile(path: path, keyID: try keyID(item.string("key_id"), item.name("key_id"), reader.source)))
            default:
                throw CairnError(.configuration, "\(name) in \(reader.source) must be a key file path or an object with key_file and key_id")
            }
        }
        return EncryptionConfig(current: current, previous: previous)
    }

    static func keyID(_ value: String?, _ name: String, _ source: String) throws -> String? {
        guard let value else { return nil }
        guard !value.isEmpty, value.utf8.count <= 64,
              value.unicodeScalars.allSatisfy({ $0.properties.isAlphabetic && $0.isASCII || ("0"..."9").contains($0) || "-_.".unicodeScalars.contains($0) }) else {
            throw CairnError(.configuration, "\(name) in \(source) must be 1 to 64 letters, digits, '-', '_' or '.'")
        }
        return value
    }
}

/// Cairn's configuration file: JSON, a superset of the seed's `vtbackup.json`.
/// Every key is optional; an unknown key is an error that names it.
public struct CairnConfiguration: Hashable, Sendable {
    /// `bucket`: where backups go: `s3://bucket[/prefix]`, `gs://bucket[/prefix]`, `file:///path`.
    public var bucket: String?
    /// `aws_region`.
    public var awsRegion: String?
    /// `backup_strategy`.
    public var backupStrategy: BackupStrategyConfig?
    /// `upload_concurrency`: object-store parts in flight per file (default 4).
    public var uploadConcurrency: Int = 4
    /// `download_concurrency`: ranged reads in flight per file (default 4).
    public var downloadConcurrency: Int = 4
    /// `engine`: the full-backup engine (default physical).
    public var engine: FullBackupEngine = .physical
    /// `compression`: `zstd` (default) or `none`.
    public var compression: String = "zstd"
    /// `compression_level`: zstd level 1-19 (default 3).
    public var compressionLevel: Int = 3
    /// `compression_threads`: zstd worker threads, 0 = one per core, at most 4 (default 0).
    public var compressionThreads: Int = 0
    /// `s3_endpoint`: a custom S3 endpoint URL (S3-compatible stores).
    public var s3Endpoint: String?
    /// `s3_force_path_style`: path-style addressing (default: on with a custom endpoint).
    public var s3ForcePathStyle: Bool?
    /// `s3_ca_file`: a PEM file of extra certificate authorities to trust.
    public var s3CAFile: String?
    /// `s3_max_retries`: attempts after the first for retryable errors (default 5).
    public var s3MaxRetries: Int = 5
    /// `s3_part_size`: the smallest multipart part, e.g. `8MiB` (default 5 MiB; parts grow with the file).
    public var s3MinimumPartSize: Int64 = 5 * 1024 * 1024
    /// `aws_shared_credentials_file`: an AWS credentials file (INI) to read keys from.
    public var awsSharedCredentialsFile: String?
    /// `aws_profile`: the profile in that file (default `default`).
    public var awsProfile: String?
    /// `ctld`: the control server's address, `host:port`, or several separated by commas.
    public var ctld: String?
    /// `mysql_user`: the MariaDB account Cairn connects as (default root).
    public var mysqlUser: String?
    /// `mysql_password_file`: a file holding that account's password.
    public var mysqlPasswordFile: String?
    /// `replication_user`: the account replicas replicate as (default cairn_repl).
    public var replicationUser: String?
    /// `replication_password_file`: a file holding that account's password.
    public var replicationPasswordFile: String?
    /// `retention`: the retention policy; nil when none is configured (nothing is pruned).
    public var retention: RetentionPolicy?
    /// `storage_file_mode`: permissions of the files file storage writes, an
    /// octal string such as `"0640"` (default `0600`: only the owner).
    public var storageFileMode: Int = 0o600
    /// `storage_directory_mode`: permissions of the directories file storage
    /// creates, e.g. `"0750"` (default `0700`).
    public var storageDirectoryMode: Int = 0o700
    /// `encryption`: nil stores backups in the clear.
    public var encryption: EncryptionConfig?
    /// `object_lock`: S3 Object Lock retention on every upload; nil uploads without a lock.
    public var objectLock: ObjectLockConfig?

    public init() {}

    static let knownKeys: [String] = [
        "bucket", "aws_region", "backup_strategy", "upload_concurrency", "download_concurrency",
        "engine", "compression", "compression_level", "compression_threads",
        "s3_endpoint", "s3_force_path_style", "s3_ca_file", "s3_max_retries", "s3_part_size",
        "aws_shared_credentials_file", "aws_profile", "ctld", "mysql_user", "mysql_password_file",
        "replication_user", "replication_password_file",
        "retention", "storage_file_mode", "storage_directory_mode", "encryption", "object_lock",
    ]

    /// Parses a configuration file's contents. `source` names the file in errors.
    public static func parse(_ data: Data, source: String) throws -> CairnConfiguration {
        let value: JSONValue
        do {
            value = try JSONDecoder().decode(JSONValue.self, from: data)
        } catch {
            throw CairnError(.configuration, "the configuration \(source) is not valid JSON; fix its syntax")
        }
        guard case .object(let root) = value else {
            throw CairnError(.configuration, "the configuration \(source) must be a JSON object")
        }
        let reader = ConfigReader(source: source, object: root, path: "")
        try reader.rejectUnknownKeys(knownKeys)
        var c = CairnConfiguration()
        c.bucket = try reader.string("bucket")
        c.awsRegion = try reader.string("aws_region")
        if let strategy = try reader.object("backup_strategy") {
            try strategy.rejectUnknownKeys(["full_backup_interval", "incremental_backup_interval", "restore_point_interval",
                                            "delta_backup_interval", "binlog_archive_interval", "drill_interval"])
            guard let full = try strategy.duration("full_backup_interval") else {
                throw CairnError(.configuration, "the configuration \(source) sets backup_strategy without backup_strategy.full_backup_interval; add it, e.g. \"24h\"")
            }
            guard full.seconds > 0 else {
                throw CairnError(.configuration, "backup_strategy.full_backup_interval in \(source) must be longer than 0s")
            }
            let incremental = try strategy.duration("incremental_backup_interval")
            if let incremental, incremental.seconds <= 0 {
                throw CairnError(.configuration, "backup_strategy.incremental_backup_interval in \(source) must be longer than 0s")
            }
            c.backupStrategy = BackupStrategyConfig(fullBackupInterval: full, incrementalBackupInterval: incremental)
            if let delta = try strategy.duration("delta_backup_interval") {
                guard delta.seconds > 0 else {
                    throw CairnError(.configuration, "backup_strategy.delta_backup_interval in \(source) must be longer than 0s")
                }
                c.backupStrategy?.deltaBackupInterval = delta
            }
            if let points = try strategy.duration("restore_point_interval") {
                guard points.seconds >= 60 else {
                    throw CairnError(.configuration, "backup_strategy.restore_point_interval in \(source) is \(points); it must be at least 1m, since each point blocks every primary's commits for a moment")
                }
                c.backupStrategy?.restorePointInterval = points
            }
            if let drills = try strategy.duration("drill_interval") {
                guard drills.seconds >= 60 else {
                    throw CairnError(.configuration, "backup_strategy.drill_interval in \(source) is \(drills); it must be at least 1m, since each drill restores the shard's whole chain")
                }
                c.backupStrategy?.drillInterval = drills
            }
            if let archive = try strategy.duration("binlog_archive_interval") {
                guard archive.seconds >= 1 else {
                    throw CairnError(.configuration, "backup_strategy.binlog_archive_interval in \(source) is \(archive); it must be at least 1s")
                }
                c.backupStrategy?.binlogArchiveInterval = archive
            }
        }
        c.uploadConcurrency = try reader.int("upload_concurrency", range: 1...64) ?? c.uploadConcurrency
        c.downloadConcurrency = try reader.int("download_concurrency", range: 1...64) ?? c.downloadConcurrency
        if let engine = try reader.string("engine") {
            guard let e = FullBackupEngine(rawValue: engine) else {
                throw CairnError(.configuration, "engine in \(source) is \"\(engine)\"; use \"physical\" or \"logical\"")
            }
            c.engine = e
        }
        if let compression = try reader.string("compression") {
            guard ["zstd", "none"].contains(compression) else {
                throw CairnError(.configuration, "compression in \(source) is \"\(compression)\"; use \"zstd\" or \"none\"")
            }
            c.compression = compression
        }
        c.compressionLevel = try reader.int("compression_level", range: 1...19) ?? c.compressionLevel
        c.compressionThreads = try reader.int("compression_threads", range: 0...256) ?? c.compressionThreads
        c.s3Endpoint = try reader.string("s3_endpoint")
        c.s3ForcePathStyle = try reader.bool("s3_force_path_style")
        c.s3CAFile = try reader.string("s3_ca_file")
        c.s3MaxRetries = try reader.int("s3_max_retries", range: 0...100) ?? c.s3MaxRetries
        if let size = try reader.byteSize("s3_part_size") {
            guard size >= 5 * 1024 * 1024, size <= 5 * 1024 * 1024 * 1024 else {
                throw CairnError(.configuration, "s3_part_size in \(source) must be between 5MiB and 5GiB")
            }
            c.s3MinimumPartSize = size
        }
        c.awsSharedCredentialsFile = try reader.string("aws_shared_credentials_file")
        c.awsProfile = try reader.string("aws_profile")
        c.ctld = try reader.string("ctld")
        c.mysqlUser = try reader.string("mysql_user")
        c.mysqlPasswordFile = try reader.string("mysql_password_file")
        c.replicationUser = try reader.string("replication_user")
        c.replicationPasswordFile = try reader.string("replication_password_file")
        if let retention = try reader.object("retention") {
            c.retention = try RetentionPolicy.parse(retention)
        }
        c.storageFileMode = try reader.mode("storage_file_mode", required: 0o600, allowed: 0o666, example: "0640") ?? c.storageFileMode
        c.storageDirectoryMode = try reader.mode("storage_directory_mode", required: 0o700, allowed: 0o777, example: "0750") ?? c.storageDirectoryMode
        if let encryption = try reader.object("encryption") {
            c.encryption = try EncryptionConfig.parse(encryption)
        }
        if let lock = try reader.object("object_lock") {
            c.objectLock = try ObjectLockConfig.parse(lock)
        }
        return c
    }
}

/// A JSON value, decoded without losing the difference between numbers and booleans.
enum JSONValue: Decodable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let b = try? c.decode(Bool.self) { self = .bool(b) }
        else if let n = try? c.decode(Double.self) { self = .number(n) }
        else if let s = try? c.decode(String.self) { self = .string(s) }
        else if let a = try? c.decode([JSONValue].self) { self = .array(a) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }
}

/// Reads typed values out of one JSON object of the configuration, naming
/// the full key in every error.
struct ConfigReader {
    let source: String
    let object: [String: JSONValue]
    let path: String

    func name(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    func rejectUnknownKeys(_ known: [String]) throws {
        for key in object.keys.sorted() where !known.contains(key) {
            let place = path.isEmpty ? "" : " under \(path)"
            throw CairnError(.configuration, "unknown key \"\(name(key))\" in the configuration \(source); remove it or use one of the keys known\(place): \(known.joined(separator: ", "))")
        }
    }

    private func value(_ key: String) -> JSONValue? {
        switch object[key] {
        case nil, .null?: return nil
        case let v?: return v
        }
    }

    func string(_ key: String) throws -> String? {
        guard let v = value(key) else { return nil }
        guard case .string(let s) = v else {
            throw CairnError(.configuration, "\(name(key)) in \(source) must be a string")
        }
        return s
    }

    func bool(_ key: String) throws -> Bool? {
        guard let v = value(key) else { return nil }
        guard case .bool(let b) = v else {
            throw CairnError(.configuration, "\(name(key)) in \(source) must be true or false")
        }
        return b
    }

    func int(_ key: String, range: ClosedRange<Int>) throws -> Int? {
        guard let v = value(key) else { return nil }
        guard case .number(let n) = v, n == n.rounded(), abs(n) < 1e15 else {
            throw CairnError(.configuration, "\(name(key)) in \(source) must be a whole number")
        }
        let i = Int(n)
        guard range.contains(i) else {
            throw CairnError(.configuration, "\(name(key)) in \(source) is \(i); it must be between \(range.lowerBound) and \(range.upperBound)")
        }
        return i
    }

    func duration(_ key: String) throws -> ConfigDuration? {
        guard let s = try string(key) else { return nil }
        guard let d = ConfigDuration(parsing: s) else {
            throw CairnError(.configuration, "\(name(key)) in \(source) is \"\(s)\", which is not a duration; write e.g. \"90s\", \"30m\", \"24h\" or \"7d\"")
        }
        return d
    }

    func byteSize(_ key: String) throws -> Int64? {
        guard let v = value(key) else { return nil }
        switch v {
        case .number(let n) where n == n.rounded() && n >= 0 && n < 1e15:
            return Int64(n)
        case .string(let s):
            if let size = parseByteSize(s) { return size }
        default:
            break
        }
        throw CairnError(.configuration, "\(name(key)) in \(source) must be a size such as \"8MiB\" or a number of bytes")
    }

    /// Permissions as an octal string (`"0640"`): at least the `required`
    /// bits, at most the `allowed` ones.
    func mode(_ key: String, required: Int, allowed: Int, example: String) throws -> Int? {
        guard let s = try string(key) else { return nil }
        guard !s.isEmpty, s.count <= 4, s.allSatisfy({ ("0"..."7").contains($0) }), let mode = Int(s, radix: 8),
              mode & required == required, mode & ~allowed == 0 else {
            throw CairnError(.configuration, "\(name(key)) in \(source) is \"\(clip(s, limit: 40))\"; write octal permissions between \"0\(String(required, radix: 8))\" and \"0\(String(allowed, radix: 8))\", e.g. \"\(example)\"")
        }
        return mode
    }

    /// The elements of an array; empty when the key is absent.
    func array(_ key: String) throws -> [JSONValue] {
        guard let v = value(key) else { return [] }
        guard case .array(let a) = v else {
            throw CairnError(.configuration, "\(name(key)) in \(source) must be a JSON array")
        }
        return a
    }

    func object(_ key: String) throws -> ConfigReader? {
        guard let v = value(key) else { return nil }
        guard case .object(let o) = v else {
            throw CairnError(.configuration, "\(name(key)) in \(source) must be a JSON object")
        }
        return ConfigReader(source: source, object: o, path: name(key))
    }
}

/// `8MiB`, `64MB`, `1GiB`, `1048576`.
public func parseByteSize(_ text: String) -> Int64? {
    let s = text.trimmingCharacters(in: .whitespaces)
    let digits = s.prefix { $0.isASCII && $0.isNumber }
    guard let n = Int64(digits) else { return nil }
    let unit = s.dropFirst(digits.count).trimmingCharacters(in: .whitespaces).lowercased()
    let multiplier: Int64
    switch unit {
    case "", "b": multiplier = 1
    case "k", "kb", "kib": multiplier = 1024
    case "m", "mb", "mib": multiplier = 1024 * 1024
    case "g", "gb", "gib": multiplier = 1024 * 1024 * 1024
    default: return nil
    }
    let (r, o) = n.multipliedReportingOverflow(by: multiplier)
    return o ? nil : r
}

