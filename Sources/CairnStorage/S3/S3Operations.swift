import CairnCore
import Foundation
import NIOCore
import NIOHTTP1

/// The S3 operations Cairn uses, each one request (or one loop of pages).
extension S3Client {
    /// PutObject, verified by the store through Content-MD5.
    func putObject(objectKey: String, body: ByteBuffer) async throws {
        var request = S3Request("PutObject", .PUT, objectKey: objectKey)
        request.body = body
        request.signPayload = false
        request.contentMD5 = true  // also what AWS requires of an upload with Object Lock retention
        request.headers += settings.objectLockHeaders(at: Date())
        _ = try await send(request)
    }

    func createMultipartUpload(objectKey: String) async throws -> String {
        var request = S3Request("CreateMultipartUpload", .POST, objectKey: objectKey)
        request.query = [("uploads", "")]
        request.headers += settings.objectLockHeaders(at: Date())
        let response = try await send(request)
        return try parse(response, request) { try S3Messages.uploadID($0) }
    }

    /// UploadPart, verified by the store through Content-MD5; returns the part's ETag.
    func uploadPart(objectKey: String, uploadID: String, number: Int, body: ByteBuffer) async throws -> String {
        var request = S3Request("UploadPart", .PUT, objectKey: objectKey)
        request.query = [("partNumber", String(number)), ("uploadId", uploadID)]
        request.body = body
        request.signPayload = false
        request.contentMD5 = true
        let response = try await send(request)
        guard let etag = response.headers.first(name: "etag"), !etag.isEmpty else {
            throw CairnError(.storage, "\(settings.serviceName) accepted part \(number) of \(settings.displayURL)/\(objectKey) without returning its ETag; check that \(settings.endpoint) is an S3-compatible store")
        }
        return etag
    }

    func completeMultipartUpload(objectKey: String, uploadID: String, parts: [(number: Int, etag: String)]) async throws {
        var request = S3Request("CompleteMultipartUpload", .POST, objectKey: objectKey)
        request.query = [("uploadId", uploadID)]
        request.headers = [("content-type", "application/xml")]
        request.body = ByteBuffer(string: S3Messages.completeMultipartUpload(parts: parts))
        request.errorMayComeWithSuccess = true
        _ = try await send(request)
    }

    /// AbortMultipartUpload; an upload that is already gone counts as aborted.
    func abortMultipartUpload(objectKey: String, uploadID: String) async throws {
        var request = S3Request("AbortMultipartUpload", .DELETE, objectKey: objectKey)
        request.query = [("uploadId", uploadID)]
        request.acceptedStatuses = [404]
        _ = try await send(request)
    }

    /// GetObject of `range` (inclusive bounds, as in the Range header), or the whole object.
    /// Answers 200, 206, or 416 when the range starts at or past the end.
    func getObject(objectKey: String, range: ClosedRange<Int64>?, ifMatch etag: String?) async throws -> S3Response {
        var request = S3Request("GetObject", .GET, objectKey: objectKey)
        if let range { request.headers.append(("range", "bytes=\(range.lowerBound)-\(range.upperBound)")) }
        if let etag { request.headers.append(("if-match", etag)) }
        request.acceptedStatuses = [416]
        if let range {
            request.responseLimit = Int(range.upperBound - range.lowerBound + 1)
        } else {
            request.responseLimit = Int(settings.downloadRangeSize)
        }
        return try await send(request)
    }

    /// ListObjectsV2 of everything under `prefix`, following continuation tokens.
    func listObjects(prefix: String) async throws -> [S3Messages.ListedObject] {
        var objects: [S3Messages.ListedObject] = []
        var token: String?
        repeat {
            var request = S3Request("ListObjectsV2", .GET, objectKey: nil)
            request.query = [("list-type", "2"), ("prefix", prefix)]
            if let token { request.query.append(("continuation-token", token)) }
            let response = try await send(request)
            let page = try parse(response, request) { try S3Messages.listPage($0) }
            objects += page.objects
            guard page.isTruncated else { break }
            guard let next = page.nextContinuationToken, next != token else {
                throw CairnError(.storage, "\(settings.serviceName) cut the listing of \(settings.displayURL) short without a continuation token; check that \(settings.endpoint) supports ListObjectsV2")
            }
            token = next
        } while true
        return objects
    }

