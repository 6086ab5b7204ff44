import Foundation

/// The XML documents exchanged with an S3-compatible store: the replies
/// Cairn reads and the request bodies it writes.
enum S3Messages {
    /// One object of a ListObjectsV2 page.
    struct ListedObject: Sendable, Equatable {
        var key: String
        var size: Int64
        var lastModified: Date?
        var etag: String?
    }

    /// A ListObjectsV2 reply (`ListBucketResult`).
    struct ListPage: Sendable, Equatable {
        var objects: [ListedObject]
        var isTruncated: Bool
        var nextContinuationToken: String?
    }

    /// An unfinished multipart upload.
    struct Upload: Sendable, Equatable {
        var key: String
        var uploadID: String
    }

    /// A ListMultipartUploads reply (`ListMultipartUploadsResult`).
    struct UploadsPage: Sendable, Equatable {
        var uploads: [Upload]
        var isTruncated: Bool
        var nextKeyMarker: String?
        var nextUploadIDMarker: String?
    }

    /// An `<Error>` reply.
    struct ErrorReply: Sendable, Equatable {
        var code: String
        var message: String?
        /// The bucket's region, when the store says the request went to the wrong one.
        var region: String?
    }

    /// A key that a DeleteObjects request could not delete.
    struct DeleteFailure: Sendable, Equatable {
        var key: String
        var code: String
        var message: String?
    }

    static func root(_ body: some Collection<UInt8>, expecting name: String) throws -> XMLNode {
        let root = try XMLDocument.parse(body)
        guard root.name == name else {
            throw XMLParseError(description: "expected <\(name)>, got <\(root.name)>")
        }
        return root
    }

    static func listPage(_ body: some Collection<UInt8>) throws -> ListPage {
        let root = try root(body, expecting: "ListBucketResult")
        let objects = try root.children(named: "Contents").map { c -> ListedObject in
            guard let key = c.string("Key"), let sizeText = c.string("Size"), let size = Int64(sizeText) else {
                throw XMLParseError(description: "a <Contents> entry without a key or size")
            }
            return ListedObject(key: key, size: size, lastModified: c.string("LastModified").flatMap(parseTimestamp), etag: c.string("ETag"))
        }
        let token = root.string("NextContinuationToken").flatMap { $0.isEmpty ? nil : $0 }
        return ListPage(objects: objects, isTruncated: root.string("IsTruncated") == "true", nextContinuationToken: token)
    }

    static func uploadID(_ body: some Collection<UInt8>) throws -> String {
        let root = try root(body, expecting: "InitiateMultipartUploadResult")
        guard let id = root.string("UploadId"), !id.isEmpty else {
            throw XMLParseError(description: "<InitiateMultipartUploadResult> without an <UploadId>")
        }
        return id
    }

    static func uploadsPage(_ body: some Collection<UInt8>) throws -> UploadsPage {
        let root = try root(body, expecting: "ListMultipartUploadsResult")
        let uploads = try root.children(named: "Upload").map { u -> Upload in
            guard let key = u.string("Key"), let id = u.string("UploadId") else {
                throw XMLParseError(description: "an <Upload> entry without a key or upload ID")
            }
            return Upload(key: key, uploadID: id)
        }
        return UploadsPage(uploads: uploads, isTruncated: root.string("IsTruncated") == "true",
                           nextKeyMarker: root.string("NextKeyMarker").flatMap { $0.isEmpty ? nil : $0 },
                           nextUploadIDMarker: root.string("NextUploadIdMarker").flatMap { $0.isEmpty ? nil : $0 })
    }

    /// Reads an `<Error>` document; nil when the body is not one.
    static func errorReply(_ body: some Collection<UInt8>) -> ErrorReply? {
        guard let root = try? XMLDocument.parse(body), root.name == "Error", let code = root.string("Code") else { return nil }
        return ErrorReply(code: code, message: root.string("Message"), region: root.string("Region"))
    }

    static func deleteFailures(_ body: some Collection<UInt8>) throws -> [DeleteFailure] {
        let root = try root(body, expecting: "DeleteResult")
        return root.children(named: "Error").map {
            DeleteFailure(key: $0.string("Key") ?? "", code: $0.string("Code") ?? "", message: $0.string("Message"))
        }
    }

    /// The CompleteMultipartUpload body: every part's number and ETag, in order.
    static func completeMultipartUpload(parts: [(number: Int, etag: String)]) -> String {
        var xml = "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
        for part in parts.sorted(by: { $0.number < $1.number }) {
            xml += "<Part><PartNumber>\(part.number)</PartNumber><ETag>\(XMLDocument.escape(part.etag))</ETag></Part>"
        }
        return xml + "</CompleteMultipartUpload>"
    }

    /// The DeleteObjects body; quiet mode reports only failures.
    static func deleteObjects(keys: [String]) -> String {
        var xml = "<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Quiet>true</Quiet>"
        for key in keys {
            xml += "<Object><Key>\(XMLDocument.escape(key))</Key></Object>"
        }
        return xml + "</Delete>"
    }

    /// `2026-11-25T20:02:22.000Z` or `2026-11-25T20:02:22Z`.
    static func parseTimestamp(_ text: String) -> Date? {
        if let d = try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)) { return d }
        return try? Date(text, strategy: Date.ISO8601FormatStyle())
    }
}
