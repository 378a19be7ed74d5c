/// What a GGUF export writes the fused expert tensors as.
///
/// - `plan`: the plan's own form, exact wherever a ggml type holds it (BF16 as BF16, 2–4-bit
///   codes as Q4_1), else the nearest type (8-bit codes requantized to Q8_0). MoEKit's
///   4-bit grids are always exact as Q4_1 (groups are multiples of 32, scales and minimums
///   already f16), so this choice never needs Q4_K.
/// - `q4_K`: every expert tensor requantized to ggml's Q4_K from the plan's own weights (the
///   stored floats, or the codes dequantized): 4.5 bits a weight instead of Q4_1's 5, the
///   type llama.cpp's Q4_K_S/Q4_K_M files give experts. Never exact; the summary says
///   "requantized". A row must be a whole number of 256-value super-blocks.
public enum GGUFExpertType: String, Sendable, CaseIterable, Codable {
    case plan
    case q4_K = "q4_k"
}
