#if canImport(Glibc)
import Glibc
#endif
import CairnCluster
import CairnCore
import CairnMySQL
import CairnSystem
import CairnTestSupport
import Foundation
import Testing

/// Issue 17: what another user of the host could reach.
@Suite("Hardening: secrets and servers on a shared host", .serialized)
struct HardeningTests {
    func mode(_ path: String) throws -> Int {
        (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int ?? -1) & 0o7777
    }

    @Test("a tablet-initialized server has no root on TCP, confines file access, and ctld's state is private")
    func tabletServerAndControlState() async throws {
        let cluster = try ClusterFixture()
        do {
            try cluster.startControlServer()
            try cluster.startTablet("zone1-100", type: "primary")
            try await cluster.waitForTablets(["zone1-100"])
            guard let port = cluster.tablets["zone1-100"]?.mysqlPort else { throw TestSupportError("no tablet") }

            // Anyone on the host can reach 127.0.0.1: root must not answer there without a password.
            let tcpRoot = MySQLConnectionConfiguration(endpoint: .tcp(host: "127.0.0.1", port: port), user: "root", connectTimeoutSeconds: 5)
            await #expect(throws: (any Error).self) {
                try await MySQLConnection.with(tcpRoot, logger: testLogger) { try await $0.scalar("SELECT 1") }
            }
            let network = try await cluster.query("zone1-100", "SELECT CONCAT(user, '@', host) FROM mysql.global_priv WHERE host <> 'localhost' ORDER BY 1")
            #expect(network.rows.compactMap { $0.first ?? nil } == ["cairn_repl@%"])
            let files = try await cluster.query("zone1-100", "SELECT @@secure_file_priv, @@local_infile").rows.first
            #expect((files?[0] ?? "").isEmpty == false && files?[1] == "0", "\(String(describing: files))")

            // ctld's database is 0600 in a 0700 directory from its first start.
            let ctldDirectory = cluster.directory.file("ctld")
            #expect(try mode(ctldDirectory) == 0o700)
            #expect(try mode("\(ctldDirectory)/ctld.sqlite") == 0o600)
        } catch {
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }

    @Test("a generated token is created 0600 and never replaces or follows what is already there")
    func generatedSecrets() throws {
        let dir = try TemporaryDirectory(prefix: "cairn-secrets")
        defer { dir.remove() }
        let token = try AuthToken.loadOrCreate(dir.file("auth-token"))
        #expect(try mode(dir.file("auth-token")) == 0o600)
        #expect(try AuthToken.loadOrCreate(dir.file("auth-token")) == token)

        // A link planted where a secret will be created is neither followed nor replaced.
        try FileManager.default.createSymbolicLink(atPath: dir.file("planted"), withDestinationPath: dir.file("elsewhere"))
        #expect(try FileSystem.createSecretFile(dir.file("planted"), contents: "secret\n") == false)
        #expect(!FileManager.default.fileExists(atPath: dir.file("elsewhere")))
    }
}