    /// ListMultipartUploads under `prefix`, following the markers.
    func listMultipartUploads(prefix: String) async throws -> [S3Messages.Upload] {
        var uploads: [S3Messages.Upload] = []
        var keyMarker: String?
        var uploadMarker: String?
        repeat {
            var request = S3Request("ListMultipartUploads", .GET, objectKey: nil)
            request.query = [("uploads", ""), ("prefix", prefix)]
            if let keyMarker { request.query.append(("key-marker", keyMarker)) }
            if let uploadMarker { request.query.append(("upload-id-marker", uploadMarker)) }
            let response = try await send(request)
            let page = try parse(response, request) { try S3Messages.uploadsPage($0) }
            uploads += page.uploads
            guard page.isTruncated, page.nextKeyMarker != nil || page.nextUploadIDMarker != nil,
                  page.nextKeyMarker != keyMarker || page.nextUploadIDMarker != uploadMarker else { break }
            keyMarker = page.nextKeyMarker
            uploadMarker = page.nextUploadIDMarker
        } while true
        return uploads
    }

    /// DeleteObjects of at most 1000 keys; keys that do not exist are not failures.
    func deleteObjects(objectKeys: [String]) async throws {
        precondition(objectKeys.count <= 1000)
        var request = S3Request("DeleteObjects", .POST, objectKey: nil)
        request.query = [("delete", "")]
        request.headers = [("content-type", "application/xml")]
        request.body = ByteBuffer(string: S3Messages.deleteObjects(keys: objectKeys))
        request.contentMD5 = true
        let response = try await send(request)
        let failures = try parse(response, request) { try S3Messages.deleteFailures($0) }
        if let failure = failures.first(where: { $0.code != "NoSuchKey" }) {
            let more = failures.count > 1 ? " and \(failures.count - 1) more" : ""
            throw CairnError(.storage, "\(settings.serviceName) did not delete \(settings.bucket)/\(failure.key)\(more) (\(failure.code)); check the credentials' delete permission and try again")
        }
    }

    /// DeleteObject; a key that does not exist is not a failure.
    func deleteObject(objectKey: String) async throws {
        var request = S3Request("DeleteObject", .DELETE, objectKey: objectKey)
        request.acceptedStatuses = [404]
        let response = try await send(request)
        if response.status == 404, let reply = S3Messages.errorReply(response.body.readableBytesView), reply.code != "NoSuchKey" {
            throw S3Failure.reply(status: 404, reply: reply).error(for: request, settings: settings, credentials: try await connection.open().1, attempts: 1)
        }
    }

    /// CreateBucket; a bucket that already exists and is ours is not a failure.
    /// With `objectLockEnabled`, the bucket gets S3 Object Lock (and versioning).
    func createBucket(objectLockEnabled: Bool = false) async throws {
        var request = S3Request("CreateBucket", .PUT, objectKey: nil)
        if objectLockEnabled { request.headers.append(("x-amz-bucket-object-lock-enabled", "true")) }
        if settings.flavor == .s3, settings.region != "us-east-1" {
            request.body = ByteBuffer(string: "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LocationConstraint>\(XMLDocument.escape(settings.region))</LocationConstraint></CreateBucketConfiguration>")
        }
        request.acceptedStatuses = [409]
        let response = try await send(request)
        if response.status == 409 {
            let reply = S3Messages.errorReply(response.body.readableBytesView)
            guard reply?.code == "BucketAlreadyOwnedByYou" else {
                throw CairnError(.configuration, "bucket \(settings.bucket) already exists and belongs to another account (\(reply?.code ?? "HTTP 409")); choose another bucket name")
            }
        }
    }

    /// Parses a reply body, turning a malformed one into a sentence.
    func parse<T>(_ response: S3Response, _ request: S3Request, _ body: ([UInt8]) throws -> T) throws -> T {
        do {
            return try body(Array(response.body.readableBytesView))
        } catch {
            throw CairnError(.storage, "\(settings.serviceName) answered \(request.operation) in \(settings.displayURL) with a reply Cairn cannot read (\(error)); check that \(settings.endpoint) is an S3-compatible store")
        }
    }
}
