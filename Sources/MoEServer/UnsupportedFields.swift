import Foundation

/// OpenAI request fields this server does not implement, refused with a 400 naming the field
/// rather than accepted and ignored (a client asking for tools or JSON output must not get a
/// plain completion that looks like success).
///
/// Refused: `tools`, `tool_choice`, `functions`, `function_call`, `parallel_tool_calls`,
/// `response_format` other than `{"type": "text"}`, `logit_bias` other than `{}`, `audio`,
/// `modalities` other than `["text"]`, `prediction`, `web_search_options`; on completions
/// also `echo: true`, `best_of` above 1 and a non-empty `suffix`. (`n` above 1 is refused by
/// `CommonFields`; `logprobs` with `stream` by `GenerationRequest`.)
///
/// Ignored, because they do not change the answer: `user`, `metadata`, `store`,
/// `service_tier`, and `stream_options` keys other than `include_usage`. Any other unknown
/// field is ignored too, as OpenAI's own server does with fields it does not know.
enum UnsupportedFields {
    static func check(_ json: Data, chat: Bool) throws {
        guard let body = try? JSONDecoder().decode([String: JSONValue].self, from: json) else {
            return  // not an object: the typed decoding reports it
        }
        func present(_ key: String) -> JSONValue? {
            guard let value = body[key], value != .null else { return nil }
            return value
        }
        for key in ["tools", "tool_choice", "functions", "function_call", "parallel_tool_calls", "audio", "prediction", "web_search_options"] {
            if present(key) != nil { throw APIError.unsupportedParameter(key, "tool calls, audio and predicted outputs are not implemented; remove the field") }
        }
        if let format = present("response_format") {
            guard format == .object(["type": .string("text")]) else {
                throw APIError.unsupportedParameter("response_format", "only {\"type\": \"text\"} is implemented (no JSON mode or schema)")
            }
        }
        if let bias = present("logit_bias"), bias != .object([:]) {
            throw APIError.unsupportedParameter("logit_bias", "logit biases are not implemented")
        }
        if let modalities = present("modalities") {
            guard case let .array(list) = modalities, list.allSatisfy({ $0 == .string("text") }) else {
                throw APIError.unsupportedParameter("modalities", "only text output is implemented")
            }
        }
        guard !chat else { return }
        switch present("echo") {
        case nil, .bool(false): break
        case .bool(true): throw APIError.unsupportedParameter("echo", "echoing the prompt is not implemented")
        default: throw APIError.invalidParameter("echo", "echo must be a boolean")
        }
        switch present("best_of") {
        case nil, .number(1): break
        case let .number(count) where count == count.rounded(): throw APIError.unsupportedParameter("best_of", "only best_of = 1 is implemented, got \(count)")
        default: throw APIError.invalidParameter("best_of", "best_of must be an integer")
        }
        switch present("suffix") {
        case nil, .string(""): break
        case .string: throw APIError.unsupportedParameter("suffix", "insertion (suffix) is not implemented")
        default: throw APIError.invalidParameter("suffix", "suffix must be a string")
        }
    }
}

/// Any JSON value, for looking at fields whose type the typed decoding does not fix.
enum JSONValue: Decodable, Equatable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    init(from decoder: any Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null }
        else if let value = try? c.decode(Bool.self) { self = .bool(value) }
        else if let value = try? c.decode(Double.self) { self = .number(value) }
        else if let value = try? c.decode(String.self) { self = .string(value) }
        else if let value = try? c.decode([JSONValue].self) { self = .array(value) }
        else { self = .object(try c.decode([String: JSONValue].self)) }
    }
}
