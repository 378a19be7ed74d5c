/// gpt-oss's official MXFP4 experts: per MoE layer,
///
///     <module>.experts.gate_up_proj_blocks  U8 [E, 2f, d/32, 16]   <module>.experts.gate_up_proj_scales  U8 [E, 2f, d/32]
///     <module>.experts.down_proj_blocks     U8 [E, d, f/32, 16]    <module>.experts.down_proj_scales     U8 [E, d, f/32]
///
/// row r of a projection holding its 32-column groups' FP4 codes (low nibble first) and E8M0
/// scales, as transformers' `integrations/mxfp4.py` reads them. gpt-oss interleaves gate and
/// up by row: in the [2f, d] orientation of the blocks, gate is rows 0, 2, 4, … and up rows
/// 1, 3, 5, … (its forward pass takes `gate_up[..., ::2]` and `[..., 1::2]` of the [d, 2f] weight).
///
/// This derivation presents each expert's projections under MoEKit's per-expert names
/// (`…experts.E.gate_proj.weight` for a [f, d] weight, `up_proj` [f, d], `down_proj` [d, f])
/// as stored MXFP4, not widened: U8 `[rows, columns/32, 17]`, each group's 16 code bytes
/// followed by its scale byte, the layout `MXFP4Matrix` and its kernels use. The biases
/// (`gate_up_proj_bias`, `down_proj_bias`) are the gpt_oss family's to read.
public struct MXFP4ExpertTensors: TensorDerivation {
    public init() {}

    static let gateUp = ".experts.gate_up_proj", down = ".experts.down_proj"

    public func derive(stored: [String: TensorInfo], context: DerivationContext) throws -> [String: DerivedTensor] {
        var out = [String: DerivedTensor]()
        for name in stored.keys.sorted() where name.hasSuffix(Self.gateUp + "_blocks") {
            let module = String(name.dropLast((Self.gateUp + "_blocks").count))
            let gateUp = try Self.projection(module + Self.gateUp, stored: stored, file: context.file)
            let down = try Self.projection(module + Self.down, stored: stored, file: context.file)
            let (experts, width, hidden) = (gateUp.experts, gateUp.rows / 2, gateUp.groups * 32)
            guard gateUp.rows % 2 == 0 else {
                throw CheckpointError.malformedTensor(file: context.file, tensor: gateUp.blocks,
                    reason: "interleaved gate/up rows must be even in number (2 × intermediate); there are \(gateUp.rows)")
            }
            guard width % 32 == 0 else {
                throw CheckpointError.malformedTensor(file: context.file, tensor: gateUp.blocks,
                    reason: "the intermediate size \(width) (half of \(gateUp.rows) rows) must be a multiple of 32, the columns of down_proj's MXFP4 groups")
            }
            guard down.experts == experts, down.rows == hidden, down.groups * 32 == width else {
                throw CheckpointError.malformedTensor(file: context.file, tensor: down.blocks,
                    reason: "must be [experts, hidden, intermediate/32, 16] = \([experts, hidden, width / 32, 16]) to match '\(gateUp.blocks)'; it is \([down.experts, down.rows, down.groups, 16])")
            }
            let layer = TensorNames.layerIndex(of: module)
            for e in 0..<experts {
                let parts: [(Projection, Projection3D, [Int])] = [
                    (.gate, gateUp, (0..<width).map { e * gateUp.rows + 2 * $0 }),
                    (.up, gateUp, (0..<width).map { e * gateUp.rows + 2 * $0 + 1 }),
                    (.down, down, (0..<hidden).map { e * down.rows + $0 }),
                ]
                for (projection, source, rows) in parts {
                    let target = layer.flatMap { l in context.names?.expert(l, e, projection) }
                        ?? "\(module).experts.\(e).\(projection.rawValue)_proj.weight"
                    let groups = source.groups
                    out[target] = DerivedTensor(dtype: .u8, shape: [rows.count, groups, MXFP4Matrix.groupBytes],
                                                content: .computed(sources: [source.blocks, source.scales]) { bytes in
                        Self.pack(blocks: bytes[0], scales: bytes[1], groups: groups, rows: rows)
                    })
                }
            }
        }
        return out
    }

