import Foundation

/// The rule of ctld's archive leases (issue 11 item 2, docs/CLUSTER.md
/// "Binary log archiving"): at most one tablet per shard may archive its
/// binary log at a time. A lease is granted through the heartbeat answer to
/// a healthy primary when the shard's lease is free or has expired; its
/// holder renews it through its heartbeats for as long as it is a primary.
/// A holder that stops being a primary gets no renewal; it keeps the lease
/// (and nobody else gets it) while it reports its archiver still draining,
/// and releases it when it reports the archiver stopped. A holder that goes
/// silent loses the lease when it expires.
///
/// The leases themselves live in ctld's store (``ControlStore``): in memory
/// with SQLite, in etcd when several ctlds share it, so that whichever ctld
/// a tablet's heartbeat reaches sees the same holder. Leases kept in memory
/// are lost when ctld restarts, so for one lease period after it starts such
/// a ctld grants a lease only to a primary that reports its archiver running
/// (the holder from before the restart): `graceUntil`. Pure: time is a parameter.
public struct ArchiveLeaseRule: Sendable {
    public struct Lease: Codable, Sendable, Hashable {
        public var holder: String
        public var expires: Date

        public init(holder: String, expires: Date) {
            self.holder = holder
            self.expires = expires
        }
    }

    /// How long a grant or renewal lasts.
    public let duration: TimeInterval
    /// Before this, leases granted before ctld started may still run; nil
    /// when the store keeps leases across restarts.
    public let graceUntil: Date?

    public init(duration: TimeInterval, graceUntil: Date?) {
        self.duration = duration
        self.graceUntil = graceUntil
    }

    /// One heartbeat's effect on the shard's `lease`: the lease to store and,
    /// when `tablet` holds it, until when. `primary`: the tablet says it is
    /// the shard's primary; `healthy`: its mysqld answers; `archiving`: its
    /// archiver is still running.
    public func heartbeat(_ lease: Lease?, tablet: String, primary: Bool, healthy: Bool,
                          archiving: Bool, now: Date) -> (lease: Lease?, heldUntil: Date?) {
        if let lease, lease.expires > now, lease.holder != tablet {
            return (lease, nil)
        }
        let held = lease.flatMap { $0.holder == tablet && $0.expires > now ? $0 : nil }
        let mayGrant = healthy && ((graceUntil.map { now >= $0 } ?? true) || archiving)
        // A holder renews while its mysqld answers or its archiver still runs
        // (to store what it received); a holder stopping (its goodbye) does not.
        if primary && (held != nil ? (healthy || archiving) : mayGrant) {
            // Whole seconds, which a stored lease's JSON keeps exactly: the holder
            // is told no later an expiry than the store holds.
            let renewed = Lease(holder: tablet, expires: Date(timeIntervalSince1970: (now.timeIntervalSince1970 + duration).rounded(.down)))
            return (renewed, renewed.expires)
        }
        // Not (or no longer) a primary, or stopping: no renewal. A draining holder keeps
        // its lease until it expires, so no other tablet starts meanwhile.
        if held != nil && !archiving { return (nil, nil) }
        return (lease.flatMap { $0.expires > now ? $0 : nil }, nil)
    }

    /// Who holds `lease` at `now`.
    public static func holder(_ lease: Lease?, now: Date) -> String? {
        lease.flatMap { $0.expires > now ? $0.holder : nil }
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
