/// How far an import has got; stored in the meta database under `import`, and rewritten
/// in the same transaction as the data it describes, so it never claims more than is there.
public struct ImportState: Codable, Equatable, Sendable {
    public enum Phase: String, Codable, Sendable {
        /// Metadata and dense tensors are in; `completedLayers` lists the expert layers that are.
        case importing
        case complete
    }

    public var phase: Phase
    /// The fingerprint of the checkpoint being imported (see `ModelFingerprint`).
    public var fingerprint: String
    /// The checkpoint folder it is imported from, for the message that says how to resume.
    public var source: String
    /// Every MoE layer whose experts the import writes.
    public var moeLayers: [Int]
    public var completedLayers: [Int]

    public var remainingLayers: [Int] { moeLayers.filter { !completedLayers.contains($0) } }
}
