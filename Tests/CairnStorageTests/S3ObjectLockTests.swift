import CairnCore
@testable import CairnStorage
import CairnTestSupport
import Foundation
import Logging
import NIOCore
import Synchronization
import Testing

/// What goes on the wire: each request's operation and headers, as ``S3Settings/requestObserver`` sees them.
final class RequestLog: Sendable {
    struct Entry: Sendable {
        var operation: String
        var headers: [(name: String, value: String)]

        func header(_ name: String) -> String? { headers.first { $0.name.lowercased() == name }?.value }
    }

    private let entries = Mutex<[Entry]>([])

    var observer: @Sendable (String, [(name: String, value: String)]) -> Void {
        { operation, headers in self.entries.withLock { $0.append(Entry(operation: operation, headers: headers)) } }
    }

    func requests(_ operation: String) -> [Entry] { entries.withLock { $0.filter { $0.operation == operation } } }
}

@Suite("S3 Object Lock settings and requests")
struct S3ObjectLockRequestTests {
    @Test("object_lock reaches the S3 settings; file and Cloud Storage refuse it, naming what to do")
    func settings() throws {
        var config = CairnConfiguration()
        config.objectLock = ObjectLockConfig(mode: .compliance, days: 7)
        let s = try S3Settings.resolve(location: .s3(bucket: "bkt", prefix: ""), configuration: config, environment: [:])
        #expect(s.objectLock == config.objectLock)
        let opened = try StorageFactory.make(url: "s3://bkt", configuration: config, environment: [:], logger: Logger(label: "test"))
        #expect(opened.objectLock == config.objectLock)
        #expect(try StorageFactory.make(url: "s3://bkt", configuration: CairnConfiguration(), environment: [:], logger: Logger(label: "test")).objectLock == nil)

        let file = #expect(throws: CairnError.self) {
            try StorageFactory.make(url: "file:///var/backups/cairn", configuration: config, environment: [:], logger: Logger(label: "test"))
        }
        #expect(file?.code == .configuration)
        #expect(file?.message == "object_lock is set, but file:///var/backups/cairn is file storage, which cannot lock files against deletion; remove object_lock, or store backups in an s3:// bucket created with Object Lock enabled")
        let gcs = #expect(throws: CairnError.self) {
            try StorageFactory.make(url: "gs://bkt", configuration: config, environment: [:], logger: Logger(label: "test"))
        }
        #expect(gcs?.code == .configuration && gcs?.message.contains("remove object_lock") == true)
        // Without object_lock, file storage opens as before.
        #expect(try StorageFactory.make(url: "file:///var/backups/cairn", configuration: CairnConfiguration(), environment: [:],
                                        logger: Logger(label: "test")).objectLock == nil)
    }

    /// A client on a loopback port nothing listens on: each request is built,
    /// observed and refused at connect, without a server.
    func unreachableClient(objectLock: ObjectLockConfig?, log: RequestLog) throws -> S3Client {
        let port = try FreePorts.take(1)[0]
        var settings = S3Settings(flavor: .s3, bucket: "bkt", prefix: "", endpoint: .init(scheme: "http", host: "127.0.0.1", port: port),
                                  region: "us-east-1", pathStyle: true, credentials: S3CredentialSource(fixed: SeaweedFS.credentials),
                                  retry: S3RetryPolicy(maxRetries: 0))
        settings.objectLock = objectLock
        settings.requestObserver = log.observer
        settings.connectTimeout = .seconds(1)
        return S3Client(settings: settings, logger: Logger(label: "test"))
    }

    @Test("with object_lock, PutObject carries the mode, the retain-until date and Content-MD5, and CreateMultipartUpload the mode and date")
    func uploadHeaders() async throws {
        let log = RequestLog()
        let lock = ObjectLockConfig(mode: .governance, days: 7)
        let client = try unreachableClient(objectLock: lock, log: log)
        let before = Date()
        await #expect(throws: CairnError.self) { try await client.putObject(objectKey: "ks/0/b/MANIFEST", body: ByteBuffer(string: "hello")) }
        await #expect(throws: CairnError.self) { _ = try await client.createMultipartUpload(objectKey: "ks/0/b/data.zst") }
        let after = Date()
        await client.shutdown()

        let put = try #require(log.requests("PutObject").first)
        #expect(put.header("x-amz-object-lock-mode") == "GOVERNANCE")
        #expect(put.header("content-md5") == "XUFAKrxLKna5cZ2REBfFkg==")  // base64 of MD5("hello")
        let until = try #require(put.header("x-amz-object-lock-retain-until-date").flatMap(UTCTime.parseRFC3339))
        #expect(until >= before.addingTimeInterval(7 * 86_400) && until <= after.addingTimeInterval(7 * 86_400 + 1))
        #expect(put.header("x-amz-object-lock-retain-until-date")?.hasSuffix("Z") == true)

        let create = try #require(log.requests("CreateMultipartUpload").first)
        #expect(create.header("x-amz-object-lock-mode") == "GOVERNANCE")
        #expect(create.header("x-amz-object-lock-retain-until-date").flatMap(UTCTime.parseRFC3339).map { $0 >= before.addingTimeInterval(7 * 86_400) } == true)
    }

    @Test("without object_lock, uploads carry no lock headers")
    func noLockHeaders() async throws {
        let log = RequestLog()
        let client = try unreachableClient(objectLock: nil, log: log)
        await #expect(throws: CairnError.self) { try await client.putObject(objectKey: "k", body: ByteBuffer(string: "x")) }
        await #expect(throws: CairnError.self) { _ = try await client.createMultipartUpload(objectKey: "k2") }
        await client.shutdown()
        for entry in log.requests("PutObject") + log.requests("CreateMultipartUpload") {
            #expect(!entry.headers.contains { $0.name.lowercased().hasPrefix("x-amz-object-lock") }, "\(entry.operation) carries \(entry.headers)")
        }
        #expect(log.requests("PutObject").first?.header("content-md5") != nil)
    }
}

