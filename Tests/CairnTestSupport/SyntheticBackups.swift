import CairnCore
import CairnStorage
import Crypto
import Foundation
import Logging

/// Backups with chosen times written straight into storage, for retention
/// tests that need weeks of history without weeks of mariadbd: each complete
/// one is a `STARTED` object, a small data file and a `MANIFEST` whose file
/// list (size, SHA-256) is true, so `cairn verify` and the restore planner
/// treat it as any other.
public enum SyntheticBackups {
    public static let alias = TabletAlias(cell: "zone1", uid: 100)

    public static func position(_ seq: UInt64) -> ReplicationPosition {
        ReplicationPosition(mariadb: MariaDBGTIDList([MariaDBGTID(domain: 0, server: 100, sequence: seq)]))
    }

    /// A manifest with no files yet.
    public static func manifest(shard: KeyspaceShard, start: Date, finish: Date, parent: BackupManifest?, seq: UInt64) -> BackupManifest {
        BackupManifest(backupName: BackupName(time: start, tabletAlias: alias).description, keyspace: shard.keyspace, shard: shard.shard,
                       tabletAlias: alias.description, hostname: "synthetic", method: parent == nil ? .physical : .binlog,
                       incremental: parent != nil, parentBackup: parent?.backupName, fromPosition: parent?.position,
                       position: position(seq), purgedPosition: position(0), startTime: start, finishTime: finish,
                       firstEventTime: parent?.finishTime, lastEventTime: parent == nil ? nil : start.addingTimeInterval(-1),
                       serverID: 100, serverVersion: "10.11.0-MariaDB", flavor: .mariadb, compression: .none,
                       encryption: "none", files: [])
    }

    /// Writes `manifest` as a complete backup (STARTED, one data file, MANIFEST) and returns it with its file list.
    @discardableResult
    public static func writeComplete(_ manifest: BackupManifest, to storage: any BackupStorage, shard: KeyspaceShard) async throws -> BackupManifest {
        let repository = BackupRepository(storage: storage, logger: testLogger)
        let name = manifest.backupName
        try await storage.writeAll(key: repository.key(shard, name, "STARTED"), data: Data(#"{"backup_name": "\#(name)"}"#.utf8))
        let data = Data("synthetic backup \(name) at \(manifest.position)\n".utf8)
        let fileName = manifest.incremental ? "binlog.000001" : "backup.mbstream"
        try await storage.writeAll(key: repository.key(shard, name, fileName), data: data)
        var m = manifest
        m.files = [ManifestFile(name: fileName, rawSize: Int64(data.count), storedSize: Int64(data.count),
                                sha256: SHA256.hash(data: data).map { String(format: "%02x", $0) }.joined())]
        try await repository.commit(m, shard: shard)
        return m
    }

    /// An incomplete backup: `STARTED` and, with `data`, a data file; no MANIFEST.
    public static func writeIncomplete(name: String, to storage: any BackupStorage, shard: KeyspaceShard, data: Bool = true) async throws {
        let repository = BackupRepository(storage: storage, logger: testLogger)
        try await storage.writeAll(key: repository.key(shard, name, "STARTED"), data: Data(#"{"backup_name": "\#(name)"}"#.utf8))
        if data {
            try await storage.writeAll(key: repository.key(shard, name, "backup.mbstream"), data: Data("half a backup\n".utf8))
        }
    }

    /// A backup whose MANIFEST is not JSON.
    public static func writeUnreadable(name: String, to storage: any BackupStorage, shard: KeyspaceShard) async throws {
        let repository = BackupRepository(storage: storage, logger: testLogger)
        try await storage.writeAll(key: repository.key(shard, name, "backup.mbstream"), data: Data("data\n".utf8))
        try await storage.writeAll(key: repository.key(shard, name, BackupManifest.fileName), data: Data("{ this is not json".utf8))
    }
}

/// Several weeks of daily chains, laid out on UTC days counted back from
/// `now`: on each of the `days` days before today, a full backup at 02:00
/// (finished 02:10) and incrementals at 08:00, 14:00 and 20:00; yesterday's
/// chain also has one at `now` - 30 minutes, the newest point.
public struct WeeksOfHistory: Sendable {
    public let now: Date
    public let days: Int
    /// Index 0 is yesterday's chain, index `days - 1` the oldest; each full backup first.
    public let chains: [[BackupManifest]]

    public var all: [BackupManifest] { chains.flatMap { $0 }.sorted { $0.startTime < $1.startTime } }
    public var fulls: [BackupManifest] { chains.map { $0[0] } }

    /// Midnight UTC of `date`'s day.
    public static func dayStart(_ date: Date) -> Date {
        Date(timeIntervalSince1970: (date.timeIntervalSince1970 / 86400).rounded(.down) * 86400)
    }

    /// Times of day the history (and policies measured from now) change at;
    /// tests wait when now is too close to one, so seconds of drift between
    /// the test's clock and the command's cannot move a boundary.
    public static let boundaries: [TimeInterval] = [0, 2 * 3600, 2 * 3600 + 600, 8 * 3600, 14 * 3600, 20 * 3600, 24 * 3600]

    /// Waits until `Date()` is at least `margin` away from every boundary,
    /// then returns the whole second.
    public static func settledNow(margin: TimeInterval = 120) async throws -> Date {
        while true {
            let now = Date()
            let sinceMidnight = now.timeIntervalSince(dayStart(now))
            let near = boundaries.contains { abs(sinceMidnight - $0) < margin }
            if !near { return Date(timeIntervalSince1970: now.timeIntervalSince1970.rounded(.down)) }
            try await Task.sleep(for: .seconds(15))
        }
    }

    public init(days: Int, now: Date, shard: KeyspaceShard) {
        self.now = now
        self.days = days
        let today = Self.dayStart(now)
        var seq: UInt64 = 0
        var chains: [[BackupManifest]] = []
        for k in (1...days).reversed() {
            let day = today.addingTimeInterval(-Double(k) * 86400)
            seq += 1000
            let full = SyntheticBackups.manifest(shard: shard, start: day.addingTimeInterval(2 * 3600),
                                                 finish: day.addingTimeInterval(2 * 3600 + 600), parent: nil, seq: seq)
            var chain = [full]
            var starts = [8.0, 14, 20].map { day.addingTimeInterval($0 * 3600) }
            if k == 1 { starts.append(now.addingTimeInterval(-1800)) }
            for start in starts {
                seq += 100
                chain.append(SyntheticBackups.manifest(shard: shard, start: start, finish: start.addingTimeInterval(60),
                                                       parent: chain.last!, seq: seq))
            }
            chains.append(chain)
        }
        self.chains = chains.reversed()
    }

    /// Writes every backup, returning the manifests as stored.
    public func write(to storage: any BackupStorage, shard: KeyspaceShard) async throws -> [BackupManifest] {
        var written: [BackupManifest] = []
        for chain in chains.reversed() {
            var parent: BackupManifest? = nil
            for var m in chain {
                if let parent {
                    m.parentBackup = parent.backupName
                    m.fromPosition = parent.position
                }
                let stored = try await SyntheticBackups.writeComplete(m, to: storage, shard: shard)
                written.append(stored)
                parent = stored
            }
        }
        return written
    }
}
