import Crypto
import Foundation

/// AWS Signature Version 4 (`AWS4-HMAC-SHA256`), written over swift-crypto and
/// checked against AWS's published test-suite vectors.
///
/// The caller gives the path exactly as it goes on the wire, URI-encoded once:
/// S3 signs that path as it is and does not encode it a second time, unlike
/// the other AWS services.
struct SigV4Signer: Sendable {
    var credentials: S3Credentials
    var region: String
    var service: String

    struct Request: Sendable {
        var method: String
        /// The path as sent, already URI-encoded (see ``AWSURIEncoding/path(_:)``).
        var path: String
        /// Query parameters, not encoded.
        var query: [(name: String, value: String)]
        /// The headers to sign; `host` must be among them.
        var headers: [(name: String, value: String)]
        /// The lower-case hex SHA-256 of the body, or `UNSIGNED-PAYLOAD`.
        var payloadHash: String
    }

    struct Signature: Sendable {
        var canonicalRequest: String
        var stringToSign: String
        var signature: String
        /// The value of the `Authorization` header.
        var authorization: String
        /// Headers to send besides the request's own: `x-amz-date`,
        /// `x-amz-security-token` with a session token, and `authorization`.
        var headers: [(name: String, value: String)]
    }

    static let algorithm = "AWS4-HMAC-SHA256"
    static let unsignedPayload = "UNSIGNED-PAYLOAD"
    static let emptyPayloadHash = hexSHA256([])

    func sign(_ request: Request, at date: Date) -> Signature {
        let (amzDate, day) = SigV4Signer.timestamps(date)
        var added: [(name: String, value: String)] = [("x-amz-date", amzDate)]
        if let token = credentials.sessionToken { added.append(("x-amz-security-token", token)) }

        // Canonical headers: lower-case names, sorted; values trimmed with
        // inner runs of spaces collapsed; repeated names joined by commas.
        var merged: [String: [String]] = [:]
        for (name, value) in request.headers + added {
            merged[name.lowercased(), default: []].append(SigV4Signer.normalize(value))
        }
        let names = merged.keys.sorted()
        let canonicalHeaders = names.map { "\($0):\(merged[$0]!.joined(separator: ","))\n" }.joined()
        let signedHeaders = names.joined(separator: ";")

        let canonicalRequest = [
            request.method,
            request.path.isEmpty ? "/" : request.path,
            AWSURIEncoding.canonicalQuery(request.query),
            canonicalHeaders,
            signedHeaders,
            request.payloadHash,
        ].joined(separator: "\n")

        let scope = "\(day)/\(region)/\(service)/aws4_request"
        let stringToSign = [
            SigV4Signer.algorithm,
            amzDate,
            scope,
            SigV4Signer.hexSHA256(Array(canonicalRequest.utf8)),
        ].joined(separator: "\n")

        var key = SymmetricKey(data: Array("AWS4\(credentials.secretAccessKey)".utf8))
        for part in [day, region, service, "aws4_request"] {
            key = SymmetricKey(data: Data(HMAC<SHA256>.authenticationCode(for: Array(part.utf8), using: key)))
        }
        let signature = SigV4Signer.hex(HMAC<SHA256>.authenticationCode(for: Array(stringToSign.utf8), using: key))
        let authorization = "\(SigV4Signer.algorithm) Credential=\(credentials.accessKeyID)/\(scope), SignedHeaders=\(signedHeaders), Signature=\(signature)"
        added.append(("authorization", authorization))
        return Signature(canonicalRequest: canonicalRequest, stringToSign: stringToSign, signature: signature,
                         authorization: authorization, headers: added)
    }

    /// `20150830T123600Z` and `20150830`, in UTC.
    static func timestamps(_ date: Date) -> (amzDate: String, day: String) {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        func pad(_ n: Int?, _ width: Int) -> String {
            let s = String(n ?? 0)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        let day = pad(c.year, 4) + pad(c.month, 2) + pad(c.day, 2)
        return (day + "T" + pad(c.hour, 2) + pad(c.minute, 2) + pad(c.second, 2) + "Z", day)
    }

    static func normalize(_ value: String) -> String {
        value.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
            .trimmingCharacters(in: .whitespaces)
    }

    static func hexSHA256(_ bytes: some Sequence<UInt8>) -> String {
        hex(SHA256.hash(data: Array(bytes)))
    }

    static func hex(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// URI encoding as SigV4 defines it: every byte but `A-Z a-z 0-9 - . _ ~`
/// becomes `%XX` with upper-case hex digits.
enum AWSURIEncoding {
    static func encode(_ text: String, keepSlash: Bool = false) -> String {
        var out: [UInt8] = []
        let digits = Array("0123456789ABCDEF".utf8)
        for b in text.utf8 {
            let unreserved = (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || (b >= 0x30 && b <= 0x39)
                || b == UInt8(ascii: "-") || b == UInt8(ascii: ".") || b == UInt8(ascii: "_") || b == UInt8(ascii: "~")
            if unreserved || (keepSlash && b == UInt8(ascii: "/")) {
                out.append(b)
            } else {
                out.append(UInt8(ascii: "%"))
                out.append(digits[Int(b >> 4)])
                out.append(digits[Int(b & 0x0f)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// An object path: each segment encoded, the slashes kept.
    static func path(_ path: String) -> String {
        encode(path, keepSlash: true)
    }

    /// Query parameters encoded and sorted by name, then value.
    static func canonicalQuery(_ query: [(name: String, value: String)]) -> String {
        query.map { (encode($0.name), encode($0.value)) }
            .sorted { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }
            .map { "\($0.0)=\($0.1)" }
            .joined(separator: "&")
    }
}
