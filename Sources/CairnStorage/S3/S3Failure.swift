#if canImport(Glibc)
import Glibc
#endif
import AsyncHTTPClient
import CairnCore
import NIOCore
import NIOPosix
import NIOSSL

/// Why one attempt of a request failed, and the sentence the operator sees
/// when Cairn gives up on it.
enum S3Failure: Sendable {
    /// The store answered with an error status.
    case reply(status: Int, reply: S3Messages.ErrorReply?)
    /// The request did not get an answer: refused, reset, timed out; or the
    /// TLS handshake failed, which retrying does not mend.
    case transport(String, retryable: Bool)

    /// Classifies an error thrown by the HTTP client.
    init(transportError error: any Error) {
        if error is NIOSSLError || error is BoringSSLError || error is NIOSSLExtraError {
            let text = "\(error)"
            let what: String
            if text.contains("CERTIFICATE_VERIFY_FAILED") {
                what = "the server's certificate is not signed by a trusted authority (CERTIFICATE_VERIFY_FAILED)"
            } else if text.lowercased().contains("hostname") {
                what = "the server's certificate does not name the endpoint's host"
            } else {
                what = "the TLS handshake failed"
            }
            self = .transport("\(what); if the store's certificate comes from a private certificate authority, name that authority's PEM file in s3_ca_file", retryable: false)
        } else {
            self = .transport(S3Failure.describe(error), retryable: true)
        }
    }

    var isRetryable: Bool {
        switch self {
        case .transport(_, let retryable): retryable
        case .reply(let status, let reply): S3RetryPolicy.isRetryable(status: status, code: reply?.code)
        }
    }

    /// For the retry log line.
    var reason: String {
        switch self {
        case .transport(let text, _): text
        case .reply(let status, let reply?): "HTTP \(status) \(reply.code)"
        case .reply(let status, nil): "HTTP \(status)"
        }
    }

    /// The error to throw once the request is not retried (any more).
    func error(for request: S3Request, settings: S3Settings, credentials: S3Credentials, attempts: Int) -> CairnError {
        let service = settings.serviceName
        let bucket = settings.bucket
        let refused = "\(service) refused the request to bucket \(bucket)"
        let object = request.objectKey.map { "\(settings.flavor == .gcs ? "gs" : "s3")://\(bucket)/\($0)" } ?? "bucket \(bucket)"
        let tries = attempts == 1 ? "" : " after \(attempts) attempts"

        switch self {
        case .transport(let text, let retryable):
            let advice = retryable ? "; check that \(settings.endpoint) is reachable and healthy" : ""
            return CairnError(.storage, "\(service) request \(request.operation) for \(object) failed\(tries): \(text)\(advice)")
        case .reply(let status, let reply):
            let code = reply?.code ?? ""
            switch code {
            case "SignatureDoesNotMatch":
                return CairnError(.unauthorized, "\(refused): the secret key does not match (SignatureDoesNotMatch); check AWS_SECRET_ACCESS_KEY or the credentials file")
            case "InvalidAccessKeyId":
                return CairnError(.unauthorized, "\(refused): the access key ID is not known (InvalidAccessKeyId); check AWS_ACCESS_KEY_ID or the credentials file")
            case "ExpiredToken", "InvalidToken", "TokenRefreshRequired":
                return CairnError(.unauthorized, "\(refused): the session token is expired or invalid (\(code)); renew AWS_SESSION_TOKEN or the profile's aws_session_token")
            case "AccessDenied", "AllAccessDisabled", "AccountProblem":
                return CairnError(.unauthorized, "\(refused): access is denied (\(code)); grant these credentials permission to list, read, write and delete objects and to abort multipart uploads in the bucket")
            case "NoSuchBucket":
                return CairnError(.configuration, "bucket \(bucket) does not exist at \(settings.endpoint) (NoSuchBucket); create it or fix the storage URL \(settings.displayURL)")
            case "PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException", "InvalidRegion":
                let there = reply?.region.map { " (it is in \($0))" } ?? ""
                return CairnError(.configuration, "bucket \(bucket) is not in region \(settings.region)\(there) (\(code)); set aws_region or AWS_REGION to the bucket's region")
            case "NoSuchKey":
                return CairnError(.notFound, "\(object) does not exist")
            case "NoSuchUpload":
                return CairnError(.notFound, "the multipart upload of \(object) no longer exists (NoSuchUpload); it was aborted, so write the file again")
            case "PreconditionFailed":
                return CairnError(.storage, "\(object) changed while it was being read (PreconditionFailed); read it again")
            case "InvalidBucketName":
                return CairnError(.configuration, "\(service) rejects the bucket name \(bucket) (InvalidBucketName); fix the storage URL \(settings.displayURL)")
            default:
                break
            }
            if code.isEmpty {
                switch status {
                case 301, 307:
                    return CairnError(.configuration, "bucket \(bucket) is not in region \(settings.region) (HTTP \(status)); set aws_region or AWS_REGION to the bucket's region")
                case 401, 403:
                    return CairnError(.unauthorized, "\(refused) (HTTP \(status)); check the access key, the secret key and the bucket's permissions")
                case 404:
                    return CairnError(.notFound, "\(object) does not exist")
                default:
                    break
                }
            }
            let detail = reply.map { r in r.message.map { "\(r.code): \(credentials.redact($0))" } ?? r.code } ?? "no error details"
            let advice = isRetryable ? "; check that \(settings.endpoint) is healthy, or raise s3_max_retries" : "; check the storage settings"
            return CairnError(.storage, "\(service) request \(request.operation) for \(object) failed\(tries) with HTTP \(status) (\(detail))\(advice)")
        }
    }

    /// A short reason for a transport error, without the type names of the
    /// libraries underneath where a plainer word exists.
    static func describe(_ error: any Error) -> String {
        if let error = error as? HTTPClientError {
            switch error {
            case .connectTimeout: return "the connection timed out"
            case .readTimeout: return "the server stopped answering (read timeout)"
            case .writeTimeout: return "the server stopped reading (write timeout)"
            case .deadlineExceeded: return "the request took too long"
            case .remoteConnectionClosed: return "the server closed the connection"
            default: return "\(error)"
            }
        }
        if let error = error as? NIOConnectionError {
            let underlying = error.connectionErrors.first.map { "\($0.error)" } ?? "no address answered"
            return "the connection to \(error.host):\(error.port) failed (\(underlying))"
        }
        if let error = error as? IOError {
            return "the connection failed (\(String(cString: strerror(error.errnoCode)).lowercased()))"
        }
        if let error = error as? ChannelError { return "the connection failed (\(error))" }
        return "\(error)"
    }
}
