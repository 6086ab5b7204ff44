import CairnCore
import CairnStorage
import Foundation
import Logging

/// Applies the retention policy to one shard's backups, and removes single
/// backups on request, on any storage backend. The backup runner calls it
/// after every committed backup when a policy is configured; `cairn prune`
/// and `cairn remove-backup` call it directly.
///
/// Removal order is what keeps chains whole when a run stops midway:
/// newest first, every dependent before the backup it continues; each one through ``BackupRepository/delete(_:shard:)``,
/// which marks it `REMOVING` and removes `MANIFEST` before its data.
public struct BackupPruner: Sendable {
    public let shard: KeyspaceShard
    public let storage: any BackupStorage
    public let logger: Logger
    /// The store's Object Lock (the storage's `object_lock` unless set
    /// otherwise): what it still locks is kept and reported, never deleted.
    public var objectLock: ObjectLockConfig?

    public var repository: BackupRepository { BackupRepository(storage: storage, logger: logger) }

    public init(shard: KeyspaceShard, storage: any BackupStorage, logger: Logger) {
        self.shard = shard
        self.storage = storage
        self.logger = logger
        self.objectLock = storage.objectLock
    }

    /// What a prune decided and what it removed.
    public struct Report: Sendable {
        public var plan: RetentionPlan
        /// Removed, in the order they were removed.
        public var removed: [String]
        /// Stored bytes freed.
        public var freedBytes: Int64
        public var dryRun: Bool
        /// Restore points of the keyspace removed (or, in a dry run, to remove) with this prune.
        public var restorePoints: [RestorePointRetention.Removal] = []
        /// Archived binary log segments removed (or, in a dry run, to remove): no kept full backup needs them.
        public var segmentsRemoved: [String] = []
        /// Backups kept only because, with the archive, they restore a point that would otherwise be lost.
        public var keptForArchive: [String] = []
        /// Archived segments no kept backup needs, kept because the store still locks them.
        public var segmentsLocked: [ArchiveRetention.LockedSegment] = []
    }

    /// The shard's backups as the planner sees them.
    public static func candidates(_ stored: some Sequence<StoredBackup>) -> [RetentionCandidate] {
        stored.map(candidate)
    }

    static func candidate(_ b: StoredBackup) -> RetentionCandidate {
        RetentionCandidate(name: b.name, nameTime: b.parsedName?.time, lastModified: b.lastModified,
                           removalStarted: b.removalStarted, state: b.state)
    }

    /// Lists the shard, plans with `policy` at `now`, and (unless `dryRun`)
    /// removes what the plan removes, in its order. Unreadable backups are
    /// in the plan's `problems`, for the caller to report. A failed removal stops
    /// the run at once (a later one may be the parent of the failed one)
    /// and is thrown; the next prune picks up where this one stopped.
    public func prune(policy: RetentionPolicy, now: Date, dryRun: Bool) async throws -> Report {
        try await prune(repository.list(shard), policy: policy, now: now, dryRun: dryRun)
    }

    /// ``prune(policy:now:dryRun:)`` on a listing already taken, such as the
    /// one a backup planned with, its own committed backup added.
    public func prune(_ stored: ShardListing, policy: RetentionPolicy, now: Date, dryRun: Bool) async throws -> Report {
        let backupPlan = RetentionPlanner.plan(Self.candidates(stored), policy: policy, now: now, objectLock: objectLock)
        // Segments belong to the chains they continue: the archive may keep backups, and goes with them.
        let archive = try await repository.listArchive(shard, objects: stored.archiveObjects)
        let archivePlan = ArchiveRetention.plan(backupPlan, backups: stored.manifests, archive: archive.timeline)
        let plan = archivePlan.backups
        var report = Report(plan: plan, removed: [], freedBytes: 0, dryRun: dryRun)
        // Restore points first: a point whose history this prune removes never outlives it.
        let kept = Set(plan.kept.map(\.name))
        report.restorePoints = try await RestorePointRepository(storage: storage, logger: logger).prune(
            shard: shard, keptManifests: stored.manifests.filter { kept.contains($0.backupName) }, archive: archive.timeline,
            policy: policy, now: now, dryRun: dryRun, objectLock: objectLock)
        report.segmentsRemoved = archivePlan.removableSegments.map(\.manifestName)
        report.keptForArchive = archivePlan.keptForArchive
        report.segmentsLocked = archivePlan.lockedSegments
        guard !dryRun else { return report }
        let reasons = Dictionary(plan.decisions.map { ($0.name, $0.reasons.first?.description ?? "") },
                                 uniquingKeysWith: { a, _ in a })
        (report.removed, report.freedBytes) = try await delete(plan.removalOrder, of: stored,
                                                               reason: { reasons[$0] ?? "" },
                                                               then: "the next prune finishes the work")
        // Backups first: a segment is removed only once every backup that could replay it is gone.
        try await repository.deleteSegments(archivePlan.removableSegments, shard: shard)
        // Data files no manifest names (an archiver stopped between upload and
        // commit, or withdrew after a race), at or below the newest segment
        // removed: no archiver writes there any more.
        if let through = archivePlan.removableSegments.map(\.sequence).max() {
            let referenced = Set(archive.segments.map(\.file.name))
            let prefix = BackupRepository.archivePrefix(shard)
            let lock = objectLock
            let orphans = archive.objects.filter { object in
                // What the store still locks stays: reckoned from the listing's time of its write (unknown: locked).
                guard let lock else { return true }
                return object.lastModified.map { lock.lockEnd(writtenBy: $0, now: now) == nil } ?? false
            }.map { String($0.key.dropFirst(prefix.count)) }.filter { name in
                ArchiveSegmentManifest.parseManifestName(name) == nil && !referenced.contains(name)
                    && name.count > 12 && Int(name.prefix(12)).map { $0 <= through } == true
            }
            try await storage.delete(keys: orphans.map { repository.archiveKey(shard, $0) })
        }
        report.freedBytes += archivePlan.removableSegments.reduce(0) { $0 + $1.file.storedSize }
        if !archivePlan.removableSegments.isEmpty {
            logger.info("removed archived binary log segments", metadata: [
                "shard": "\(shard)", "count": "\(archivePlan.removableSegments.count)",
                "through": "\(archivePlan.removableSegments.last!.position)",
            ])
        }
        return report
    }

