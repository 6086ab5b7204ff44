import CairnCore
import Foundation
import Hummingbird
import Logging

// What ctld accepts from whom (issue 17, items 7, 8 and 10): which credential
// each route takes, which agent URLs and re-registrations it accepts, how
// large a request body may be, and how many jobs one listing returns.

/// The two credentials of ctld. Clients (the CLI, operators' scripts) hold
/// the auth token; tablets hold the tablet token. A client token cannot
/// register a tablet, and ctld sends jobs to tablets with the tablet token,
/// never with the client token.
public enum TabletToken {
    /// The file ctld creates in its data directory when no tablet token is given.
    public static let fileName = "tablet-token"

    /// Reads a tablet token file (as `AuthToken.read`), with a message that names the tablet token.
    public static func read(_ path: String) throws -> String {
        guard FileManager.default.isReadableFile(atPath: path) else {
            throw CairnError(.configuration, "cannot read the tablet token file \(path); check the path (ctld writes one into its --data-dir as \(fileName) on first start)")
        }
        return try AuthToken.read(path)
    }
}

/// The route groups of ctld's API, each refusing calls without its credential.
struct CredentialGroups {
    /// Client verbs: the auth token only.
    var client: RouterGroup<BasicRequestContext>
    /// Registration, heartbeats, job progress: the tablet token only.
    var tablet: RouterGroup<BasicRequestContext>
    /// Read by both (tablets find their primary in the tablet list).
    var either: RouterGroup<BasicRequestContext>

    init(_ router: Router<BasicRequestContext>, clientToken: String, tabletToken: String, logger: Logger) {
        func group(_ tokens: [String], _ refusal: String) -> RouterGroup<BasicRequestContext> {
            router.group(RouterPath(ClusterAPI.prefix)).add(middleware: BearerTokenMiddleware(tokens: tokens, refusal: refusal, logger: logger))
        }
        client = group([clientToken], "this call needs ctld's client auth token (auth-token in its data directory), not the tablet token")
        tablet = group([tabletToken], "this call is for tablets and needs ctld's tablet token (tablet-token in its data directory), not the client auth token")
        either = group([clientToken, tabletToken], "a valid auth token is required")
    }
}

/// Which agent URLs ctld sends jobs to, and when an alias may move.
enum TabletRegistrationPolicy {
    /// `http` or `https`, a host, a port, and optionally a path prefix of
    /// plain segments (the fleet simulator's `http://127.0.0.1:PORT/sim/sim-100`);
    /// no user, password, query or fragment.
    static func validateAgentURL(_ text: String) throws {
        func refuse(_ why: String) -> CairnError {
            CairnError(.usage, "agent_url \(clip(text)) is not valid: \(why); a tablet registers http(s)://host:port[/path]")
        }
        guard text.utf8.count <= 2048 else { throw refuse("it is longer than 2,048 bytes") }
        guard let url = URLComponents(string: text), let scheme = url.scheme?.lowercased() else { throw refuse("it is not a URL") }
        guard scheme == "http" || scheme == "https" else { throw refuse("the scheme must be http or https") }
        guard let host = url.host, !host.isEmpty else { throw refuse("it has no host") }
        guard let port = url.port, (1...65535).contains(port) else { throw refuse("it has no port") }
        guard url.user == nil, url.password == nil else { throw refuse("it may not hold a user or password") }
        guard url.query == nil, url.fragment == nil else { throw refuse("it may not have a query or fragment") }
        let allowed = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~")
        for segment in url.percentEncodedPath.split(separator: "/", omittingEmptySubsequences: false).dropFirst() {
            guard !segment.isEmpty, segment != ".", segment != "..",
                  segment.unicodeScalars.allSatisfy(allowed.contains) else {
                throw refuse("its path must be plain segments of letters, digits, '-', '.', '_' and '~'")
            }
        }
        guard url.percentEncodedPath.isEmpty || url.percentEncodedPath.hasPrefix("/") else { throw refuse("its path must start with /") }
    }

    /// Refuses to move a live alias (one that heartbeat within
    /// `heartbeatTimeout`) to another agent URL unless the registration says
    /// `replace`: two agents configured with one alias, or an agent taking
    /// over another's alias, would otherwise steal its jobs.
    static func checkMove(existing: ClusterAPI.Tablet?, to registration: ClusterAPI.TabletRegistration,
                          now: Date, heartbeatTimeout: TimeInterval) throws {
        guard let existing, existing.agentURL != registration.agentURL, registration.replace != true,
              let last = existing.lastHeartbeat, now.timeIntervalSince(last) < heartbeatTimeout else { return }
        throw CairnError(.cluster, "tablet \(existing.alias) is live at \(existing.agentURL) (last heartbeat \(Int(max(0, now.timeIntervalSince(last))))s ago), so ctld does not move it to \(clip(registration.agentURL)); stop the other agent, wait \(Int(heartbeatTimeout))s without its heartbeats, or start this one with --replace")
    }
}

/// The largest request body each kind of route reads (issue 17, item 8).
/// Bodies are decoded whole, so this bounds the memory a request can take.
enum RequestBodyLimit {
    /// Registrations, job requests and progress reports, a job handed to a tablet: a few hundred bytes each.
    static let standard = 64 * 1024
    /// A heartbeat also carries the final reports ctld has not acknowledged
    /// (at most a few KiB each, error messages being clipped to 2,000
    /// characters); a tablet runs one job at a time, so there are few.
    static let heartbeat = 1024 * 1024
}

/// A request body over its route's limit: answered 413.
struct RequestBodyTooLarge: Error {
    let limit: Int
    var message: String {
        "the request body is larger than the \(limit / 1024) KiB this call accepts; send a smaller request"
    }
}

/// `GET /jobs?limit=`: 1 to 1,000 jobs, 50 when not given.
enum JobListLimit {
    static let range = 1...1000
    static let defaultValue = 50

    static func parse(_ text: String?) throws -> Int {
        guard let text else { return defaultValue }
        guard let value = Int(text), range.contains(value) else {
            throw CairnError(.usage, "limit \(clip(text)) is not valid; ask for \(range.lowerBound) to \(range.upperBound) jobs")
        }
        return value
    }
}
