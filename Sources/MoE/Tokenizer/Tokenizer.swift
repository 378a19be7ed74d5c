import Foundation

/// A byte-level BPE tokenizer read from a Hugging Face `tokenizer.json`, giving the same ids
/// as the `tokenizers` library (`Tokenizer.encode(text).ids`):
///
/// 1. added tokens written literally in the text are cut out first (leftmost-longest, with
///    their `single_word` / `lstrip` / `rstrip` options), those with `normalized: true` after
///    normalization;
/// 2. the rest is normalized (NFC, NFD, NFKC, NFKD or none), split by the pre-tokenizer
///    (ByteLevel, Split, Digits, Sequence), and each piece is merged by BPE on its bytes;
/// 3. the post-processor may add tokens around the result (TemplateProcessing,
///    RobertaProcessing, BertProcessing; ByteLevel adds nothing).
///
/// Decoding follows HF's ByteLevel decoder: each token's characters are mapped back to bytes
/// (added tokens whose characters are outside the byte table contribute their UTF-8), and the
/// bytes are read as UTF-8 with invalid sequences replaced by U+FFFD.
///
/// The tokenizer is immutable and safe to use from several threads; a shared per-word cache
/// makes repeated words cheap.
public struct Tokenizer: Sendable {
    private let model: BPEModel
    private let normalForms: [TokenizerNormalForm]
    private let steps: [TokenizerPreTokenizerStep]
    private let rawAddedTokens: TokenizerAddedTokenMatcher
    private let normalizedAddedTokens: TokenizerAddedTokenMatcher
    private let postProcessor: [TokenizerTemplateItem]
    private let vocabulary: [String: Int]
    private let addedTokenIDs: [String: Int]
    private let tokens: [String?]
    /// The decoded bytes of every id, in one buffer: id `i` is `decodeBytes[decodeStarts[i]..<decodeStarts[i + 1]]`.
    private let decodeBytes: [UInt8]
    private let decodeStarts: [Int]
    private let specialFlags: [Bool]

    /// Ids of the added tokens marked special (skipped by `decode(_:skipSpecialTokens: true)`).
    public let specialTokenIDs: Set<Int>
    /// One more than the largest id of the vocabulary and the added tokens.
    public let vocabularySize: Int

    /// Reads a `tokenizer.json`.
    /// - Throws: `TokenizerError` naming the file and the problem.
    public init(contentsOf url: URL) throws {
        let file = url.path
        guard let data = FileManager.default.contents(atPath: file) else { throw TokenizerError.unreadable(file: file) }
        try self.init(data: data, file: file)
    }

