import CairnCore
import Foundation
import Hummingbird
import NIOCore
import Synchronization

/// The console's logins: a session id (the cookie) and, per session, a
/// CSRF token every form carries. Kept in memory: a ctld restart logs
/// everyone out, which is the safe direction.
final class ConsoleSessions: Sendable {
    static let cookieName = "cairn_session"
    /// A session ends this long after login.
    static let lifetime: TimeInterval = 12 * 3600
    /// At most this many sessions; the oldest go first.
    static let limit = 1000

    struct Session: Sendable {
        var csrf: String
        var expires: Date
    }

    private let sessions = Mutex<[String: Session]>([:])

    static func randomToken() -> String {
        var generator = SystemRandomNumberGenerator()
        return (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
    }

    /// A new session: its id and CSRF token.
    func create(now: Date) -> (id: String, session: Session) {
        let id = Self.randomToken()
        let session = Session(csrf: Self.randomToken(), expires: now.addingTimeInterval(Self.lifetime))
        sessions.withLock { all in
            all = all.filter { $0.value.expires > now }
            if all.count >= Self.limit, let oldest = all.min(by: { $0.value.expires < $1.value.expires })?.key {
                all[oldest] = nil
            }
            all[id] = session
        }
        return (id, session)
    }

    func session(_ id: String?, now: Date) -> Session? {
        guard let id else { return nil }
        return sessions.withLock { all in
            guard let s = all[id] else { return nil }
            guard s.expires > now else {
                all[id] = nil
                return nil
            }
            return s
        }
    }

    func remove(_ id: String?) {
        guard let id else { return }
        sessions.withLock { $0[id] = nil }
    }

    /// The session cookie's value in `request`, if any.
    static func cookie(in request: Request) -> String? {
        for header in request.headers[values: .cookie] {
            for part in header.split(separator: ";") {
                let pair = part.trimmingCharacters(in: .whitespaces)
                if pair.hasPrefix(cookieName + "=") { return String(pair.dropFirst(cookieName.count + 1)) }
            }
        }
        return nil
    }

    /// `Set-Cookie` for a session: never readable by scripts, never sent cross-site.
    static func setCookie(_ id: String) -> String {
        "\(cookieName)=\(id); Path=/; HttpOnly; SameSite=Strict; Max-Age=\(Int(lifetime))"
    }

    static let clearCookie = "\(cookieName)=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
}

/// `application/x-www-form-urlencoded` bodies.
enum FormBody {
    static func parse(_ text: String) -> [String: String] {
        var fields: [String: String] = [:]
        for pair in text.split(separator: "&") {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            func decode(_ s: Substring) -> String {
                String(s).replacingOccurrences(of: "+", with: " ").removingPercentEncoding ?? ""
            }
            guard let key = parts.first else { continue }
            fields[decode(key)] = parts.count > 1 ? decode(parts[1]) : ""
        }
        return fields
    }

    static let limit = 16 * 1024

    static func read(_ request: Request) async throws -> [String: String] {
        var request = request
        let buffer: ByteBuffer
        do {
            buffer = try await request.collectBody(upTo: limit)
        } catch {
            throw CairnError(.usage, "the form is larger than \(limit / 1024) KiB")
        }
        return parse(String(buffer: buffer))
    }
}
