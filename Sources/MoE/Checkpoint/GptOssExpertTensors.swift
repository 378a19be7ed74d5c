import Foundation

/// gpt-oss's fused experts, as transformers stores them (BF16 or F32):
///
///     <module>.experts.gate_up_proj       [E, d, 2f]   used as x · W: column 2j is gate row j, 2j+1 up row j
///     <module>.experts.gate_up_proj_bias  [E, 2f]      interleaved the same way
///     <module>.experts.down_proj          [E, f, d]    used as a · W
///     <module>.experts.down_proj_bias     [E, d]
///
/// presented as MoEKit's per-expert tensors in its `[out, in]` orientation:
/// `experts.{e}.{gate,up}_proj.weight [f, d]`, `down_proj.weight [d, f]` and their `.bias`.
/// The weights are transposed and de-interleaved, so they are computed (one expert's bytes at
/// a time, when asked for); the down bias is a slice. A module is recognised by its
/// `gate_up_proj_bias`, or by a gpt_oss config; it must come before `FusedExpertTensors`,
/// whose `[E, 2f, d]` layout the same name has in other families. When the weights are in
/// another format (MXFP4 `_blocks`/`_scales`), only the biases are presented here.
public struct GptOssExpertTensors: TensorDerivation {
    public init() {}

    public func derive(stored: [String: TensorInfo], context: DerivationContext) throws -> [String: DerivedTensor] {
        let isGptOss = context.config?.modelType == ArchitectureFamily.gptOss.rawValue
        let suffix = (weights: ".experts.gate_up_proj", bias: ".experts.gate_up_proj_bias")
        // A module is gpt-oss's when it has the fused gate/up bias (whatever format its weights
        // are in), or fused weights in a gpt_oss checkpoint.
        var modules = Set<String>()
        for name in stored.keys {
            if name.hasSuffix(suffix.bias) { modules.insert(String(name.dropLast(suffix.bias.count))) }
            if isGptOss, name.hasSuffix(suffix.weights) { modules.insert(String(name.dropLast(suffix.weights.count))) }
        }
        var out = [String: DerivedTensor]()
        for module in modules.sorted() {
            let names = (gateUp: module + suffix.weights, gateUpBias: module + suffix.bias,
                         down: module + ".experts.down_proj", downBias: module + ".experts.down_proj_bias")
            func malformed(_ tensor: String, _ reason: String) -> CheckpointError {
                CheckpointError.malformedTensor(file: context.file, tensor: tensor, reason: reason)
            }
            let anchor = stored[names.gateUp] != nil ? names.gateUp : names.gateUpBias
            func beside(_ tensor: String) throws -> TensorInfo {
                guard let info = stored[tensor] else { throw malformed(anchor, "has no '\(tensor)' beside it") }
                guard info.dtype.isFloatingPoint else {
                    throw malformed(tensor, "dtype \(info.dtype.rawValue) is not a floating-point dtype")
                }
                return info
            }
            let experts: Int, hidden: Int, width: Int
            let gateUp = stored[names.gateUp]
            let gateUpBias: TensorInfo, downBias: TensorInfo
            var down: TensorInfo?
            if let gateUp {
                guard gateUp.shape.count == 3, gateUp.shape[2] % 2 == 0, gateUp.shape.allSatisfy({ $0 > 0 }) else {
                    throw malformed(names.gateUp, "gpt-oss's fused gate/up tensor must be [experts, hidden, 2 × intermediate] with gate and up columns interleaved; it is \(gateUp.shape)")
                }
                guard gateUp.dtype.isFloatingPoint else {
                    throw malformed(names.gateUp, "dtype \(gateUp.dtype.rawValue) is not a floating-point dtype")
                }
                (experts, hidden, width) = (gateUp.shape[0], gateUp.shape[1], gateUp.shape[2] / 2)
                (gateUpBias, down, downBias) = (try beside(names.gateUpBias), try beside(names.down), try beside(names.downBias))
                let expected: [(String, TensorInfo, [Int])] = [
                    (names.gateUpBias, gateUpBias, [experts, 2 * width]),
                    (names.down, down!, [experts, width, hidden]),
                    (names.downBias, downBias, [experts, hidden]),
                ]
                for (tensor, info, shape) in expected where info.shape != shape {
                    throw malformed(tensor, "must be \(shape) to match '\(names.gateUp)' \(gateUp.shape) ([experts, hidden, 2 × intermediate]); it is \(info.shape)")
                }
                guard down!.dtype == gateUp.dtype else {
                    throw malformed(names.down, "dtype \(down!.dtype.rawValue) must be the dtype of '\(names.gateUp)' (\(gateUp.dtype.rawValue))")
                }
            } else {
                // Weights in another format (MXFP4 blocks and scales), presented by a later
                // derivation under the same per-expert names: only the biases come from here.
                (gateUpBias, downBias) = (try beside(names.gateUpBias), try beside(names.downBias))
                guard gateUpBias.shape.count == 2, gateUpBias.shape[1] % 2 == 0, gateUpBias.shape.allSatisfy({ $0 > 0 }) else {
                    throw malformed(names.gateUpBias, "gpt-oss's fused gate/up bias must be [experts, 2 × intermediate]; it is \(gateUpBias.shape)")
                }
                (experts, width) = (gateUpBias.shape[0], gateUpBias.shape[1] / 2)
                guard downBias.shape.count == 2, downBias.shape[0] == experts, downBias.shape[1] > 0 else {
                    throw malformed(names.downBias, "must be [\(experts), hidden] to match '\(names.gateUpBias)' \(gateUpBias.shape); it is \(downBias.shape)")
                }
                hidden = downBias.shape[1]
            }
            let layer = TensorNames.layerIndex(of: module)
            func target(_ e: Int, _ projection: Projection, bias: Bool) -> String {
                if let l = layer, let familyNames = context.names {
                    return bias ? familyNames.expertBias(l, e, projection) : familyNames.expert(l, e, projection)
                }
                return "\(module).experts.\(e).\(projection.rawValue)_proj." + (bias ? "bias" : "weight")
            }
            let biasSize = gateUpBias.dtype.byteSize
            for e in 0..<experts {
                // gate/up weight [f, d]: element (j, i) is gate_up[e, i, 2j (+1)].
                for (projection, parity) in [(Projection.gate, 0), (.up, 1)] {
                    if let gateUp {
                        let (base, size) = (e * hidden * 2 * width, gateUp.dtype.byteSize)
                        out[target(e, projection, bias: false)] = DerivedTensor(
                            dtype: gateUp.dtype, shape: [width, hidden],
                            content: .computed(sources: [names.gateUp]) { sources in
                                Self.gather(sources[0], elementSize: size, count: width * hidden) { k in
                                    let (j, i) = k.quotientAndRemainder(dividingBy: hidden)
                                    return base + i * 2 * width + 2 * j + parity
                                }
                            })
                    }
                    out[target(e, projection, bias: true)] = DerivedTensor(
                        dtype: gateUpBias.dtype, shape: [width],
                        content: .computed(sources: [names.gateUpBias]) { sources in
                            Self.gather(sources[0], elementSize: biasSize, count: width) { j in e * 2 * width + 2 * j + parity }
                        })
                }
                // down weight [d, f]: element (i, j) is down_proj[e, j, i].
                if let down {
                    let size = down.dtype.byteSize
                    out[target(e, .down, bias: false)] = DerivedTensor(
                        dtype: down.dtype, shape: [hidden, width],
                        content: .computed(sources: [names.down]) { sources in
                            Self.gather(sources[0], elementSize: size, count: hidden * width) { k in
                                let (i, j) = k.quotientAndRemainder(dividingBy: width)
                                return e * width * hidden + j * hidden + i
                            }
                        })
                }
                let rowBytes = hidden * downBias.dtype.byteSize
                out[target(e, .down, bias: true)] = DerivedTensor(
                    dtype: downBias.dtype, shape: [hidden], content: .slice(source: names.downBias, range: (e * rowBytes)..<((e + 1) * rowBytes)))
            }
        }
        return out
    }

    /// `count` elements of `elementSize` bytes, element k copied from element `index(k)` of `source`.
    static func gather(_ source: UnsafeRawBufferPointer, elementSize: Int, count: Int, index: (Int) -> Int) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: count * elementSize) { buffer, initialized in
            let target = UnsafeMutableRawBufferPointer(buffer)
            for k in 0..<count {
                let from = index(k) * elementSize
                target.baseAddress!.advanced(by: k * elementSize)
                    .copyMemory(from: source.baseAddress!.advanced(by: from), byteCount: elementSize)
            }
            initialized = count * elementSize
        }
    }
}
