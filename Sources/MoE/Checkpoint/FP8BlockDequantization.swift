/// FP8 checkpoints with block scales, as DeepSeek-V3/R1 and Kimi-K2 publish them: a linear
/// weight `W` stored as `F8_E4M3 [out, in]` next to `W_scale_inv` (`<prefix>.weight_scale_inv`,
/// F32 `[⌈out/bᵣ⌉, ⌈in/b꜀⌉]`), with `quantization_config.weight_block_size = [bᵣ, b꜀]`
/// (128 × 128). Element (i, j) means `e4m3(W[i, j]) × scale_inv[i / bᵣ, j / b꜀]`; the last
/// block of a row or column may be partial.
///
/// This derivation presents each such weight under its own name as BF16: the product is
/// formed in f32 and rounded to BF16 to nearest, ties to even, exactly as transformers'
/// `Fp8Dequantize` does when it loads these checkpoints with `dequantize=True`. The scale
/// tensors are consumed and disappear from the checkpoint's names. It is used only when a
/// user asks for widening (`moekit import --dequantize`); without it an import refuses FP8.
public struct FP8BlockDequantization: TensorDerivation {
    public init() {}

    public static let scaleSuffix = "_scale_inv"

    public func derive(stored: [String: TensorInfo], context: DerivationContext) throws -> [String: DerivedTensor] {
        let weights = stored.filter { $0.value.dtype.isFloat8 && !$0.key.hasSuffix(Self.scaleSuffix) }.sorted { $0.key < $1.key }
        guard let first = weights.first else { return [:] }
        let block = try Self.blockSize(context, firstTensor: first.key)
        var out = [String: DerivedTensor]()
        for (name, weight) in weights {
            func malformed(_ tensor: String, _ reason: String) -> CheckpointError {
                .malformedTensor(file: context.file, tensor: tensor, reason: reason)
            }
            guard weight.dtype == .f8e4m3 else {
                throw CheckpointError.unsupportedDType(file: context.file, tensor: name, dtype: weight.dtype.rawValue,
                                                       purpose: "a block-scaled FP8 weight (only F8_E4M3 is)")
            }
            guard weight.shape.count == 2 else {
                throw malformed(name, "an FP8 weight must be a matrix [out, in]; it is \(weight.shape)")
            }
            let scaleName = name + Self.scaleSuffix
            guard let scale = stored[scaleName] else {
                throw malformed(name, "is FP8 (F8_E4M3) but has no block scales '\(scaleName)' beside it")
            }
            let (rows, columns) = (weight.shape[0], weight.shape[1])
            let grid = [(rows + block.rows - 1) / block.rows, (columns + block.columns - 1) / block.columns]
            guard scale.shape == grid else {
                throw CheckpointError.wrongShape(file: context.file, tensor: scaleName, expected: grid, actual: scale.shape)
            }
            guard scale.dtype == .f32 else {
                throw CheckpointError.unsupportedDType(file: context.file, tensor: scaleName, dtype: scale.dtype.rawValue,
                                                       purpose: "FP8 block scales (F32 expected)")
            }
            out[name] = DerivedTensor(dtype: .bf16, shape: weight.shape, content: .computed(sources: [name, scaleName]) { sources in
                Self.dequantize(codes: sources[0], scales: sources[1], rows: rows, columns: columns, block: block)
            })
        }
        return out
    }

    /// `weight_block_size` from the config, checked.
    static func blockSize(_ context: DerivationContext, firstTensor: String) throws -> (rows: Int, columns: Int) {
        let config = context.file + "/config.json"
        guard let quantization = context.config?.quantizationConfig else {
            throw CheckpointError.malformedTensor(file: config, tensor: firstTensor,
                reason: "is FP8 but config.json has no quantization_config saying how it is scaled")
        }
        if let method = quantization.quantMethod, method != "fp8" {
            throw CheckpointError.malformedTensor(file: config, tensor: firstTensor,
                reason: "is FP8 but quantization_config.quant_method is '\(method)', not 'fp8'")
        }
        if let fmt = quantization.fmt, fmt != "e4m3" {
            throw CheckpointError.malformedTensor(file: config, tensor: firstTensor,
                reason: "quantization_config.fmt '\(fmt)' is not supported (only e4m3)")
        }
        guard let size = quantization.weightBlockSize else {
            throw CheckpointError.malformedTensor(file: config, tensor: firstTensor,
                reason: "is FP8 but quantization_config has no weight_block_size (per-tensor FP8 scales are not supported)")
        }
        guard size.count == 2, size.allSatisfy({ $0 > 0 }) else {
            throw CheckpointError.malformedTensor(file: config, tensor: firstTensor,
                reason: "quantization_config.weight_block_size \(size) is not two positive sizes [rows, columns]")
        }
        return (size[0], size[1])
    }

    /// BF16 bytes of `codes × scales[block]`, each product in f32, rounded once to BF16.
    static func dequantize(codes: UnsafeRawBufferPointer, scales: UnsafeRawBufferPointer, rows: Int, columns: Int,
                           block: (rows: Int, columns: Int)) -> [UInt8] {
        let scaleColumns = (columns + block.columns - 1) / block.columns
        let table = FP8E4M3.values
        var values = [Float](repeating: 0, count: rows * columns)
        for i in 0..<rows {
            let scaleRow = (i / block.rows) * scaleColumns
            for j in 0..<columns {
                let scale = scales.loadUnaligned(fromByteOffset: (scaleRow + j / block.columns) * 4, as: Float.self)
                values[i * columns + j] = table[Int(codes[i * columns + j])] * scale
            }
        }
        return FloatEncoding.bytes(values, as: .bf16)
    }
}
