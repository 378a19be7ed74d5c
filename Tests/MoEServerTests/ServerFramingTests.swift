import HTTPProbe
import Foundation
import MoEServer
import XCTest

/// The server against raw TCP bytes: framing errors get 4xx and a closed connection, the
/// timeouts and the connection limit hold, the API key and methods are checked.
final class ServerFramingTests: XCTestCase {
    let completion = #"{"prompt": "import os", "max_tokens": 1}"#

    func start(_ configure: (inout ServerConfiguration) -> Void = { _ in }) async throws -> (MoEServer, RunningServer) {
        let fixture = try ServeFixture.shared()
        var configuration = ServerConfiguration(plans: ["python-50"], maxBodyBytes: 64 * 1024)
        configure(&configuration)
        let (server, running, _) = try await fixture.startServer(configuration)
        return (server, running)
    }

    /// Sends `bytes`, optionally closes the sending side, and expects `status` then a close.
    func expect(_ status: Int, code: String?, after bytes: String, shutdown: Bool = false, port: Int,
                file: StaticString = #filePath, line: UInt = #line) throws {
        let connection = try RawHTTPConnection(port: port)
        connection.send(bytes)
        if shutdown { connection.shutdownWrite() }
        let response = try XCTUnwrap(connection.readResponse(timeout: 10), "no response", file: file, line: line)
        XCTAssertEqual(response.status, status, String(decoding: response.body, as: UTF8.self), file: file, line: line)
        if let code { XCTAssertEqual(response.errorCode, code, file: file, line: line) }
        XCTAssertTrue(connection.read(timeout: 5).closed, "the connection stayed open after \(status)", file: file, line: line)
    }

    func testFramingErrorsGet400AndCloseTheConnection() async throws {
        let (server, running) = try await start()
        defer { withExtendedLifetime(server) {} }
        let port = running.port
        // A chunk size that is not hexadecimal.
        try expect(400, code: "invalid_http", after: "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n{}\r\n0\r\n\r\n", port: port)
        // A body shorter than its Content-Length, then the client's end of input.
        try expect(400, code: "invalid_http", after: "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"prompt\": \"a\"}", shutdown: true, port: port)
        // A request line that is not one, and a header line without a colon (Hummingbird's own 400, no body).
        try expect(400, code: nil, after: "THIS IS NOT HTTP\r\n\r\n", port: port)
        try expect(400, code: nil, after: "GET /health HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", port: port)
        // Still serving after each.
        let ok = try RawHTTPConnection(port: port)
        ok.send("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: \(completion.utf8.count)\r\n\r\n\(completion)")
        XCTAssertEqual(ok.readResponse(timeout: 60)?.status, 200)
        XCTAssertEqual(server.metrics.requestCount(endpoint: "/v1/completions", status: 500), 0)
        await running.stop()
    }

    func testOversizedBodyWithConnectionCloseGets413AndAClosedSocket() async throws {
        let (server, running) = try await start()
        defer { withExtendedLifetime(server) {} }
        let body = "{\"prompt\": \"" + String(repeating: "a", count: 100 * 1024) + "\"}"
        try expect(413, code: "request_too_large",
                   after: "POST /v1/completions HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)",
                   port: running.port)
        // Without Connection: close too: the rest of the body cannot be trusted to be a request.
        try expect(413, code: "request_too_large",
                   after: "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)",
                   port: running.port)
        await running.stop()
    }

