import Foundation

/// The complete backups of one shard, arranged as chains: each full backup
/// starts one, each incremental continues its parent when it starts exactly
/// where the parent ended.
///
/// The one place that follows `parent_backup`: up a chain with
/// ``ancestry(of:)``, down it with ``descendants(of:linkedOnly:)``. Planners
/// and reports ask these instead of walking parents by hand.
public struct BackupChains: Sendable {
    public let backups: [BackupManifest]
    let byName: [String: BackupManifest]
    /// The incrementals naming each backup as their parent, oldest first.
    let children: [String: [BackupManifest]]

    public init(_ backups: [BackupManifest]) {
        let sorted = backups.sorted { ($0.startTime, $0.backupName) < ($1.startTime, $1.backupName) }
        self.backups = sorted
        var byName: [String: BackupManifest] = [:]
        for b in sorted { byName[b.backupName] = b }
        self.byName = byName
        var children: [String: [BackupManifest]] = [:]
        for b in sorted where b.incremental {
            if let parent = b.parentBackup { children[parent, default: []].append(b) }
        }
        self.children = children
    }

    public func backup(named name: String) -> BackupManifest? { byName[name] }

    /// How a walk up a backup's parents ended.
    public enum AncestryEnd: Sendable, Hashable {
        /// At a full backup: the chain reaches its start.
        case full
        /// At an incremental that names no parent.
        case noParent
        /// At an incremental whose parent, named here, is not a complete backup.
        case missingParent(String)
        /// At an incremental whose parent is already on the walk.
        case cycle(BackupManifest)
    }

    /// `backup`, then the backup it continues, then that one's parent, and
    /// so on by parent name (not checking positions), as far as the parents
    /// are complete backups; and why the walk stopped.
    public func ancestry(of backup: BackupManifest) -> (backups: [BackupManifest], end: AncestryEnd) {
        var path = [backup]
        var seen: Set<String> = [backup.backupName]
        var current = backup
        while current.incremental {
            guard let parentName = current.parentBackup else { return (path, .noParent) }
            guard let parent = byName[parentName] else { return (path, .missingParent(parentName)) }
            guard seen.insert(parent.backupName).inserted else { return (path, .cycle(parent)) }
            path.append(parent)
            current = parent
        }
        return (path, .full)
    }

    /// Every complete backup that continues the backup `name`, directly or
    /// through others, breadth first. With `linkedOnly`, only incrementals
    /// that start exactly where their parent ends (the ones a restore can apply).
    public func descendants(of name: String, linkedOnly: Bool = false) -> [BackupManifest] {
        var result: [BackupManifest] = []
        var seen: Set<String> = [name]
        var queue: [String] = [name]
        var next = 0
        while next < queue.count {
            let parentName = queue[next]
            next += 1
            let parent = byName[parentName]
            if linkedOnly && parent == nil { continue }
            for child in children[parentName] ?? [] {
                if linkedOnly, child.fromPosition != parent?.position { continue }
                guard seen.insert(child.backupName).inserted else { continue }
                result.append(child)
                queue.append(child.backupName)
            }
        }
        return result
    }

    /// The incrementals naming the backup `name` as their parent, oldest first.
    public func children(of name: String) -> [BackupManifest] { children[name] ?? [] }

    /// Why `backup` cannot be restored, or nil when its chain back to a full backup is whole.
    public func brokenLink(of backup: BackupManifest) -> String? {
        func mismatch(_ child: BackupManifest, _ parent: BackupManifest) -> String? {
            guard let from = child.fromPosition, from == parent.position else {
                return "backup \(child.backupName) starts at \(child.fromPosition?.description ?? "an unknown position"), not where its parent \(parent.backupName) ends (\(parent.position))"
            }
            return nil
        }
        let (path, end) = ancestry(of: backup)
        for (child, parent) in zip(path, path.dropFirst()) {
            if let why = mismatch(child, parent) { return why }
        }
        let last = path[path.count - 1]
        switch end {
        case .full:
            return nil
        case .noParent:
            return "incremental backup \(last.backupName) names no parent"
        case .missingParent(let parentName):
            return "backup \(last.backupName) continues backup \(parentName), which is missing or incomplete"
        case .cycle(let parent):
            return mismatch(last, parent) ?? "backup \(parent.backupName) is part of a cycle of parents"
        }
    }

    /// The chain from a full backup to `backup`, oldest first, when it is whole.
    public func chain(to backup: BackupManifest) -> [BackupManifest]? {
        guard brokenLink(of: backup) == nil else { return nil }
        return ancestry(of: backup).backups.reversed()
    }

    /// Backups whose chain is whole.
    public var restorable: [BackupManifest] { backups.filter { brokenLink(of: $0) == nil } }

    public var fullBackups: [BackupManifest] { backups.filter { !$0.incremental } }

    /// The newest restorable backup: the end of the latest chain.
    public var newestRestorable: BackupManifest? {
        restorable.max { ($0.startTime, $0.backupName) < ($1.startTime, $1.backupName) }
    }

    /// The restorable snapshots (full backups and deltas), oldest first: the
    /// points a restore starts its binary log replay from.
    public var restorableSnapshots: [BackupManifest] { restorable.filter(\.isSnapshot) }

    /// The binary log incrementals that continue the snapshot `base` without
    /// passing through another snapshot, linked, breadth first (a chain's
    /// incrementals after a delta continue the delta, not the snapshot before it).
    public func binlogRun(of base: BackupManifest) -> [BackupManifest] {
        var result: [BackupManifest] = []
        var seen: Set<String> = [base.backupName]
        var queue: [BackupManifest] = [base]
        var next = 0
        while next < queue.count {
            let parent = queue[next]
            next += 1
            for child in children[parent.backupName] ?? [] where !child.isSnapshot && child.fromPosition == parent.position {
                guard seen.insert(child.backupName).inserted else { continue }
                result.append(child)
                queue.append(child)
            }
        }
        return result
    }

    /// The restorable snapshots a restore to a point may start from, newest
    /// first: the newest delta at or before the point costs the least replay.
    public func snapshots(where admissible: (BackupManifest) -> Bool) -> [BackupManifest] {
        restorableSnapshots.filter(admissible).sorted { ($0.startTime, $0.backupName) > ($1.startTime, $1.backupName) }
    }

    /// From `full`, the shortest run of linked incrementals to the first backup
    /// satisfying `reaches`; nil when no whole chain from `full` gets there.
    func shortestRun(from full: BackupManifest, reaches: (BackupManifest) -> Bool) -> [BackupManifest]? {
        if reaches(full) { return [] }
        // Each backup has one parent, so the walk up from the first one reached is the run.
        guard let end = descendants(of: full.backupName, linkedOnly: true).first(where: reaches) else { return nil }
        return Array(ancestry(of: end).backups.reversed().dropFirst())
    }
}
