import CairnCore
@testable import CairnStorage
import CairnTestSupport
import Crypto
import Foundation
import NIOCore
import Testing

extension SharedSeaweedFS {
    /// A storage on the shared server's bucket, shut down after `body`.
    static func withStorage(prefix: String = "", credentials: S3Credentials = SeaweedFS.credentials, bucket: String = bucket,
                            minimumPartSize: Int64 = S3PartSizing.defaultMinimumPartSize, uploadConcurrency: Int = 4,
                            _ body: (S3Storage) async throws -> Void) async throws {
        let server = try SharedSeaweedFS.server()
        let storage = server.storage(bucket: bucket, prefix: prefix, credentials: credentials,
                                     minimumPartSize: minimumPartSize, uploadConcurrency: uploadConcurrency)
        try await storage.shuttingDown { try await body(storage) }
    }
}

@Suite("S3 storage on SeaweedFS", .seaweedFS)
struct S3StorageTests {
    @Test("conformance", arguments: StorageConformance.caseNames)
    func conformance(_ name: String) async throws {
        try await SharedSeaweedFS.withStorage { storage in
            try await StorageConformance.run(name, on: storage)
        }
    }

    @Test("conformance under a key prefix", arguments: ["streamingRoundTrip", "listByPrefix", "missingIsNotFound"])
    func conformanceWithPrefix(_ name: String) async throws {
        try await SharedSeaweedFS.withStorage(prefix: "root/prefix") { storage in
            try await StorageConformance.run(name, on: storage)
        }
    }

    /// The Cloud Storage flavor differs in its region (`auto`) and its
    /// deletes (one DELETE per key); SeaweedFS checks the signature either way.
    @Test("conformance of the gs:// flavor", arguments: ["streamingRoundTrip", "abortLeavesNothing", "listByPrefix", "missingIsNotFound", "listsThousandsOfObjects"])
    func gcsFlavorConformance(_ name: String) async throws {
        let server = try #require(SharedSeaweedFS.current)
        let storage = server.storage(bucket: SharedSeaweedFS.bucket, prefix: "gcs-flavor", flavor: .gcs, region: S3Settings.gcsRegion)
        try await storage.shuttingDown { try await StorageConformance.run(name, on: storage) }
    }

    @Test("discardUnfinishedUploads aborts abandoned multipart uploads and keeps finished objects")
    func discardUnfinished() async throws {
        try await SharedSeaweedFS.withStorage { storage in
            try await StorageConformance.checkDiscardUnfinished(storage)
        }
    }

    @Test("40 MiB in 5 MiB parts, 4 in flight, is one object with the right size and SHA-256")
    func multipartUpload() async throws {
        try await SharedSeaweedFS.withStorage(minimumPartSize: 5 * 1024 * 1024, uploadConcurrency: 4) { storage in
            let key = "multipart-\(UInt32.random(in: 0...UInt32.max))/forty"
            var generator = SplitMix64(seed: 40)
            var hasher = SHA256()
            let writer = try await storage.makeWriter(key: key)
            let s3Writer = try #require(writer as? S3ObjectWriter)
            var mostInFlight = 0
            for _ in 0..<40 {
                var chunk = ByteBufferAllocator().buffer(capacity: 1 << 20)
                for _ in 0..<(1 << 17) { chunk.writeInteger(generator.next()) }
                chunk.withUnsafeReadableBytes { hasher.update(bufferPointer: $0) }
                try await writer.write(chunk)
                mostInFlight = max(mostInFlight, await s3Writer.partsInFlight)
            }
            // Back-pressure: write() waits rather than holding more parts.
            #expect(mostInFlight <= 4)
            #expect(try await writer.finish() == 40 << 20)
            let expected = hasher.finalize()

            let listed = try await storage.client.listObjects(prefix: key)
            #expect(listed.map(\.key) == [key])
            #expect(listed.first?.size == 40 << 20)
            // A multipart object's ETag ends in the number of its parts.
            #expect(listed.first?.etag?.hasSuffix("-8\"") == true, "ETag \(listed.first?.etag ?? "none") is not that of 8 parts")
            #expect(try await storage.unfinishedUploads(prefix: key).isEmpty)

            var readHasher = SHA256()
            var total = 0
            let reader = try await storage.makeReader(key: key, range: nil)
            while let chunk = try await reader.read() {
                total += chunk.readableBytes
                chunk.withUnsafeReadableBytes { readHasher.update(bufferPointer: $0) }
            }
            await reader.close()
            #expect(total == 40 << 20)
            #expect(readHasher.finalize() == expected)

            // A range across part and download-range boundaries.
            let ranged = try await storage.makeReader(key: key, range: 5_242_000..<17_000_000)
            var rangedBytes = 0
            while let chunk = try await ranged.read() { rangedBytes += chunk.readableBytes }
            await ranged.close()
            #expect(rangedBytes == 17_000_000 - 5_242_000)
            try await storage.delete(keys: [key])
        }
    }

