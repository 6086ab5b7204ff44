#if canImport(Glibc)
import Glibc
#endif
import CairnCore
import CairnSystem
import Foundation

/// A plain TCP connection to 127.0.0.1, for what no HTTP client sends: half
/// a header, a byte at a time, bodies of any size. Blocking calls run off the
/// cooperative pool. Every wait has a generous guard (`waitSeconds`) so a
/// server that keeps a connection open fails the test instead of hanging it.
public struct RawConnection: Sendable {
    public let fd: Int32
    public static let waitSeconds = 60

    public init(port: Int) async throws {
        fd = try await Blocking.run {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw TestSupportError("socket() failed: \(String(cString: strerror(errno)))") }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard connected == 0 else {
                let reason = String(cString: strerror(errno))
                Glibc.close(fd)
                throw TestSupportError("connect to 127.0.0.1:\(port) failed: \(reason)")
            }
            return fd
        }
    }

    /// Sends all of `data`; false once the server has closed the connection.
    @discardableResult
    public func send(_ data: Data) async throws -> Bool {
        let fd = self.fd
        return try await Blocking.run {
            var offset = 0
            if data.isEmpty { return true }
            while offset < data.count {
                let n = data.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + offset, data.count - offset, Int32(MSG_NOSIGNAL)) }
                if n < 0 {
                    if errno == EINTR { continue }
                    return false
                }
                offset += n
            }
            return true
        }
    }

    @discardableResult
    public func send(_ text: String) async throws -> Bool { try await send(Data(text.utf8)) }

    /// Everything the server sends until it closes the connection; nil when it
    /// kept it open for ``waitSeconds``.
    public func readUntilClosed() async throws -> String? {
        let fd = self.fd
        return try await Blocking.run {
            var received = Data()
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                let ready = poll(&p, 1, Int32(RawConnection.waitSeconds * 1000))
                if ready < 0 && errno == EINTR { continue }
                guard ready > 0 else { return nil }
                let n = recv(fd, &buffer, buffer.count, 0)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { return String(decoding: received, as: UTF8.self) }
                received.append(contentsOf: buffer[0..<n])
            }
        }
    }

    /// Whether the server has closed the connection (without waiting;
    /// anything it sent before is read and dropped).
    public func isClosed() -> Bool {
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
            if n > 0 { continue }
            if n == 0 { return true }
            if errno == EINTR { continue }
            return errno != EAGAIN && errno != EWOULDBLOCK
        }
    }

    public func close() { _ = Glibc.close(fd) }

    /// One request with `Connection: close`, and the whole answer.
    public static func request(port: Int, _ method: String, _ path: String, token: String?, body: Data? = nil) async throws -> RawResponse {
        let connection = try await RawConnection(port: port)
        defer { connection.close() }
        var head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
        if let token { head += "Authorization: Bearer \(token)\r\n" }
        if let body { head += "Content-Type: application/json\r\nContent-Length: \(body.count)\r\n" }
        try await connection.send(Data((head + "\r\n").utf8) + (body ?? Data()))
        guard let text = try await connection.readUntilClosed() else {
            throw TestSupportError("no answer to \(method) \(path) within \(waitSeconds)s")
        }
        return RawResponse(text)
    }
}

/// An HTTP/1.1 answer read off a raw connection.
public struct RawResponse: Sendable, CustomStringConvertible {
    public var status: Int
    public var body: String
    public var description: String { "\(status) \(body)" }

    init(_ text: String) {
        let parts = text.components(separatedBy: "\r\n\r\n")
        let statusLine = parts.first?.split(separator: "\r\n").first ?? ""
        status = statusLine.split(separator: " ").dropFirst().first.flatMap { Int($0) } ?? 0
        body = parts.dropFirst().joined(separator: "\r\n\r\n")
    }

    /// The `error.message` of a JSON error body.
    public var errorMessage: String? {
        let object = try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any]
        return (object?["error"] as? [String: Any])?["message"] as? String
    }
}

/// A listening socket on 127.0.0.1 that answers one request, to see what a server sends.
public struct RawListener: Sendable {
    public let fd: Int32
    public let port: Int

    public init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw TestSupportError("socket() failed") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 8) == 0 else { throw TestSupportError("bind/listen failed: \(String(cString: strerror(errno)))") }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        self.fd = fd
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    /// Accepts one connection, reads its request header, answers `answer`
    /// and returns the header; nil when nobody connected within ``RawConnection/waitSeconds``.
    public func answerOne(_ answer: String) async throws -> String? {
        let fd = self.fd
        return try await Blocking.run {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, Int32(RawConnection.waitSeconds * 1000)) > 0 else { return nil }
            let client = accept(fd, nil, nil)
            guard client >= 0 else { return nil }
            defer { Glibc.close(client) }
            var received = Data()
            var buffer = [UInt8](repeating: 0, count: 65536)
            while !String(decoding: received, as: UTF8.self).contains("\r\n\r\n") {
                var c = pollfd(fd: client, events: Int16(POLLIN), revents: 0)
                guard poll(&c, 1, Int32(RawConnection.waitSeconds * 1000)) > 0 else { break }
                let n = recv(client, &buffer, buffer.count, 0)
                if n <= 0 { break }
                received.append(contentsOf: buffer[0..<n])
            }
            let bytes = Array(answer.utf8)
            _ = Glibc.send(client, bytes, bytes.count, Int32(MSG_NOSIGNAL))
            return String(decoding: received, as: UTF8.self)
        }
    }

    public func close() { _ = Glibc.close(fd) }
}
