import CairnCore
import Foundation
import Testing

@Suite("Restore planning with archived binary log segments")
struct ArchivePlannerTests {
    func segment(_ b: ChainBuilder, _ sequence: Int, from: UInt64, to: UInt64, first: Double, last: Double) -> ArchiveSegmentManifest {
        b.segment(sequence, from: from, to: to, first: first, last: last)
    }

    /// Full F (seq 100) at 0m, incremental I (200) at 60m; segments 1-4
    /// continue from 200 to 600, minute 60 to 100.
    func history() -> (ChainBuilder, [ArchiveSegmentManifest]) {
        var b = ChainBuilder()
        let f = b.full(at: 0, seq: 100)
        b.incremental(after: f, at: 60, seq: 200)
        let segments = [
            segment(b, 1, from: 180, to: 300, first: 59, last: 70),
            segment(b, 2, from: 300, to: 400, first: 70, last: 80),
            segment(b, 3, from: 400, to: 500, first: 80, last: 90),
            segment(b, 4, from: 500, to: 600, first: 90, last: 100),
        ]
        return (b, segments)
    }

    @Test("latest replays every archived segment after the newest chain, skipping what the chain holds")
    func latest() throws {
        let (b, segments) = history()
        let plan = try RestorePlanner.plan(backups: b.backups, archive: ArchiveTimeline(segments), target: .latest)
        #expect(plan.backups.count == 2)
        #expect(plan.segments.map(\.sequence) == [1, 2, 3, 4])
        #expect(plan.expectedPosition == ChainBuilder.pos(600))
        #expect(plan.stopPosition == nil)
    }

    @Test("two manifests of one sequence (archivers that raced): every reader keeps the same one, whatever the listing order")
    func duplicateSequenceKeepsOne() {
        let (b, segments) = history()
        var rival = segment(b, 2, from: 300, to: 420, first: 70, last: 81)
        rival.file.name = ArchiveSegmentManifest.dataFileName(sequence: 2, suffix: ".zst", writer: "0000ffff")
        let kept = [segments[1], rival].min(by: ArchiveSegmentManifest.precedes)!
        for order in [segments + [rival], [rival] + segments, segments.reversed() + [rival]] {
            let timeline = ArchiveTimeline(order)
            #expect(timeline.segments.map(\.sequence) == [1, 2, 3, 4])
            #expect(timeline.segments[1] == kept)
        }
        #expect(ArchiveSegmentManifest.precedes(segments[1], rival) != ArchiveSegmentManifest.precedes(rival, segments[1]))
    }

    @Test("segments that end before the chain's end are not replayed")
    func skipsCovered() throws {
        var (b, segments) = history()
        let i = b.backups[1]
        b.incremental(after: i, at: 85, seq: 450)
        let plan = try RestorePlanner.plan(backups: b.backups, archive: ArchiveTimeline(segments), target: .latest)
        #expect(plan.incrementals.count == 2)
        #expect(plan.segments.map(\.sequence) == [3, 4])
        segments.removeAll()
        let none = try RestorePlanner.plan(backups: b.backups, archive: ArchiveTimeline(segments), target: .latest)
        #expect(none.segments.isEmpty && none.expectedPosition == ChainBuilder.pos(450))
    }

