import AsyncHTTPClient
import CairnCore
import Crypto
import Foundation
import Logging
import NIOCore
import NIOHTTP1

/// One request to the store, before it is signed.
struct S3Request: Sendable {
    /// The S3 operation's name, for logs and messages: `PutObject`.
    var operation: String
    var method: HTTPMethod
    /// The object key in the bucket; nil for a request on the bucket itself.
    var objectKey: String?
    var query: [(name: String, value: String)] = []
    var headers: [(name: String, value: String)] = []
    var body: ByteBuffer?
    /// Sign the body's SHA-256; otherwise `UNSIGNED-PAYLOAD` (bulk data,
    /// which carries Content-MD5 instead so the store verifies it).
    var signPayload = true
    /// Send the body's MD5 in `Content-MD5` for the store to check.
    var contentMD5 = false
    /// Statuses besides 2xx that the caller handles itself.
    var acceptedStatuses: Set<Int> = []
    /// S3 can answer CompleteMultipartUpload with 200 and an `<Error>` body.
    var errorMayComeWithSuccess = false
    /// The largest reply body accepted.
    var responseLimit = 16 * 1024 * 1024

    init(_ operation: String, _ method: HTTPMethod, objectKey: String?) {
        self.operation = operation
        self.method = method
        self.objectKey = objectKey
    }
}

struct S3Response: Sendable {
    var status: Int
    var headers: HTTPHeaders
    var body: ByteBuffer
}

/// Sends signed requests to an S3-compatible store and retries the ones
/// that failed for a passing reason.
final class S3Client: Sendable {
    let settings: S3Settings
    let logger: Logger
    let connection: S3Connection

    init(settings: S3Settings, logger: Logger) {
        self.settings = settings
        self.logger = logger
        self.connection = S3Connection(settings: settings)
    }

    func shutdown() async {
        await connection.shutdown()
    }

    /// Sends `request`, retrying network errors, 5xx, 429 and throttling with
    /// backoff; any other failure is thrown at once as a ``CairnError``.
    func send(_ request: S3Request) async throws -> S3Response {
        let (http, credentials) = try await connection.open()
        var generator = SystemRandomNumberGenerator()
        var retry = 0
        while true {
            if Task.isCancelled { throw CairnError(.cancelled, "the \(settings.serviceName) request \(request.operation) was cancelled") }
            let failure: S3Failure
            do {
                let response = try await perform(request, http: http, credentials: credentials)
                let reply = S3Messages.errorReply(response.body.readableBytesView)
                if (200..<300).contains(response.status), !(request.errorMayComeWithSuccess && reply != nil) {
                    return response
                }
                if request.acceptedStatuses.contains(response.status) { return response }
                failure = .reply(status: response.status, reply: reply)
            } catch let error as CairnError {
                throw error
            } catch {
                if Task.isCancelled { throw CairnError(.cancelled, "the \(settings.serviceName) request \(request.operation) was cancelled") }
                failure = S3Failure(transportError: error)
            }
            guard failure.isRetryable, retry < settings.retry.maxRetries else {
                throw failure.error(for: request, settings: settings, credentials: credentials, attempts: retry + 1)
            }
            retry += 1
            let delay = settings.retry.delay(forRetry: retry, using: &generator)
            logger.warning("\(settings.serviceName) request failed; retrying", metadata: [
                "operation": "\(request.operation)",
                "bucket": "\(settings.bucket)",
                "key": "\(request.objectKey ?? "")",
                "retry": "\(retry) of \(settings.retry.maxRetries)",
                "reason": "\(credentials.redact(failure.reason))",
                "delay_ms": "\(delay.components.seconds * 1000 + delay.components.attoseconds / 1_000_000_000_000_000)",
            ])
            do {
                try await Task.sleep(for: delay)
            } catch {
                throw CairnError(.cancelled, "the \(settings.serviceName) request \(request.operation) was cancelled")
            }
        }
    }

    /// One attempt: sign with the current time and send.
    private func perform(_ request: S3Request, http: HTTPClient, credentials: S3Credentials) async throws -> S3Response {
        let (host, path) = settings.address(objectKey: request.objectKey)
        let hostHeader = settings.endpoint.hostHeader(host)
        let body = request.body
        let payloadHash = request.signPayload
            ? SigV4Signer.hexSHA256(body.map { Array($0.readableBytesView) } ?? [])
            : SigV4Signer.unsignedPayload
        var headers = request.headers
        headers.append(("host", hostHeader))
        headers.append(("x-amz-content-sha256", payloadHash))
        if request.contentMD5 {
            let digest = body.map { b in b.withUnsafeReadableBytes { Insecure.MD5.hash(data: $0) } } ?? Insecure.MD5.hash(data: [UInt8]())
            headers.append(("content-md5", Data(digest).base64EncodedString()))
        }
        settings.requestObserver?(request.operation, headers)
        let signer = SigV4Signer(credentials: credentials, region: settings.region, service: "s3")
        let signature = signer.sign(.init(method: request.method.rawValue, path: path, query: request.query,
                                          headers: headers, payloadHash: payloadHash), at: Date())

        let query = AWSURIEncoding.canonicalQuery(request.query)
        let port = settings.endpoint.isDefaultPort ? "" : ":\(settings.endpoint.port!)"
        var http1 = HTTPClientRequest(url: "\(settings.endpoint.scheme)://\(host)\(port)\(path)\(query.isEmpty ? "" : "?" + query)")
        http1.method = request.method
        for (name, value) in headers + signature.headers { http1.headers.add(name: name, value: value) }
        if let body {
            http1.body = .bytes(body)
        } else if [.PUT, .POST].contains(request.method) {
            http1.body = .bytes(ByteBuffer())
        }
        let response = try await http.execute(http1, timeout: .hours(6), logger: nil)
        // Collected into one buffer sized from Content-Length up front: growing
        // it by doubling would briefly hold one and a half copies of every range.
        let tooLarge = CairnError(.storage, "\(settings.serviceName) answered \(request.operation) in \(settings.displayURL) with more than \(request.responseLimit) bytes; check that \(settings.endpoint) is an S3-compatible store")
        let announced = response.headers.first(name: "content-length").flatMap { Int($0) }
        if let announced, announced > request.responseLimit { throw tooLarge }
        var received = ByteBufferAllocator().buffer(capacity: announced ?? 0)
        for try await var fragment in response.body {
            guard received.readableBytes + fragment.readableBytes <= request.responseLimit else { throw tooLarge }
            received.writeBuffer(&fragment)
        }
        return S3Response(status: Int(response.status.code), headers: response.headers, body: received)
    }
}