    func testAStalledBodyGets408WithinTheRequestTimeout() async throws {
        let (server, running) = try await start { $0.requestTimeout = 0.5 }
        defer { withExtendedLifetime(server) {} }
        let connection = try RawHTTPConnection(port: running.port)
        connection.send("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{\"pro")
        let started = Date()
        let response = try XCTUnwrap(connection.readResponse(timeout: 10))
        XCTAssertEqual(response.status, 408)
        XCTAssertEqual(response.errorCode, "request_timeout")
        XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(started), 0.4)
        XCTAssertTrue(connection.read(timeout: 5).closed)
        await running.stop()
    }

    func testIdleConnectionsAreClosedAfterTheIdleTimeout() async throws {
        let (server, running) = try await start { $0.idleTimeout = 0.5 }
        defer { withExtendedLifetime(server) {} }
        // A connection that never sends anything.
        let silent = try RawHTTPConnection(port: running.port)
        let (nothing, closed) = silent.read(timeout: 5)
        XCTAssertTrue(closed)
        XCTAssertTrue(nothing.isEmpty)
        // A kept-alive connection after its answer.
        let kept = try RawHTTPConnection(port: running.port)
        kept.send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(kept.readResponse(timeout: 10)?.status, 200)
        let started = Date()
        XCTAssertTrue(kept.read(timeout: 5).closed)
        XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(started), 0.2)
        await running.stop()
    }

    func testConnectionsPastTheLimitGet503() async throws {
        let (server, running) = try await start { $0.maxConnections = 2 }
        defer { withExtendedLifetime(server) {} }
        var first: RawHTTPConnection? = try RawHTTPConnection(port: running.port)
        let second = try RawHTTPConnection(port: running.port)
        // Both admitted: each answers a request.
        for connection in [first!, second] {
            connection.send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            XCTAssertEqual(connection.readResponse(timeout: 10)?.status, 200)
        }
        let third = try RawHTTPConnection(port: running.port)
        let refused = try XCTUnwrap(third.readResponse(timeout: 10))
        XCTAssertEqual(refused.status, 503)
        XCTAssertEqual(refused.errorCode, "too_many_connections")
        XCTAssertTrue(third.read(timeout: 5).closed)
        // Closing one frees its place.
        first = nil
        _ = first
        var admitted = false
        for _ in 0..<50 where !admitted {
            try await Task.sleep(for: .milliseconds(100))
            let next = try RawHTTPConnection(port: running.port)
            next.send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            admitted = next.readResponse(timeout: 10)?.status == 200
        }
        XCTAssertTrue(admitted)
        await running.stop()
    }

    func testAPIKeyIsRequiredOnV1ButNotOnHealth() async throws {
        let (server, running) = try await start { $0.apiKey = "sk-test-123" }
        defer { withExtendedLifetime(server) {} }
        func get(_ path: String, authorization: String?) throws -> RawHTTPResponse? {
            let connection = try RawHTTPConnection(port: running.port)
            connection.send("GET \(path) HTTP/1.1\r\nHost: x\r\n" + (authorization.map { "Authorization: \($0)\r\n" } ?? "") + "\r\n")
            return connection.readResponse(timeout: 10)
        }
        for wrong in [nil, "Bearer sk-test-12", "Bearer sk-test-1234", "Basic sk-test-123", "sk-test-123"] {
            let response = try XCTUnwrap(try get("/v1/models", authorization: wrong))
            XCTAssertEqual(response.status, 401, "\(wrong ?? "no header")")
            XCTAssertEqual(response.errorCode, "invalid_api_key")
            XCTAssertEqual(response.headers["www-authenticate"], "Bearer")
        }
        XCTAssertEqual(try get("/v1/models", authorization: "Bearer sk-test-123")?.status, 200)
        XCTAssertEqual(try get("/health", authorization: nil)?.status, 200)
        await running.stop()
    }

    func testWrongMethodOnAKnownPathGets405WithAllow() async throws {
        let (server, running) = try await start()
        defer { withExtendedLifetime(server) {} }
        for (method, path, allow) in [("GET", "/v1/completions", "POST"), ("DELETE", "/v1/chat/completions", "POST"), ("POST", "/v1/models", "GET"), ("PUT", "/health", "GET")] {
            let connection = try RawHTTPConnection(port: running.port)
            connection.send("\(method) \(path) HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
            let response = try XCTUnwrap(connection.readResponse(timeout: 10))
            XCTAssertEqual(response.status, 405, "\(method) \(path)")
            XCTAssertEqual(response.headers["allow"], allow)
            XCTAssertEqual(response.errorCode, "method_not_allowed")
        }
        let unknown = try RawHTTPConnection(port: running.port)
        unknown.send("GET /v1/nothing HTTP/1.1\r\nHost: x\r\n\r\n")
        XCTAssertEqual(unknown.readResponse(timeout: 10)?.status, 404)
        await running.stop()
    }
}
