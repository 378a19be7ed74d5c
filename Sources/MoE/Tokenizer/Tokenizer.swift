import Foundation

/// A byte-level BPE tokenizer read from a Hugging Face `tokenizer.json`, giving the same ids
/// as the `tokenizers` library: added (special) tokens written in the text are matched first,
/// the rest is normalised (NFC if the file says so), split by the pre-tokenizer's pattern,
/// mapped to byte-level characters and merged by rank.
public struct Tokenizer: Sendable {
    private let model: BPEModel
    private let pattern: SplitPattern?
    private let addPrefixSpace: Bool
    private let normalizeNFC: Bool
    /// Added tokens by content, longest first (leftmost-longest matching).
    private let addedTokens: [(content: String, id: Int)]
    private let idToToken: [Int: String]
    private let addedIDs: Set<Int>
    public let specialTokenIDs: Set<Int>
    public let vocabularySize: Int

    public init(contentsOf url: URL) throws {
        let file = url.path
        guard let data = FileManager.default.contents(atPath: file) else { throw TokenizerError.unreadable(file: file) }
        try self.init(data: data, file: file)
    }

    public init(data: Data, file: String = "tokenizer.json") throws {
        guard let root = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw TokenizerError.malformed(file: file, reason: "not a JSON object")
        }
        guard let model = root["model"] as? [String: Any] else { throw TokenizerError.malformed(file: file, reason: "no \"model\"") }
        let type = model["type"] as? String ?? "BPE"
        guard type == "BPE" else { throw TokenizerError.unsupported(file: file, what: "model type \(type) (only byte-level BPE)") }
        if model["byte_fallback"] as? Bool == true {
            throw TokenizerError.unsupported(file: file, what: "byte_fallback BPE (SentencePiece-style)")
        }
        guard let vocabulary = model["vocab"] as? [String: Int] else {
            throw TokenizerError.malformed(file: file, reason: "model.vocab is not an object of token to id")
        }
        var merges = [(String, String)]()
        for entry in model["merges"] as? [Any] ?? [] {
            if let line = entry as? String {
                let parts = line.split(separator: " ", maxSplits: 1)
                guard parts.count == 2 else { throw TokenizerError.malformed(file: file, reason: "merge '\(line)' is not a pair") }
                merges.append((String(parts[0]), String(parts[1])))
            } else if let pair = entry as? [String], pair.count == 2 {
                merges.append((pair[0], pair[1]))
            } else {
                throw TokenizerError.malformed(file: file, reason: "a merge is neither \"a b\" nor [\"a\", \"b\"]")
            }
        }
        self.model = BPEModel(vocabulary: vocabulary, merges: merges, ignoreMerges: model["ignore_merges"] as? Bool ?? false)

        (pattern, addPrefixSpace) = try Self.preTokenizer(root["pre_tokenizer"], file: file)
        normalizeNFC = try Self.normalizer(root["normalizer"], file: file)
        if let decoder = root["decoder"] as? [String: Any], decoder["type"] as? String != "ByteLevel" {
            throw TokenizerError.unsupported(file: file, what: "decoder \(decoder["type"] ?? "?") (only ByteLevel)")
        }

