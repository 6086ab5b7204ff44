import CairnCore
import CairnMySQL
import CairnStorage
import CairnSystem
import Foundation
import Logging

/// A restore drill: restores a shard's chain into a scratch directory with a
/// temporary `mariadbd`, runs `CHECK TABLE` and `CHECKSUM TABLE` on every
/// table, compares the checksums with the reference recorded by the first
/// drill of the same point (``DrillReference``), measures the restore, and
/// records the outcome in storage. The scratch directory is removed whatever
/// happens; the shard's own server is never touched.
public struct DrillRunner: Sendable {
    public let context: RestoreContext
    /// Where the drill ran, for its name and record: a tablet alias, or `local`.
    public let ranOn: String
    /// Where the scratch directory is made (the system's temporary directory when nil).
    public let scratchRoot: String?
    let onPhase: @Sendable (DrillPhase) -> Void

    public init(context: RestoreContext, ranOn: String, scratchRoot: String? = nil,
                onPhase: @escaping @Sendable (DrillPhase) -> Void = { _ in }) {
        self.context = context
        self.ranOn = ranOn
        self.scratchRoot = scratchRoot
        self.onPhase = onPhase
    }

    /// The tables a drill checks: every base table outside the server's own schemas.
    static let tablesQuery = """
        SELECT table_schema, table_name FROM information_schema.tables
        WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')
        ORDER BY table_schema, table_name
        """

    /// Holds what the restore's last step saw, for the record.
    private final class Observed {
        var reached: ReplicationPosition?
        var restoreSeconds: Double = 0
        var tables: [DrillTableCheck] = []
    }

    /// Runs one drill and returns its record, which is also stored. A drill
    /// whose restore or checks fail is a failed drill, recorded as such; an
    /// error is thrown only when there is nothing to drill or the record
    /// cannot be stored.
    public func run(_ target: DrillTarget, now: Date = Date()) async throws -> DrillRecord {
        let logger = context.logger
        let shard = context.shard
        let drills = DrillRepository(storage: context.storage, logger: logger)
        var machine = JobState<DrillPhase>()
        func advance(_ next: DrillPhase) throws {
            try machine.advance(to: next)
            context.progress?.setPhase(next.rawValue)
            onPhase(next)
        }
        var record = DrillRecord(name: DrillRecord.name(startedAt: now, ranOn: ranOn), keyspace: shard.keyspace, shard: shard.shard,
                                 ranOn: ranOn, target: target.description, startedAt: now)

        if let scratchRoot {
            // Where to restore is the operator's setting, not something the drill found: an error, not a failed drill.
            do {
                try await FileSystem.Async.createDirectory(scratchRoot)
            } catch {
                throw CairnError(.fileSystem, "cannot create the drill's scratch directory \(scratchRoot): \(error); choose a writable place with room for a copy of the shard")
            }
        }
        try advance(.planning)
        let listing = try await context.repository.list(shard)
        let manifests = listing.manifests
        guard !manifests.isEmpty else {
            throw CairnError(.notFound, "there is no complete backup of \(shard) in \(context.storage.displayURL) to drill; take one with `cairn backup \(shard)`")
        }
        let archive = try await context.repository.listArchive(shard, objects: listing.archiveObjects)
        let observed = Observed()
        var scratch: String? = nil
        do {
            var generator = SystemRandomNumberGenerator()
            let restoreTarget = try DrillTargetChoice.restoreTarget(target, backups: manifests, archive: archive.timeline, using: &generator)
            record.target = "\(restoreTarget)" + (target == .randomPoint ? " (chosen at random)" : "")
            let plan = try RestorePlanner.plan(backups: manifests, archive: archive.timeline, target: restoreTarget)
            record.fullBackup = plan.full.backupName
            record.backups = plan.backups.map(\.backupName)
            record.segments = plan.segments.count
            logger.info("drill restoring", metadata: ["shard": "\(shard)", "target": "\(restoreTarget)", "full": "\(plan.full.backupName)",
                                                      "incrementals": "\(plan.incrementals.count)", "segments": "\(plan.segments.count)"])

            try advance(.restoring)
            let directory = try await FileSystem.Async.makeTemporaryDirectory(prefix: "cairn-drill", in: scratchRoot)
            scratch = directory
            let started = ContinuousClock.now
            _ = try await RestoreRunner(context: context).run(plan, into: "\(directory)/datadir") { server, reached in
                let elapsed = ContinuousClock.now - started
                observed.restoreSeconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
                observed.reached = reached
                try advance(.checking)
                observed.tables = try await DrillRunner.checkTables(server)
            }
            guard let reached = observed.reached else {
                throw CairnError(.internal, "the drill's restore ended without reaching a position")
            }
            record.position = reached
            record.restoreSeconds = observed.restoreSeconds
            record.tables = observed.tables
            let reference = try await drills.reference(shard, fullBackup: plan.full.backupName, position: reached)
            let judgement = DrillVerdict.judge(observed.tables, reference: reference, drill: record.name, fullBackup: plan.full.backupName,
                                               position: reached, now: Date())
            record.passed = judgement.passed
            record.failure = judgement.failure
            record.reference = judgement.reference
            record.referenceRecordedBy = reference?.recordedBy
            try advance(.recording)
            if let new = judgement.newReference {
                try await drills.saveReference(shard, new)
            }
        } catch {
            guard !Task.isCancelled else {
                if let scratch { await FileSystem.Async.removeIfPresent(scratch) }
                throw error
            }
            // The drill found a problem: that is its result, and it is recorded.
            record.passed = false
            record.failure = (error as? CairnError)?.message ?? "\(error)"
            record.reference = .notCompared
            record.restoreSeconds = observed.restoreSeconds
            record.position = observed.reached
            record.tables = observed.tables
            if machine.phase != .recording { try advance(.recording) }
        }
        // A restored copy of the shard's data: removed whatever the outcome.
        if let scratch { await FileSystem.Async.removeIfPresent(scratch) }
        record.finishedAt = Date()
        try await drills.save(record)
        do {
            let fulls = Set(manifests.filter { !$0.incremental }.map(\.backupName))
            try await drills.prune(shard, existingFullBackups: fulls)
        } catch {
            logger.warning("could not prune old drill records", metadata: ["shard": "\(shard)", "error": "\(error)"])
        }
        try advance(.completed)
        if record.passed {
            logger.info("\(record.summary)")
        } else {
            logger.error("\(record.summary)")
        }
        return record
    }

