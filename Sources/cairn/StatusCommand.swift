import ArgumentParser
import CairnCluster
import CairnCore
import CairnEngine
import Foundation

/// `cairn status`: the whole fleet on one screen, through ctld.
struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Show every shard: whether it is protected, its last backup, restorable window, last drill, and what is wrong.",
        discussion: """
            A shard is protected when it has a restorable chain whose newest commit is younger than twice the \
            shortest backup interval of the strategy (48 hours without one). With more shards than fit a screen \
            (--limit, default 40), shards with problems are shown and the rest counted; --all shows every shard. \
            ctld answers from its cached listings of storage (docs/OBSERVABILITY.md), so a backup that just \
            finished may take a moment to show.
            """,
        aliases: ["Status"]
    )

    @Argument(help: ArgumentHelp("Only this keyspace or keyspace/shard.", valueName: "keyspace[/shard]"))
    var filter: String?

    @Flag(name: .long, help: "Show every shard, however many.")
    var all = false

    @Option(name: .long, help: "Show at most this many shards without problems.")
    var limit: Int = 40

    @OptionGroup var cluster: ClusterOptions
    @OptionGroup var output: OutputOptions

    func run() async throws {
        _ = output.makeLogger()
        var status = try await cluster.client().status()
        if let filter {
            status.shards = status.shards.filter { $0.keyspace == filter || $0.id == filter }
        }
        if output.json {
            try Output.json(status)
            return
        }
        Output.line(StatusReport.render(status, showAll: all, limit: limit))
    }
}