    @Test("a wrong secret key fails at once with a sentence naming the bucket, never the secret")
    func wrongSecret() async throws {
        let wrong = S3Credentials(accessKeyID: SeaweedFS.accessKey, secretAccessKey: "not-the-secret-9d1e")
        try await SharedSeaweedFS.withStorage(credentials: wrong) { storage in
            let error = await #expect(throws: CairnError.self) { _ = try await storage.list(prefix: "") }
            #expect(error?.code == .unauthorized)
            #expect(error?.message.contains(SharedSeaweedFS.bucket) == true)
            #expect(error?.message.contains("SignatureDoesNotMatch") == true)
            #expect(error?.message.contains("not-the-secret-9d1e") == false)

            let writeError = await #expect(throws: CairnError.self) { try await storage.writeAll(key: "x/y", data: Data([1])) }
            #expect(writeError?.code == .unauthorized)
            #expect(writeError?.message.contains("not-the-secret-9d1e") == false)
        }
    }

    @Test("an unknown access key fails with a sentence naming the bucket and the key ID variable")
    func unknownAccessKey() async throws {
        let unknown = S3Credentials(accessKeyID: "AKIAUNKNOWNKEY00", secretAccessKey: "whatever-secret-value")
        try await SharedSeaweedFS.withStorage(credentials: unknown) { storage in
            let error = await #expect(throws: CairnError.self) { _ = try await storage.makeReader(key: "a/b", range: nil) }
            #expect(error?.code == .unauthorized)
            #expect(error?.message.contains(SharedSeaweedFS.bucket) == true)
            #expect(error?.message.contains("AWS_ACCESS_KEY_ID") == true)
            #expect(error?.message.contains("whatever-secret-value") == false)
        }
    }

    @Test("a missing bucket fails with a sentence naming it")
    func missingBucket() async throws {
        try await SharedSeaweedFS.withStorage(bucket: "no-such-bucket-here") { storage in
            let listError = await #expect(throws: CairnError.self) { _ = try await storage.list(prefix: "") }
            #expect(listError?.code == .configuration)
            #expect(listError?.message.contains("no-such-bucket-here") == true)
            #expect(listError?.message.contains("does not exist") == true)

            let readError = await #expect(throws: CairnError.self) { _ = try await storage.makeReader(key: "a/b", range: nil) }
            #expect(readError?.code == .configuration)
            #expect(readError?.message.contains("no-such-bucket-here") == true)
        }
    }

