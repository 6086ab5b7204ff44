@testable import CairnCluster
import Logging
import Synchronization
import Testing

/// Keeps what was logged, for tests that check what an operator reads.
final class RecordingLogHandler: LogHandler, Sendable {
    struct Entry: Sendable, Equatable {
        var level: Logger.Level
        var message: String
    }

    private let entries = Mutex<[Entry]>([])
    var logged: [Entry] { entries.withLock { $0 } }

    var logLevel: Logger.Level {
        get { .trace }
        set {}
    }

    var metadata: Logger.Metadata {
        get { [:] }
        set {}
    }

    subscript(metadataKey _: String) -> Logger.Metadata.Value? {
        get { nil }
        set {}
    }

    func log(event: LogEvent) {
        entries.withLock { $0.append(Entry(level: event.level, message: event.message.description)) }
    }
}

@Suite("periodic chores")
struct PeriodicChoreTests {
    struct RoundFailed: Error {}

    @Test("a failing chore warns once per outage and says when it works again; a stop is not a failure")
    func warnsOncePerOutage() async throws {
        let handler = RecordingLogHandler()
        let chore = PeriodicChore(interval: .milliseconds(1), logger: Logger(label: "test") { _ in handler },
                                  failure: "the chore failed", recovery: "the chore works again")
        // Rounds 1-3 fail, 4-5 succeed, 6-7 fail, 8 succeeds, 9 is cut short by the stop.
        let outcomes = [false, false, false, true, true, false, false, true]
        let rounds = Mutex(0)
        let task = Task {
            try await chore.run {
                let round = rounds.withLock { $0 += 1; return $0 }
                guard round <= outcomes.count else {
                    withUnsafeCurrentTask { $0?.cancel() }
                    throw CancellationError()
                }
                if !outcomes[round - 1] { throw RoundFailed() }
            }
        }
        await #expect(throws: CancellationError.self) { try await task.value }
        #expect(rounds.withLock { $0 } == outcomes.count + 1)
        #expect(handler.logged == [
            .init(level: .warning, message: "the chore failed"),
            .init(level: .notice, message: "the chore works again"),
            .init(level: .warning, message: "the chore failed"),
            .init(level: .notice, message: "the chore works again"),
        ])
    }
}
