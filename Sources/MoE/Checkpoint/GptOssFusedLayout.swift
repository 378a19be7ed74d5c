/// gpt-oss's fused expert tensors rebuilt from per-expert ones: the inverse of
/// `GptOssExpertTensors`, so an export is laid out as transformers' GptOssForCausalLM loads it
/// (`experts.gate_up_proj [E, d, 2f]` with gate and up columns interleaved, its bias
/// `[E, 2f]`, `experts.down_proj [E, f, d]`, `experts.down_proj_bias [E, d]`).
public enum GptOssFusedLayout {
    /// Adds layer `l`'s four fused tensors for `expertCount` experts to `writer`. `expert(k)`
    /// gives the k-th written expert's six tensors' bytes (gate, up, down in MoEKit's `[out, in]`
    /// orientation, then the three biases); it is called when the writer reaches each fused
    /// tensor, so memory holds one fused tensor at a time. `dtypes` are the six tensors' dtypes.
    public static func add(to writer: inout ShardedSafetensorsWriter, layer l: Int, names: TensorNames, expertCount: Int,
                           hidden: Int, width: Int, dtypes: [DType], expert: @escaping (Int) throws -> [[UInt8]]) {
        precondition(dtypes.count == 6 && dtypes[0] == dtypes[1] && dtypes[3] == dtypes[4], "gate and up (and their biases) share a dtype")
        let module = names.layer(l) + names.moeModule + ".experts."
        let (weight, downWeight, bias, downBias) = (dtypes[0].byteSize, dtypes[2].byteSize, dtypes[3].byteSize, dtypes[5].byteSize)
        // gate_up_proj[k, i, 2j (+1)] = gate (up) [j, i]
        writer.add(module + "gate_up_proj", dtype: dtypes[0], shape: [expertCount, hidden, 2 * width]) { emit in
            var out = [UInt8](repeating: 0, count: expertCount * hidden * 2 * width * weight)
            for k in 0..<expertCount {
                let parts = try expert(k)
                for parity in 0..<2 {
                    scatter(parts[parity], into: &out, elementSize: weight, count: width * hidden) { index in
                        let (j, i) = index.quotientAndRemainder(dividingBy: hidden)
                        return (k * hidden + i) * 2 * width + 2 * j + parity
                    }
                }
            }
            try out.withUnsafeBytes { try emit($0) }
        }
        writer.add(module + "gate_up_proj_bias", dtype: dtypes[3], shape: [expertCount, 2 * width]) { emit in
            var out = [UInt8](repeating: 0, count: expertCount * 2 * width * bias)
            for k in 0..<expertCount {
                let parts = try expert(k)
                for parity in 0..<2 {
                    scatter(parts[3 + parity], into: &out, elementSize: bias, count: width) { j in k * 2 * width + 2 * j + parity }
                }
            }
            try out.withUnsafeBytes { try emit($0) }
        }
        // down_proj[k, j, i] = down[i, j]
        writer.add(module + "down_proj", dtype: dtypes[2], shape: [expertCount, width, hidden]) { emit in
            var out = [UInt8](repeating: 0, count: expertCount * width * hidden * downWeight)
            for k in 0..<expertCount {
                scatter(try expert(k)[2], into: &out, elementSize: downWeight, count: hidden * width) { index in
                    let (i, j) = index.quotientAndRemainder(dividingBy: width)
                    return (k * width + j) * hidden + i
                }
            }
            try out.withUnsafeBytes { try emit($0) }
        }
        writer.add(module + "down_proj_bias", dtype: dtypes[5], shape: [expertCount, hidden]) { emit in
            var out = [UInt8]()
            out.reserveCapacity(expertCount * hidden * downBias)
            for k in 0..<expertCount { out += try expert(k)[5] }
            try out.withUnsafeBytes { try emit($0) }
        }
    }

    /// Element `index` of `source` (`count` elements of `elementSize` bytes) goes to element
    /// `position(index)` of `out`.
    private static func scatter(_ source: [UInt8], into out: inout [UInt8], elementSize: Int, count: Int, position: (Int) -> Int) {
        precondition(source.count == count * elementSize, "expert tensor of \(source.count) bytes, expected \(count * elementSize)")
        for index in 0..<count {
            let (from, to) = (index * elementSize, position(index) * elementSize)
            for b in 0..<elementSize { out[to + b] = source[from + b] }
        }
    }
}
