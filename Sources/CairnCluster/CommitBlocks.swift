import CairnCore
import CairnMySQL
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// A primary tablet's part in a restore point, in two steps on a connection
/// of its own. `prepare` runs `BACKUP STAGE START`, `FLUSH` and `BLOCK_DDL`:
/// they may wait (behind DDL, or a backup that holds the backup stage) but
/// do not block transactional commits. `block` then runs `BACKUP STAGE
/// BLOCK_COMMIT`, which waits only for commits in flight, and reads
/// `gtid_binlog_pos`. The block is held until ctld releases it.
///
/// A block is never left behind: one that ctld does not release in time is
/// released by ``CommitBlockGuard``, and a release that arrives before its
/// block is remembered, so the late step lets go at once. A release reports
/// whether the block was still held: if `BACKUP STAGE END` fails, the
/// connection (and its block) was already gone, and ctld records nothing.
final class CommitBlocks: Sendable {
    struct Hold: Sendable {
        let connection: MySQLConnection
        /// When commits were blocked; nil while only prepared.
        var blockedAt: ContinuousClock.Instant?
        var deadline: ContinuousClock.Instant
    }
    struct State {
        var holds: [String: Hold] = [:]
        /// Released before they were held (ctld gave up on them, or the guard released them), newest last.
        var released: [String] = []
        mutating func remember(_ id: String) {
            released.append(id)
            if released.count > 64 { released.removeFirst() }
        }
    }
    let state = Mutex(State())
    let mysql: MySQLConnectionConfiguration
    let alias: String
    let logger: Logger
    /// How long preparing may wait for the backup stage (behind a running backup or DDL).
    static let prepareTimeout: Duration = .seconds(10)
    /// Past its deadline, a hold ctld has not released is released this much later: ctld is gone or cut off.
    static let releaseGrace: Duration = .seconds(5)

    init(mysql: MySQLConnectionConfiguration, alias: String, logger: Logger) {
        self.mysql = mysql
        self.alias = alias
        self.logger = logger
    }

    /// Takes the backup stage up to `BLOCK_DDL`; commits still flow.
    func prepare(id: String) async throws {
        let clock = ContinuousClock()
        let connection = try await MySQLConnection.connect(mysql, logger: logger)
        do {
            try await connection.query("SET SESSION lock_wait_timeout = \(CommitBlocks.prepareTimeout.components.seconds)")
            do {
                try await connection.query("BACKUP STAGE START")
            } catch let error as CairnError where error.message.contains("Lock wait timeout") {
                throw CairnError(.inUse, "tablet \(alias)'s server holds its backup stage for another backup (or restore point) longer than \(CommitBlocks.prepareTimeout); retry when it has ended")
            }
            try await connection.query("BACKUP STAGE FLUSH")
            try await connection.query("BACKUP STAGE BLOCK_DDL")
            let kept = state.withLock { s -> Bool in
                if s.released.contains(id) { return false }
                s.holds[id] = Hold(connection: connection, blockedAt: nil, deadline: clock.now + CommitBlocks.prepareTimeout + CommitBlocks.releaseGrace)
                return true
            }
            guard kept else {
                await end(connection)
                throw CairnError(.cluster, "the restore point was abandoned while tablet \(alias) prepared; nothing is held, retry the restore point")
            }
        } catch {
            await end(connection)
            throw error
        }
    }

    /// Blocks commits on the prepared connection and returns the position.
    func block(id: String, maximumBlock: Duration) async throws -> ReplicationPosition {
        let clock = ContinuousClock()
        guard let connection = state.withLock({ $0.holds[id]?.connection }) else {
            throw CairnError(.cluster, "tablet \(alias) holds no prepared backup stage for this restore point (it was released or the tablet restarted); retry the restore point")
        }
        do {
            try await connection.query("SET SESSION lock_wait_timeout = \(max(1, (maximumBlock.milliseconds + 999) / 1000))")
            try await connection.query("BACKUP STAGE BLOCK_COMMIT")
            let blockedAt = clock.now
            let text = try await connection.scalar("SELECT @@gtid_binlog_pos") ?? ""
            let position = ReplicationPosition(mariadb: try MariaDBGTIDList(parsing: text))
            let kept = state.withLock { s -> Bool in
                guard !s.released.contains(id), s.holds[id] != nil else { return false }
                s.holds[id]?.blockedAt = blockedAt
                s.holds[id]?.deadline = blockedAt + maximumBlock + CommitBlocks.releaseGrace
                return true
            }
            guard kept else {
                throw CairnError(.cluster, "the restore point was abandoned while tablet \(alias) blocked commits; nothing is held, retry the restore point")
            }
            return position
        } catch {
            if let hold = state.withLock({ $0.holds.removeValue(forKey: id) }) { await end(hold.connection) }
            throw error
        }
    }

    /// Releases the hold `id`; returns how long commits were blocked (zero
    /// when only prepared), or nil when nothing was held: never taken, taken
    /// and released by the guard, or lost with its connection. A release of
    /// a hold not taken yet is remembered.
    func release(id: String) async -> Duration? {
        let hold = state.withLock { s -> Hold? in
            guard let hold = s.holds.removeValue(forKey: id) else {
                s.remember(id)
                return nil
            }
            return hold
        }
        guard let hold else { return nil }
        let held = await end(hold.connection)
        guard held else {
            logger.warning("a commit block was lost before its release (its connection had ended)", metadata: ["block": "\(id)"])
            return nil
        }
        return hold.blockedAt.map { ContinuousClock().now - $0 } ?? .zero
    }

    /// Releases every hold past its deadline (`all`: every hold).
    func releaseExpired(all: Bool = false) async {
        let now = ContinuousClock().now
        let expired = state.withLock { s -> [(String, Hold)] in
            let ids = s.holds.filter { all || $0.value.deadline <= now }.map(\.key)
            return ids.map { id in
                s.remember(id)
                return (id, s.holds.removeValue(forKey: id)!)
            }
        }
        for (id, hold) in expired {
            await end(hold.connection)
            logger.warning("released a commit block that ctld did not release in time", metadata: ["block": "\(id)"])
        }
    }

    /// Ends the backup stage and closes the connection; false when the
    /// stage could not be ended (the connection, and its block, had gone).
    @discardableResult
    private func end(_ connection: MySQLConnection) async -> Bool {
        let ended = (try? await connection.query("BACKUP STAGE END")) != nil
        await connection.close()
        return ended
    }
}

/// Releases commit blocks that ctld left behind, and every block when the tablet stops.
struct CommitBlockGuard: Service {
    let blocks: CommitBlocks

    func run() async {
        try? await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                try await Task.sleep(for: .milliseconds(200))
                await blocks.releaseExpired()
            }
        }
        await blocks.releaseExpired(all: true)
    }
}
