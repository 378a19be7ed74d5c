import Foundation
import Hummingbird

/// An error answered to an HTTP client in OpenAI's shape:
/// `{"error": {"message": …, "type": …, "param": …, "code": …}}` with a matching status.
/// Library code throws these; the router turns them into responses, so the server keeps
/// serving after any bad request.
public struct APIError: Error, Equatable, CustomStringConvertible {
    public var status: HTTPResponse.Status
    public var message: String
    /// OpenAI's error families: `invalid_request_error`, `not_found_error`, `server_error`, …
    public var type: String
    /// The request field at fault, when there is one.
    public var param: String?
    /// A short machine-readable code (`model_not_found`, `context_length_exceeded`, …).
    public var code: String?

    /// The methods a path answers, sent in a 405's `Allow` header.
    public var allow: String?

    public init(status: HTTPResponse.Status, message: String, type: String, param: String? = nil, code: String? = nil, allow: String? = nil) {
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.allow = allow
    }

    public var description: String { "\(status.code) \(type): \(message)" }

    /// 400: a field is missing, of the wrong type or out of range.
    public static func invalidParameter(_ param: String, _ message: String) -> APIError {
        APIError(status: .badRequest, message: message, type: "invalid_request_error", param: param, code: "invalid_value")
    }

    /// 400: the body is not the JSON object the endpoint expects.
    public static func malformedJSON(_ reason: String) -> APIError {
        APIError(status: .badRequest, message: "the request body is not valid JSON for this endpoint: \(reason)",
                 type: "invalid_request_error", code: "invalid_json")
    }

    /// 400: a field the server does not implement; sent rather than silently ignored.
    public static func unsupportedParameter(_ param: String, _ why: String) -> APIError {
        APIError(status: .badRequest, message: "\(param) is not supported by this server: \(why)", type: "invalid_request_error",
                 param: param, code: "unsupported_parameter")
    }

    /// 400: the request's HTTP framing is broken (bad chunk size, body shorter than its
    /// Content-Length, malformed head); the connection is closed after the answer.
    public static func malformedHTTP(_ reason: String) -> APIError {
        APIError(status: .badRequest, message: "malformed HTTP request: \(reason)", type: "invalid_request_error", code: "invalid_http")
    }

    /// 401: `/v1/*` without the server's API key.
    public static func unauthorized(_ reason: String) -> APIError {
        APIError(status: .unauthorized, message: reason, type: "invalid_request_error", code: "invalid_api_key")
    }

    /// 405: a known path asked with a method it does not answer.
    public static func methodNotAllowed(_ method: String, path: String, allowed: [String]) -> APIError {
        APIError(status: .methodNotAllowed, message: "\(path) does not answer \(method); allowed: \(allowed.joined(separator: ", "))",
                 type: "invalid_request_error", code: "method_not_allowed", allow: allowed.joined(separator: ", "))
    }

    /// 404: the requested model (plan) is not served here.
    public static func modelNotFound(_ name: String, served: [String]) -> APIError {
        APIError(status: .notFound, message: "the model '\(name)' does not exist or is not served here; served: \(served.joined(separator: ", "))",
                 type: "invalid_request_error", param: "model", code: "model_not_found")
    }

    /// 404: no such endpoint.
    public static func noRoute(_ path: String) -> APIError {
        APIError(status: .notFound, message: "no endpoint at \(path)", type: "invalid_request_error", code: "unknown_url")
    }

    /// 413: the body is larger than the server accepts.
    public static func bodyTooLarge(limit: Int) -> APIError {
        APIError(status: .contentTooLarge, message: "the request body is larger than \(limit) bytes", type: "invalid_request_error",
                 code: "request_too_large")
    }

    /// 422: the prompt (plus at least one generated token) does not fit the model's context.
    public static func contextOverflow(promptTokens: Int, limit: Int) -> APIError {
        APIError(status: .unprocessableContent,
                 message: "the prompt is \(promptTokens) tokens long; the model's context is \(limit) tokens and one is needed for the answer",
                 type: "invalid_request_error", param: "prompt", code: "context_length_exceeded")
    }

    /// 500: the model failed while generating (a store read, a corrupt record).
    public static func internalFailure(_ error: any Error) -> APIError {
        APIError(status: .internalServerError, message: "generation failed: \(error)", type: "server_error", code: "internal_error")
    }

    /// The JSON body of the error response.
    public var body: Data {
        struct Envelope: Encodable {
            struct Detail: Encodable {
                var message: String
                var type: String
                var param: String?
                var code: String?

                // Encode nils as JSON null, as OpenAI does, so clients can rely on the keys.
                func encode(to encoder: any Encoder) throws {
                    var container = encoder.container(keyedBy: CodingKeys.self)
                    try container.encode(message, forKey: .message)
                    try container.encode(type, forKey: .type)
                    try container.encode(param, forKey: .param)
                    try container.encode(code, forKey: .code)
                }
                enum CodingKeys: String, CodingKey { case message, type, param, code }
            }
            var error: Detail
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? encoder.encode(Envelope(error: .init(message: message, type: type, param: param, code: code)))) ?? Data()
    }
}