    @Test("a position in the archived range stops in the segment that holds it")
    func position() throws {
        let (b, segments) = history()
        let plan = try RestorePlanner.plan(backups: b.backups, archive: ArchiveTimeline(segments), target: .position(ChainBuilder.pos(450)))
        #expect(plan.segments.map(\.sequence) == [1, 2, 3])
        #expect(plan.stopPosition == ChainBuilder.pos(450))
        #expect(plan.expectedPosition == ChainBuilder.pos(450))
        // Inside the incremental: no segment needed.
        let early = try RestorePlanner.plan(backups: b.backups, archive: ArchiveTimeline(segments), target: .position(ChainBuilder.pos(150)))
        #expect(early.segments.isEmpty && early.incrementals.count == 1)
        // Past everything archived.
        #expect(throws: CairnError.self) {
            try RestorePlanner.plan(backups: b.backups, archive: ArchiveTimeline(segments), target: .position(ChainBuilder.pos(601)))
        }
    }

    @Test("a time in the archived range replays through the first segment whose last transaction is at or after it")
    func time() throws {
        let (b, segments) = history()
        let plan = try RestorePlanner.plan(backups: b.backups, archive: ArchiveTimeline(segments), target: .time(b.time(85)))
        #expect(plan.segments.map(\.sequence) == [1, 2, 3])
        #expect(plan.stopTime == b.time(85))
        #expect(plan.expectedPosition == nil)
        // After the newest archived transaction: unknown, refused.
        #expect(throws: CairnError.self) {
            try RestorePlanner.plan(backups: b.backups, archive: ArchiveTimeline(segments), target: .time(b.time(101)))
        }
    }

    @Test("a missing segment is a named gap: restores past it are refused, before it still work")
    func missingSegment() throws {
        var (b, segments) = history()
        segments.remove(at: 2)  // segment 3: 400..500
        let timeline = ArchiveTimeline(segments)
        #expect(timeline.gaps.count == 1)
        #expect(timeline.gaps[0].cause == .missingSegments)
        #expect(timeline.gaps[0].after == ChainBuilder.pos(400) && timeline.gaps[0].before == ChainBuilder.pos(500))
        #expect(timeline.gaps[0].description.contains("000000000003"))

        let latest = #expect(throws: CairnError.self) { try RestorePlanner.plan(backups: b.backups, archive: timeline, target: .latest) }
        #expect(latest?.message.contains("gap") == true)
        #expect(latest?.message.contains("--to-position 0-1-400") == true)
        let past = #expect(throws: CairnError.self) {
            try RestorePlanner.plan(backups: b.backups, archive: timeline, target: .position(ChainBuilder.pos(550)))
        }
        #expect(past?.message.contains("000000000003") == true)
        #expect(throws: CairnError.self) { try RestorePlanner.plan(backups: b.backups, archive: timeline, target: .time(b.time(95))) }

        let before = try RestorePlanner.plan(backups: b.backups, archive: timeline, target: .position(ChainBuilder.pos(350)))
        #expect(before.segments.map(\.sequence) == [1, 2])
        let beforeTime = try RestorePlanner.plan(backups: b.backups, archive: timeline, target: .time(b.time(75)))
        #expect(beforeTime.segments.map(\.sequence) == [1, 2])

        // A full backup taken after the gap makes later points restorable again.
        _ = b.full(at: 92, seq: 520)
        let after = try RestorePlanner.plan(backups: b.backups, archive: timeline, target: .latest)
        #expect(after.full.position == ChainBuilder.pos(520))
        #expect(after.segments.map(\.sequence) == [4])
        #expect(after.expectedPosition == ChainBuilder.pos(600))
    }

    @Test("binary logs purged before they were archived are a gap of their own kind")
    func purgedBeforeArchiving() throws {
        var (b, segments) = history()
        // Segment 3 resumed at 470: 400..470 was never received.
        segments[2] = segment(b, 3, from: 470, to: 500, first: 85, last: 90)
        let timeline = ArchiveTimeline(segments)
        #expect(timeline.gaps.map(\.cause) == [.notArchived])
        #expect(throws: CairnError.self) { try RestorePlanner.plan(backups: b.backups, archive: timeline, target: .latest) }
        let window = try #require(RestorePlanner.window(backups: b.backups, archive: timeline))
        #expect(window.toPosition == ChainBuilder.pos(400))
        #expect(window.gaps.count == 1 && window.gaps[0].cause == .notArchived)
        // An incremental that covers the hole bridges it.
        let i = b.backups[1]
        b.incremental(after: i, at: 86, seq: 480)
        let bridged = try RestorePlanner.plan(backups: b.backups, archive: timeline, target: .latest)
        #expect(bridged.segments.map(\.sequence) == [3, 4])
        let window2 = try #require(RestorePlanner.window(backups: b.backups, archive: timeline))
        #expect(window2.gaps.isEmpty)
        #expect(window2.toPosition == ChainBuilder.pos(600))
    }

    @Test("the archive starting after the chain's end is a gap for latest")
    func archiveStartsLate() throws {
        let (b, segments) = history()
        let late = Array(segments.dropFirst(2))  // from 400; the chain ends at 200
        #expect(ArchiveTimeline(late).gaps.isEmpty)
        let error = #expect(throws: CairnError.self) {
            try RestorePlanner.plan(backups: b.backups, archive: ArchiveTimeline(late), target: .latest)
        }
        #expect(error?.message.contains("0-1-200") == true)
        let window = try #require(RestorePlanner.window(backups: b.backups, archive: ArchiveTimeline(late)))
        #expect(window.gaps.count == 1)
    }

    @Test("the restorable window runs from the earliest full backup to the newest archived transaction")
    func window() throws {
        let (b, segments) = history()
        let window = try #require(RestorePlanner.window(backups: b.backups, archive: ArchiveTimeline(segments)))
        #expect(window.fromPosition == ChainBuilder.pos(100))
        #expect(window.fromTime == b.time(1))
        #expect(window.toPosition == ChainBuilder.pos(600))
        #expect(window.toTime == b.time(100))
        #expect(window.segmentsApplied == 4)
        #expect(window.gaps.isEmpty)
        #expect(RestorePlanner.window(backups: [], archive: ArchiveTimeline(segments)) == nil)
    }

    @Test("segment manifest names carry the sequence and the time range, and parse back")
    func names() throws {
        let (b, segments) = history()
        let name = segments[1].manifestName
        #expect(name == "000000000002.20261101T011000Z.20261101T012000Z.json")
        let info = try #require(ArchiveSegmentManifest.parseManifestName(name))
        #expect(info.sequence == 2 && info.firstEventTime == b.time(70) && info.lastEventTime == b.time(80))
        #expect(ArchiveSegmentManifest.parseManifestName("000000000002.binlog.zst") == nil)
        let decoded = try ArchiveSegmentManifest.decode(segments[1].encoded(), name: name)
        #expect(decoded == segments[1])
    }
}
