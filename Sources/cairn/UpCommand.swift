import ArgumentParser
import CairnCluster
import CairnCore
import Foundation

struct UpCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "up",
        abstract: "Run the embedded local cluster: ctld, a primary and a replica of each shard of commerce (default: shard 0), each with its own MariaDB.",
        discussion: "Everything lives under --dir (backups in <dir>/backups, logs in <dir>/logs; with --topo etcd, etcd's data in <dir>/etcd). Ctrl-C stops it all cleanly; running it again reuses the directory."
    )

    @Option(name: .long, help: ArgumentHelp("Where the cluster keeps everything.", valueName: "path"))
    var dir: String = "./cairn-local"

    @Option(name: .long, help: "ctld's port.")
    var port: Int = 15999

    @Option(name: .long, help: ArgumentHelp("The primary's MariaDB port; the replica uses the next one.", valueName: "port"))
    var mysqlBasePort: Int = 17100

    @Option(name: .long, parsing: .unconditional, help: ArgumentHelp("The shards of keyspace commerce, comma-separated, e.g. -80,80- for a two-shard keyspace.", valueName: "shards"))
    var shards: String = "0"

    @Option(name: .long, help: ArgumentHelp("Where ctld keeps its state: sqlite (a file under --dir) or etcd (an embedded three-member etcd on loopback, data under --dir).", valueName: "sqlite|etcd"))
    var topo: String = "sqlite"

    @Option(name: .long, help: ArgumentHelp("With --topo etcd: the first etcd member's client port; the members use this and the next five ports.", valueName: "port"))
    var etcdBasePort: Int = 17200

    @OptionGroup var output: OutputOptions

    var shardList: [String] { shards.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) } }

    func validate() throws {
        guard ["sqlite", "etcd"].contains(topo) else {
            throw ValidationError("--topo takes sqlite or etcd (`cairn ctld --topo` takes an etcd address; `cairn up` starts its own etcd)")
        }
        guard !shardList.isEmpty, shardList.count <= 8, Set(shardList).count == shardList.count else {
            throw ValidationError("--shards takes 1 to 8 distinct shards, comma-separated, e.g. -80,80-")
        }
        for shard in shardList {
            do { _ = try KeyspaceShard(keyspace: "commerce", shard: shard) } catch let error as CairnError { throw ValidationError(error) }
        }
    }

    func run() async throws {
        let logger = output.makeLogger(label: "up", defaultLevel: "warning")
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        var options = LocalCluster.Options(directory: URL(fileURLWithPath: dir).standardizedFileURL.path, executable: executable)
        options.ctldPort = port
        options.mysqlBasePort = mysqlBasePort
        options.shards = shardList
        options.etcd = topo == "etcd"
        options.etcdBasePort = etcdBasePort
        try await LocalCluster(options: options, logger: logger).run { Output.line($0) }
    }
}
