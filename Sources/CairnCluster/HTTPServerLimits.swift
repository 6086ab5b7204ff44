import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import Synchronization

/// What the HTTP servers of ctld and of the tablet agent allow a connection,
/// so that slow or idle connections cannot pile up (issue 17, item 6): each
/// server builds its HTTP/1 channel with ``server(logger:)``.
public struct HTTPServerLimits: Sendable {
    /// A connection must deliver a complete request header within this time
    /// of opening, or of the answer to its previous request; one that does
    /// not (half-sent headers, an idle keep-alive) is closed. The bytes of an
    /// unfinished header do not extend it.
    public var idleTimeout: Duration
    /// At most this many connections at once; a connection beyond them is
    /// closed as soon as it is accepted.
    public var maxConnections: Int

    public init(idleTimeout: Duration, maxConnections: Int) {
        self.idleTimeout = idleTimeout
        self.maxConnections = maxConnections
    }

    /// ctld: every tablet keeps a connection for its heartbeats, clients come and go.
    public static let controlServer = HTTPServerLimits(idleTimeout: .seconds(30), maxConnections: 4096)
    /// A tablet: only ctld (and an operator's status check) talks to it.
    public static let tabletAgent = HTTPServerLimits(idleTimeout: .seconds(30), maxConnections: 64)

    /// The HTTP/1 server with these limits, for `Application(router:server:...)`.
    func server(logger: Logger) -> HTTPServerBuilder {
        let connections = ConnectionCount(limit: maxConnections, logger: logger)
        return .http1(configuration: .init(additionalChannelHandlers: [ConnectionLimitHandler(connections: connections)],
                                           idleTimeout: TimeAmount(idleTimeout)))
    }
}

/// The open connections of one server.
final class ConnectionCount: Sendable {
    let limit: Int
    let logger: Logger
    private let state = Mutex((open: 0, refusing: false))

    init(limit: Int, logger: Logger) {
        self.limit = limit
        self.logger = logger
    }

    /// Counts a new connection; false when it is one too many (it is still counted until closed).
    func opened() -> Bool {
        let (allowed, firstRefusal) = state.withLock { s -> (Bool, Bool) in
            s.open += 1
            guard s.open > limit else { return (true, false) }
            defer { s.refusing = true }
            return (false, !s.refusing)
        }
        if firstRefusal {
            // Once per episode, not once per connection: a flood must not flood the log too.
            logger.warning("closing new connections: the server has its maximum of open connections", metadata: ["max_connections": "\(limit)"])
        }
        return allowed
    }

    func closed() {
        state.withLock { s in
            s.open -= 1
            if s.open < limit { s.refusing = false }
        }
    }
}

/// Counts its connection while open, and closes it at once when it is over the limit.
final class ConnectionLimitHandler: ChannelInboundHandler, RemovableChannelHandler {
    /// Parts pass through untouched.
    typealias InboundIn = Never

    let connections: ConnectionCount
    private var counted = false

    init(connections: ConnectionCount) {
        self.connections = connections
    }

    func handlerAdded(context: ChannelHandlerContext) {
        counted = true
        if !connections.opened() {
            // After the pipeline is set up, so the server's own setup completes normally.
            context.eventLoop.assumeIsolated().execute { context.close(promise: nil) }
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        if counted {
            counted = false
            connections.closed()
        }
    }
}
