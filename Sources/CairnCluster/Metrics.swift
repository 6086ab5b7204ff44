import CairnCore
import CoreMetrics
import Foundation
import Hummingbird
import Metrics
import NIOCore
import Prometheus

/// Every metric Cairn exports, with its help text: one place, so the
/// exposition's `# HELP` lines and docs/OBSERVABILITY.md agree.
enum MetricCatalog {
    static let help: [String: String] = [
        // ctld, per shard.
        "cairn_shard_protected": "1 when the shard has a restorable chain whose newest commit is younger than twice the shortest backup interval, else 0.",
        "cairn_shard_last_backup_timestamp_seconds": "When the newest complete backup of the shard finished (Unix time).",
        "cairn_shard_last_backup_age_seconds": "Seconds since the newest complete backup of the shard finished.",
        "cairn_shard_last_backup_duration_seconds": "How long the newest complete backup of the shard took, start to finish.",
        "cairn_shard_last_backup_bytes": "Stored bytes of the newest complete backup of the shard.",
        "cairn_shard_last_full_backup_timestamp_seconds": "When the newest complete full backup of the shard finished (Unix time).",
        "cairn_shard_complete_backups": "Complete backups of the shard in storage.",
        "cairn_shard_restorable_window_start_timestamp_seconds": "The earliest instant the shard can be restored to (Unix time).",
        "cairn_shard_restorable_window_end_timestamp_seconds": "Every commit before this instant is in a restorable chain (Unix time).",
        "cairn_shard_inventory_listed_timestamp_seconds": "When ctld last listed the shard's backups in storage (Unix time).",
        "cairn_shard_inventory_listing_failed": "1 when ctld's last listing of the shard's backups failed, else 0.",
        "cairn_shard_archive_lag_seconds": "Seconds between now and the newest archived binary-log event of the shard.",
        "cairn_shard_last_drill_timestamp_seconds": "When the last restore drill of the shard finished (Unix time).",
        "cairn_shard_last_drill_success": "1 when the last restore drill of the shard passed, else 0.",
        "cairn_shard_last_drill_restore_seconds": "How long the last restore drill's restore took.",
        "cairn_jobs_finished_total": "Jobs that ended since ctld started, by shard, kind and result.",
        "cairn_job_failures_total": "Jobs that failed since ctld started, by shard and kind.",
        // ctld, fleet.
        "cairn_tablet_healthy": "1 when the tablet's last heartbeat said its mysqld is healthy and it is not silent, else 0.",
        "cairn_tablet_replication_lag_seconds": "The tablet's replication lag as its last heartbeat reported it.",
        "cairn_ctld_shards": "Shards ctld knows (shards with registered tablets).",
        "cairn_ctld_info": "Always 1; the label names ctld's Cairn version.",
        // A tablet's own.
        "cairn_tablet_info": "Always 1; the labels name the tablet, its shard, type and Cairn version.",
        "cairn_tablet_mysqld_up": "1 when the tablet's mysqld answers, else 0.",
        "cairn_tablet_job_running": "1 while the tablet runs a job, else 0.",
        "cairn_tablet_jobs_finished_total": "Jobs the tablet ended since it started, by kind and result.",
        "cairn_tablet_last_job_end_timestamp_seconds": "When the tablet's last job ended (Unix time), by kind and result.",
        "cairn_tablet_last_backup_bytes": "Stored bytes of the last backup this tablet completed.",
        "cairn_tablet_last_backup_duration_seconds": "How long the last backup this tablet completed took.",
        "cairn_tablet_heartbeat_failures_total": "Heartbeats to ctld that failed since the tablet started.",
    ]
}

/// A swift-metrics factory over one swift-prometheus registry that gives
/// each metric its help text from ``MetricCatalog``. Each server has its
/// own registry (several run in one test process), so nothing bootstraps
/// the global `MetricsSystem`.
struct CairnMetricsFactory: MetricsFactory {
    let registry: PrometheusCollectorRegistry
    private let plain: PrometheusMetricsFactory

    init(registry: PrometheusCollectorRegistry = PrometheusCollectorRegistry()) {
        self.registry = registry
        plain = PrometheusMetricsFactory(registry: registry)
    }

    /// The whole name in `metricName` (no unit appended), with its help text.
    private func descriptor(_ label: String) -> MetricNameDescriptor {
        MetricNameDescriptor(metricName: label, unitName: "", helpText: MetricCatalog.help[label] ?? label)
    }

    func makeCounter(label: String, dimensions: [(String, String)]) -> any CounterHandler {
        registry.makeCounter(descriptor: descriptor(label), labels: dimensions)
    }

    func makeFloatingPointCounter(label: String, dimensions: [(String, String)]) -> any FloatingPointCounterHandler {
        registry.makeCounter(descriptor: descriptor(label), labels: dimensions)
    }

    func makeRecorder(label: String, dimensions: [(String, String)], aggregate: Bool) -> any RecorderHandler {
        guard !aggregate else { return plain.makeRecorder(label: label, dimensions: dimensions, aggregate: aggregate) }
        return registry.makeGauge(descriptor: descriptor(label), labels: dimensions)
    }

    func makeMeter(label: String, dimensions: [(String, String)]) -> any MeterHandler {
        registry.makeGauge(descriptor: descriptor(label), labels: dimensions)
    }

    func makeTimer(label: String, dimensions: [(String, String)]) -> any TimerHandler {
        plain.makeTimer(label: label, dimensions: dimensions)
    }