    /// Reads the contents of a `tokenizer.json`; `file` names it in errors.
    public init(data: Data, file: String = "tokenizer.json") throws {
        let spec = try TokenizerFile.decode(data, file: file)
        func unsupported(_ what: String) -> TokenizerError { .unsupported(file: file, what: what) }
        func malformed(_ reason: String) -> TokenizerError { .malformed(file: file, reason: reason) }

        // Model.
        let modelSpec = spec.model
        if let type = modelSpec.type, type != "BPE" {
            throw unsupported("model type \"\(type)\" (only byte-level BPE is implemented)")
        }
        if modelSpec.byteFallback { throw unsupported("BPE with byte_fallback (SentencePiece-style, not byte-level)") }
        if let prefix = modelSpec.continuingSubwordPrefix { throw unsupported("BPE continuing_subword_prefix \(prefix.debugDescription)") }
        if let suffix = modelSpec.endOfWordSuffix { throw unsupported("BPE end_of_word_suffix \(suffix.debugDescription)") }
        if let dropout = modelSpec.dropout, dropout > 0 { throw unsupported("BPE dropout \(dropout) (random merges)") }
        // Ids are stored in 32 bits; real vocabularies stay far below this bound.
        let idLimit = 1 << 24
        if let (token, id) = modelSpec.vocab.first(where: { $0.value < 0 || $0.value >= idLimit }) {
            throw malformed("vocabulary id \(id) of \(token.debugDescription) is out of range 0..<\(idLimit)")
        }
        var merges = [(String, String)]()
        merges.reserveCapacity(modelSpec.merges.count)
        for (rank, merge) in modelSpec.merges.enumerated() {
            guard let parts = merge.parts else { throw malformed("merge \(rank) is not a pair of tokens: \(merge)") }
            merges.append(parts)
        }
        do {
            model = try BPEModel(vocabulary: modelSpec.vocab, merges: merges, unknownToken: modelSpec.unkToken,
                                 fuseUnknown: modelSpec.fuseUnk, ignoreMerges: modelSpec.ignoreMerges)
        } catch let BPEModelError.mergeTokenMissing(rank, token) {
            throw malformed("merge \(rank) needs \(token.debugDescription), which is not in the vocabulary")
        } catch let BPEModelError.unknownTokenMissing(token) {
            throw malformed("unk_token \(token.debugDescription) is not in the vocabulary")
        }
        vocabulary = modelSpec.vocab

        // Pipeline.
        normalForms = try Self.normalForms(spec.normalizer, unsupported)
        var steps = [TokenizerPreTokenizerStep]()
        var byteLevel = false
        try Self.preTokenizerSteps(spec.preTokenizer, into: &steps, byteLevel: &byteLevel, unsupported)
        guard byteLevel else {
            throw unsupported("pre-tokenizer \(spec.preTokenizer.type ?? "null") without ByteLevel (not a byte-level BPE)")
        }
        self.steps = steps
        try Self.checkDecoder(spec.decoder, unsupported)

        // Added tokens, with ids assigned as HF's AddedVocabulary does: the id of the same
        // content in the vocabulary if any, else the next free id after the vocabulary.
        var addedIDs = [String: Int]()
        var addedByID = [Int: TokenizerAddedTokenSpec]()
        var specialContents = Set<String>()
        var specialOrder = [TokenizerAddedTokenSpec]()
        var plainOrder = [TokenizerAddedTokenSpec]()
        for token in spec.addedTokens where token.special && !token.content.isEmpty && !specialContents.contains(token.content) {
            specialOrder.append(token)
            specialContents.insert(token.content)
        }
        for token in spec.addedTokens where !token.content.isEmpty {
            if let existing = addedIDs[token.content], addedByID[existing].map({ Self.sameToken($0, token) }) == true { continue }
            let id: Int
            if let known = addedIDs[token.content] ?? modelSpec.vocab[token.content] {
                id = known
            } else if let largest = addedIDs.values.max() {
                id = largest >= modelSpec.vocab.count || modelSpec.vocab.isEmpty ? largest + 1 : modelSpec.vocab.count
            } else {
                id = modelSpec.vocab.count
            }
            addedIDs[token.content] = id
            addedByID[id] = token
            if !specialContents.contains(token.content) { plainOrder.append(token) }
        }
        addedTokenIDs = addedIDs
        let matchOrder = (specialOrder + plainOrder).map { token in (token, addedIDs[token.content]!) }
        rawAddedTokens = TokenizerAddedTokenMatcher(matchOrder.filter { !$0.0.normalized }.map { ($0.0, Array($0.0.content.utf8), $0.1) })
        let forms = normalForms
        normalizedAddedTokens = TokenizerAddedTokenMatcher(matchOrder.filter { $0.0.normalized }.map { token, id in
            var bytes = ArraySlice(token.content.utf8)
            for form in forms { bytes = form.apply(bytes) }
            return (token, Array(bytes), id)
        })

        postProcessor = try Self.template(spec.postProcessor, addedIDs: addedIDs, vocabulary: modelSpec.vocab, unsupported)

        // Id tables.
        let largestID = max(modelSpec.vocab.values.max() ?? -1, addedIDs.values.max() ?? -1)
        vocabularySize = largestID + 1
        var tokens = [String?](repeating: nil, count: vocabularySize)
        for (token, id) in modelSpec.vocab where id >= 0 { tokens[id] = token }
        for (id, token) in addedByID where id >= 0 { tokens[id] = token.content }
        self.tokens = tokens
        var decodeBytes = [UInt8]()
        var decodeStarts = [Int]()
        decodeStarts.reserveCapacity(vocabularySize + 1)
        for token in tokens {
            decodeStarts.append(decodeBytes.count)
            if let token { decodeBytes.append(contentsOf: ByteLevel.decodedBytes(token)) }
        }
        decodeStarts.append(decodeBytes.count)
        self.decodeBytes = decodeBytes
        self.decodeStarts = decodeStarts
        var specialFlags = [Bool](repeating: false, count: vocabularySize)
        var specialIDs = Set<Int>()
        for (index, token) in tokens.enumerated() where token.map(specialContents.contains) == true {
            specialFlags[index] = true
        }
        for content in specialContents { if let id = addedIDs[content] { specialIDs.insert(id) } }
        self.specialFlags = specialFlags
        specialTokenIDs = specialIDs
    }

