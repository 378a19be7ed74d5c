import Foundation
import MoE

/// The `tokenizer.ggml.*` metadata llama.cpp builds its vocabulary from, read from a
/// byte-level BPE `tokenizer.json` (and `tokenizer_config.json` for the chat template and
/// whether a BOS token is prepended).
///
/// llama.cpp does not run the pre-tokenizer regex it finds in `tokenizer.json`: it picks one
/// of its built-in ones by the name in `tokenizer.ggml.pre`. The name is chosen here from
/// the regex itself, and a tokenizer whose regex llama.cpp has no name for is refused rather
/// than exported with one that would split text differently.
enum GGUFTokenizerMetadata {
    /// llama.cpp's token types (`llama_token_type`).
    enum TokenType: Int32 { case normal = 1, unused = 5, control = 3, userDefined = 4 }

    static func entries(tokenizerJSON: Data, tokenizerConfig: Data?, vocabularySize: Int,
                        description: ModelDescription) throws -> [(String, GGUFValue)] {
        guard let root = try JSONSerialization.jsonObject(with: tokenizerJSON) as? [String: Any],
              let model = root["model"] as? [String: Any] else {
            throw GGUFExportError.unsupportedTokenizer("tokenizer.json has no model object")
        }
        guard (model["type"] as? String) == "BPE" else {
            throw GGUFExportError.unsupportedTokenizer("model type '\(model["type"] as? String ?? "?")' (only byte-level BPE, llama.cpp's gpt2 model, is exported)")
        }
        let pre = try preTokenizerName(root["pre_tokenizer"])
        guard let vocab = model["vocab"] as? [String: Int] else { throw GGUFExportError.unsupportedTokenizer("BPE model has no vocab") }

        var tokens = [String?](repeating: nil, count: vocabularySize)
        var types = [TokenType](repeating: .normal, count: vocabularySize)
        for (token, id) in vocab where (0..<vocabularySize).contains(id) { tokens[id] = token }
        for added in root["added_tokens"] as? [[String: Any]] ?? [] {
            guard let id = added["id"] as? Int, let content = added["content"] as? String, (0..<vocabularySize).contains(id) else { continue }
            tokens[id] = content
            types[id] = (added["special"] as? Bool ?? false) ? .control : .userDefined
        }
        // Rows of the embedding no token names (a vocabulary padded to a round size) get
        // placeholder tokens, as convert_hf_to_gguf.py writes them.
        for id in 0..<vocabularySize where tokens[id] == nil {
            tokens[id] = "[PAD\(id)]"
            types[id] = .unused
        }
        // Merges are "a b" strings in older files and ["a", "b"] pairs in newer ones.
        let merges: [String] = (model["merges"] as? [Any] ?? []).compactMap { merge in
            if let text = merge as? String { return text }
            if let pair = merge as? [String], pair.count == 2 { return pair[0] + " " + pair[1] }
            return nil
        }

        var out: [(String, GGUFValue)] = [
            ("tokenizer.ggml.model", .string("gpt2")),
            ("tokenizer.ggml.pre", .string(pre)),
            ("tokenizer.ggml.tokens", .strings(tokens.map { $0! })),
            ("tokenizer.ggml.token_type", .int32s(types.map(\.rawValue))),
            ("tokenizer.ggml.merges", .strings(merges)),
        ]
        let config = try tokenizerConfig.flatMap { try JSONSerialization.jsonObject(with: $0) as? [String: Any] } ?? [:]
        func id(of key: String) -> Int? {
            let content = (config[key] as? String) ?? ((config[key] as? [String: Any])?["content"] as? String)
            return content.flatMap { c in tokens.firstIndex(of: c) }
        }
        if let bos = description.bosTokenID ?? id(of: "bos_token") { out.append(("tokenizer.ggml.bos_token_id", .uint32(UInt32(bos)))) }
        if let eos = description.eosTokenIDs.first ?? id(of: "eos_token") { out.append(("tokenizer.ggml.eos_token_id", .uint32(UInt32(eos)))) }
        if let pad = id(of: "pad_token") { out.append(("tokenizer.ggml.padding_token_id", .uint32(UInt32(pad)))) }
        if let unk = id(of: "unk_token") { out.append(("tokenizer.ggml.unknown_token_id", .uint32(UInt32(unk)))) }
        // Stated explicitly: llama.cpp's default for BPE vocabularies differs between versions.
        out.append(("tokenizer.ggml.add_bos_token", .bool(config["add_bos_token"] as? Bool ?? false)))
        out.append(("tokenizer.ggml.add_eos_token", .bool(config["add_eos_token"] as? Bool ?? false)))
        if let template = config["chat_template"] as? String { out.append(("tokenizer.chat_template", .string(template))) }
        return out
    }

    /// llama.cpp's built-in pre-tokenizer (`tokenizer.ggml.pre`) equal to this tokenizer's.
    static func preTokenizerName(_ pre: Any?) throws -> String {
        guard let pre = pre as? [String: Any], let type = pre["type"] as? String else {
            throw GGUFExportError.unsupportedTokenizer("no pre_tokenizer")
        }
        // GPT-2's: ByteLevel alone, splitting with its built-in regex.
        if type == "ByteLevel" {
            guard pre["use_regex"] as? Bool ?? true, !(pre["add_prefix_space"] as? Bool ?? false) else {
                throw GGUFExportError.unsupportedTokenizer("ByteLevel pre-tokenizer without GPT-2's regex or with a prefix space")
            }
            return "gpt-2"
        }
        // Qwen2 / Llama 3: a Split on their regex, then ByteLevel without its own regex.
        if type == "Sequence", let steps = pre["pretokenizers"] as? [[String: Any]], steps.count == 2,
           steps[0]["type"] as? String == "Split", steps[1]["type"] as? String == "ByteLevel",
           !(steps[1]["use_regex"] as? Bool ?? true),
           let regex = (steps[0]["pattern"] as? [String: Any])?["Regex"] as? String {
            switch regex {
            case TokenizerPatterns.qwen2: return "qwen2"
            case TokenizerPatterns.llama3: return "llama-bpe"
            default: break
            }
        }
        throw GGUFExportError.unsupportedTokenizer("a pre-tokenizer llama.cpp has no built-in name for (\(type))")
    }
}

/// Pre-tokenizer regexes as Hugging Face tokenizers write them.
enum TokenizerPatterns {
    static let qwen2 = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
    static let llama3 = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
}