    /// `CHECK TABLE` and `CHECKSUM TABLE ... EXTENDED` on every table of `server`.
    static func checkTables(_ server: RestoreServer) async throws -> [DrillTableCheck] {
        try await server.withConnection { connection in
            let tables = try await connection.query(tablesQuery).rows.compactMap { row -> (String, String)? in
                guard row.count >= 2, let schema = row[0], let name = row[1] else { return nil }
                return (schema, name)
            }
            var checks: [DrillTableCheck] = []
            for (schema, name) in tables {
                try Task.checkCancellation()
                let quoted = "\(MySQLConnection.quoteIdentifier(schema)).\(MySQLConnection.quoteIdentifier(name))"
                let check = try await connection.query("CHECK TABLE \(quoted)")
                let types = check.values("Msg_type")
                let texts = check.values("Msg_text")
                // The verdict is the `status` row; `error` rows say what is wrong.
                var verdict = "no status from CHECK TABLE"
                var errors: [String] = []
                for (type, text) in zip(types, texts) {
                    switch type?.lowercased() {
                    case "status": verdict = text ?? verdict
                    case "error": errors.append(text ?? "error")
                    default: break
                    }
                }
                if verdict == "OK", !errors.isEmpty { verdict = errors.joined(separator: "; ") }
                if verdict != "OK", !errors.isEmpty { verdict = ([verdict] + errors).joined(separator: "; ") }
                let checksum = try await connection.query("CHECKSUM TABLE \(quoted) EXTENDED").values("Checksum").first ?? nil
                checks.append(DrillTableCheck(table: "\(schema).\(name)", check: String(verdict.prefix(300)), checksum: checksum))
            }
            return checks
        }
    }
}
