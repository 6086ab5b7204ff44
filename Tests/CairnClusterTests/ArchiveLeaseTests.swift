@testable import CairnCluster
import Foundation
import Testing

/// Keeps shards' leases as a store would and applies the rule to them.
final class LeaseBox {
    let rule: ArchiveLeaseRule
    var leases: [String: ArchiveLeaseRule.Lease] = [:]
    init(_ rule: ArchiveLeaseRule) { self.rule = rule }
    func beat(shard: String, tablet: String, primary: Bool, healthy: Bool, archiving: Bool, now: Date) -> Bool {
        let outcome = rule.heartbeat(leases[shard], tablet: tablet, primary: primary, healthy: healthy, archiving: archiving, now: now)
        leases[shard] = outcome.lease
        return outcome.heldUntil != nil
    }
    func holder(shard: String, now: Date) -> String? { ArchiveLeaseRule.holder(leases[shard], now: now) }
}

@Suite("Archive leases and the tablet's archive supervision")
struct ArchiveLeaseTests {
    let t0 = Date(timeIntervalSince1970: 1_800_000_000)
    let shard = "commerce/0"

    /// Leases past ctld's first lease period (the grace after a restart).
    func leases() -> LeaseBox { LeaseBox(ArchiveLeaseRule(duration: 10, graceUntil: t0.addingTimeInterval(-50))) }

    @Test("one primary of a shard holds the lease; a second primary gets none while the first renews it")
    func onePrimaryHolds() {
        let l = leases()
        #expect(l.beat(shard: shard, tablet: "zone1-100", primary: true, healthy: true, archiving: false, now: t0))
        #expect(!l.beat(shard: shard, tablet: "zone1-200", primary: true, healthy: true, archiving: false, now: t0.addingTimeInterval(1)))
        #expect(l.beat(shard: shard, tablet: "zone1-100", primary: true, healthy: true, archiving: true, now: t0.addingTimeInterval(8)))
        #expect(!l.beat(shard: shard, tablet: "zone1-200", primary: true, healthy: true, archiving: false, now: t0.addingTimeInterval(15)))
        // Another shard's lease is its own.
        #expect(l.beat(shard: "commerce/-80", tablet: "zone1-300", primary: true, healthy: true, archiving: false, now: t0))
        #expect(l.holder(shard: shard, now: t0.addingTimeInterval(15)) == "zone1-100")
    }

    @Test("replicas and unhealthy tablets get no lease; a holder whose mysqld is down keeps it to store what it received")
    func replicasAndHealth() {
        let l = leases()
        #expect(!l.beat(shard: shard, tablet: "zone1-101", primary: false, healthy: true, archiving: false, now: t0))
        #expect(!l.beat(shard: shard, tablet: "zone1-100", primary: true, healthy: false, archiving: false, now: t0))
        #expect(l.beat(shard: shard, tablet: "zone1-100", primary: true, healthy: true, archiving: false, now: t0))
        #expect(l.beat(shard: shard, tablet: "zone1-100", primary: true, healthy: false, archiving: true, now: t0.addingTimeInterval(2)))
        // Its goodbye (stopping, archiver drained) releases the lease for the next primary at once.
        #expect(!l.beat(shard: shard, tablet: "zone1-100", primary: true, healthy: false, archiving: false, now: t0.addingTimeInterval(3)))
        #expect(l.beat(shard: shard, tablet: "zone1-101", primary: true, healthy: true, archiving: false, now: t0.addingTimeInterval(4)))
    }

    @Test("reparenting: the demoted primary keeps the lease while it drains, then the new primary gets it; a silent holder loses it when it expires")
    func reparenting() {
        let l = leases()
        #expect(l.beat(shard: shard, tablet: "zone1-100", primary: true, healthy: true, archiving: true, now: t0))
        // zone1-100 is demoted; its archiver still stores what it received.
        #expect(!l.beat(shard: shard, tablet: "zone1-100", primary: false, healthy: true, archiving: true, now: t0.addingTimeInterval(1)))
        #expect(!l.beat(shard: shard, tablet: "zone1-101", primary: true, healthy: true, archiving: false, now: t0.addingTimeInterval(2)))
        // Drained: the lease is released at once.
        #expect(!l.beat(shard: shard, tablet: "zone1-100", primary: false, healthy: true, archiving: false, now: t0.addingTimeInterval(3)))
        #expect(l.beat(shard: shard, tablet: "zone1-101", primary: true, healthy: true, archiving: false, now: t0.addingTimeInterval(4)))

        // zone1-101 goes silent: zone1-102 waits for the lease to expire.
        #expect(!l.beat(shard: shard, tablet: "zone1-102", primary: true, healthy: true, archiving: false, now: t0.addingTimeInterval(13)))
        #expect(l.beat(shard: shard, tablet: "zone1-102", primary: true, healthy: true, archiving: false, now: t0.addingTimeInterval(14.5)))
    }

