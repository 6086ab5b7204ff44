#if canImport(Glibc)
import Glibc
#endif
import CairnCore
import CairnEtcd
import CairnSystem
import Foundation
import Synchronization

/// A real etcd cluster on loopback for tests: `members` `etcd` processes
/// (Debian's `etcd-server`, installed by scripts/install.sh), each on two
/// free ports, with data in a private temporary directory. Members can be
/// killed and started again to take quorum away and give it back.
public final class EtcdCluster: Sendable {
    public struct Member: Sendable {
        public var name: String
        public var clientPort: Int
        public var peerPort: Int
        public var endpoint: String { "127.0.0.1:\(clientPort)" }
    }

    public let directory: String
    public let members: [Member]
    private let processes = Mutex<[String: ChildProcess]>([:])

    /// `host:port` of every member's client URL.
    public var endpoints: [String] { members.map(\.endpoint) }

    /// An `--topo` value for this cluster under `prefix`.
    public func topo(prefix: String) -> String { "etcd://\(endpoints.joined(separator: ","))/\(prefix)" }

    private init(directory: String, members: [Member]) {
        self.directory = directory
        self.members = members
    }

    public static let executable = "/usr/bin/etcd"

    /// Starts every member and waits until the cluster has a leader.
    public static func start(members count: Int = 3) async throws -> EtcdCluster {
        guard access(executable, X_OK) == 0 else {
            throw CairnError(.process, "etcd is not installed at \(executable); run scripts/install.sh (it installs Debian's etcd-server)")
        }
        let ports = try FreePorts.take(count * 2)
        let members = (0..<count).map { Member(name: "m\($0)", clientPort: ports[2 * $0], peerPort: ports[2 * $0 + 1]) }
        let cluster = EtcdCluster(directory: try FileSystem.makeTemporaryDirectory(prefix: "cairn-etcd"), members: members)
        do {
            for member in members { try cluster.launch(member.name) }
            try await cluster.waitForQuorum()
        } catch {
            await cluster.remove()
            throw error
        }
        return cluster
    }

    /// Starts member `name` (again), on its own data.
    public func launch(_ name: String) throws {
        guard let member = members.first(where: { $0.name == name }) else { throw TestSupportError("no etcd member \(name)") }
        let initial = members.map { "\($0.name)=http://127.0.0.1:\($0.peerPort)" }.joined(separator: ",")
        let child = try ChildProcess(EtcdCluster.executable, arguments: [
            "--name", member.name, "--data-dir", "\(directory)/\(member.name)",
            "--listen-client-urls", "http://127.0.0.1:\(member.clientPort)", "--advertise-client-urls", "http://127.0.0.1:\(member.clientPort)",
            "--listen-peer-urls", "http://127.0.0.1:\(member.peerPort)", "--initial-advertise-peer-urls", "http://127.0.0.1:\(member.peerPort)",
            "--initial-cluster", initial, "--initial-cluster-state", "new", "--initial-cluster-token", "cairn-test",
            "--heartbeat-interval", "100", "--election-timeout", "1000", "--logger", "zap", "--log-outputs", "stderr",
        ], stdout: .null, stderr: .capture(limit: 16 * 1024))
        processes.withLock { $0[name] = child }
    }

    /// Kills member `name` with SIGKILL, as a lost machine; keeps its data.
    public func kill(_ name: String) async {
        guard let child = processes.withLock({ $0.removeValue(forKey: name) }) else { return }
        child.kill(SIGKILL)
        _ = await child.wait()
    }

    /// Waits until a write through the live members succeeds: the cluster has a leader and a quorum.
    public func waitForQuorum(timeout: Duration = .seconds(60)) async throws {
        let client = try EtcdClient(endpoints: endpoints, logger: testLogger)
        let deadline = ContinuousClock.now + timeout
        var last = "no answer yet"
        while ContinuousClock.now < deadline {
            for member in members {
                guard let child = processes.withLock({ $0[member.name] }) else { continue }
                if let exit = child.exitedStatus() {
                    await client.shutdown()
                    throw TestSupportError("etcd member \(member.name) exited with \(exit): \(await child.capturedError())")
                }
            }
            do {
                try await client.put("ready", Data("1".utf8))
                await client.shutdown()
                return
            } catch {
                last = "\(error)"
            }
            try? await Task.sleep(for: .milliseconds(200))
        }
        await client.shutdown()
        throw TestSupportError("the etcd cluster at \(endpoints.joined(separator: ",")) did not elect a leader within \(timeout) (last: \(last))")
    }

    /// Stops every member and removes the data.
    public func remove() async {
        for member in members { await kill(member.name) }
        try? FileManager.default.removeItem(atPath: directory)
    }
}