    @Test("keys with spaces and other reserved characters round-trip and list as written")
    func unusualKeys() async throws {
        try await SharedSeaweedFS.withStorage { storage in
            let base = "odd-\(UInt32.random(in: 0...UInt32.max))"
            let keys = ["\(base)/a b/c+d=e&f", "\(base)/ü/ł.bin", "\(base)/x~y_z-(1)"]
            for (i, key) in keys.enumerated() { try await storage.writeAll(key: key, data: Data([UInt8(i), 7])) }
            #expect(try await storage.list(prefix: "\(base)/").map(\.key) == keys.sorted())
            for (i, key) in keys.enumerated() { #expect(try await storage.readAll(key: key) == Data([UInt8(i), 7])) }
            try await storage.delete(keys: keys)
            #expect(try await storage.list(prefix: "\(base)/").isEmpty)
        }
    }
}

@Suite("S3 storage: SeaweedFS stops during a multipart upload")
struct S3FaultTests {
    @Test("the write fails after its retries, nothing is visible, and after a restart the leftover upload is discarded")
    func serverStopsMidUpload() async throws {
        let server = try await SeaweedFS.start()
        // Small retries and a short connect timeout, so the write gives up in
        // seconds once the server is gone.
        let storage = server.storage(bucket: "fault-tests", retry: S3RetryPolicy(maxRetries: 2, baseDelay: .milliseconds(20), maxDelay: .milliseconds(100)),
                                     connectTimeout: .seconds(1))
        do {
            try await server.createBucket("fault-tests")
            try await Self.run(server: server, storage: storage)
        } catch {
            await storage.shutdown()
            await server.remove()
            throw error
        }
        await storage.shutdown()
        await server.remove()
    }

    static func run(server: SeaweedFS, storage: S3Storage) async throws {
        let key = "fault/big"
        var generator = SplitMix64(seed: 99)
        func chunk() -> ByteBuffer {
            var b = ByteBufferAllocator().buffer(capacity: 6 << 20)
            for _ in 0..<((6 << 20) / 8) { b.writeInteger(generator.next()) }
            return b
        }
        let writer = try await storage.makeWriter(key: key)
        try await writer.write(chunk())
        try await writer.write(chunk())
        // The multipart upload exists once the first part was handed over.
        #expect(try await storage.unfinishedUploads(prefix: "fault/").count == 1)

        await server.stop()
        let error = await #expect(throws: CairnError.self) {
            for _ in 0..<6 { try await writer.write(chunk()) }
            try await writer.finish()
        }
        #expect(error?.code == .storage)
        #expect(error?.message.contains("fault-tests") == true)
        await writer.abort()
        try await server.restart()
        #expect(try await storage.list(prefix: "fault/").isEmpty, "a failed upload left an object behind")
        // The writer could not abort its upload while the server was down.
        #expect(try await storage.unfinishedUploads(prefix: "fault/").count == 1)
        #expect(try await storage.discardUnfinishedUploads(prefix: "fault/") == 1)
        #expect(try await storage.unfinishedUploads(prefix: "fault/").isEmpty)
        #expect(try await storage.list(prefix: "fault/").isEmpty)
    }
}

@Suite("S3 storage over HTTPS")
struct S3TLSTests {
    @Test("certificates are verified, and a private CA is trusted only through s3_ca_file")
    func privateCertificateAuthority() async throws {
        let server = try await SeaweedFS.start(tls: true)
        do {
            try await server.createBucket("tls-tests")
            try await Self.run(server)
        } catch {
            await server.remove()
            throw error
        }
        await server.remove()
    }

    static func run(_ server: SeaweedFS) async throws {
        let untrusted = server.storage(bucket: "tls-tests", https: true)
        let error = await #expect(throws: CairnError.self) { _ = try await untrusted.list(prefix: "") }
        await untrusted.shutdown()
        #expect(error?.code == .storage)
        #expect(error?.message.contains("CERTIFICATE_VERIFY_FAILED") == true && error?.message.contains("s3_ca_file") == true)
        // Verification failures are not retried.
        #expect(error?.message.contains("attempts") == false)

        let trusted = server.storage(bucket: "tls-tests", https: true, caFile: server.caFile)
        try await trusted.shuttingDown {
            try await trusted.writeAll(key: "tls/object", data: Data("over https".utf8))
            #expect(try await trusted.readAll(key: "tls/object") == Data("over https".utf8))
            try await trusted.delete(keys: ["tls/object"])
        }

        let notPEM = server.storage(bucket: "tls-tests", https: true, caFile: "\(server.directory)/identities.json")
        let caError = await #expect(throws: CairnError.self) { _ = try await notPEM.list(prefix: "") }
        await notPEM.shutdown()
        #expect(caError?.code == .configuration)
        #expect(caError?.message.contains("identities.json") == true)
    }
}
