import AsyncHTTPClient
import CairnCore
import CairnSystem
import NIOCore
import NIOSSL

/// The HTTP client and the credentials, made on first use: the credentials
/// file and the CA file are read on the blocking pool then, and a bad one
/// fails the first operation with a sentence naming it.
actor S3Connection {
    let settings: S3Settings
    private var opening: Task<(HTTPClient, S3Credentials), any Error>?
    private var isShutDown = false

    init(settings: S3Settings) {
        self.settings = settings
    }

    deinit {
        // A storage dropped without shutdown() still closes its connections
        // (and an HTTPClient must never be released before it is shut down).
        if let opening {
            Task {
                if let (http, _) = try? await opening.value { try? await http.shutdown() }
            }
        }
    }

    func open() async throws -> (HTTPClient, S3Credentials) {
        guard !isShutDown else {
            throw CairnError(.internal, "the storage \(settings.displayURL) was used after shutdown")
        }
        if let opening { return try await opening.value }
        let settings = self.settings
        let task = Task { () throws -> (HTTPClient, S3Credentials) in
            let credentials = try await settings.credentials.load()
            let tls = try await S3Connection.tlsConfiguration(caFile: settings.caFile)
            var configuration = HTTPClient.Configuration()
            configuration.tlsConfiguration = tls
            configuration.redirectConfiguration = .disallow
            configuration.decompression = .disabled
            configuration.timeout = .init(connect: TimeAmount(settings.connectTimeout), read: TimeAmount(settings.idleTimeout))
            configuration.connectionPool = .init(
                idleTimeout: .seconds(60),
                concurrentHTTP1ConnectionsPerHostSoftLimit: max(8, settings.uploadConcurrency + settings.downloadConcurrency + 4))
            let http = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
            return (http, credentials)
        }
        opening = task
        do {
            return try await task.value
        } catch {
            // A missing credentials file can be fixed while the process runs.
            opening = nil
            throw error
        }
    }

    func shutdown() async {
        isShutDown = true
        guard let opening else { return }
        self.opening = nil
        if let (http, _) = try? await opening.value {
            try? await http.shutdown()
        }
    }

    /// Certificates are always verified; a CA file adds trusted authorities.
    static func tlsConfiguration(caFile: String?) async throws -> TLSConfiguration {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateVerification = .fullVerification
        if let caFile {
            let certificates = try await Blocking.run { () throws -> [NIOSSLCertificate] in
                do {
                    return try NIOSSLCertificate.fromPEMFile(caFile)
                } catch {
                    throw CairnError(.configuration, "the CA file \(caFile) (s3_ca_file) cannot be read as PEM certificates; check the path and its contents")
                }
            }
            guard !certificates.isEmpty else {
                throw CairnError(.configuration, "the CA file \(caFile) (s3_ca_file) holds no PEM certificates; check its contents")
            }
            tls.additionalTrustRoots = [.certificates(certificates)]
        }
        return tls
    }
}

extension TimeAmount {
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self = .nanoseconds(seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}
