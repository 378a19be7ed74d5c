import Foundation

/// The parts of a Hugging Face `tokenizer.json` that a byte-level BPE tokenizer reads, decoded
/// with `Codable`. The pipeline sections (normalizer, pre-tokenizer, post-processor, decoder)
/// are kept as generic JSON and interpreted by `Tokenizer`, so that an unknown type can be
/// reported by name instead of failing as a decoding error.
struct TokenizerFile: Decodable {
    var model: TokenizerModelSpec
    var addedTokens: [TokenizerAddedTokenSpec]
    var normalizer: TokenizerJSON
    var preTokenizer: TokenizerJSON
    var postProcessor: TokenizerJSON
    var decoder: TokenizerJSON

    enum CodingKeys: String, CodingKey {
        case model, normalizer, decoder
        case addedTokens = "added_tokens"
        case preTokenizer = "pre_tokenizer"
        case postProcessor = "post_processor"
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        model = try container.decode(TokenizerModelSpec.self, forKey: .model)
        addedTokens = try container.decodeIfPresent([TokenizerAddedTokenSpec].self, forKey: .addedTokens) ?? []
        normalizer = try container.decodeIfPresent(TokenizerJSON.self, forKey: .normalizer) ?? .null
        preTokenizer = try container.decodeIfPresent(TokenizerJSON.self, forKey: .preTokenizer) ?? .null
        postProcessor = try container.decodeIfPresent(TokenizerJSON.self, forKey: .postProcessor) ?? .null
        self.decoder = try container.decodeIfPresent(TokenizerJSON.self, forKey: .decoder) ?? .null
    }

    /// Decodes `data`, turning JSON and decoding errors into `TokenizerError.malformed`.
    static func decode(_ data: Data, file: String) throws -> TokenizerFile {
        do {
            return try JSONDecoder().decode(TokenizerFile.self, from: data)
        } catch let error as DecodingError {
            throw TokenizerError.malformed(file: file, reason: Self.describe(error))
        } catch {
            throw TokenizerError.malformed(file: file, reason: "not valid JSON (\(error.localizedDescription))")
        }
    }

    private static func describe(_ error: DecodingError) -> String {
        func path(_ context: DecodingError.Context) -> String {
            let keys = context.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }
            return keys.isEmpty ? "the top level" : keys.joined(separator: ".")
        }
        switch error {
        case let .dataCorrupted(context):
            return context.codingPath.isEmpty ? "not valid JSON" : "bad value at \(path(context)): \(context.debugDescription)"
        case let .keyNotFound(key, context):
            return "no \"\(key.stringValue)\" in \(path(context))"
        case let .typeMismatch(type, context), let .valueNotFound(type, context):
            return "\(path(context)) is not a \(type): \(context.debugDescription)"
        @unknown default:
            return "\(error)"
        }
    }
}

/// `model`: for `"type": "BPE"` the vocabulary, merges and options; for any other type only the
/// type is read (so that it can be refused by name).
struct TokenizerModelSpec: Decodable {
    var type: String?
    var vocab: [String: Int] = [:]
    var merges: [TokenizerMergeSpec] = []
    var ignoreMerges = false
    var byteFallback = false
    var fuseUnk = false
    var unkToken: String?
    var continuingSubwordPrefix: String?
    var endOfWordSuffix: String?
    var dropout: Double?

    enum CodingKeys: String, CodingKey {
        case type, vocab, merges, dropout
        case ignoreMerges = "ignore_merges"
        case byteFallback = "byte_fallback"
        case fuseUnk = "fuse_unk"
        case unkToken = "unk_token"
        case continuingSubwordPrefix = "continuing_subword_prefix"
        case endOfWordSuffix = "end_of_word_suffix"
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        type = try container.decodeIfPresent(String.self, forKey: .type)
        if let type, type != "BPE" { return }
        vocab = try container.decode([String: Int].self, forKey: .vocab)
        if try container.contains(.merges) && !container.decodeNil(forKey: .merges) {
            merges = try Self.decodeMerges(container.nestedUnkeyedContainer(forKey: .merges))
        }
        ignoreMerges = try container.decodeIfPresent(Bool.self, forKey: .ignoreMerges) ?? false
        byteFallback = try container.decodeIfPresent(Bool.self, forKey: .byteFallback) ?? false
        fuseUnk = try container.decodeIfPresent(Bool.self, forKey: .fuseUnk) ?? false
        unkToken = try container.decodeIfPresent(String.self, forKey: .unkToken)
        // transformers' converters write "" for both; an empty affix changes no merge, so
        // it means the same as an absent one (only a non-empty affix is refused).
        continuingSubwordPrefix = try container.decodeIfPresent(String.self, forKey: .continuingSubwordPrefix).flatMap { $0.isEmpty ? nil : $0 }
        endOfWordSuffix = try container.decodeIfPresent(String.self, forKey: .endOfWordSuffix).flatMap { $0.isEmpty ? nil : $0 }
        dropout = try container.decodeIfPresent(Double.self, forKey: .dropout)
    }
}