    private static func sameToken(_ a: TokenizerAddedTokenSpec, _ b: TokenizerAddedTokenSpec) -> Bool {
        a.content == b.content && a.special == b.special && a.normalized == b.normalized
            && a.lstrip == b.lstrip && a.rstrip == b.rstrip && a.singleWord == b.singleWord
    }

    // MARK: - Reading the pipeline

    private static func normalForms(_ spec: TokenizerJSON, _ unsupported: (String) -> TokenizerError) throws -> [TokenizerNormalForm] {
        if spec.isNull { return [] }
        switch spec.type {
        case "NFC": return [.nfc]
        case "NFD": return [.nfd]
        case "NFKC": return [.nfkc]
        case "NFKD": return [.nfkd]
        case "Sequence":
            return try (spec["normalizers"]?.array ?? []).flatMap { try normalForms($0, unsupported) }
        default:
            throw unsupported("normalizer \(spec.type ?? spec.description) (only NFC, NFD, NFKC, NFKD and Sequence of these)")
        }
    }

    private static func preTokenizerSteps(_ spec: TokenizerJSON, into steps: inout [TokenizerPreTokenizerStep], byteLevel: inout Bool,
                                          _ unsupported: (String) -> TokenizerError) throws {
        if byteLevel {
            throw unsupported("pre-tokenizer \(spec.type ?? "?") after ByteLevel (it would see byte-level characters)")
        }
        switch spec.type {
        case "ByteLevel":
            if spec["add_prefix_space"]?.bool ?? true { steps.append(.prefixSpace) }
            if spec["use_regex"]?.bool ?? true { steps.append(.split(.gpt2, .isolated, invert: false)) }
            byteLevel = true
        case "Split":
            let pattern: TokenizerPattern
            if let source = spec["pattern"]?["Regex"]?.string {
                guard let compiled = TokenizerPattern.regex(source: source) else {
                    throw unsupported("Split pattern \(source.debugDescription) (not a known pattern and not compilable as a Swift Regex)")
                }
                pattern = compiled
            } else if let literal = spec["pattern"]?["String"]?.string {
                pattern = .literal(Array(literal.utf8))
            } else {
                throw unsupported("Split pattern \(spec["pattern"]?.description ?? "missing")")
            }
            guard let name = spec["behavior"]?.string, let behavior = TokenizerSplitBehavior(rawValue: name) else {
                throw unsupported("Split behavior \(spec["behavior"]?.description ?? "missing")")
            }
            steps.append(.split(pattern, behavior, invert: spec["invert"]?.bool ?? false))
        case "Digits":
            steps.append(.split(.numeric, spec["individual_digits"]?.bool == true ? .isolated : .contiguous, invert: false))
        case "Sequence":
            for inner in spec["pretokenizers"]?.array ?? [] {
                try preTokenizerSteps(inner, into: &steps, byteLevel: &byteLevel, unsupported)
            }
        default:
            throw unsupported("pre-tokenizer \(spec.type ?? spec.description) (only ByteLevel, Split, Digits and Sequence)")
        }
    }

    private static func checkDecoder(_ spec: TokenizerJSON, _ unsupported: (String) -> TokenizerError) throws {
        if spec.isNull { return }  // decoded as ByteLevel all the same
        switch spec.type {
        case "ByteLevel": return
        case "Sequence": for inner in spec["decoders"]?.array ?? [] { try checkDecoder(inner, unsupported) }
        default: throw unsupported("decoder \(spec.type ?? spec.description) (only ByteLevel)")
        }
    }

