import CairnCore
import Foundation

/// Everything the S3 backend needs to know, resolved from the storage URL,
/// the configuration file and the environment.
public struct S3Settings: Sendable {
    /// Which store speaks the protocol: AWS S3 and S3-compatible stores, or
    /// Google Cloud Storage's XML API (which lacks DeleteObjects).
    public enum Flavor: String, Sendable {
        case s3
        case gcs
    }

    /// Where requests go.
    public struct Endpoint: Sendable, Equatable, CustomStringConvertible {
        public var scheme: String
        public var host: String
        public var port: Int?

        public init(scheme: String, host: String, port: Int? = nil) {
            self.scheme = scheme
            self.host = host
            self.port = port
        }

        /// Parses `https://host[:port]`, `http://127.0.0.1:8333` or a bare host (HTTPS).
        public init(parsing text: String) throws {
            let withScheme = text.contains("://") ? text : "https://\(text)"
            guard let c = URLComponents(string: withScheme), let scheme = c.scheme?.lowercased(),
                  ["http", "https"].contains(scheme), let host = c.host, !host.isEmpty,
                  c.path.isEmpty || c.path == "/", c.query == nil, c.user == nil else {
                throw CairnError(.configuration, "the S3 endpoint \"\(text)\" is not a URL of the form https://host[:port]; fix s3_endpoint or AWS_ENDPOINT_URL_S3")
            }
            self.init(scheme: scheme, host: host, port: c.port)
        }

        var isDefaultPort: Bool {
            port == nil || (scheme == "https" && port == 443) || (scheme == "http" && port == 80)
        }

        /// The `Host` header for a host name at this endpoint's port.
        func hostHeader(_ host: String) -> String {
            isDefaultPort ? host : "\(host):\(port!)"
        }

        public var description: String {
            isDefaultPort ? "\(scheme)://\(host)" : "\(scheme)://\(host):\(port!)"
        }
    }

    public var flavor: Flavor
    public var bucket: String
    /// The key prefix under the bucket, without slashes at either end; may be empty.
    public var prefix: String
    public var endpoint: Endpoint
    public var region: String
    /// `https://endpoint/bucket/key` rather than `https://bucket.endpoint/key`.
    public var pathStyle: Bool
    /// Extra trusted certificate authorities (PEM); certificates are always verified.
    public var caFile: String?
    public var credentials: S3CredentialSource
    public var retry: S3RetryPolicy
    /// The first multipart part's size; parts grow by ``S3PartSizing``.
    public var minimumPartSize: Int64
    public var uploadConcurrency: Int
    public var downloadConcurrency: Int
    /// Bytes per ranged GET.
    public var downloadRangeSize: Int64 = 8 * 1024 * 1024
    /// How long a connection may be silent before the request fails (and is retried).
    public var idleTimeout: Duration = .seconds(60)
    public var connectTimeout: Duration = .seconds(10)
    /// `object_lock`: the retention every PutObject and CreateMultipartUpload sets.
    public var objectLock: ObjectLockConfig?
    /// Called with each request's operation and headers (Content-MD5
    /// included, the signature not) just before it is signed and sent: tests
    /// see what goes on the wire.
    public var requestObserver: (@Sendable (_ operation: String, _ headers: [(name: String, value: String)]) -> Void)?

    public init(flavor: Flavor, bucket: String, prefix: String, endpoint: Endpoint, region: String, pathStyle: Bool,
                caFile: String? = nil, credentials: S3CredentialSource, retry: S3RetryPolicy = S3RetryPolicy(),
                minimumPartSize: Int64 = S3PartSizing.defaultMinimumPartSize, uploadConcurrency: Int = 4, downloadConcurrency: Int = 4) {
        self.flavor = flavor
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint = endpoint
        self.region = region
        self.pathStyle = pathStyle
        self.caFile = caFile
        self.credentials = credentials
        self.retry = retry
        self.minimumPartSize = minimumPartSize
        self.uploadConcurrency = uploadConcurrency
        self.downloadConcurrency = downloadConcurrency
    }

    /// Google Cloud Storage's XML API endpoint.
    public static let gcsEndpoint = Endpoint(scheme: "https", host: "storage.googleapis.com")
    /// The signing region Cloud Storage expects with HMAC keys.
    public static let gcsRegion = "auto"

