public import Foundation

/// How a backup's data was taken.
public enum BackupMethod: String, Sendable, Codable, Hashable, CaseIterable {
    /// `mariadb-backup --stream=mbstream`: the data files, online.
    case physical
    /// `mariadb-dump --single-transaction`: SQL.
    case logical
    /// Binary log files: an incremental link of a chain.
    case binlog
}

/// One stored data file of a backup.
public struct ManifestFile: Sendable, Codable, Hashable {
    /// The file's name inside the backup directory.
    public var name: String
    /// Bytes before compression (and encryption).
    public var rawSize: Int64
    /// Bytes as stored.
    public var storedSize: Int64
    /// Lower-case hex SHA-256 of the stored bytes.
    public var sha256: String
    /// For binlog backups: the name of the binary log file on the source.
    public var binlogFile: String?
    /// For binlog backups: the GTID position at the start of this binary log file.
    public var startPosition: ReplicationPosition?

    public init(name: String, rawSize: Int64, storedSize: Int64, sha256: String,
                binlogFile: String? = nil, startPosition: ReplicationPosition? = nil) {
        self.name = name
        self.rawSize = rawSize
        self.storedSize = storedSize
        self.sha256 = sha256
        self.binlogFile = binlogFile
        self.startPosition = startPosition
    }

    enum CodingKeys: String, CodingKey {
        case name
        case rawSize = "raw_size"
        case storedSize = "stored_size"
        case sha256
        case binlogFile = "binlog_file"
        case startPosition = "start_position"
    }
}

/// How stored bytes were compressed.
public struct CompressionInfo: Sendable, Codable, Hashable, CustomStringConvertible {
    /// `zstd` or `none`.
    public var algorithm: String
    public var level: Int?

    public init(algorithm: String, level: Int?) {
        self.algorithm = algorithm
        self.level = level
    }

    public static let none = CompressionInfo(algorithm: "none", level: nil)
    public static func zstd(level: Int) -> CompressionInfo { CompressionInfo(algorithm: "zstd", level: level) }

    public var description: String {
        if let level { return "\(algorithm)-\(level)" }
        return algorithm
    }
}

/// The `MANIFEST` of one backup: written last, after every data file is
/// durable. A backup directory without one is incomplete.
public struct BackupManifest: Sendable, Codable, Hashable {
    public static let fileName = "MANIFEST"
    public static let currentFormatVersion = 1

    public var formatVersion: Int
    public var backupName: String
    public var keyspace: String
    public var shard: String
    public var tabletAlias: String
    public var hostname: String
    public var method: BackupMethod
    public var incremental: Bool
    /// The backup this one continues (incrementals only).
    public var parentBackup: String?
    /// Where this backup starts: the parent's position (incrementals only).
    public var fromPosition: ReplicationPosition?
    /// Where this backup ends: restoring it yields exactly this position.
    public var position: ReplicationPosition
    /// Transactions before this were no longer in the server's binary logs when the backup ran.
    public var purgedPosition: ReplicationPosition
    public var startTime: Date
    public var finishTime: Date
    /// Timestamp of the first transaction after `fromPosition` (incrementals).
    public var firstEventTime: Date?
    /// Timestamp of the last transaction up to `position` (incrementals).
    public var lastEventTime: Date?
    public var serverID: UInt32
    public var serverVersion: String
    public var flavor: ReplicationFlavor
    public var compression: CompressionInfo
    /// `none`, or the name of the encryption scheme (``EncryptionScheme/aes256GCM``).
    public var encryption: String
    /// The id of the master key that wraps the data key (encrypted backups only).
    public var keyID: String?
    /// The backup's data key, sealed with master key `keyID`, base64 (encrypted backups only).
    public var wrappedKey: String?
    public var files: [ManifestFile]
    /// Physical backups: the InnoDB checkpoint LSN the backup reaches
    /// (`to_lsn` of mariadb-backup's `xtrabackup_checkpoints`), where a delta
    /// continuing it starts. Absent in backups taken before Cairn recorded
    /// it: those cannot be a delta's parent.
    public var toLSN: UInt64? = nil
    /// Deltas: the LSN they start from, their parent's `to_lsn`.
    public var fromLSN: UInt64? = nil

