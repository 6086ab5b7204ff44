import CairnCore
import CairnMySQL
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// A primary tablet's part in a restore point: it blocks its mysqld's
/// commits (`BACKUP STAGE START`, then `BACKUP STAGE BLOCK_COMMIT`), reads
/// `gtid_binlog_pos` and holds the block on that connection until ctld
/// releases it. A block is never left behind: one that ctld does not
/// release in time is released by ``CommitBlockGuard``, and a release that
/// arrives before its block is remembered, so the late block lets go at once.
final class CommitBlocks: Sendable {
    struct Hold: Sendable {
        let connection: MySQLConnection
        let blockedAt: ContinuousClock.Instant
        let deadline: ContinuousClock.Instant
    }
    struct State {
        var holds: [String: Hold] = [:]
        /// Released before they were held (ctld gave up on them), newest last.
        var releasedEarly: [String] = []
    }
    let state = Mutex(State())
    let mysql: MySQLConnectionConfiguration
    let logger: Logger
    /// Past its maximum block, a hold that ctld has not released is released
    /// this much later: ctld is gone or cut off.
    static let releaseGrace: Duration = .seconds(5)

    init(mysql: MySQLConnectionConfiguration, logger: Logger) {
        self.mysql = mysql
        self.logger = logger
    }

    /// Blocks commits and returns the position; throws (holding nothing) when
    /// the block is not reached within `maximumBlock` of the request.
    func hold(id: String, maximumBlock: Duration) async throws -> ReplicationPosition {
        let clock = ContinuousClock()
        let received = clock.now
        let connection = try await MySQLConnection.connect(mysql, logger: logger)
        do {
            // Waiting for the backup locks (behind a long transaction's commit) gives up with the round.
            let seconds = max(1, (maximumBlock.milliseconds + 999) / 1000)
            try await connection.query("SET SESSION lock_wait_timeout = \(seconds)")
            try await connection.query("BACKUP STAGE START")
            try await connection.query("BACKUP STAGE BLOCK_COMMIT")
            let blockedAt = clock.now
            let text = try await connection.scalar("SELECT @@gtid_binlog_pos") ?? ""
            let position = ReplicationPosition(mariadb: try MariaDBGTIDList(parsing: text))
            let late = clock.now - received > maximumBlock
            let kept = state.withLock { s -> Bool in
                if late || s.releasedEarly.contains(id) { return false }
                s.holds[id] = Hold(connection: connection, blockedAt: blockedAt, deadline: received + maximumBlock + CommitBlocks.releaseGrace)
                return true
            }
            guard kept else {
                await release(connection)
                throw CairnError(.cluster, late ? "blocking commits took longer than the maximum block; nothing is held"
                                                : "the restore point was abandoned while commits were being blocked; nothing is held")
            }
            return position
        } catch {
            await release(connection)
            throw error
        }
    }

    /// Releases the hold `id`; returns how long commits were blocked, or nil
    /// when nothing was held (the release is then remembered).
    func release(id: String) async -> Duration? {
        let hold = state.withLock { s -> Hold? in
            guard let hold = s.holds.removeValue(forKey: id) else {
                s.releasedEarly.append(id)
                if s.releasedEarly.count > 64 { s.releasedEarly.removeFirst() }
                return nil
            }
            return hold
        }
        guard let hold else { return nil }
        await release(hold.connection)
        return ContinuousClock().now - hold.blockedAt
    }

    /// Releases every hold past its deadline (`all`: every hold).
    func releaseExpired(all: Bool = false) async {
        let now = ContinuousClock().now
        let expired = state.withLock { s -> [(String, Hold)] in
            let ids = s.holds.filter { all || $0.value.deadline <= now }.map(\.key)
            return ids.map { ($0, s.holds.removeValue(forKey: $0)!) }
        }
        for (id, hold) in expired {
            await release(hold.connection)
            logger.warning("released a commit block that ctld did not release in time", metadata: ["block": "\(id)"])
        }
    }

    private func release(_ connection: MySQLConnection) async {
        // Closing the connection ends the backup stage too; END first says so plainly.
        _ = try? await connection.query("BACKUP STAGE END")
        await connection.close()
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
