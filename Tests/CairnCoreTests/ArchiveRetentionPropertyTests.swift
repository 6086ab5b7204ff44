import CairnCore
import Foundation
import PropertyBased
import Testing

/// Retention with a binary log archive, on random histories: what restored
/// before a prune (latest, and every checked second of the PITR window,
/// through backups and segments) restores after it, from the kept backups
/// and the kept segments.
@Suite("Retention properties with archived segments")
struct ArchiveRetentionPropertyTests {
    /// Indexes of segments lost (gaps); values past the end drop nothing.
    static let drops = Gen.int(in: 0...200).array(of: 0...3)

    /// One segment between each pair of consecutive backup positions, so
    /// the archive covers the whole history, stamped between their starts.
    static func segments(for candidates: [RetentionCandidate], dropping drops: [Int]) -> [ArchiveSegmentManifest] {
        func seq(_ m: BackupManifest) -> UInt64 { m.position.mariadb?.gtids.first?.sequence ?? 0 }
        let manifests = candidates.compactMap(\.manifest).sorted { seq($0) < seq($1) }
        var result: [ArchiveSegmentManifest] = []
        for (i, (a, b)) in zip(manifests, manifests.dropFirst()).enumerated() where !drops.contains(i) {
            guard a.position != b.position, b.position.contains(a.position) else { continue }
            let first = a.startTime.addingTimeInterval(1)
            let last = max(first, b.startTime.addingTimeInterval(-1))
            result.append(ArchiveSegmentManifest(
                keyspace: "commerce", shard: "0", sequence: i + 1, fromPosition: a.position, position: b.position,
                firstEventTime: first, lastEventTime: last, transactionCount: 10, archivedTime: last, sourceServerID: 1,
                sourceHost: "h", archiverServerID: 4_000_000_001, compression: .none,
                file: ManifestFile(name: ArchiveSegmentManifest.dataFileName(sequence: i + 1, suffix: ""), rawSize: 1,
                                   storedSize: 1, sha256: String(repeating: "0", count: 64))))
        }
        return result
    }

    @Test("what restored through backups and segments still restores after a prune")
    func restorableStaysRestorable() async {
        await propertyCheck(count: 250, input: RetentionPropertyTests.steps, RetentionPropertyTests.policies,
                            RetentionPropertyTests.tails, Self.drops) { steps, policy, tail, drops in
            let (candidates, now) = History.build(steps, tail: tail)
            let segments = Self.segments(for: candidates, dropping: drops)
            let archive = ArchiveTimeline(segments)
            let backupPlan = RetentionPlanner.plan(candidates, policy: policy, now: now)
            let plan = ArchiveRetention.plan(backupPlan, backups: candidates.compactMap(\.manifest), archive: archive)

            let keptNames = Set(plan.backups.kept.map(\.name))
            #expect(Set(plan.backups.removalOrder).isDisjoint(with: keptNames))
            #expect(keptNames.isSuperset(of: backupPlan.kept.map(\.name)), "the archive never removes what the backup plan keeps")
            let before = candidates.compactMap(\.manifest)
            let after = before.filter { keptNames.contains($0.backupName) }
            let removed = Set(plan.removableSegments.map(\.sequence))
            let archiveAfter = ArchiveTimeline(segments.filter { !removed.contains($0.sequence) })

            func restores(_ backups: [BackupManifest], _ archive: ArchiveTimeline, _ target: RestoreTarget) -> RestorePlan? {
                try? RestorePlanner.plan(backups: backups, archive: archive, target: target)
            }
            if let latest = restores(before, archive, .latest) {
                #expect(restores(after, archiveAfter, .latest)?.expectedPosition == latest.expectedPosition,
                        "latest no longer reaches \(String(describing: latest.expectedPosition))")
            }
            if let window = policy.pitrWindow {
                let start = now.addingTimeInterval(-window.timeInterval)
                var points: Set<Date> = [start]
                for m in before { for t in [m.startTime, m.finishTime] { for d in [-1.0, 0, 1] { points.insert(t.addingTimeInterval(d)) } } }
                for s in segments { for t in [s.firstEventTime, s.lastEventTime] { for d in [-1.0, 0, 1] { points.insert(t.addingTimeInterval(d)) } } }
                for t in points.sorted() where t >= start && t <= now {
                    if restores(before, archive, .time(t)) != nil {
                        #expect(restores(after, archiveAfter, .time(t)) != nil, "time \(UTCTime.rfc3339(t)) in the window no longer restores")
                    }
                }
            }
            // A removed segment is one every kept full backup already holds.
            for s in plan.removableSegments {
                #expect(after.filter { !$0.incremental }.allSatisfy { $0.position.contains(s.position) })
            }
        }
    }
}
