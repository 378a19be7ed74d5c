import Foundation

/// Experts stored as 3-D tensors, as transformers 5 holds them and several recent releases
/// save them: `<module>.experts.gate_up_proj [E, 2f, d]` (each expert's gate rows, then its
/// up rows) and `<module>.experts.down_proj [E, d, f]`. Each expert's projection is a
/// contiguous run of bytes, so the per-expert tensors are slices: importing copies nothing
/// twice and loading copies nothing at all.
///
/// transformers 5 also renames Mixtral's `block_sparse_moe` module to `mlp`; when the family
/// names its MoE module differently, the router is presented under the family's name too.
public struct FusedExpertTensors: TensorDerivation {
    public init() {}

    public func derive(stored: [String: TensorInfo], context: DerivationContext) throws -> [String: DerivedTensor] {
        var out = [String: DerivedTensor]()
        for (name, gateUp) in stored where name.hasSuffix(".experts.gate_up_proj") {
            let module = String(name.dropLast(".experts.gate_up_proj".count))
            let downName = module + ".experts.down_proj"
            func malformed(_ tensor: String, _ reason: String) -> CheckpointError {
                CheckpointError.malformedTensor(file: context.file, tensor: tensor, reason: reason)
            }
            guard gateUp.shape.count == 3, gateUp.shape[1] % 2 == 0, gateUp.shape.allSatisfy({ $0 > 0 }) else {
                throw malformed(name, "a fused gate/up tensor must be [experts, 2 × intermediate, hidden]; it is \(gateUp.shape)")
            }
            let (experts, width, hidden) = (gateUp.shape[0], gateUp.shape[1] / 2, gateUp.shape[2])
            guard let down = stored[downName] else {
                throw malformed(name, "has no '\(downName)' beside it")
            }
            guard down.shape == [experts, hidden, width] else {
                throw malformed(downName, "must be [experts, hidden, intermediate] = \([experts, hidden, width]) to match '\(name)' \(gateUp.shape); it is \(down.shape)")
            }
            guard down.dtype == gateUp.dtype, gateUp.dtype.isFloatingPoint else {
                throw malformed(downName, "dtype \(down.dtype.rawValue) must be the floating-point dtype of '\(name)' (\(gateUp.dtype.rawValue))")
            }
            let layer = TensorNames.layerIndex(of: module)
            let projectionBytes = width * hidden * gateUp.dtype.byteSize
            for e in 0..<experts {
                let gateStart = 2 * e * projectionBytes
                let slices: [(Projection, String, Range<Int>, [Int])] = [
                    (.gate, name, gateStart..<(gateStart + projectionBytes), [width, hidden]),
                    (.up, name, (gateStart + projectionBytes)..<(gateStart + 2 * projectionBytes), [width, hidden]),
                    (.down, downName, (e * projectionBytes)..<((e + 1) * projectionBytes), [hidden, width]),
                ]
                for (projection, source, range, shape) in slices {
                    let target = layer.flatMap { l in context.names?.expert(l, e, projection) }
                        ?? "\(module).experts.\(e).\(projection.rawValue)_proj.weight"
                    out[target] = DerivedTensor(dtype: gateUp.dtype, shape: shape, content: .slice(source: source, range: range))
                }
            }
            // The router under the family's module name, when transformers 5 renamed the module.
            if let l = layer, let names = context.names, let router = stored[module + ".gate.weight"],
               names.router(l) != module + ".gate.weight" {
                out[names.router(l)] = DerivedTensor(dtype: router.dtype, shape: router.shape,
                                                     content: .slice(source: module + ".gate.weight", range: 0..<router.byteRange.count))
            }
        }
        return out
    }
}
