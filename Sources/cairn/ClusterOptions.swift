import ArgumentParser
import CairnCluster
import CairnCore
import CairnEngine
import Foundation

/// How client verbs reach ctld.
struct ClusterOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The control server, host:port, or several separated by commas (ctlds sharing one etcd topology; calls fail over along them). Default: $CAIRN_SERVER, else the configuration's ctld, else localhost:15999.", valueName: "host:port[,...]"))
    var server: String?

    @Option(name: .long, help: ArgumentHelp("The file holding ctld's auth token. Default: $CAIRN_AUTH_TOKEN, else ./cairn-local/ctld/auth-token when it exists.", valueName: "file"))
    var authTokenFile: String?

    static let localClusterTokenFile = "cairn-local/ctld/auth-token"

    func address(_ configuration: CairnConfiguration?) -> String {
        server ?? ProcessInfo.processInfo.environment["CAIRN_SERVER"] ?? configuration?.ctld ?? "localhost:15999"
    }

    func token() throws -> String {
        guard let token = try AuthToken.lookUp(file: authTokenFile, orIfPresent: Self.localClusterTokenFile) else {
            throw CairnError(.usage, "no auth token for the control server: pass --auth-token-file (ctld writes one into its --data-dir as auth-token) or set CAIRN_AUTH_TOKEN")
        }
        return token
    }

    func client(_ configuration: CairnConfiguration? = nil) throws -> ClusterClient {
        ClusterClient(address: address(configuration), token: try token())
    }
}

/// `zone1-100` is shown as `100`, as the seed's messages do.
func shortTablet(_ alias: String) -> String {
    (try? TabletAlias(parsing: alias)).map { "\($0.uid)" } ?? alias
}

extension AuthToken {
    /// ctld's auth token as a client finds it: read from `file` when one is
    /// given, else $CAIRN_AUTH_TOKEN, else read from `fallbackFile` when that
    /// exists; nil when there is none.
    static func lookUp(file: String?, orIfPresent fallbackFile: String? = nil) throws -> String? {
        if let file { return try AuthToken.read(file) }
        if let token = ProcessInfo.processInfo.environment["CAIRN_AUTH_TOKEN"], !token.isEmpty { return token }
        if let fallbackFile, FileManager.default.fileExists(atPath: fallbackFile) {
            return try AuthToken.read(fallbackFile)
        }
        return nil
    }
}

/// Follows a backup or restore job ctld started, for `backup` and `restore`.
///
/// Reads of the job are kept to `id`, `tablet`, `isFinished`, `error` and the
/// progress fields, so the verbs alone decide what a result means.
struct JobFollower {
    /// "backup" or "restore".
    var noun: String
    var client: ClusterClient
    var output: OutputOptions
    /// `--async`: report the start and return.
    var async: Bool

    /// Reports the job's start; without --async prints `starting`, waits for
    /// the job's end, prints it with --json and returns it. Returns nil with
    /// --async.
    func follow(_ job: ClusterAPI.Job, starting: String) async throws -> ClusterAPI.Job? {
        if async {
            if output.json { try Output.json(job) } else {
                Output.line("\(noun.capitalized) initiated, please check tablet \(shortTablet(job.tablet)) logs for progress.")
            }
            return nil
        }
        if !output.json { Output.line(starting) }
        let finished = try await wait(for: job)
        if output.json { try Output.json(finished) }
        return finished
    }

    /// The error of a job that did not succeed.
    func failure(_ job: ClusterAPI.Job) -> CairnError {
        CairnError(.cluster, "\(noun) job \(job.id) on tablet \(job.tablet) failed: \(job.error ?? "no reason given")")
    }

    /// Polls the job until it ends, showing its phase and progress on a terminal.
    private func wait(for job: ClusterAPI.Job) async throws -> ClusterAPI.Job {
        let showProgress = !output.json && Output.stderrIsTerminal
        var current = job
        var lastLine = ""
        while !current.isFinished {
            try await Task.sleep(for: .milliseconds(500))
            current = try await client.job(job.id)
            if showProgress {
                let line = "\(current.phase): \(formatBytes(current.bytesDone)), \(formatBytes(Int64(current.rate)))/s"
                if line != lastLine {
                    FileHandle.standardError.write(Data("\r\u{1b}[2K\(line)".utf8))
                    lastLine = line
                }
            }
        }
        if showProgress { FileHandle.standardError.write(Data("\r\u{1b}[2K".utf8)) }
        return current
    }
}
