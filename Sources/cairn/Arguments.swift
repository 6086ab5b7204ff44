import ArgumentParser
import CairnCluster
import CairnCore
import CairnEngine

// Values the parser checks, so a verb's run() starts from typed values. An
// unknown value is a usage error (exit 2) naming the values that are known.

extension RequestedBackupType: ExpressibleByArgument {}
extension FullBackupEngine: ExpressibleByArgument {}
extension BinlogReplayMethod: ExpressibleByArgument {}
extension ClusterAPI.TabletType: ExpressibleByArgument {}

// `<keyspace>/<shard>` is parsed with `@Argument(transform: KeyspaceShard.init(parsing:))`
// rather than through `ExpressibleByArgument`: `init?(argument:)` cannot say
// why it refused a value, and the library's sentence ("invalid shard ...: use
// a key range such as ...") is what tells the user what to write.
extension ArgumentHelp {
    /// The help of a verb's `<keyspace>/<shard>` argument.
    static let shard = ArgumentHelp("The shard, <keyspace>/<shard>.", valueName: "keyspace/shard")
    /// The help of the `tablets` and `jobs` filter.
    static let shardFilter = ArgumentHelp("Only this shard, <keyspace>/<shard>.", valueName: "keyspace/shard")
}

extension ValidationError {
    /// A usage error found before the verb runs, with the same sentence the
    /// verb's own check says.
    init(_ error: CairnError) {
        self.init(error.message)
    }
}

/// A verb's `<keyspace>/<shard>`, or a bare `<keyspace>` for every shard of it.
enum ShardOrKeyspace: Sendable {
    case shard(KeyspaceShard)
    case keyspace(String)

    init(parsing text: String) throws {
        if text.contains("/") {
            self = .shard(try KeyspaceShard(parsing: text))
        } else {
            try KeyspaceShard.validateKeyspace(text)
            self = .keyspace(text)
        }
    }
}

/// How long commits may wait to be blocked for a restore point: `2s`, `500ms`, `1m`.
func parseMaximumBlock(_ text: String) throws -> Int {
    let milliseconds: Int?
    if text.hasSuffix("ms") {
        milliseconds = Int(text.dropLast(2))
    } else {
        milliseconds = ConfigDuration(parsing: text).map { Int($0.seconds) * 1000 }
    }
    guard let milliseconds, (1...60_000).contains(milliseconds) else {
        throw CairnError(.usage, "invalid --max-block \"\(text)\": give a duration from 1ms to 60s, e.g. 2s or 500ms")
    }
    return milliseconds
}
