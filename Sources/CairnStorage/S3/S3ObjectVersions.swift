import CairnCore
import Foundation
import NIOHTTP1

/// One version of an object as HeadObject describes it: its version id
/// and its Object Lock retention, if any.
struct S3ObjectHead: Sendable, Equatable {
    var versionID: String?
    /// `x-amz-object-lock-mode`: `COMPLIANCE` or `GOVERNANCE`.
    var lockMode: String?
    /// `x-amz-object-lock-retain-until-date` as sent, and as a time when it is ISO 8601.
    var retainUntilText: String?
    var retainUntil: Date? { retainUntilText.flatMap(UTCTime.parseRFC3339) }

    init(headers: HTTPHeaders) {
        versionID = headers.first(name: "x-amz-version-id")
        lockMode = headers.first(name: "x-amz-object-lock-mode")
        retainUntilText = headers.first(name: "x-amz-object-lock-retain-until-date")
    }
}

/// Requests on single versions of an object, for checking what Object Lock
/// does in a versioned bucket. Cairn's own deletes never name a version: in
/// a versioned bucket they add a delete marker, and what a lock protects stays.
extension S3Client {
    /// HeadObject of the current version, or of `versionID`.
    func headObject(objectKey: String, versionID: String? = nil) async throws -> S3ObjectHead {
        var request = S3Request("HeadObject", .HEAD, objectKey: objectKey)
        if let versionID { request.query = [("versionId", versionID)] }
        // A HEAD has no body, but its Content-Length is the object's size.
        request.responseLimit = Int(Int32.max)
        return S3ObjectHead(headers: try await send(request).headers)
    }

    /// DeleteObject of one version: what a store with Object Lock refuses while that version is locked.
    func deleteObjectVersion(objectKey: String, versionID: String) async throws {
        var request = S3Request("DeleteObject", .DELETE, objectKey: objectKey)
        request.query = [("versionId", versionID)]
        _ = try await send(request)
    }
}