    /// The post-processor as a template for a single sequence.
    private static func template(_ spec: TokenizerJSON, addedIDs: [String: Int], vocabulary: [String: Int],
                                 _ unsupported: (String) -> TokenizerError) throws -> [TokenizerTemplateItem] {
        func pairID(_ value: TokenizerJSON?) throws -> Int {
            guard let pair = value?.array, pair.count == 2, let id = pair[1].int else {
                throw unsupported("post-processor \(spec.type ?? "?") with cls/sep \(value?.description ?? "missing")")
            }
            return id
        }
        if spec.isNull { return [.sequence] }
        switch spec.type {
        case "ByteLevel":
            return [.sequence]
        case "TemplateProcessing":
            var items = [TokenizerTemplateItem]()
            for piece in spec["single"]?.array ?? [] {
                if piece["Sequence"] != nil {
                    items.append(.sequence)
                } else if let name = piece["SpecialToken"]?["id"]?.string {
                    guard let ids = spec["special_tokens"]?[name]?["ids"]?.array?.compactMap(\.int) else {
                        throw unsupported("TemplateProcessing special token \(name.debugDescription) without ids")
                    }
                    items.append(.ids(ids))
                } else {
                    throw unsupported("TemplateProcessing piece \(piece)")
                }
            }
            return items
        case "RobertaProcessing", "BertProcessing":
            return [.ids([try pairID(spec["cls"])]), .sequence, .ids([try pairID(spec["sep"])])]
        case "Sequence":
            var items: [TokenizerTemplateItem] = [.sequence]
            for inner in spec["processors"]?.array ?? [] {
                let outer = try template(inner, addedIDs: addedIDs, vocabulary: vocabulary, unsupported)
                items = outer.flatMap { item -> [TokenizerTemplateItem] in
                    if case .sequence = item { return items }
                    return [item]
                }
            }
            return items
        default:
            throw unsupported("post-processor \(spec.type ?? spec.description)")
        }
    }

    // MARK: - Encoding

    /// The ids of `text`, as HF's `tokenizer.encode(text).ids` (post-processor included).
    public func encode(_ text: String) -> [Int] {
        encode(text, addSpecialTokens: true)
    }

    /// The ids of `text`; with `addSpecialTokens: false` the post-processor's tokens (a BOS,
    /// say) are left out, as HF's `encode(text, add_special_tokens=False)`.
    public func encode(_ text: String, addSpecialTokens: Bool) -> [Int] {
        var ids = [Int]()
        ids.reserveCapacity(text.utf8.count / 3 + 4)
        let bytes = ArraySlice(text.utf8)
        for item in addSpecialTokens ? postProcessor : [.sequence] {
            switch item {
            case let .ids(special): ids.append(contentsOf: special)
            case .sequence: encodeText(bytes, into: &ids)
            }
        }
        return ids
    }

    private func encodeText(_ bytes: ArraySlice<UInt8>, into ids: inout [Int]) {
        rawAddedTokens.split(bytes) { id, piece in
            if let id { ids.append(id); return }
            var normalized = piece
            for form in normalForms { normalized = form.apply(normalized) }
            normalizedAddedTokens.split(normalized) { id, piece in
                if let id { ids.append(id); return }
                preTokenize(piece, step: 0) { word in model.encode(word, into: &ids) }
            }
        }
    }

    private func preTokenize(_ piece: ArraySlice<UInt8>, step: Int, _ body: (ArraySlice<UInt8>) -> Void) {
        if step == steps.count {
            body(piece)
        } else {
            steps[step].apply(piece) { preTokenize($0, step: step + 1, body) }
        }
    }

    /// The pre-tokenizer's pieces of `text` (no added tokens, no normalizer), in the byte-level
    /// alphabet, as HF's `pre_tokenizer.pre_tokenize_str(text)`; for tests.
    func preTokenizedPieces(_ text: String) -> [String] {
        var pieces = [String]()
        let bytes = ArraySlice(text.utf8)
        if !bytes.isEmpty { preTokenize(bytes, step: 0) { pieces.append(ByteLevel.string($0)) } }
        return pieces
    }

    // MARK: - Decoding

    /// The text of `ids`; unknown ids are skipped.
    public func decode(_ ids: [Int], skipSpecialTokens: Bool = false) -> String {
        String(decoding: bytes(ids, skipSpecialTokens: skipSpecialTokens), as: UTF8.self)
    }

    /// The raw bytes of `ids`, before UTF-8 decoding (a token may end inside a character).
    public func bytes(_ ids: [Int], skipSpecialTokens: Bool = false) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(ids.count * 4)
        for id in ids where id >= 0 && id < vocabularySize {
            if skipSpecialTokens && specialFlags[id] { continue }
            out.append(contentsOf: decodeBytes[decodeStarts[id]..<decodeStarts[id + 1]])
        }
        return out
    }

    /// The id of a token (an added token's content, or a vocabulary entry in its byte-level
    /// spelling, e.g. "Ġthe").
    public func tokenID(_ token: String) -> Int? { addedTokenIDs[token] ?? vocabulary[token] }

    /// The token of an id, as written in tokenizer.json.
    public func token(_ id: Int) -> String? { id >= 0 && id < tokens.count ? tokens[id] : nil }
}

