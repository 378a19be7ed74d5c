import Foundation
import Hummingbird
import HummingbirdCore
import NIOHTTP1

/// Wraps every route: turns thrown errors into OpenAI-style JSON errors with their status
/// (so no bad request ends the server or leaves a client without an answer), and records
/// each request's status and latency in the metrics. The latency of a streamed answer is
/// taken when its last byte has been written.
///
/// It also checks what applies to every route: the API key on `/v1/*` (`Authorization:
/// Bearer KEY`, 401 otherwise; `/health` and `/metrics` stay open), and the method (405 with
/// `Allow` for a known path asked with another). Errors in the request's framing (a bad chunk
/// size, a body cut short, a read timeout) and oversized bodies are answered 400, 408 or 413
/// with `Connection: close`, which `ConnectionGuard` honours by closing the connection.
struct APIMiddleware<Context: RequestContext>: RouterMiddleware {
    let metrics: ServerMetrics
    /// Each endpoint and the methods it answers. Paths counted under their own name; anything
    /// else is counted as `other`, so that clients probing random paths cannot grow the
    /// metrics without bound.
    let endpoints: [String: [HTTPRequest.Method]]
    let maxBodyBytes: Int
    /// nil: no key required.
    let apiKey: String?

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let started = ContinuousClock.now
        let path = request.uri.path
        var response: Response
        do {
            try checkMethod(request)
            try checkKey(request)
            response = try await next(request, context)
        } catch {
            response = Self.response(for: error, path: path, maxBodyBytes: maxBodyBytes)
        }
        let endpoint = endpoints[path] != nil ? path : "other"
        metrics.recordRequest(endpoint: endpoint, status: Int(response.status.code))
        let metrics = self.metrics
        let seconds = { @Sendable in (ContinuousClock.now - started).seconds }
        if response.body.contentLength != nil {
            metrics.recordLatency(seconds())
        } else {
            let body = response.body
            response.body = ResponseBody { writer in
                defer { metrics.recordLatency(seconds()) }
                try await body.write(writer)
            }
        }
        return response
    }

    /// 405 for a known path asked with a method it does not answer.
    private func checkMethod(_ request: Request) throws {
        guard let allowed = endpoints[request.uri.path], !allowed.contains(request.method) else { return }
        throw APIError.methodNotAllowed(request.method.rawValue, path: request.uri.path, allowed: allowed.map(\.rawValue))
    }

    /// 401 unless `/v1/*` requests carry the key.
    private func checkKey(_ request: Request) throws {
        guard let apiKey, request.uri.path.hasPrefix("/v1/") else { return }
        let given = request.headers[.authorization] ?? ""
        let prefix = "Bearer "
        guard given.hasPrefix(prefix) else { throw APIError.unauthorized(given.isEmpty ? "no Authorization header: send 'Authorization: Bearer KEY'" : "the Authorization header is not 'Bearer KEY'") }
        guard Self.constantTimeEqual(Array(given.utf8.dropFirst(prefix.utf8.count)), Array(apiKey.utf8)) else {
            throw APIError.unauthorized("incorrect API key provided")
        }
    }

    /// Compares without stopping at the first difference, so timing does not reveal the key's prefix.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var difference = UInt8(truncatingIfNeeded: a.count ^ b.count)
        for i in 0..<max(a.count, b.count) {
            difference |= (i < a.count ? a[i] : 0) ^ (i < b.count ? b[i] : 0)
        }
        return difference == 0
    }

    /// The answer to anything a route threw. Framing errors and 413s close the connection:
    /// what follows on the wire cannot be trusted to start a request.
    static func response(for error: any Error, path: String, maxBodyBytes: Int) -> Response {
        switch error {
        case let error as APIError:
            return error.response
        case let error as HTTPParserError:
            return APIError.malformedHTTP("\(error)").response
        case let error as RequestFramingError:
            switch error {
            case .readTimeout: return APIError(status: .requestTimeout, message: error.description, type: "invalid_request_error", code: "request_timeout").response
            case .truncatedBody: return APIError.malformedHTTP(error.description).response
            }
        case let error as any HTTPResponseError:
            switch error.status {
            case .notFound: return APIError.noRoute(path).response
            // Hummingbird's body collector reports an oversized body this way.
            case .contentTooLarge: return APIError.bodyTooLarge(limit: maxBodyBytes).response
            default: return APIError(status: error.status, message: "\(error)", type: "invalid_request_error").response
            }
        default:
            return APIError.internalFailure(error).response
        }
    }
}

extension APIError {
    /// Framing errors and 413s carry `Connection: close`; 405s their `Allow`; 401s `WWW-Authenticate`.
    var response: Response {
        var headers: HTTPFields = [.contentType: "application/json"]
        if closesConnection { headers[.connection] = "close" }
        if let allow { headers[.allow] = allow }
        if status == .unauthorized { headers[.wwwAuthenticate] = "Bearer" }
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
    }

    var closesConnection: Bool { status == .contentTooLarge || status == .requestTimeout || code == "invalid_http" }
}
