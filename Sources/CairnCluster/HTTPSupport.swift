import CairnCore
import CairnSystem
import Crypto
import Foundation
import Hummingbird
import Logging
import NIOCore
import NIOFoundationEssentialsCompat

/// Refuses every request without `Authorization: Bearer <token>` for one of
/// `tokens`, with 401 and `refusal`, and logs the refusal (never the token offered).
struct BearerTokenMiddleware<Context: RequestContext>: RouterMiddleware {
    let tokens: [String]
    var refusal = "a valid auth token is required"
    let logger: Logger

    init(token: String, logger: Logger) {
        self.tokens = [token]
        self.logger = logger
    }

    /// Paths this middleware leaves to their own authentication (ctld's console).
    var exempt: @Sendable (String) -> Bool = { _ in false }

    init(tokens: [String], refusal: String, logger: Logger, exempt: @escaping @Sendable (String) -> Bool = { _ in false }) {
        self.tokens = tokens
        self.refusal = refusal
        self.logger = logger
        self.exempt = exempt
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if exempt(request.uri.path) { return try await next(request, context) }
        let offered = request.headers[.authorization].flatMap { value -> String? in
            value.hasPrefix("Bearer ") ? String(value.dropFirst("Bearer ".count)) : nil
        }
        // Every token is compared, so the time taken does not tell which one nearly matched.
        guard let offered, tokens.map({ constantTimeEqual(offered, $0) }).contains(true) else {
            logger.warning("refused a request without a valid auth token", metadata: [
                "method": "\(request.method.rawValue)", "path": "\(request.uri.path)",
                "reason": "\(offered == nil ? "no bearer token" : "wrong token")",
            ])
            return jsonResponse(ClusterAPI.ErrorBody(code: CairnError.Code.unauthorized.name, message: refusal), status: .unauthorized)
        }
        return try await next(request, context)
    }
}

/// Renders `CairnError`s thrown by handlers as JSON error bodies with a fitting status.
struct ErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as CairnError {
            let status: HTTPResponse.Status
            switch error.code {
            case .notFound: status = .notFound
            case .usage, .configuration: status = .badRequest
            case .unauthorized: status = .unauthorized
            case .cluster, .chain, .restoreTarget: status = .conflict
            case .unavailable: status = .serviceUnavailable
            default: status = .internalServerError
            }
            if status == .internalServerError {
                logger.error("request failed", metadata: ["path": "\(request.uri.path)", "error": "\(error.message)"])
            }
            return jsonResponse(ClusterAPI.ErrorBody(code: error.code.name, message: error.message), status: status)
        } catch let error as RequestBodyTooLarge {
            return jsonResponse(ClusterAPI.ErrorBody(code: CairnError.Code.usage.name, message: error.message), status: .contentTooLarge)
        }
    }
}

func jsonResponse<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) -> Response {
    let data = (try? CairnJSON.encoder().encode(value)) ?? Data("{}".utf8)
    return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(data: data)))
}

/// Decodes a JSON body of at most `limit` bytes; a larger one is refused
/// (413) before it is read whole.
func decodeBody<T: Decodable>(_ type: T.Type, from request: Request, limit: Int = RequestBodyLimit.standard) async throws -> T {
    if let length = request.headers[.contentLength].flatMap({ Int($0) }), length > limit {
        throw RequestBodyTooLarge(limit: limit)
    }
    var request = request
    let buffer: ByteBuffer
    do {
        buffer = try await request.collectBody(upTo: limit)
    } catch is NIOTooManyBytesError {
        throw RequestBodyTooLarge(limit: limit)
    }
    do {
        return try CairnJSON.decoder().decode(type, from: Data(buffer: buffer))
    } catch {
        if let unknown = WireEnumError.from("the request", error) { throw unknown }
        throw CairnError(.usage, "the request body is not a valid \(type) (\(error))")
    }
}

func constantTimeEqual(_ a: String, _ b: String) -> Bool {
    let x = Array(SHA256.hash(data: Data(a.utf8)))
    let y = Array(SHA256.hash(data: Data(b.utf8)))
    var diff: UInt8 = 0
    for i in 0..<x.count { diff |= x[i] ^ y[i] }
    return diff == 0
}

/// The shared secret every API call carries.
public enum AuthToken {
    /// Reads a token file (the first line, trimmed).
    public static func read(_ path: String) throws -> String {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw CairnError(.configuration, "cannot read the auth token file \(path); check the path (ctld writes one into its --data-dir on first start)")
        }
        let token = text.split(separator: "\n").first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
        guard token.count >= 16 else {
            throw CairnError(.configuration, "the auth token in \(path) is shorter than 16 characters; use a long random token")
        }
        return token
    }

    /// Reads `path`, or creates it with a new random token (mode 0600 from
    /// its creation on; see `FileSystem.createSecretFile`).
    public static func loadOrCreate(_ path: String) throws -> String {
        if FileManager.default.fileExists(atPath: path) { return try read(path) }
        var bytes = [UInt8](repeating: 0, count: 32)
        var generator = SystemRandomNumberGenerator()
        for i in bytes.indices { bytes[i] = UInt8.random(in: 0...255, using: &generator) }
        let token = bytes.map { String(format: "%02x", $0) }.joined()
        // Another process may have created it since: then its token is the one.
        guard try FileSystem.createSecretFile(path, contents: token + "\n") else { return try read(path) }
        return token
    }
}
