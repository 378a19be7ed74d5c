import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Shared by the server's framing tests and the HTTP fuzz benchmark.
///
/// A plain TCP connection to a loopback port (POSIX sockets), for sending bytes no HTTP client
/// would send: broken chunk sizes, bodies shorter than their Content-Length, garbage heads.
public final class RawHTTPConnection {
    private let socket: Int32

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
        public init(description: String) { self.description = description }
    }

    public init(port: Int) throws {
        #if canImport(Glibc)
        socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        socket = Darwin.socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard socket >= 0 else { throw Failure(description: "socket() failed: errno \(errno)") }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            close(socket)
            throw Failure(description: "connect() failed: errno \(errno)")
        }
    }

    deinit { close(socket) }

    /// Sends everything (blocking); false when the server has closed or reset the connection.
    @discardableResult
    public func send(_ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let sent = bytes[offset...].withUnsafeBytes { Int(sendBytes(socket, $0.baseAddress, $0.count)) }
            guard sent > 0 else { return false }
            offset += sent
        }
        return true
    }

    @discardableResult
    public func send(_ text: String) -> Bool { send(Array(text.utf8)) }

    /// Closes the sending side: the server reads end of input.
    public func shutdownWrite() { _ = shutdown(socket, Int32(SHUT_WR)) }

    /// What arrives within `timeout` seconds, and whether the server closed (or reset) the
    /// connection in that time.
    public func read(timeout: Double) -> (data: Data, closed: Bool) {
        var data = Data()
        let deadline = Date().addingTimeInterval(timeout)
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let left = deadline.timeIntervalSinceNow
            guard left > 0 else { return (data, false) }
            var descriptor = pollfd(fd: socket, events: Int16(POLLIN), revents: 0)
            let ready = poll(&descriptor, 1, Int32(max(1, left * 1000)))
            if ready == 0 { continue }
            guard ready > 0 else { return (data, true) }
            let count = recv(socket, &buffer, buffer.count, 0)
            if count <= 0 { return (data, true) }  // 0: orderly close; < 0: reset
            data.append(contentsOf: buffer[0..<count])
        }
    }

    /// Reads until the first response is complete (by its Content-Length), or `timeout`.
    public func readResponse(timeout: Double) -> RawHTTPResponse? {
        var data = Data()
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let response = RawHTTPResponse(data), response.complete { return response }
            let (more, closed) = read(timeout: min(0.05, max(0.001, deadline.timeIntervalSinceNow)))
            data.append(more)
            if closed { return RawHTTPResponse(data) }
        }
        return RawHTTPResponse(data)
    }
}

#if canImport(Glibc)
private func sendBytes(_ socket: Int32, _ pointer: UnsafeRawPointer?, _ count: Int) -> Int { Glibc.send(socket, pointer, count, Int32(MSG_NOSIGNAL)) }
#else
private func sendBytes(_ socket: Int32, _ pointer: UnsafeRawPointer?, _ count: Int) -> Int { Darwin.send(socket, pointer, count, 0) }
#endif

/// The first HTTP response in some bytes: status, headers (lower-cased names) and body.
public struct RawHTTPResponse {
    public var status: Int
    public var headers: [String: String]
    public var body: Data
    /// Whether the body has all the bytes its Content-Length announces.
    public var complete: Bool

    public init?(_ data: Data) {
        guard let end = data.range(of: Data("\r\n\r\n".utf8)) else { return nil }
        let head = String(decoding: data[..<end.lowerBound], as: UTF8.self).components(separatedBy: "\r\n")
        let statusLine = head[0].split(separator: " ")
        guard statusLine.count >= 2, statusLine[0].hasPrefix("HTTP/"), let status = Int(statusLine[1]) else { return nil }
        self.status = status
        var headers = [String: String]()
        for line in head.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        self.headers = headers
        let rest = data[end.upperBound...]
        let length = headers["content-length"].flatMap(Int.init) ?? rest.count
        body = Data(rest.prefix(length))
        complete = rest.count >= length
    }

    /// The OpenAI-style error's `code`, if the body is one.
    public var errorCode: String? {
        ((try? JSONSerialization.jsonObject(with: body)) as? [String: Any]).flatMap { ($0["error"] as? [String: Any])?["code"] as? String }
    }
}
