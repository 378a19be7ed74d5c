/// How a checkpoint lays out a layer's experts, which decides how exports write them back.
public enum ExpertTensorLayout: String, Codable, Sendable, Equatable {
    /// One tensor per expert and projection (`experts.{e}.gate_proj.weight`). Checkpoints with
    /// 3-D `experts.gate_up_proj [E, 2f, d]` tensors are read through the same names
    /// (`FusedExpertTensors`) and written this way, which every reader accepts.
    case perExpert
    /// gpt-oss: `experts.gate_up_proj [E, d, 2f]` with gate and up interleaved by column, its
    /// bias `[E, 2f]`, `experts.down_proj [E, f, d]` and bias; transformers' GptOssExperts
    /// loads only this form, so exports write it fused again (`GptOssFusedLayout`).
    case fusedInterleavedGateUp
}