    /// One fused MXFP4 projection's tensors, checked against each other.
    struct Projection3D {
        var blocks: String, scales: String
        var experts: Int, rows: Int, groups: Int
    }

    static func projection(_ base: String, stored: [String: TensorInfo], file: String) throws -> Projection3D {
        let (blocksName, scalesName) = (base + "_blocks", base + "_scales")
        func malformed(_ tensor: String, _ reason: String) -> CheckpointError {
            .malformedTensor(file: file, tensor: tensor, reason: reason)
        }
        guard let blocks = stored[blocksName] else { throw malformed(blocksName, "is missing beside the other MXFP4 expert tensors") }
        guard blocks.dtype == .u8, blocks.shape.count == 4, blocks.shape[3] == 16, blocks.shape.allSatisfy({ $0 > 0 }) else {
            throw malformed(blocksName, "MXFP4 blocks must be U8 [experts, rows, columns/32, 16] (16 bytes = 32 FP4 codes); it is \(blocks.dtype.rawValue) \(blocks.shape)")
        }
        guard let scales = stored[scalesName] else { throw malformed(blocksName, "has no scales '\(scalesName)' beside it") }
        guard scales.dtype == .u8, scales.shape == Array(blocks.shape.prefix(3)) else {
            throw malformed(scalesName, "MXFP4 scales must be U8 \(Array(blocks.shape.prefix(3))), one E8M0 byte per block of '\(blocksName)'; it is \(scales.dtype.rawValue) \(scales.shape)")
        }
        return Projection3D(blocks: blocksName, scales: scalesName, experts: blocks.shape[0], rows: blocks.shape[1], groups: blocks.shape[2])
    }

    /// Rows `rows` (indices into the [E × rows] stacks) in `MXFP4Matrix`'s layout.
    static func pack(blocks: UnsafeRawBufferPointer, scales: UnsafeRawBufferPointer, groups: Int, rows: [Int]) -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(rows.count * groups * MXFP4Matrix.groupBytes)
        for r in rows {
            for g in 0..<groups {
                let start = (r * groups + g) * 16
                out.append(contentsOf: blocks[start..<(start + 16)])
                out.append(scales[r * groups + g])
            }
        }
        return out
    }
}

extension MXFP4Matrix {
    /// A weight `[rows, columns]` from a tensor in `MXFP4ExpertTensors`' layout (U8
    /// `[rows, columns/32, 17]`); throws naming the tensor when its layout is not that.
    public init(tensor name: String, in checkpoint: CheckpointDirectory, rows: Int, columns: Int) throws {
        let (dtype, shape) = try checkpoint.layout(name)
        let expected = [rows, columns / Self.groupSize, Self.groupBytes]
        guard dtype == .u8, shape == expected, columns % Self.groupSize == 0 else {
            throw CheckpointError.malformedTensor(file: checkpoint.location, tensor: name,
                reason: "an MXFP4 weight [\(rows), \(columns)] is U8 \(expected); it is \(dtype.rawValue) \(shape)")
        }
        self.init(rows: rows, columns: columns, packed: try checkpoint.tensorBytes(name).withUnsafeBytes { Array($0) })
    }
}

extension CheckpointDirectory {
    /// The weight as the forward pass holds it: a tensor in MXFP4's stored layout as an
    /// `MXFP4Matrix` (not widened), anything else as `storedWeight` gives it.
    public func weight(_ name: String, shape: [Int], precision: WeightPrecision) throws -> any LinearWeight {
        let (dtype, stored) = try layout(name)
        if shape.count == 2, MXFP4Matrix.logicalShape(dtype: dtype, shape: stored) == shape {
            return try MXFP4Matrix(tensor: name, in: self, rows: shape[0], columns: shape[1])
        }
        return try storedWeight(name, shape: shape, precision: precision)
    }
}
