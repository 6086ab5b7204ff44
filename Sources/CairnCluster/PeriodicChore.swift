import Logging

/// The loop of a background chore that runs in rounds (compacting etcd,
/// publishing plans, pruning job history, judging heartbeats): one round
/// every `interval` until the task is cancelled. A failing round warns once,
/// not once a round, and the first round that succeeds again says so, so an
/// outage of etcd gives two lines, not one every half second.
struct PeriodicChore: Sendable {
    var interval: Duration
    var logger: Logger
    /// The warning of the first failed round: what failed and what it means.
    var failure: Logger.Message
    /// The notice when rounds succeed again.
    var recovery: Logger.Message

    /// Runs `round`, then sleeps, until cancelled (the sleep throws then).
    func run(_ round: () async throws -> Void) async throws {
        var failing = false
        while !Task.isCancelled {
            do {
                try await round()
                if failing { logger.notice(recovery) }
                failing = false
            } catch {
                // A round cut short by the stop is not a failure.
                if !failing, !Task.isCancelled { logger.warning(failure, metadata: ["error": "\(error)"]) }
                failing = !Task.isCancelled
            }
            try await Task.sleep(for: interval)
        }
    }
}