/// A piece of a post-processor template.
enum TokenizerTemplateItem: Sendable {
    case ids([Int])
    case sequence
}

/// Finds added tokens in text as HF's AddedVocabulary: leftmost-longest matches on bytes,
/// then the `single_word`, `lstrip` and `rstrip` options.
struct TokenizerAddedTokenMatcher: Sendable {
    private struct Entry: Sendable {
        var bytes: [UInt8]
        var id: Int
        var singleWord: Bool
        var lstrip: Bool
        var rstrip: Bool
    }
    private let entries: [Entry]
    /// Entry indices by first byte, longest first.
    private let byFirstByte: [[Int]]

    init(_ tokens: [(TokenizerAddedTokenSpec, [UInt8], Int)]) {
        let entries = tokens.filter { !$0.1.isEmpty }.map { token, bytes, id in
            Entry(bytes: bytes, id: id, singleWord: token.singleWord, lstrip: token.lstrip, rstrip: token.rstrip)
        }
        self.entries = entries
        var byFirstByte = [[Int]](repeating: [], count: 256)
        for (index, entry) in entries.enumerated() { byFirstByte[Int(entry.bytes[0])].append(index) }
        // Longest first; among equal lengths the first given wins.
        self.byFirstByte = byFirstByte.map { list in
            list.enumerated().sorted { a, b in
                let (la, lb) = (entries[a.element].bytes.count, entries[b.element].bytes.count)
                return la != lb ? la > lb : a.offset < b.offset
            }.map(\.element)
        }
    }

    /// Calls `body` for each part of `text` in order: an added token's id with its span, or
    /// nil with a non-empty stretch of other text.
    func split(_ text: ArraySlice<UInt8>, _ body: (Int?, ArraySlice<UInt8>) -> Void) {
        guard !entries.isEmpty else {
            if !text.isEmpty { body(nil, text) }
            return
        }
        var startOffset = text.startIndex  // end of the previous match
        var i = text.startIndex
        while i < text.endIndex {
            var found: Entry?
            for index in byFirstByte[Int(text[i])] {
                let candidate = entries[index]
                if i + candidate.bytes.count <= text.endIndex && text[i..<(i + candidate.bytes.count)].elementsEqual(candidate.bytes) {
                    found = candidate
                    break
                }
            }
            guard let entry = found else { i += 1; continue }
            var start = i
            var stop = i + entry.bytes.count
            i = stop
            if entry.singleWord {
                let before = start == text.startIndex || !Self.isWordCharacter(Self.scalar(endingAt: start, in: text))
                let after = stop == text.endIndex || !Self.isWordCharacter(Self.scalar(startingAt: stop, in: text))
                if !before || !after { continue }
            }
            if entry.lstrip {
                var newStart = start
                while newStart > text.startIndex, let scalar = Self.scalar(endingAt: newStart, in: text), scalar.properties.isWhitespace {
                    newStart -= String(scalar).utf8.count
                }
                start = max(newStart, startOffset)
            }
            if entry.rstrip {
                while stop < text.endIndex, let scalar = Self.scalar(startingAt: stop, in: text), scalar.properties.isWhitespace {
                    stop += String(scalar).utf8.count
                }
            }
            if startOffset < start { body(nil, text[startOffset..<start]) }
            body(entry.id, text[start..<stop])
            startOffset = stop
        }
        if startOffset < text.endIndex { body(nil, text[startOffset...]) }
    }

    /// Rust regex `\w`: alphabetic, marks, decimal digits, connector punctuation, join controls.
    private static func isWordCharacter(_ scalar: Unicode.Scalar?) -> Bool {
        guard let scalar else { return false }
        let properties = scalar.properties
        if properties.isAlphabetic || properties.isJoinControl { return true }
        switch properties.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation: return true
        default: return false
        }
    }

    private static func scalar(startingAt index: Int, in text: ArraySlice<UInt8>) -> Unicode.Scalar? {
        var iterator = text[index...].makeIterator()
        var decoder = UTF8()
        if case let .scalarValue(scalar) = decoder.decode(&iterator) { return scalar }
        return nil
    }

    private static func scalar(endingAt index: Int, in text: ArraySlice<UInt8>) -> Unicode.Scalar? {
        var start = index - 1
        while start > text.startIndex && text[start] & 0xC0 == 0x80 { start -= 1 }
        return scalar(startingAt: start, in: text[..<index])
    }
}
