import CairnCore
import CairnSystem
import Foundation
import NIOCore
import Testing

/// The edges of running a tool as a child process: how it ended, what it
/// said, output larger than a pipe holds, a tool that is missing, and a run
/// that is cancelled. Real processes (`sh`, `head`, `cat`), no stand-ins.
@Suite("Child processes")
struct ChildProcessTests {
    @Test("a tool that exits with a code fails with that code and the last lines it wrote to stderr")
    func exitCode() async throws {
        let error = await #expect(throws: CairnError.self) {
            try await ChildProcess.run("sh", ["-c", "echo first >&2; echo 'the real reason' >&2; exit 3"], doing: "the test step")
        }
        #expect(error?.code == .process)
        #expect(error?.message.hasPrefix("the test step failed: sh ended with exit status 3") == true, "\(error?.message ?? "")")
        #expect(error?.message.contains("the real reason") == true)
    }

    @Test("a tool killed by a signal is described by the signal, not as a success or a code")
    func killedBySignal() async throws {
        let child = try ChildProcess("sh", arguments: ["-c", "kill -TERM $$; sleep 5"])
        let exit = await child.wait()
        #expect(exit == ChildProcess.Exit(code: nil, signal: SIGTERM))
        #expect(!exit.succeeded && exit.description == "signal \(SIGTERM)")
    }

    @Test("a tool that is not installed is named, with the install step")
    func missingTool() throws {
        let error = #expect(throws: CairnError.self) {
            _ = try ChildProcess("cairn-no-such-tool-7d1f", arguments: [])
        }
        #expect(error?.message.contains("cairn-no-such-tool-7d1f is not installed or not on PATH; run scripts/install.sh") == true)
        #expect(throws: CairnError.self) { _ = try ChildProcess("/nonexistent/dir/tool", arguments: []) }
    }

    @Test("output far larger than a pipe holds streams through in bounded reads, byte for byte")
    func largeOutput() async throws {
        let size = 24 * 1024 * 1024
        let child = try ChildProcess("head", arguments: ["-c", "\(size)", "/dev/zero"], stdout: .pipe)
        var total = 0
        var largestRead = 0
        var nonZero = false
        while let buffer = try await child.read(maxBytes: 1 << 20) {
            total += buffer.readableBytes
            largestRead = max(largestRead, buffer.readableBytes)
            if buffer.readableBytesView.contains(where: { $0 != 0 }) { nonZero = true }
        }
        #expect(await child.wait().succeeded)
        #expect(total == size && !nonZero)
        #expect(largestRead <= 1 << 20)
    }

    @Test("what is written to a tool's stdin comes back out, and closing stdin ends it")
    func stdinRoundTrip() async throws {
        let child = try ChildProcess("cat", arguments: [], stdin: .pipe, stdout: .capture(limit: 1 << 20))
        let text = String(repeating: "cairn child process test line\n", count: 2000)
        try await child.write(ByteBuffer(string: text))
        child.closeInput()
        #expect(await child.wait().succeeded)
        #expect(await child.capturedOutput() == text)
    }

    @Test("the captured stderr of a chatty tool keeps only its tail, within the limit")
    func captureLimit() async throws {
        let child = try ChildProcess("sh", arguments: ["-c", "i=0; while [ $i -lt 5000 ]; do echo \"line $i\" >&2; i=$((i+1)); done"],
                                     stderr: .capture(limit: 4096))
        #expect(await child.wait().succeeded)
        let tail = await child.capturedError()
        #expect(tail.utf8.count <= 4096)
        #expect(tail.hasSuffix("line 4999\n"))
        #expect(!tail.contains("line 0\n"))
    }

    @Test("a run that is cancelled kills the tool and ends promptly, not when the tool would have")
    func cancellation() async throws {
        let marker = FileManager.default.temporaryDirectory.appendingPathComponent("cairn-child-\(UUID().uuidString)").path
        let task = Task {
            // Writes its pid, then would sleep for 10 minutes.
            try await ChildProcess.run("sh", ["-c", "echo $$ > \(marker); exec sleep 600"], doing: "the long step")
        }
        // Wait (bounded) until the child is really running.
        var pid: Int32? = nil
        for _ in 0..<200 where pid == nil {
            try await Task.sleep(for: .milliseconds(50))
            pid = (try? String(contentsOfFile: marker, encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
        defer { try? FileManager.default.removeItem(atPath: marker) }
        let child = try #require(pid, "the child never started")
        task.cancel()
        let result = await task.result
        #expect(throws: CairnError.self) { try result.get() }
        // The child is gone (killed and reaped): signal 0 soon finds no such process.
        var gone = false
        for _ in 0..<100 where !gone {
            gone = kill(child, 0) == -1 && errno == ESRCH
            if !gone { try await Task.sleep(for: .milliseconds(50)) }
        }
        #expect(gone, "process \(child) still exists after the run was cancelled")
    }

    @Test("many long-running children waited on at once leave the blocking pool free for short work")
    func longWaitsDoNotHoldThePool() async throws {
        // More children than the pool has threads, each waited on and its stderr
        // drained: servers live this long. Short blocking work must still run.
        let children = try (0..<60).map { _ in
            try ChildProcess("sh", arguments: ["-c", "exec sleep 600"], stderr: .capture(limit: 1024))
        }
        defer { for child in children { child.kill() } }
        try await withThrowingTaskGroup(of: Void.self) { waits in
            for child in children {
                waits.addTask { _ = await child.wait() }
            }
            // A bound far above any machine's delay: before waits had their own
            // threads, this work never ran while the children lived.
            let ranWhileChildrenLived = try await withThrowingTaskGroup(of: Bool.self) { race in
                race.addTask { try await Blocking.run { true } }
                race.addTask { try await Task.sleep(for: .seconds(60)); return false }
                defer { race.cancelAll() }
                return try await race.next() ?? false
            }
            #expect(ranWhileChildrenLived, "short blocking work waited behind the children's waits")
            for child in children { child.kill() }
            try await waits.waitForAll()
        }
        for child in children {
            #expect(child.recordedExit() == ChildProcess.Exit(code: nil, signal: SIGKILL))
        }
    }
}
