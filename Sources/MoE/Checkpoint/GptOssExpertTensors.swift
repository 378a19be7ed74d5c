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
/// whose `[E, 2f, d]` layout the same name has in other families.
public struct GptOssExpertTensors: TensorDerivation {
    public init() {}

    public func derive(stored: [String: TensorInfo], context: DerivationContext) throws -> [String: DerivedTensor] {
        let isGptOss = context.config?.modelType == ArchitectureFamily.gptOss.rawValue
        var out = [String: DerivedTensor]()
        for (name, gateUp) in stored where name.hasSuffix(".experts.gate_up_proj") {
            let module = String(name.dropLast(".experts.gate_up_proj".count))
            let names = (gateUpBias: name + "_bias", down: module + ".experts.down_proj", downBias: module + ".experts.down_proj_bias")
            guard isGptOss || stored[names.gateUpBias] != nil else { continue }
            func malformed(_ tensor: String, _ reason: String) -> CheckpointError {
                CheckpointError.malformedTensor(file: context.file, tensor: tensor, reason: reason)
            }
            func beside(_ tensor: String) throws -> TensorInfo {
                guard let info = stored[tensor] else { throw malformed(name, "has no '\(tensor)' beside it") }
                guard info.dtype.isFloatingPoint else {
                    throw malformed(tensor, "dtype \(info.dtype.rawValue) is not a floating-point dtype")
                }
                return info
            }
            guard gateUp.shape.count == 3, gateUp.shape[2] % 2 == 0, gateUp.shape.allSatisfy({ $0 > 0 }) else {
                throw malformed(name, "gpt-oss's fused gate/up tensor must be [experts, hidden, 2 × intermediate] with gate and up columns interleaved; it is \(gateUp.shape)")
            }
            guard gateUp.dtype.isFloatingPoint else {
                throw malformed(name, "dtype \(gateUp.dtype.rawValue) is not a floating-point dtype")
            }
            let (experts, hidden, width) = (gateUp.shape[0], gateUp.shape[1], gateUp.shape[2] / 2)
            let (gateUpBias, down, downBias) = (try beside(names.gateUpBias), try beside(names.down), try beside(names.downBias))
            let expected: [(String, TensorInfo, [Int])] = [
                (names.gateUpBias, gateUpBias, [experts, 2 * width]),
                (names.down, down, [experts, width, hidden]),
                (names.downBias, downBias, [experts, hidden]),
            ]
            for (tensor, info, shape) in expected where info.shape != shape {
                throw malformed(tensor, "must be \(shape) to match '\(name)' \(gateUp.shape) ([experts, hidden, 2 × intermediate]); it is \(info.shape)")
            }
            guard down.dtype == gateUp.dtype else {
                throw malformed(names.down, "dtype \(down.dtype.rawValue) must be the dtype of '\(name)' (\(gateUp.dtype.rawValue))")
            }
            let layer = FusedExpertTensors.layerIndex(module)
            func target(_ e: Int, _ projection: Projection, bias: Bool) -> String {
                if let l = layer, let familyNames = context.names {
                    return bias ? familyNames.expertBias(l, e, projection) : familyNames.expert(l, e, projection)
                }
                return "\(module).experts.\(e).\(projection.rawValue)_proj." + (bias ? "bias" : "weight")
            }
            let (size, biasSize) = (gateUp.dtype.byteSize, gateUpBias.dtype.byteSize)
            for e in 0..<experts {
                // gate/up weight [f, d]: element (j, i) is gate_up[e, i, 2j (+1)].
                for (projection, parity) in [(Projection.gate, 0), (.up, 1)] {
                    let base = e * hidden * 2 * width
                    out[target(e, projection, bias: false)] = DerivedTensor(
                        dtype: gateUp.dtype, shape: [width, hidden],
                        content: .computed(sources: [name]) { sources in
                            Self.gather(sources[0], elementSize: size, count: width * hidden) { k in
                                let (j, i) = k.quotientAndRemainder(dividingBy: hidden)
                                return base + i * 2 * width + 2 * j + parity
                            }
                        })
                    out[target(e, projection, bias: true)] = DerivedTensor(
                        dtype: gateUpBias.dtype, shape: [width],
                        content: .computed(sources: [names.gateUpBias]) { sources in
                            Self.gather(sources[0], elementSize: biasSize, count: width) { j in e * 2 * width + 2 * j + parity }
                        })
                }
                // down weight [d, f]: element (i, j) is down_proj[e, j, i].
                out[target(e, .down, bias: false)] = DerivedTensor(
                    dtype: down.dtype, shape: [hidden, width],
                    content: .computed(sources: [names.down]) { sources in
                        Self.gather(sources[0], elementSize: size, count: hidden * width) { k in
                            let (i, j) = k.quotientAndRemainder(dividingBy: width)
                            return e * width * hidden + j * hidden + i
                        }
                    })
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