    public init(
        backupName: String, keyspace: String, shard: String, tabletAlias: String, hostname: String,
        method: BackupMethod, incremental: Bool, parentBackup: String?, fromPosition: ReplicationPosition?,
        position: ReplicationPosition, purgedPosition: ReplicationPosition, startTime: Date, finishTime: Date,
        firstEventTime: Date?, lastEventTime: Date?, serverID: UInt32, serverVersion: String,
        flavor: ReplicationFlavor, compression: CompressionInfo, encryption: String, files: [ManifestFile],
        keyID: String? = nil, wrappedKey: String? = nil
    ) {
        self.formatVersion = Self.currentFormatVersion
        self.backupName = backupName
        self.keyspace = keyspace
        self.shard = shard
        self.tabletAlias = tabletAlias
        self.hostname = hostname
        self.method = method
        self.incremental = incremental
        self.parentBackup = parentBackup
        self.fromPosition = fromPosition
        self.position = position
        self.purgedPosition = purgedPosition
        self.startTime = startTime
        self.finishTime = finishTime
        self.firstEventTime = firstEventTime
        self.lastEventTime = lastEventTime
        self.serverID = serverID
        self.serverVersion = serverVersion
        self.flavor = flavor
        self.compression = compression
        self.encryption = encryption
        self.keyID = keyID
        self.wrappedKey = wrappedKey
        self.files = files
    }

    enum CodingKeys: String, CodingKey {
        case formatVersion = "format_version"
        case backupName = "backup_name"
        case keyspace, shard
        case tabletAlias = "tablet_alias"
        case hostname, method, incremental
        case parentBackup = "parent_backup"
        case fromPosition = "from_position"
        case position
        case purgedPosition = "purged_position"
        case startTime = "start_time"
        case finishTime = "finish_time"
        case firstEventTime = "first_event_time"
        case lastEventTime = "last_event_time"
        case serverID = "server_id"
        case serverVersion = "server_version"
        case flavor, compression, encryption, files
        case toLSN = "to_lsn"
        case fromLSN = "from_lsn"
        case keyID = "key_id"
        case wrappedKey = "wrapped_key"
    }

    /// A physical delta: the pages changed since its parent (a full backup
    /// or another delta), taken with `mariadb-backup --incremental-lsn`.
    public var isDelta: Bool { method == .physical && incremental }

    /// A chain link restored from data files (a full backup or a delta), as
    /// opposed to a binary log incremental replayed on top of one.
    public var isSnapshot: Bool { !incremental || isDelta }

    /// `full`, `delta` or `incremental`: what `cairn backups` shows.
    public var typeName: String { isDelta ? "delta" : (incremental ? "incremental" : "full") }

    public var storedSize: Int64 { files.reduce(0) { $0 + $1.storedSize } }
    public var rawSize: Int64 { files.reduce(0) { $0 + $1.rawSize } }

    /// The latest instant this backup makes restorable by time: every
    /// transaction committed before it is in this backup or its chain. For a
    /// full backup nothing is known past its snapshot, so a time target needs
    /// an incremental; for an incremental, everything committed before it
    /// started was flushed into it. (A delta is a snapshot like a full
    /// backup: only binary log incrementals reach a time, see ``reachesTime(_:)``.)
    public var coversUntil: Date { startTime }

    /// Whether a time target `time` can end at this backup: a binary log
    /// incremental that started at or after it.
    public func reachesTime(_ time: Date) -> Bool { method == .binlog && coversUntil >= time }

    /// Encodes as pretty, key-sorted JSON with RFC 3339 UTC times.
    public func encoded() throws -> Data {
        try CairnJSON.encoder(pretty: true).encode(self)
    }

    /// Decodes a manifest, refusing formats newer than this build understands.
    public static func decode(_ data: Data, name: String) throws -> BackupManifest {
        let decoder = CairnJSON.decoder()
        let manifest: BackupManifest
        do {
            manifest = try decoder.decode(BackupManifest.self, from: data)
        } catch {
            throw CairnError(.manifest, "the MANIFEST of backup \(name) cannot be read (\(describeDecodingError(error))); the backup cannot be used, check the file or remove the backup")
        }
        guard manifest.formatVersion <= currentFormatVersion else {
            throw CairnError(.manifest, "the MANIFEST of backup \(name) has format version \(manifest.formatVersion), newer than this Cairn understands (\(currentFormatVersion)); upgrade Cairn to read it")
        }
        if let problem = manifest.validationProblem() {
            throw CairnError(.manifest, "the MANIFEST of backup \(name) is not valid (\(problem)); the backup cannot be used, check the file or remove the backup")
        }
        return manifest
    }

    /// The most files a manifest may list. A physical backup has one, a
    /// logical one two; a binlog backup one per binary log file rotated since
    /// its parent, which stays far below this.
    public static let maximumFileCount = 10_000

    /// The data files a full backup of each method writes, before the
    /// compression suffix: what a manifest of that method must list, exactly.
    public static func requiredFileStems(_ method: BackupMethod) -> [String]? {
        switch method {
        case .physical: return ["backup.mbstream"]
        case .logical: return ["dump.sql", "accounts.sql"]
        case .binlog: return nil
        }
    }