    func destroyCounter(_ handler: any CounterHandler) { plain.destroyCounter(handler) }
    func destroyFloatingPointCounter(_ handler: any FloatingPointCounterHandler) { plain.destroyFloatingPointCounter(handler) }
    func destroyRecorder(_ handler: any RecorderHandler) { plain.destroyRecorder(handler) }
    func destroyMeter(_ handler: any MeterHandler) { plain.destroyMeter(handler) }
    func destroyTimer(_ handler: any TimerHandler) { plain.destroyTimer(handler) }

    /// A gauge set to `value`.
    func set(_ label: String, _ dimensions: [(String, String)], _ value: Double) {
        CoreMetrics.Gauge(label: label, dimensions: dimensions, factory: self).record(value)
    }

    func increment(_ label: String, _ dimensions: [(String, String)], by amount: Int64 = 1) {
        CoreMetrics.Counter(label: label, dimensions: dimensions, factory: self).increment(by: amount)
    }

    /// The Prometheus text exposition (version 0.0.4) of everything recorded.
    func exposition() -> Response {
        var buffer: [UInt8] = []
        buffer.reserveCapacity(64 * 1024)
        registry.emit(into: &buffer)
        return Self.response(buffer)
    }

    static func response(_ buffer: [UInt8]) -> Response {
        Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                        body: .init(byteBuffer: ByteBuffer(bytes: buffer)))
    }
}

/// ctld's metrics: counters bumped as jobs end, and per-shard gauges set
/// from the inventory (and the tablets from the store) at each scrape.
final class ControlMetrics: Sendable {
    let factory = CairnMetricsFactory()

    static func shardLabels(_ shard: String) -> [(String, String)] {
        let parts = shard.split(separator: "/", maxSplits: 1).map(String.init)
        return [("keyspace", parts.first ?? shard), ("shard", parts.count > 1 ? parts[1] : "")]
    }

    func jobEnded(_ job: ClusterAPI.Job) {
        guard let result = job.result else { return }
        let labels = Self.shardLabels(job.shardID)
        factory.increment("cairn_jobs_finished_total", labels + [("kind", job.kind.rawValue), ("result", result.rawValue)])
        if result == .failed {
            factory.increment("cairn_job_failures_total", labels + [("kind", job.kind.rawValue)])
        }
    }

    /// Sets every gauge from what ctld knows now, then renders the registry.
    func scrape(shards: [String], inventory: [String: ShardInventory.Entry], tablets: [ClusterAPI.Tablet],
                now: Date, heartbeatTimeout: TimeInterval, maximumAge: TimeInterval) -> Response {
        let f = factory
        f.set("cairn_ctld_info", [("version", CairnVersion.current)], 1)
        f.set("cairn_ctld_shards", [], Double(shards.count))
        for shard in shards {
            let labels = Self.shardLabels(shard)
            let entry = inventory[shard]
            if let listed = entry?.listedAt {
                f.set("cairn_shard_inventory_listed_timestamp_seconds", labels, listed.timeIntervalSince1970)
            }
            f.set("cairn_shard_inventory_listing_failed", labels, entry?.listingError == nil ? 0 : 1)
            // From the archive lease holder's heartbeats, known before any listing.
            if let lag = entry?.archiveLagSeconds {
                f.set("cairn_shard_archive_lag_seconds", labels, lag)
            }
            // Unknown until the first listing: no protection series rather than a false 0.
            guard let protection = entry?.protection else { continue }
            f.set("cairn_shard_protected", labels, protection.isProtected(now: now, maximumAge: maximumAge) ? 1 : 0)
            f.set("cairn_shard_complete_backups", labels, Double(protection.completeBackups))
            if let last = protection.lastBackup {
                f.set("cairn_shard_last_backup_timestamp_seconds", labels, last.finishTime.timeIntervalSince1970)
                f.set("cairn_shard_last_backup_age_seconds", labels, max(0, now.timeIntervalSince(last.finishTime)))
                f.set("cairn_shard_last_backup_duration_seconds", labels, last.duration)
                f.set("cairn_shard_last_backup_bytes", labels, Double(last.storedBytes))
            }
            if let full = protection.lastFullFinish {
                f.set("cairn_shard_last_full_backup_timestamp_seconds", labels, full.timeIntervalSince1970)
            }
            if let window = protection.window {
                f.set("cairn_shard_restorable_window_start_timestamp_seconds", labels, window.start.timeIntervalSince1970)
                f.set("cairn_shard_restorable_window_end_timestamp_seconds", labels, window.end.timeIntervalSince1970)
            }
            if let drill = entry?.lastDrill {
                f.set("cairn_shard_last_drill_timestamp_seconds", labels, drill.finishedAt.timeIntervalSince1970)
                f.set("cairn_shard_last_drill_success", labels, drill.passed ? 1 : 0)
                f.set("cairn_shard_last_drill_restore_seconds", labels, drill.restoreSeconds)
            }
        }
        for tablet in tablets {
            let labels = [("alias", tablet.alias), ("keyspace", tablet.keyspace), ("shard", tablet.shard)]
            let live = tablet.lastHeartbeat.map { now.timeIntervalSince($0) < heartbeatTimeout } ?? false
            f.set("cairn_tablet_healthy", labels, tablet.healthy && live ? 1 : 0)
            if let lag = tablet.replication?.lagSeconds {
                f.set("cairn_tablet_replication_lag_seconds", labels, Double(lag))
            }
        }
        return f.exposition()
    }
}