    /// Resolves the settings for an `s3://` or `gs://` location.
    ///
    /// - S3: the region is `aws_region`, else `AWS_REGION`, else
    ///   `AWS_DEFAULT_REGION`, else `us-east-1`; the endpoint is `s3_endpoint`,
    ///   else `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`, else AWS's
    ///   regional endpoint. A custom endpoint is addressed path-style unless
    ///   `s3_force_path_style` is false; AWS's is addressed virtual-host style
    ///   unless `s3_force_path_style` is true or the bucket name has a dot.
    /// - GCS: the endpoint is `s3_endpoint`, else `https://storage.googleapis.com`,
    ///   path-style unless `s3_force_path_style` is false; the region is `auto`.
    public static func resolve(location: StorageLocation, configuration: CairnConfiguration,
                               environment: [String: String]) throws -> S3Settings {
        func env(_ name: String) -> String? {
            environment[name].flatMap { $0.trimmingCharacters(in: .whitespaces).isEmpty ? nil : $0 }
        }
        let flavor: Flavor
        let bucket: String
        let prefix: String
        switch location {
        case .s3(let b, let p): (flavor, bucket, prefix) = (.s3, b, p)
        case .gcs(let b, let p): (flavor, bucket, prefix) = (.gcs, b, p)
        case .file:
            throw CairnError(.internal, "the S3 backend was asked to open \(location)")
        }

        let endpoint: Endpoint
        let region: String
        let pathStyle: Bool
        switch flavor {
        case .s3:
            region = configuration.awsRegion.flatMap { $0.isEmpty ? nil : $0 } ?? env("AWS_REGION") ?? env("AWS_DEFAULT_REGION") ?? "us-east-1"
            if let custom = configuration.s3Endpoint.flatMap({ $0.isEmpty ? nil : $0 }) ?? env("AWS_ENDPOINT_URL_S3") ?? env("AWS_ENDPOINT_URL") {
                endpoint = try Endpoint(parsing: custom)
                pathStyle = configuration.s3ForcePathStyle ?? true
            } else {
                endpoint = Endpoint(scheme: "https", host: "s3.\(region).amazonaws.com")
                // Virtual hosts of dotted bucket names do not match AWS's certificate.
                pathStyle = configuration.s3ForcePathStyle ?? bucket.contains(".")
            }
        case .gcs:
            region = gcsRegion
            if let custom = configuration.s3Endpoint.flatMap({ $0.isEmpty ? nil : $0 }) {
                endpoint = try Endpoint(parsing: custom)
            } else {
                endpoint = gcsEndpoint
            }
            pathStyle = configuration.s3ForcePathStyle ?? true
        }

        if configuration.objectLock != nil, flavor == .gcs {
            throw CairnError(.configuration, "object_lock is set, but \(location) is Cloud Storage, whose XML API does not take S3 Object Lock retention; remove object_lock and use a bucket retention policy in Cloud Storage instead")
        }

        let credentials = S3CredentialSource(environment: environment,
                                             credentialsFile: configuration.awsSharedCredentialsFile,
                                             profile: configuration.awsProfile)
        var settings = S3Settings(flavor: flavor, bucket: bucket, prefix: prefix, endpoint: endpoint, region: region,
                                  pathStyle: pathStyle, caFile: configuration.s3CAFile.flatMap { $0.isEmpty ? nil : $0 },
                                  credentials: credentials,
                                  retry: S3RetryPolicy(maxRetries: configuration.s3MaxRetries),
                                  minimumPartSize: configuration.s3MinimumPartSize,
                                  uploadConcurrency: configuration.uploadConcurrency,
                                  downloadConcurrency: configuration.downloadConcurrency)
        settings.objectLock = configuration.objectLock
        return settings
    }

    /// The Object Lock headers of an upload started at `now`; none without `object_lock`.
    func objectLockHeaders(at now: Date) -> [(name: String, value: String)] {
        objectLock?.headers(uploadedAt: now) ?? []
    }

    /// `s3://bucket/prefix` or `gs://bucket/prefix`, for messages.
    public var displayURL: String {
        let scheme = flavor == .gcs ? "gs" : "s3"
        return prefix.isEmpty ? "\(scheme)://\(bucket)" : "\(scheme)://\(bucket)/\(prefix)"
    }

    /// The store's name in messages.
    var serviceName: String { flavor == .gcs ? "Cloud Storage" : "S3" }

    /// The object key in the bucket for a storage key.
    func objectKey(_ key: String) -> String {
        prefix.isEmpty ? key : "\(prefix)/\(key)"
    }

    /// The storage key for an object key under the prefix.
    func storageKey(_ objectKey: String) -> String? {
        if prefix.isEmpty { return objectKey }
        guard objectKey.hasPrefix(prefix + "/") else { return nil }
        return String(objectKey.dropFirst(prefix.count + 1))
    }

    /// The host name and the encoded path for a request on `objectKey` (nil: the bucket).
    func address(objectKey: String?) -> (host: String, path: String) {
        let keyPath = objectKey.map { "/" + AWSURIEncoding.path($0) } ?? "/"
        if pathStyle {
            let bucketPath = "/" + AWSURIEncoding.encode(bucket)
            return (endpoint.host, objectKey == nil ? bucketPath : bucketPath + keyPath)
        }
        return ("\(bucket).\(endpoint.host)", keyPath)
    }
}
