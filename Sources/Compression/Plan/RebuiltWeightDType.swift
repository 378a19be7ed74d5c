/// What a Hugging Face export writes the weights it rebuilds from a plan in (dequantized codes,
/// merged and shrunk experts); copied weights always keep their stored bytes.
public enum RebuiltWeightDType: String, Sendable, CaseIterable {
    /// The imported tensor's dtype (BF16 for a BF16 checkpoint), rounded to nearest-even: the
    /// export is never wider than its source.
    case source
    /// f32: the plan's weights exactly, at twice a BF16 file's bytes (for checking an export
    /// against MoEKit running the plan, or for tools that requantize it).
    case float32
}
