import Testing

/// A real SeaweedFS for the tests that need S3, as a Swift Testing trait:
/// on a suite (`@Suite(.seaweedFS)`) one server for the whole suite; on a
/// test (`@Test(.seaweedFS)`) a server of its own for each test case, so a
/// test may stop, kill or restart it. The server's bucket
/// ``SharedSeaweedFS/bucket`` exists; the server is removed afterwards
/// however the test ends. Tests reach it through ``SharedSeaweedFS/server()``.
public struct SharedSeaweedFS: SuiteTrait, TestTrait, TestScoping {
    @TaskLocal public static var current: SeaweedFS?
    public static let bucket = "cairn-tests"

    public var isRecursive: Bool { false }

    public func provideScope(for test: Test, testCase: Test.Case?, performing function: @Sendable () async throws -> Void) async throws {
        let server = try await SeaweedFS.start()
        do {
            try await server.createBucket(SharedSeaweedFS.bucket)
            try await SharedSeaweedFS.$current.withValue(server) { try await function() }
        } catch {
            await server.remove()
            throw error
        }
        await server.remove()
    }

    /// The server of the suite or test.
    public static func server(sourceLocation: SourceLocation = #_sourceLocation) throws -> SeaweedFS {
        try #require(current, "this test has no SeaweedFS; add the .seaweedFS trait to it or its suite", sourceLocation: sourceLocation)
    }
}

extension Trait where Self == SharedSeaweedFS {
    /// A real SeaweedFS for this suite or test (``SharedSeaweedFS``).
    public static var seaweedFS: Self { SharedSeaweedFS() }
}
