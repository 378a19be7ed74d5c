/// The derived records some documents of the store use: expert records of a variant other
/// than the imported one, and dense variants (`name#variant` keys of the dense database).
/// Imported records (expert variant 0, dense tensors without `#`) are never in question:
/// nothing removes them.
public struct StoreReferences: Sendable, Equatable {
    public var experts: Set<ExpertKey>
    public var denseVariants: Set<String>

    public init(experts: Set<ExpertKey> = [], denseVariants: Set<String> = []) {
        self.experts = experts.filter { $0.variant != .original }
        self.denseVariants = denseVariants
    }

    public mutating func formUnion(_ other: StoreReferences) {
        experts.formUnion(other.experts)
        denseVariants.formUnion(other.denseVariants)
    }

    public func subtracting(_ other: StoreReferences) -> StoreReferences {
        StoreReferences(experts: experts.subtracting(other.experts), denseVariants: denseVariants.subtracting(other.denseVariants))
    }
}

/// What `collectGarbage` removed (or, in a dry run, would remove). Bytes are the records'
/// stored lengths; LMDB keeps the freed pages in data.mdb and reuses them for later writes,
/// so the file itself does not shrink.
public struct GarbageReport: Sendable, Equatable, Codable {
    public var expertRecords = 0
    public var expertBytes = 0
    public var denseVariantRecords = 0
    public var denseVariantBytes = 0
    /// Plans whose references were kept.
    public var plans: [String] = []
    public var dryRun = false

    public init() {}

    public var records: Int { expertRecords + denseVariantRecords }
    public var bytes: Int { expertBytes + denseVariantBytes }
}
