import CairnCore
import CairnStorage
import Foundation
import Logging
import NIOCore

/// Restore points: ctld blocks commits on every primary of a keyspace at
/// once, records each primary's position, and releases them all.
///
/// Every primary answers only once its commits are blocked, and none is
/// released before all have answered, so there is an instant when all are
/// blocked together. Each recorded position holds exactly the commits made
/// before that instant on its shard: a commit on one shard that caused a
/// commit on another (the second began after the first committed) is in the
/// point whenever its effect is.
extension ControlServer {
    func createRestorePoint(_ request: ClusterAPI.RestorePointRequest) async throws -> RestorePoint {
        try KeyspaceShard.validateKeyspace(request.keyspace)
        try RestorePoint.validateName(request.name)
        guard (1...60_000).contains(request.maximumBlockMilliseconds) else {
            throw CairnError(.usage, "the maximum block must be between 1 ms and 60 s, not \(request.maximumBlockMilliseconds) ms")
        }
        let points = RestorePointRepository(storage: try requireStorage(), logger: logger)
        // Checked before commits are blocked, so a taken name costs the keyspace nothing.
        guard try await !points.storage.exists(key: RestorePointRepository.key(keyspace: request.keyspace, name: request.name)) else {
            throw CairnError(.alreadyExists, "restore point \(request.name) already exists in keyspace \(request.keyspace); choose another name")
        }
        let shards = try await store.knownShards().map(\.shard).filter { $0.keyspace == request.keyspace }
        guard !shards.isEmpty else {
            let known = Set(try await store.knownShards().map(\.shard.keyspace)).sorted()
            throw CairnError(.notFound, "ctld knows no shard of keyspace \(request.keyspace); known keyspaces: \(known.isEmpty ? "none (no tablet has registered)" : known.joined(separator: ", "))")
        }
        var primaries: [(shard: String, tablet: ClusterAPI.Tablet)] = []
        for shard in shards {
            primaries.append((shard.shard, try await pickTablet(shard, alias: nil, type: .primary)))
        }

        let id = UUID().uuidString.lowercased()
        let blockRequest = ClusterAPI.CommitBlockRequest(id: id, maximumBlockMilliseconds: request.maximumBlockMilliseconds)
        let maximumBlock = Duration.milliseconds(request.maximumBlockMilliseconds)
        let clock = ContinuousClock()
        var round = CommitBlockRound(shards: primaries.map(\.shard), maximumBlock: maximumBlock, started: clock.now)

        // 1. Every primary takes its backup stage up to BLOCK_DDL; commits still flow.
        let prepared = await withTaskGroup(of: (String, CairnError?).self, returning: [(String, CairnError?)].self) { group in
            for (shard, tablet) in primaries {
                group.addTask {
                    do {
                        try await self.tabletClient(tablet).prepareCommitBlock(blockRequest, timeout: .seconds(15))
                        return (shard, nil)
                    } catch {
                        return (shard, error as? CairnError ?? CairnError(.cluster, "\(error)"))
                    }
                }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        if let (shard, error) = prepared.first(where: { $0.1 != nil }) {
            round.failed(shard, error!.message)
        } else {
            // 2. Every primary blocks its commits; the maximum block bounds this step.
            round = CommitBlockRound(shards: primaries.map(\.shard), maximumBlock: maximumBlock, started: clock.now)
            enum Event: Sendable {
                case held(shard: String, tablet: String, Result<ClusterAPI.CommitBlockHeld, CairnError>)
                case deadline
            }
            await withTaskGroup(of: Event.self) { group in
                for (shard, tablet) in primaries {
                    group.addTask {
                        do {
                            let held = try await self.tabletClient(tablet).blockCommits(
                                blockRequest, timeout: .milliseconds(Int64(request.maximumBlockMilliseconds) + 2000))
                            return .held(shard: shard, tablet: tablet.alias, .success(held))
                        } catch {
                            return .held(shard: shard, tablet: tablet.alias, .failure(error as? CairnError ?? CairnError(.cluster, "\(error)")))
                        }
                    }
                }
                group.addTask {
                    try? await Task.sleep(for: maximumBlock + .milliseconds(1))
                    return .deadline
                }
                for await event in group {
                    switch event {
                    case .held(let shard, let tablet, .success(let held)):
                        if let position = try? ReplicationPosition(parsing: held.position) {
                            round.blocked(shard, RestorePoint.ShardPoint(position: position, tablet: tablet, blockedMilliseconds: 0), at: clock.now)
                        } else {
                            round.failed(shard, "tablet \(tablet) answered a position that is not one (\(held.position))")
                        }
                    case .held(let shard, _, .failure(let error)):
                        round.failed(shard, error.message)
                    case .deadline:
                        round.timedOut(at: clock.now)
                    }
                    if round.outcome != .waiting { break }
                }
                group.cancelAll()
            }
        }

        // 3. Every primary is told, whatever happened (a step still on its way lets go as it
        // arrives). Not cancelled with the request: a block must not wait for the tablet's guard.
        let releasing = Task {
            await withTaskGroup(of: (String, String, Int?, String?).self, returning: [(String, String, Int?, String?)].self) { group in
                for (shard, tablet) in primaries {
                    group.addTask {
                        do {
                            return (shard, tablet.alias, try await self.tabletClient(tablet).releaseCommits(id: id).blockedMilliseconds, nil)
                        } catch {
                            return (shard, tablet.alias, nil, (error as? CairnError)?.message ?? "\(error)")
                        }
                    }
                }
                return await group.reduce(into: []) { $0.append($1) }
            }
        }
        let released = await releasing.value
        let unreleased = released.filter { $0.3 != nil }
        for (_, tablet, _, error) in unreleased {
            logger.warning("could not release a commit block; the tablet releases it itself within its maximum block and 5 s",
                           metadata: ["tablet": "\(tablet)", "error": "\(error ?? "")"])
        }
        for (shard, _, blocked, _) in released { round.released(shard, blockedMilliseconds: blocked) }

        switch round.outcome {
        case .allBlocked:
            let parts = round.blocked
            let point = RestorePoint(name: request.name, keyspace: request.keyspace, createdAt: Date(),
                                     blockedMilliseconds: parts.values.map(\.blockedMilliseconds).max() ?? 0, shards: parts)
            try await points.save(point)
            logger.info("restore point created", metadata: [
                "keyspace": "\(point.keyspace)", "point": "\(point.name)", "blocked_ms": "\(point.blockedMilliseconds)",
                "positions": "\(parts.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value.position)" }.joined(separator: " "))"])
            return point
        case .abandon(let reason):
            logger.warning("restore point abandoned", metadata: ["keyspace": "\(request.keyspace)", "point": "\(request.name)", "reason": "\(reason)"])
            let releasedText = unreleased.isEmpty ? "every primary's commits are released"
                : "tablet\(unreleased.count == 1 ? "" : "s") \(unreleased.map(\.1).joined(separator: ", ")) did not answer the release and let go on their own within the maximum block and 5 s"
            throw CairnError(.cluster, "restore point \(request.name) was not created and nothing was recorded (\(releasedText)): \(reason)")
        case .waiting:
            throw CairnError(.internal, "the restore point round ended without an outcome; retry")
        }
    }

    func restorePointStatuses(keyspace: String) async throws -> [RestorePointStatus] {
        try KeyspaceShard.validateKeyspace(keyspace)
        return try await RestorePointRepository(storage: try requireStorage(), logger: logger).statuses(keyspace: keyspace)
    }

    /// A client of one tablet's API, with ctld's tablet token.
    func tabletClient(_ tablet: ClusterAPI.Tablet) -> ClusterClient {
        ClusterClient(address: tablet.agentURL, token: tabletToken, peer: "tablet \(tablet.alias)",
                      tokenAdvice: "it does not hold ctld's tablet token; restart it with --tablet-token-file <ctld data dir>/tablet-token")
    }
}

extension ClusterAPI.RestoreParameters {
    /// The parameters with a restore point turned into the shard's position at it.
    public func resolvingRestorePoint(for shard: KeyspaceShard, in storage: any BackupStorage, logger: Logger) async throws -> Self {
        guard let name = restorePoint, toPosition == nil else { return self }
        let point = try await RestorePointRepository(storage: storage, logger: logger).load(keyspace: shard.keyspace, name: name)
        var resolved = self
        resolved.toPosition = try point.position(of: shard).description
        return resolved
    }
}