        var added = [(content: String, id: Int)]()
        var special = Set<Int>()
        for entry in root["added_tokens"] as? [[String: Any]] ?? [] {
            guard let content = entry["content"] as? String, let id = entry["id"] as? Int else {
                throw TokenizerError.malformed(file: file, reason: "an added token lacks content or id")
            }
            added.append((content, id))
            if entry["special"] as? Bool == true { special.insert(id) }
        }
        addedTokens = added.sorted { $0.content.utf8.count > $1.content.utf8.count }
        addedIDs = Set(added.map(\.id))
        specialTokenIDs = special
        var idToToken = [Int: String](minimumCapacity: vocabulary.count)
        for (token, id) in vocabulary { idToToken[id] = token }
        for (content, id) in added { idToToken[id] = content }
        self.idToToken = idToToken
        vocabularySize = (idToToken.keys.max() ?? -1) + 1
    }

    /// The split pattern and prefix-space setting of the pre-tokenizer.
    private static func preTokenizer(_ value: Any?, file: String) throws -> (SplitPattern?, Bool) {
        guard let spec = value as? [String: Any] else { return (nil, false) }
        switch spec["type"] as? String {
        case "ByteLevel":
            return ((spec["use_regex"] as? Bool ?? true) ? .gpt2 : nil, spec["add_prefix_space"] as? Bool ?? false)
        case "Split":
            guard let regex = (spec["pattern"] as? [String: Any])?["Regex"] as? String, let pattern = SplitPattern(source: regex) else {
                throw TokenizerError.unsupported(file: file, what: "Split pre-tokenizer pattern \(spec["pattern"] ?? "?")")
            }
            guard spec["behavior"] as? String == "Isolated", spec["invert"] as? Bool != true else {
                throw TokenizerError.unsupported(file: file, what: "Split behaviour \(spec["behavior"] ?? "?")")
            }
            return (pattern, false)
        case "Sequence":
            var pattern: SplitPattern?
            var prefix = false
            for inner in spec["pretokenizers"] as? [Any] ?? [] {
                let (p, a) = try preTokenizer(inner, file: file)
                if let p {
                    guard pattern == nil else { throw TokenizerError.unsupported(file: file, what: "two split patterns in a sequence") }
                    pattern = p
                }
                prefix = prefix || a
            }
            return (pattern, prefix)
        default:
            throw TokenizerError.unsupported(file: file, what: "pre-tokenizer \(spec["type"] ?? "?")")
        }
    }

    private static func normalizer(_ value: Any?, file: String) throws -> Bool {
        guard let spec = value as? [String: Any] else { return false }
        switch spec["type"] as? String {
        case "NFC": return true
        case "Sequence" where (spec["normalizers"] as? [Any] ?? []).isEmpty: return false
        default: throw TokenizerError.unsupported(file: file, what: "normalizer \(spec["type"] ?? "?")")
        }
    }

    // MARK: - Encoding

    public func encode(_ text: String) -> [Int] {
        var ids = [Int]()
        for segment in splitOnAddedTokens(text) {
            switch segment {
            case let .added(id): ids.append(id)
            case let .text(piece): ids.append(contentsOf: encodeOrdinary(piece))
            }
        }
        return ids
    }

    private enum Segment { case added(Int), text(Substring) }

    /// Cuts the text around literal added tokens (leftmost match, longest at a position).
    private func splitOnAddedTokens(_ text: String) -> [Segment] {
        guard !addedTokens.isEmpty else { return [.text(Substring(text))] }
        var segments = [Segment]()
        var start = text.startIndex
        var cursor = text.startIndex
        let firstCharacters = Set(addedTokens.compactMap(\.content.first))
        while cursor < text.endIndex {
            var matched: (id: Int, end: String.Index)?
            if firstCharacters.contains(text[cursor]) {
                for (content, id) in addedTokens where text[cursor...].hasPrefix(content) {
                    matched = (id, text.index(cursor, offsetBy: content.count))
                    break
                }
            }
            if let matched {
                if start < cursor { segments.append(.text(text[start..<cursor])) }
                segments.append(.added(matched.id))
                cursor = matched.end
                start = cursor
            } else {
                cursor = text.index(after: cursor)
            }
        }
        if start < text.endIndex { segments.append(.text(text[start...])) }
        return segments
    }

    private func encodeOrdinary(_ piece: Substring) -> [Int] {
        var text = normalizeNFC ? String(piece).precomposedStringWithCanonicalMapping : String(piece)
        if addPrefixSpace && !text.hasPrefix(" ") { text = " " + text }
        let words = pattern?.split(text) ?? [Substring(text)]
        var ids = [Int]()
        for word in words {
            // A vocabulary and merges that disagree would make a byte unknown; the byte-level
            // alphabet is always in a trained vocabulary, so this cannot happen for real files.
            ids.append(contentsOf: (try? model.encode(Substring(ByteLevel.encode(word)))) ?? [])
        }
        return ids
    }

    // MARK: - Decoding

    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false) -> String {
        String(decoding: bytes(ids, skipSpecialTokens: skipSpecialTokens), as: UTF8.self)
    }

    /// The raw bytes of a sequence of ids (added tokens contribute their UTF-8 content).
    public func bytes(_ ids: [Int], skipSpecialTokens: Bool = false) -> [UInt8] {
        var out = [UInt8]()
        for id in ids {
            if skipSpecialTokens && specialTokenIDs.contains(id) { continue }
            guard let token = idToToken[id] else { continue }
            out.append(contentsOf: addedIDs.contains(id) ? Array(token.utf8) : ByteLevel.decode(token))
        }
        return out
    }

    public func tokenID(_ token: String) -> Int? { model.vocabulary[token] ?? addedTokens.first { $0.content == token }?.id }

    public func token(_ id: Int) -> String? { idToToken[id] }
}