    /// What is wrong with this manifest's contents, or nil when it can be
    /// used: every file name a plain, unique name; sizes and hashes
    /// well-formed; and exactly the files its method writes. A manifest is
    /// stored beside the data it describes, so a damaged or edited one must
    /// not make a restore skip a file or a reader walk out of the backup.
    public func validationProblem() -> String? {
        guard files.count <= Self.maximumFileCount else {
            return "it lists \(files.count) files, more than the \(Self.maximumFileCount) any backup has"
        }
        let suffix: String
        switch compression.algorithm {
        case "zstd": suffix = ".zst"
        case "none": suffix = ""
        default: return "unknown compression \"\(clip(compression.algorithm, limit: 40))\""
        }
        if let problem = EncryptionScheme.problem(encryption, keyID: keyID, wrappedKey: wrappedKey) { return problem }
        var names = Set<String>()
        for file in files {
            if let problem = Self.fileNameProblem(file.name) { return problem }
            guard names.insert(file.name).inserted else { return "the file \(file.name) is listed twice" }
            guard file.rawSize >= 0, file.storedSize >= 0 else { return "the file \(file.name) has a negative size" }
            guard file.sha256.utf8.count == 64, file.sha256.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) }) else {
                return "the file \(file.name) has no valid SHA-256"
            }
            if let binlog = file.binlogFile, let problem = Self.fileNameProblem(binlog) { return problem }
        }
        switch method {
        case .physical, .logical:
            if method == .physical, incremental {
                guard parentBackup != nil, fromPosition != nil, fromLSN != nil, toLSN != nil else {
                    return "a delta must have a parent backup, a starting position and starting and ending LSNs"
                }
            } else {
                guard !incremental, parentBackup == nil else { return "a \(method.rawValue) backup is a full backup but is marked incremental" }
            }
            let expected = Self.requiredFileStems(method)!.map { $0 + suffix }
            guard names == Set(expected) else {
                let missing = expected.filter { !names.contains($0) }
                if !missing.isEmpty {
                    return "a \(method.rawValue) backup must list \(expected.joined(separator: " and ")), but \(missing.joined(separator: " and ")) is missing"
                }
                let extra = files.map(\.name).filter { !expected.contains($0) }
                return "a \(method.rawValue) backup lists only \(expected.joined(separator: " and ")), not \(extra.first ?? "")"
            }
        case .binlog:
            guard incremental, parentBackup != nil, fromPosition != nil else {
                return "a binlog backup must be an incremental with a parent backup and a starting position"
            }
            guard !files.isEmpty else { return "a binlog backup lists no binary log files" }
        }
        return nil
    }

    /// Why `name` cannot be a data file's name inside a backup directory, or nil.
    static func fileNameProblem(_ name: String) -> String? {
        let valid = !name.isEmpty && name.utf8.count <= 255 && name != "." && name != ".."
            && name != fileName && name != "REMOVING" && name != "STARTED" && !name.hasPrefix(".")
            && name.unicodeScalars.allSatisfy { $0.value > 0x20 && $0.value != 0x7F && $0 != "/" && $0 != "\\" }
        return valid ? nil : "the file name \"\(clip(name, limit: 80))\" is not a plain file name"
    }
}

/// The names the manifests' `encryption` field takes.
public enum EncryptionScheme {
    public static let none = "none"
    /// Chunked AES-256-GCM under a per-backup data key wrapped by a master key (docs/SECURITY.md).
    public static let aes256GCM = "aes-256-gcm"

    /// What is wrong with a manifest's encryption fields, or nil.
    static func problem(_ scheme: String, keyID: String?, wrappedKey: String?) -> String? {
        switch scheme {
        case none: return nil
        case aes256GCM:
            guard let keyID, !keyID.isEmpty, keyID.utf8.count <= 128,
                  keyID.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7F }) else {
                return "it is encrypted but names no valid key_id"
            }
            guard let wrappedKey, !wrappedKey.isEmpty, wrappedKey.utf8.count <= 1024 else {
                return "it is encrypted but holds no wrapped_key"
            }
            return nil
        default:
            return "unknown encryption \"\(clip(scheme, limit: 40))\", which this Cairn cannot read"
        }
    }
}

func describeDecodingError(_ error: any Error) -> String {
    guard let error = error as? DecodingError else { return "\(error)" }
    func path(_ p: [any CodingKey]) -> String {
        p.isEmpty ? "top level" : p.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
    }
    switch error {
    case .dataCorrupted(let c): return "\(c.debugDescription) at \(path(c.codingPath))"
    case .keyNotFound(let k, let c): return "missing key \"\(k.stringValue)\" at \(path(c.codingPath))"
    case .typeMismatch(_, let c): return "wrong type at \(path(c.codingPath)): \(c.debugDescription)"
    case .valueNotFound(_, let c): return "missing value at \(path(c.codingPath))"
    @unknown default: return "\(error)"
    }
}
