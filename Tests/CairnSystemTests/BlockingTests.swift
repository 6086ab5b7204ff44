import CairnSystem
import Foundation
import Synchronization
import Testing

/// The two ways blocking work meets cancellation: `run` always runs what
/// was submitted; `runAbandoningOnCancel` stops waiting for it.
@Suite("Blocking work")
struct BlockingTests {
    @Test("a cancelled caller stops waiting for abandonable work, which still finishes on its own")
    func abandonedOnCancel() async throws {
        let started = DispatchSemaphore(value: 0)
        let release = DispatchSemaphore(value: 0)
        let finished = DispatchSemaphore(value: 0)
        let caller = Task {
            try await Blocking.runAbandoningOnCancel {
                started.signal()
                release.wait()
                finished.signal()
                return 1
            }
        }
        // Cancel only once the work runs: work still queued when its caller
        // is cancelled is skipped (as documented), and on a loaded machine
        // the pool may not have picked it up yet.
        #expect(await Blocking.runOnOwnThread(name: "test") { started.wait(timeout: .now() + 60) } == .success)
        caller.cancel()
        // The caller returns while the work is still blocked: nothing has released it yet.
        let result = await caller.result
        #expect(throws: CancellationError.self) { try result.get() }
        release.signal()
        #expect(await Blocking.runOnOwnThread(name: "test") { finished.wait(timeout: .now() + 60) } == .success)
    }

    @Test("work submitted with run runs to its end even when its caller is cancelled")
    func runCompletesWhenCancelled() async throws {
        let ran = Mutex(false)
        let caller = Task {
            try await Blocking.run {
                Thread.sleep(forTimeInterval: 0.2)
                ran.withLock { $0 = true }
                return 7
            }
        }
        caller.cancel()
        #expect(try await caller.value == 7)
        #expect(ran.withLock { $0 })
    }
}
