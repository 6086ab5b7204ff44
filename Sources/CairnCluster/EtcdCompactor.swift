import CairnEtcd
import Logging
import ServiceLifecycle

/// The leader's compaction of etcd's history (docs/CLUSTER.md, "Control
/// plane on etcd"). etcd keeps every version of every key until it is
/// compacted, and each heartbeat writes one: 1,000 tablets write about
/// 900,000 versions in 30 minutes, and etcd's database stops taking writes
/// at its size quota (2 GiB by default). Every `interval` this compacts to
/// the revision it saw one interval before, so one interval of history is
/// always kept, as Kubernetes' API server does. It is harmless next to
/// etcd's own `--auto-compaction-retention`.
struct EtcdCompactor: Service {
    let client: EtcdClient
    let logger: Logger
    var interval: Duration = .seconds(300)

    func run() async throws {
        // Stopping at a graceful shutdown is the normal end, not an error.
        try? await cancelWhenGracefulShutdown {
            let chore = PeriodicChore(interval: interval, logger: logger,
                                      failure: "could not compact etcd's history; the next round retries, and etcd's database grows until one succeeds",
                                      recovery: "etcd's history is compacted again")
            var previous: Int64? = nil
            try await chore.run {
                let current = try await client.currentRevision()
                if let previous, previous > 1 {
                    try await client.compact(revision: previous)
                    logger.debug("compacted etcd's history", metadata: ["revision": "\(previous)"])
                }
                previous = current
            }
        }
    }
}