    /// Deletes the backups named in `order`, one by one, logging each with its
    /// reason. A failed deletion stops the run at once and is thrown, saying
    /// how far it got and what to do `then`.
    private func delete(_ order: [String], of stored: ShardListing, reason: (String) -> String,
                        then next: String) async throws -> (removed: [String], freedBytes: Int64) {
        let byName = Dictionary(stored.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        var removed: [String] = []
        var freedBytes: Int64 = 0
        for name in order {
            guard let backup = byName[name] else { continue }
            do {
                try await repository.delete(backup, shard: shard)
            } catch {
                let base = (error as? CairnError) ?? CairnError(.storage, "\(error)")
                throw CairnError(base.code, "\(base.message) (removing backup \(name), after \(removed.count) of \(order.count) removals; what is left is whole or marked for removal, and \(next))")
            }
            removed.append(name)
            freedBytes += backup.storedBytes
            logger.info("removed a backup", metadata: ["shard": "\(shard)", "backup": "\(name)", "reason": "\(reason(name))"])
        }
        return (removed, freedBytes)
    }

    /// Removes the backup `name`. Refuses when complete backups continue it
    /// (naming them) unless `force`, which removes them first; refuses an
    /// incomplete backup that may still be running (by `incompleteAfter`)
    /// unless `force`.
    public func remove(_ name: String, force: Bool, dryRun: Bool, now: Date,
                       incompleteAfter: ConfigDuration = RetentionPolicy.defaultIncompleteAfter) async throws -> BackupRemoval {
        let stored = try await repository.list(shard)
        guard let target = stored.first(where: { $0.name == name }) else {
            throw CairnError(.notFound, "there is no backup named \(name) of \(shard) in \(storage.displayURL); list them with `cairn backups \(shard)`")
        }
        let manifests = stored.manifests
        let dependents = RetentionPlanner.dependents(of: name, among: manifests).map(\.backupName)
        if !dependents.isEmpty && !force {
            let list = dependents.sorted().joined(separator: ", ")
            throw CairnError(.chain, "backup \(name) of \(shard) cannot be removed: \(dependents.count == 1 ? "backup \(list) continues its chain and" : "backups \(list) continue its chain and") would no longer restore; remove \(dependents.count == 1 ? "it" : "them") first, or pass --force to remove \(dependents.count == 1 ? "it" : "them") too")
        }
        if case .incomplete = target.state, !target.removalStarted, !force,
           Self.candidate(target).mayBeRunning(now: now, incompleteAfter: incompleteAfter) {
            let started = target.parsedName?.time ?? .distantPast
            let written = target.lastModified ?? started
            throw CairnError(.inUse, "backup \(name) of \(shard) is incomplete and may still be running (started \(UTCTime.rfc3339(started, fractional: false)), last written \(UTCTime.rfc3339(written, fractional: false)), incomplete_after \(incompleteAfter)); wait until it has stopped, or pass --force if you know it has")
        }
        let order = RetentionPlanner.dependentsFirst(dependents + [name], manifests: manifests)
        if let objectLock {
            let byName = Dictionary(stored.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
            for n in order {
                guard let backup = byName[n],
                      let until = RetentionPlanner.lockEnd(of: Self.candidate(backup), objectLock: objectLock, now: now) else { continue }
                let which = n == name ? "backup \(name) of \(shard) is" : "backup \(n), which continues \(name), is"
                throw CairnError(.inUse, "\(which) \(objectLock.reason(until: until)) in \(storage.displayURL), and the store keeps its locked versions until then: deleting it now would only hide it behind delete markers (still stored and billed); remove it after that time")
            }
        }
        var result = BackupRemoval(backup: name, dependents: dependents, removed: [], freedBytes: 0, dryRun: dryRun)
        if dryRun {
            let toRemove = Set(order)
            result.removed = order
            result.freedBytes = stored.filter { toRemove.contains($0.name) }.map(\.storedBytes).reduce(0, +)
            return result
        }
        (result.removed, result.freedBytes) = try await delete(order, of: stored,
                                                               reason: { $0 == name ? "requested" : "continues \(name), --force" },
                                                               then: "run the same command again to finish")
        return result
    }
}

/// What removing one backup did or, in a dry run, would do: what
/// `remove-backup` prints and what the control server returns for
/// `DELETE /backups/{keyspace}/{shard}/{name}`.
public struct BackupRemoval: Codable, Sendable, Hashable {
    public var backup: String
    /// Complete backups that continue it, newest first.
    public var dependents: [String]
    /// Removed (or, in a dry run, to remove), dependents first.
    public var removed: [String]
    public var freedBytes: Int64
    public var dryRun: Bool

    public init(backup: String, dependents: [String], removed: [String], freedBytes: Int64, dryRun: Bool) {
        self.backup = backup
        self.dependents = dependents
        self.removed = removed
        self.freedBytes = freedBytes
        self.dryRun = dryRun
    }

    enum CodingKeys: String, CodingKey {
        case backup, dependents, removed
        case freedBytes = "freed_bytes"
        case dryRun = "dry_run"
    }
}
