/// `config.json`'s `quantization_config`, as FP8 (DeepSeek-V3, Kimi-K2) and MXFP4 (gpt-oss)
/// checkpoints write it. Only the fields MoEKit reads; everything else is ignored.
public struct QuantizationConfig: Decodable, Sendable, Equatable {
    /// "fp8", "mxfp4", …
    public var quantMethod: String?
    /// "e4m3" for DeepSeek-V3's FP8 weights.
    public var fmt: String?
    /// `[rows, columns]` of the blocks that share one scale, e.g. `[128, 128]`.
    public var weightBlockSize: [Int]?
    /// "dynamic": activations are quantized at run time, so the checkpoint holds no activation scales.
    public var activationScheme: String?

    public init(quantMethod: String? = nil, fmt: String? = nil, weightBlockSize: [Int]? = nil, activationScheme: String? = nil) {
        self.quantMethod = quantMethod
        self.fmt = fmt
        self.weightBlockSize = weightBlockSize
        self.activationScheme = activationScheme
    }

    enum CodingKeys: String, CodingKey {
        case quantMethod = "quant_method", fmt, weightBlockSize = "weight_block_size", activationScheme = "activation_scheme"
    }
}
