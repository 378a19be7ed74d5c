import Foundation
import Hummingbird

/// Wraps every route: turns thrown errors into OpenAI-style JSON errors with their status
/// (so no bad request ends the server or leaves a client without an answer), and records
/// each request's status and latency in the metrics. The latency of a streamed answer is
/// taken when its last byte has been written.
struct APIMiddleware<Context: RequestContext>: RouterMiddleware {
    let metrics: ServerMetrics
    /// Paths counted under their own name; anything else is counted as `other`, so that
    /// clients probing random paths cannot grow the metrics without bound.
    let endpoints: Set<String>
    let maxBodyBytes: Int

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let started = ContinuousClock.now
        let path = request.uri.path
        var response: Response
        do {
            response = try await next(request, context)
        } catch let error as APIError {
            response = error.response
        } catch let error as any HTTPResponseError {
            switch error.status {
            case .notFound: response = APIError.noRoute(path).response
            // Hummingbird's body collector reports an oversized body this way.
            case .contentTooLarge: response = APIError.bodyTooLarge(limit: maxBodyBytes).response
            default:
                response = APIError(status: error.status, message: "\(error)", type: "invalid_request_error").response
            }
        } catch {
            response = APIError.internalFailure(error).response
        }
        let endpoint = endpoints.contains(path) ? path : "other"
        metrics.recordRequest(endpoint: endpoint, status: Int(response.status.code))
        let metrics = self.metrics
        let seconds = { @Sendable in
            let elapsed = ContinuousClock.now - started
            return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        }
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
}

extension APIError {
    var response: Response {
        Response(status: status, headers: [.contentType: "application/json"], body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
    }
}
