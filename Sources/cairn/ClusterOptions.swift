import ArgumentParser
import CairnCluster
import CairnCore
import CairnEngine
import Foundation

/// How client verbs reach ctld.
struct ClusterOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The control server, host:port. Default: $CAIRN_SERVER, else the configuration's ctld, else localhost:15999.", valueName: "host:port"))
    var server: String?

    @Option(name: .long, help: ArgumentHelp("The file holding ctld's auth token. Default: $CAIRN_AUTH_TOKEN, else ./cairn-local/ctld/auth-token when it exists.", valueName: "file"))
    var authTokenFile: String?

    static let localClusterTokenFile = "cairn-local/ctld/auth-token"

    func address(_ configuration: CairnConfiguration?) -> String {
        server ?? ProcessInfo.processInfo.environment["CAIRN_SERVER"] ?? configuration?.ctld ?? "localhost:15999"
    }

    func token() throws -> String {
        if let authTokenFile { return try AuthToken.read(authTokenFile) }
        if let token = ProcessInfo.processInfo.environment["CAIRN_AUTH_TOKEN"], !token.isEmpty { return token }
        if FileManager.default.fileExists(atPath: Self.localClusterTokenFile) {
            return try AuthToken.read(Self.localClusterTokenFile)
        }
        throw CairnError(.usage, "no auth token for the control server: pass --auth-token-file (ctld writes one into its --data-dir as auth-token) or set CAIRN_AUTH_TOKEN")
    }

    func client(_ configuration: CairnConfiguration? = nil) throws -> ClusterClient {
        ClusterClient(address: address(configuration), token: try token())
    }
}

/// `zone1-100` is shown as `100`, as the seed's messages do.
func shortTablet(_ alias: String) -> String {
    (try? TabletAlias(parsing: alias)).map { "\($0.uid)" } ?? alias
}

/// Follows a job until it ends, showing progress on a terminal.
func waitForJob(_ job: ClusterAPI.Job, client: ClusterClient, showProgress: Bool) async throws -> ClusterAPI.Job {
    var current = job
    var lastLine = ""
    while !current.isFinished {
        try await Task.sleep(for: .milliseconds(500))
        current = try await client.job(job.id)
        if showProgress && Output.stderrIsTerminal {
            let line = "\(current.phase): \(formatBytes(current.bytesDone)), \(formatBytes(Int64(current.rate)))/s"
            if line != lastLine {
                FileHandle.standardError.write(Data("\r\u{1b}[2K\(line)".utf8))
                lastLine = line
            }
        }
    }
    if showProgress && Output.stderrIsTerminal { FileHandle.standardError.write(Data("\r\u{1b}[2K".utf8)) }
    return current
}