    @Test("a restarted ctld grants in its first lease period only to a primary already archiving")
    func graceAfterRestart() {
        let l = LeaseBox(ArchiveLeaseRule(duration: 10, graceUntil: t0.addingTimeInterval(10)))
        #expect(!l.beat(shard: shard, tablet: "zone1-101", primary: true, healthy: true, archiving: false, now: t0.addingTimeInterval(1)))
        #expect(l.beat(shard: shard, tablet: "zone1-100", primary: true, healthy: true, archiving: true, now: t0.addingTimeInterval(2)))
        let fresh = LeaseBox(ArchiveLeaseRule(duration: 10, graceUntil: t0.addingTimeInterval(10)))
        #expect(fresh.beat(shard: shard, tablet: "zone1-101", primary: true, healthy: true, archiving: false, now: t0.addingTimeInterval(10)))
    }

    @Test("the tablet archives only while configured, primary, holding an unexpired lease and not shutting down")
    func supervisionDecisions() {
        let now = ContinuousClock.now
        var s = ArchiveSupervision()
        #expect(s.decide(configured: true, primary: true, running: false, shuttingDown: false, now: now) == .none)
        s.leaseAnswered(seconds: 10, sentAt: now)
        #expect(s.decide(configured: true, primary: true, running: false, shuttingDown: false, now: now) == .start)
        #expect(s.decide(configured: false, primary: true, running: false, shuttingDown: false, now: now) == .none)
        #expect(s.decide(configured: true, primary: false, running: false, shuttingDown: false, now: now) == .none)
        #expect(s.decide(configured: true, primary: true, running: true, shuttingDown: false, now: now) == .none)
        #expect(s.decide(configured: true, primary: false, running: true, shuttingDown: false, now: now) == .stop)
        #expect(s.decide(configured: true, primary: true, running: true, shuttingDown: true, now: now) == .stop)
        // The lease runs out (ctld out of reach): stop.
        #expect(s.decide(configured: true, primary: true, running: true, shuttingDown: false, now: now.advanced(by: .seconds(10))) == .stop)
        // ctld withholds it: stop at once.
        s.leaseAnswered(seconds: nil, sentAt: now)
        #expect(s.decide(configured: true, primary: true, running: true, shuttingDown: false, now: now) == .stop)
    }

    @Test("an archiver that failed starts again after a backoff that doubles; a clean stop resets it")
    func supervisionBackoff() {
        let now = ContinuousClock.now
        var s = ArchiveSupervision(maximumRetryDelay: .seconds(4))
        s.leaseAnswered(seconds: 3600, sentAt: now)
        s.archiverEnded(failed: true, now: now)
        #expect(s.decide(configured: true, primary: true, running: false, shuttingDown: false, now: now) == .none)
        #expect(s.decide(configured: true, primary: true, running: false, shuttingDown: false, now: now.advanced(by: .seconds(1))) == .start)
        s.archiverEnded(failed: true, now: now)
        #expect(s.decide(configured: true, primary: true, running: false, shuttingDown: false, now: now.advanced(by: .seconds(1))) == .none)
        #expect(s.decide(configured: true, primary: true, running: false, shuttingDown: false, now: now.advanced(by: .seconds(2))) == .start)
        s.archiverEnded(failed: true, now: now)
        s.archiverEnded(failed: true, now: now)
        #expect(s.decide(configured: true, primary: true, running: false, shuttingDown: false, now: now.advanced(by: .seconds(4))) == .start)
        s.archiverEnded(failed: false, now: now)
        #expect(s.decide(configured: true, primary: true, running: false, shuttingDown: false, now: now) == .start)
    }
}