/// SeaweedFS 4.x with a bucket created with Object Lock enabled: what the
/// store does with Cairn's uploads when `object_lock` is set.
@Suite("S3 Object Lock on SeaweedFS", .seaweedFS)
struct S3ObjectLockStoreTests {
    static let mib = 1024 * 1024

    @Test("uploads with object_lock are locked: HeadObject reports the mode and date sent, every part carried Content-MD5, and deleting a locked version is refused",
          arguments: ObjectLockConfig.Mode.allCases)
    func lockedUploads(mode: ObjectLockConfig.Mode) async throws {
        let server = try SharedSeaweedFS.server()
        let bucket = "cairn-lock-\(mode.rawValue)"
        try await server.createBucket(bucket, objectLock: true)
        let log = RequestLog()
        let lock = ObjectLockConfig(mode: mode, days: 1)
        let storage = server.storage(bucket: bucket, minimumPartSize: 5 * Int64(Self.mib), uploadConcurrency: 2,
                                     objectLock: lock, requestObserver: log.observer)
        try await storage.shuttingDown {
            let small = "commerce/0/b1/MANIFEST"
            let large = "commerce/0/b1/data.zst"
            let smallBytes = Data("{\"backup_name\": \"b1\"}\n".utf8)
            try await storage.writeAll(key: small, data: smallBytes)
            // 11 MiB: a multipart upload of three parts (5, 5 and 1 MiB).
            var largeBytes = [UInt8](repeating: 0, count: 11 * Self.mib)
            for i in stride(from: 0, to: largeBytes.count, by: 4096) { largeBytes[i] = UInt8(truncatingIfNeeded: i / 4096) }
            let writer = try await storage.makeWriter(key: large)
            for start in stride(from: 0, to: largeBytes.count, by: Self.mib) {
                try await writer.write(ByteBuffer(bytes: largeBytes[start..<min(start + Self.mib, largeBytes.count)]))
            }
            try await writer.finish()

            // On the wire: the lock on PutObject and CreateMultipartUpload, Content-MD5 on PutObject and every part.
            let put = try #require(log.requests("PutObject").first)
            let create = try #require(log.requests("CreateMultipartUpload").first)
            let parts = log.requests("UploadPart")
            #expect(parts.count == 3)
            for entry in [put] + parts { #expect(entry.header("content-md5") != nil, "\(entry.operation) has no Content-MD5") }
            for entry in [put, create] { #expect(entry.header("x-amz-object-lock-mode") == mode.headerValue) }

            // On the store: each object's current version reports the lock as sent.
            for (key, sent) in [(small, put), (large, create)] {
                let head = try await storage.client.headObject(objectKey: key)
                #expect(head.lockMode == mode.headerValue, "\(key): \(head)")
                let sentUntil = try #require(sent.header("x-amz-object-lock-retain-until-date").flatMap(UTCTime.parseRFC3339))
                let until = try #require(head.retainUntil, "\(key) reports no retain-until date ISO 8601 can read: \(head.retainUntilText ?? "none")")
                #expect(abs(until.timeIntervalSince(sentUntil)) < 1, "\(key): sent \(sentUntil), stored \(until)")
                let version = try #require(head.versionID, "\(key) has no version id: is the bucket versioned?")

                // Deleting the locked version is refused, and the object still reads whole.
                let refused = await #expect(throws: CairnError.self) {
                    try await storage.client.deleteObjectVersion(objectKey: key, versionID: version)
                }
                #expect(refused?.code == .unauthorized, "\(refused?.message ?? "")")
                let stored = try await storage.readAll(key: key)
                #expect(stored == (key == small ? smallBytes : Data(largeBytes)))

                // A delete without a version only hides it behind a delete marker: the locked version stays.
                try await storage.delete(keys: [key])
                #expect(try await storage.exists(key: key) == false)
                let kept = try await storage.client.headObject(objectKey: key, versionID: version)
                #expect(kept.lockMode == mode.headerValue)
            }
        }
    }
}
