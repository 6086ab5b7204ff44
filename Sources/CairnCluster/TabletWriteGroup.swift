import Synchronization

/// Group commit for changes to tablets: a caller whose change arrives while
/// no group is being written writes a group (its own change and any that
/// join before the transaction starts); a caller whose change arrives during
/// a write waits. When a write ends and changes are waiting, the first of
/// their callers is woken to write the next group. Each change is applied in
/// the order it arrived and gets its own result; a failed transaction fails
/// every change of its group. No task is spawned: the writer is always one
/// of the callers.
///
/// Both stores use it: `CtldStore` writes a group in one SQLite transaction,
/// `EtcdControlStore` a group of heartbeats in one read and one
/// compare-and-swap transaction per ``EtcdControlStore/heartbeatBatch`` tablets.
final class TabletWriteGroup<Output: Sendable>: Sendable {
    typealias Change = @Sendable (inout ClusterAPI.Tablet) -> Void

    struct Pending: Sendable {
        var alias: String
        var change: Change
        var slot: Slot
    }

    /// Where one caller's outcome is handed over, whichever comes first: the outcome or the wait for it.
    final class Slot: Sendable {
        enum Outcome: Sendable {
            case done(Result<Output, any Error>)
            /// The write ahead ended with changes waiting: this caller writes the next group.
            case write
        }

        private let state = Mutex<(outcome: Outcome?, waiter: CheckedContinuation<Outcome, Never>?)>((nil, nil))

        func settle(_ outcome: Outcome) {
            let waiter = state.withLock { state -> CheckedContinuation<Outcome, Never>? in
                if let waiter = state.waiter {
                    state.waiter = nil
                    return waiter
                }
                state.outcome = outcome
                return nil
            }
            waiter?.resume(returning: outcome)
        }

        func outcome() async -> Outcome {
            await withCheckedContinuation { continuation in
                let ready = state.withLock { state -> Outcome? in
                    if let outcome = state.outcome {
                        state.outcome = nil
                        return outcome
                    }
                    state.waiter = continuation
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        }
    }

    private let queue = Mutex<(pending: [Pending], writing: Bool)>(([], false))

    /// Applies `change` to tablet `alias` through `write`, which applies a
    /// group of changes in one transaction and returns each one's result in order.
    func update(_ alias: String, _ change: @escaping Change,
                write: @escaping @Sendable ([Pending]) async throws -> [Result<Output, any Error>]) async throws -> Output {
        let slot = Slot()
        let writes = queue.withLock { queue -> Bool in
            queue.pending.append(Pending(alias: alias, change: change, slot: slot))
            if queue.writing { return false }
            queue.writing = true
            return true
        }
        if writes { await writeGroup(write) }
        while true {
            switch await slot.outcome() {
            case .done(let result):
                return try result.get()
            case .write:
                await writeGroup(write)
            }
        }
    }

    /// Writes what is waiting as one group, settles each of its changes, then
    /// hands the writing on to the first caller still waiting, if any.
    private func writeGroup(_ write: @Sendable ([Pending]) async throws -> [Result<Output, any Error>]) async {
        let group = queue.withLock { queue -> [Pending] in
            let group = queue.pending
            queue.pending = []
            return group
        }
        let results: [Result<Output, any Error>]
        do {
            results = try await write(group)
        } catch {
            results = group.map { _ in .failure(error) }
        }
        let next = queue.withLock { queue -> Pending? in
            guard let first = queue.pending.first else {
                queue.writing = false
                return nil
            }
            return first
        }
        for (item, result) in zip(group, results) { item.slot.settle(.done(result)) }
        next?.slot.settle(.write)
    }
}
