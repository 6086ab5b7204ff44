import Foundation

/// ctld's archive leases (issue 11 item 2, docs/CLUSTER.md "Binary log
/// archiving"): at most one tablet per shard may archive its binary log at
/// a time. A lease is granted through the heartbeat answer to a healthy
/// primary when the shard's lease is free or has expired; its holder renews
/// it with every heartbeat for as long as it is a primary. A holder that
/// stops being a primary gets no renewal; it keeps the lease (and nobody else
/// gets it) while it reports its archiver still draining, and releases it
/// when it reports the archiver stopped. A holder that goes silent loses the
/// lease when it expires. ctld keeps leases in memory, so for one lease
/// period after it starts it grants a lease only to a primary that reports
/// its archiver running (the holder from before the restart). Pure: time is
/// a parameter.
public struct ArchiveLeases: Sendable {
    public struct Lease: Sendable, Hashable {
        public var holder: String
        public var expires: Date
    }

    /// By shard (`keyspace/shard`).
    public private(set) var leases: [String: Lease] = [:]
    /// How long a grant or renewal lasts.
    public let duration: TimeInterval

    /// Before this, leases granted before ctld started may still run.
    public let graceUntil: Date

    public init(duration: TimeInterval, startedAt: Date) {
        self.duration = duration
        self.graceUntil = startedAt.addingTimeInterval(duration)
    }

    /// One heartbeat's answer: true when `tablet` holds the shard's lease
    /// (newly granted or renewed until `now + duration`) and may archive.
    /// `primary`: the tablet says it is the shard's primary; `healthy`: its
    /// mysqld answers; `archiving`: its archiver is still running.
    public mutating func heartbeat(shard: String, tablet: String, primary: Bool, healthy: Bool,
                                   archiving: Bool, now: Date) -> Bool {
        if let lease = leases[shard], lease.expires > now, lease.holder != tablet {
            return false
        }
        let holds = leases[shard].map { $0.holder == tablet && $0.expires > now } ?? false
        let mayGrant = healthy && (now >= graceUntil || archiving)
        // A holder renews while its mysqld answers or its archiver still runs
        // (to store what it received); a holder stopping (its goodbye) does not.
        if primary && (holds ? (healthy || archiving) : mayGrant) {
            leases[shard] = Lease(holder: tablet, expires: now.addingTimeInterval(duration))
            return true
        }
        // Not (or no longer) a primary, or stopping: no renewal. A draining holder keeps
        // its lease until it expires, so no other tablet starts meanwhile.
        if holds && !archiving { leases[shard] = nil }
        return false
    }

    /// Who holds the shard's lease at `now`.
    public func holder(shard: String, now: Date) -> String? {
        leases[shard].flatMap { $0.expires > now ? $0.holder : nil }
    }
}

/// The tablet's side of archiving: whether its archiver should run, from the
/// configuration, its type, its lease and the archiver's last end. Pure.
public struct ArchiveSupervision: Sendable {
    public enum Action: Sendable, Hashable {
        case none
        case start
        case stop
    }

    /// Until when the tablet may archive: the lease as ctld granted it,
    /// counted from when the heartbeat that renewed it was sent (so it ends no
    /// later than ctld's own record of it).
    public private(set) var leaseUntil: ContinuousClock.Instant?
    /// An archiver that ended on its own is started again no sooner than this.
    public private(set) var retryAt: ContinuousClock.Instant?
    var retryDelay: Duration = .seconds(1)
    public let maximumRetryDelay: Duration

    public init(maximumRetryDelay: Duration = .seconds(30)) {
        self.maximumRetryDelay = maximumRetryDelay
    }

    /// ctld answered a heartbeat sent at `sentAt`: with a lease of `seconds`, or none.
    public mutating func leaseAnswered(seconds: Double?, sentAt: ContinuousClock.Instant) {
        if let seconds, seconds > 0 {
            leaseUntil = sentAt.advanced(by: .milliseconds(Int64(seconds * 1000)))
        } else {
            leaseUntil = nil
        }
    }

    public func holdsLease(now: ContinuousClock.Instant) -> Bool {
        leaseUntil.map { now < $0 } ?? false
    }

    /// What to do now.
    public func decide(configured: Bool, primary: Bool, running: Bool, shuttingDown: Bool,
                       now: ContinuousClock.Instant) -> Action {
        let wanted = configured && primary && !shuttingDown && holdsLease(now: now)
        if running { return wanted ? .none : .stop }
        guard wanted else { return .none }
        if let retryAt, now < retryAt { return .none }
        return .start
    }

    /// The archiver ended: after a failure the next start backs off (1 s
    /// doubling to the maximum); a clean end (asked to stop) resets it.
    public mutating func archiverEnded(failed: Bool, now: ContinuousClock.Instant) {
        if failed {
            retryAt = now.advanced(by: retryDelay)
            retryDelay = min(retryDelay * 2, maximumRetryDelay)
        } else {
            retryAt = nil
            retryDelay = .seconds(1)
        }
    }
}