extension TokenizerModelSpec {
    /// The merges, guessing each entry's form from the previous one: trying the wrong form
    /// first costs a thrown error per entry, which dominates loading a large vocabulary.
    private static func decodeMerges(_ container: UnkeyedDecodingContainer) throws -> [TokenizerMergeSpec] {
        var container = container
        var merges = [TokenizerMergeSpec]()
        merges.reserveCapacity(container.count ?? 0)
        var pairs = false
        while !container.isAtEnd {
            if pairs, let pair = try? container.decode([String].self) {
                merges.append(.pair(pair))
            } else if let line = try? container.decode(String.self) {
                merges.append(.line(line))
                pairs = false
            } else {
                merges.append(try container.decode(TokenizerMergeSpec.self))
                pairs = true
            }
        }
        return merges
    }
}

/// One merge, in either of the two forms found in tokenizer.json files: `"a b"` (older files)
/// or `["a", "b"]` (tokenizers ≥ 0.20, needed when tokens contain spaces).
enum TokenizerMergeSpec: Decodable, CustomStringConvertible {
    case line(String)
    case pair([String])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if let line = try? container.decode(String.self) {
            self = .line(line)
        } else if let pair = try? container.decode([String].self) {
            self = .pair(pair)
        } else {
            throw DecodingError.typeMismatch(
                String.self,
                .init(codingPath: container.codingPath, debugDescription: "a merge must be \"a b\" or [\"a\", \"b\"]"))
        }
    }

    var description: String {
        switch self {
        case let .line(line): return line.debugDescription
        case let .pair(pair): return "[" + pair.map(\.debugDescription).joined(separator: ", ") + "]"
        }
    }

    /// The two halves, or nil when the entry is not exactly two tokens (HF splits the string
    /// form on every space and requires two parts).
    var parts: (String, String)? {
        switch self {
        case let .line(line):
            let parts = line.split(separator: " ", omittingEmptySubsequences: false)
            return parts.count == 2 ? (String(parts[0]), String(parts[1])) : nil
        case let .pair(pair):
            return pair.count == 2 ? (pair[0], pair[1]) : nil
        }
    }
}

/// An entry of `added_tokens`. Missing flags take the defaults of HF's `AddedToken::from`.
struct TokenizerAddedTokenSpec: Decodable {
    var id: Int
    var content: String
    var singleWord: Bool
    var lstrip: Bool
    var rstrip: Bool
    var normalized: Bool
    var special: Bool

    enum CodingKeys: String, CodingKey {
        case id, content, lstrip, rstrip, normalized, special
        case singleWord = "single_word"
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.decode(Int.self, forKey: .id)
        content = try container.decode(String.self, forKey: .content)
        special = try container.decodeIfPresent(Bool.self, forKey: .special) ?? false
        singleWord = try container.decodeIfPresent(Bool.self, forKey: .singleWord) ?? false
        lstrip = try container.decodeIfPresent(Bool.self, forKey: .lstrip) ?? false
        rstrip = try container.decodeIfPresent(Bool.self, forKey: .rstrip) ?? false
        normalized = try container.decodeIfPresent(Bool.self, forKey: .normalized) ?? !special
    }
}

/// A JSON value, for the loosely typed pipeline sections.
indirect enum TokenizerJSON: Decodable, Sendable, CustomStringConvertible {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([TokenizerJSON])
    case object([String: TokenizerJSON])

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([TokenizerJSON].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: TokenizerJSON].self))
        }
    }

    subscript(key: String) -> TokenizerJSON? {
        if case let .object(object) = self { return object[key] }
        return nil
    }

    var isNull: Bool { if case .null = self { return true } else { return false } }
    var string: String? { if case let .string(value) = self { return value } else { return nil } }
    var bool: Bool? { if case let .bool(value) = self { return value } else { return nil } }
    var array: [TokenizerJSON]? { if case let .array(value) = self { return value } else { return nil } }
    var int: Int? {
        if case let .number(value) = self, value == value.rounded(), abs(value) < 1e15 { return Int(value) }
        return nil
    }
    /// The `"type"` of a pipeline section.
    var type: String? { self["type"]?.string }

    var description: String {
        switch self {
        case .null: return "null"
        case let .bool(value): return String(value)
        case let .number(value): return value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : String(value)
        case let .string(value): return value.debugDescription
        case let .array(values): return "[" + values.map(\.description).joined(separator: ", ") + "]"
        case let .object(object):
            return "{" + object.keys.sorted().map { "\($0.debugDescription): \(object[$0]!)" }.joined(separator: ", ") + "}"
        }
    }
}
