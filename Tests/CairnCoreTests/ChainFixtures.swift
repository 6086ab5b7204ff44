import CairnCore
import Foundation

/// Builds synthetic manifests for planner and strategy tests.
struct ChainBuilder {
    var backups: [BackupManifest] = []
    let base = UTCTime.parseRFC3339("2026-11-01T00:00:00Z")!

    func time(_ minutes: Double) -> Date { base.addingTimeInterval(minutes * 60) }

    static func pos(_ seq: UInt64) -> ReplicationPosition {
        ReplicationPosition(mariadb: MariaDBGTIDList([MariaDBGTID(domain: 0, server: 1, sequence: seq)]))
    }

    /// A full backup started at `minute`, ending at sequence `seq`.
    @discardableResult
    mutating func full(at minute: Double, seq: UInt64, method: BackupMethod = .physical) -> BackupManifest {
        let name = BackupName(time: time(minute), tabletAlias: TabletAlias(cell: "zone1", uid: 100)).description
        let m = BackupManifest(backupName: name, keyspace: "commerce", shard: "0", tabletAlias: "zone1-100", hostname: "h",
                               method: method, incremental: false, parentBackup: nil, fromPosition: nil,
                               position: Self.pos(seq), purgedPosition: Self.pos(0), startTime: time(minute),
                               finishTime: time(minute + 1), firstEventTime: nil, lastEventTime: nil, serverID: 1,
                               serverVersion: "10.11", flavor: .mariadb, compression: .zstd(level: 3), encryption: "none", files: [])
        backups.append(m)
        return m
    }

    /// An incremental continuing `parent`, started at `minute`, ending at `seq`,
    /// with transactions stamped between the parent's start and this one's.
    @discardableResult
    mutating func incremental(after parent: BackupManifest, at minute: Double, seq: UInt64) -> BackupManifest {
        let name = BackupName(time: time(minute), tabletAlias: TabletAlias(cell: "zone1", uid: 100)).description
        let m = BackupManifest(backupName: name, keyspace: "commerce", shard: "0", tabletAlias: "zone1-100", hostname: "h",
                               method: .binlog, incremental: true, parentBackup: parent.backupName, fromPosition: parent.position,
                               position: Self.pos(seq), purgedPosition: Self.pos(0), startTime: time(minute),
                               finishTime: time(minute + 0.5), firstEventTime: parent.finishTime, lastEventTime: time(minute - 0.1),
                               serverID: 1, serverVersion: "10.11", flavor: .mariadb, compression: .zstd(level: 3),
                               encryption: "none", files: [])
        backups.append(m)
        return m
    }

    mutating func remove(_ m: BackupManifest) {
        backups.removeAll { $0.backupName == m.backupName }
    }
}

extension ChainBuilder {
    /// A segment numbered `sequence` holding sequences (`from`, `to`], its
    /// transactions stamped from minute `first` to minute `last`.
    func segment(_ sequence: Int, from: UInt64, to: UInt64, first: Double, last: Double) -> ArchiveSegmentManifest {
        ArchiveSegmentManifest(
            keyspace: "commerce", shard: "0", sequence: sequence, fromPosition: ChainBuilder.pos(from),
            position: ChainBuilder.pos(to), firstEventTime: time(first), lastEventTime: time(last),
            transactionCount: Int(to - from), archivedTime: time(last + 0.05), sourceServerID: 1, sourceHost: "h",
            archiverServerID: 4_000_000_001, compression: .zstd(level: 3),
            file: ManifestFile(name: ArchiveSegmentManifest.dataFileName(sequence: sequence, suffix: ".zst"),
                               rawSize: 1, storedSize: 1, sha256: String(repeating: "0", count: 64)))
    }
}
