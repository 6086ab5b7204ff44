import CairnCore
import Foundation
import Hummingbird
import Prometheus

/// A tablet's own metrics (`GET /metrics` on the tablet, behind the tablet
/// token): counters bumped as its jobs end and heartbeats fail, gauges
/// read from a fresh heartbeat at each scrape. See docs/OBSERVABILITY.md.
final class TabletMetrics: Sendable {
    let factory = CairnMetricsFactory()

    func jobEnded(kind: ClusterAPI.JobKind, report: ClusterAPI.JobReport) {
        guard let result = report.result else { return }
        let labels = [("kind", kind.rawValue), ("result", result.rawValue)]
        factory.increment("cairn_tablet_jobs_finished_total", labels)
        factory.set("cairn_tablet_last_job_end_timestamp_seconds", labels, (report.endedAt ?? Date()).timeIntervalSince1970)
        if kind == .backup, result == .completed {
            factory.set("cairn_tablet_last_backup_bytes", [], Double(report.storedBytes))
            if let start = report.startedAt, let end = report.endedAt {
                factory.set("cairn_tablet_last_backup_duration_seconds", [], end.timeIntervalSince(start))
            }
        }
    }

    func heartbeatFailed() {
        factory.increment("cairn_tablet_heartbeat_failures_total", [])
    }

    func scrape(_ heartbeat: ClusterAPI.Heartbeat, shard: KeyspaceShard) -> Response {
        CairnMetricsFactory.response(Array(render(heartbeat, shard: shard).utf8))
    }

    /// Sets the gauges from `heartbeat` and returns the exposition text.
    func render(_ heartbeat: ClusterAPI.Heartbeat, shard: KeyspaceShard) -> String {
        factory.set("cairn_tablet_info", [("alias", heartbeat.alias), ("keyspace", shard.keyspace), ("shard", shard.shard),
                                          ("type", heartbeat.type.rawValue), ("version", CairnVersion.current)], 1)
        factory.set("cairn_tablet_mysqld_up", [], heartbeat.healthy ? 1 : 0)
        factory.set("cairn_tablet_job_running", [], heartbeat.currentJob == nil ? 0 : 1)
        if let lag = heartbeat.replication?.lagSeconds {
            factory.set("cairn_tablet_replication_lag_seconds", [], Double(lag))
        }
        // The heartbeat counter exists from the start, so a rate() over it works before the first failure.
        factory.increment("cairn_tablet_heartbeat_failures_total", [], by: 0)
        return factory.registry.emitToString()
    }
}
