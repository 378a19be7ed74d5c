import ExpertStore
import MoE

/// Turning a plan's weights (stored floats or MoEKit codes) into ggml tensor bytes, and
/// choosing the ggml type for a tensor whose parts come in several forms.
enum GGUFTensorEncoding {
    /// How a plan holds one matrix.
    enum Form: Hashable, CustomStringConvertible {
        case float(DType)
        case codes(QuantizationFormat)

        var description: String {
            switch self {
            case let .float(dtype): return dtype.rawValue.lowercased()
            case let .codes(format): return format.description
            }
        }
    }

    /// One matrix's weights, read.
    enum Payload {
        case float(DType, [UInt8])
        case quantized(QuantizedMatrix)
    }

    static func floatType(_ dtype: DType) -> GGMLType? {
        switch dtype {
        case .f32: return .f32
        case .f16: return .f16
        case .bf16: return .bf16
        default: return nil
        }
    }

    /// The widest form among `forms`: any float form wins over codes (the one float type if
    /// all floats share it, else F32); among codes alone, 8-bit needs Q8_0 and 2–4 bits fit
    /// Q4_1.
    static func type(for forms: [Form]) -> GGMLType {
        var floats = Set<DType>(), maxBits = 0
        for form in forms {
            switch form {
            case let .float(dtype): floats.insert(dtype)
            case let .codes(format): maxBits = max(maxBits, format.bits)
            }
        }
        if !floats.isEmpty { return floats.count == 1 ? floatType(floats.first!) ?? .f32 : .f32 }
        return maxBits <= 4 ? .q4_1 : .q8_0
    }

    /// Whether every form converts to `type` without changing a weight.
    static func isExact(_ forms: [Form], as type: GGMLType) -> Bool {
        forms.allSatisfy { form in
            switch form {
            case let .float(dtype): return floatType(dtype) == type || type == .f32
            case let .codes(format): return (type == .q4_1 && format.bits <= 4) || type == .f32
            }
        }
    }

    /// The form of projection `p` (0 gate, 1 up, 2 down) of an expert record.
    static func form(of record: ExpertRecord, projection p: Int, store: ExpertStore) throws -> Form {
        switch try payload(of: record, projection: p, store: store) {
        case let .float(dtype, _): return .float(dtype)
        case let .quantized(matrix): return .codes(matrix.format)
        }
    }

    static func payload(of record: ExpertRecord, projection p: Int, store: ExpertStore) throws -> Payload {
        func corrupt(_ reason: String) -> StoreError { .corruptRecord(path: store.path, record: "expert record (\(record.key))", reason: reason) }
        switch record.kind {
        case .expertSwiGLU:
            // Three matrices, then (gpt-oss) their three biases.
            guard [3, 6].contains(record.tensors.count), floatType(record.tensors[p].dtype) != nil else {
                throw corrupt("an expert is three f32, bf16 or f16 matrices (and their three biases)")
            }
            return .float(record.tensors[p].dtype, record.payloads[p])
        case .expertQuantized:
            guard [3, 6].contains(record.payloads.count) else { throw corrupt("a quantized expert is three matrix records (and their three biases)") }
            do { return .quantized(try QuantizedMatrix(decoding: record.payloads[p])) } catch { throw corrupt("\(error)") }
        case .expertMXFP4:
            throw GGUFExportError.unsupportedExpert("layer \(record.key.layer) expert \(record.key.expert) is kept in MXFP4, which this export does not write yet")
        case .expertConstant:
            throw GGUFExportError.unsupportedExpert("layer \(record.key.layer) expert \(record.key.expert) is a novice (a constant), which llama.cpp cannot run")
        case .denseTensor, .denseQuantized:
            throw corrupt("a dense tensor record in the experts database")
        }
    }

    /// The matrix's bytes as `type`: stored bytes unchanged when the type is the stored one,
    /// codes copied into Q4_1 blocks when they fit, otherwise the weights' f32 values
    /// (widened or dequantized) encoded.
    static func encode(_ payload: Payload, as type: GGMLType) -> [UInt8] {
        switch payload {
        case let .float(dtype, bytes):
            if floatType(dtype) == type { return bytes }
            return GGMLBlockEncoder.encode(GGMLBlockEncoder.decode(bytes, as: floatType(dtype)!, count: bytes.count / dtype.byteSize), as: type)
        case let .quantized(matrix):
            if type == .q4_1 && matrix.bits <= 4 { return q4_1Blocks(matrix) }
            return GGMLBlockEncoder.encode(matrix.dequantized().values, as: type)
        }
    }

    /// MoEKit codes of at most 4 bits as Q4_1: every 32-value block of a row takes its
    /// group's scale and minimum and keeps its codes.
    static func q4_1Blocks(_ matrix: QuantizedMatrix) -> [UInt8] {
        precondition(matrix.bits <= 4 && matrix.groupSize % GGMLBlockEncoder.blockSize == 0)
        let codes = BitPacking.unpack(matrix.packed, bits: matrix.bits, count: matrix.rows * matrix.columns)
        var out = [UInt8]()
        out.reserveCapacity(matrix.rows * matrix.columns / 32 * GGMLType.q4_1.blockBytes)
        for r in 0..<matrix.rows {
            for start in stride(from: 0, to: matrix.columns, by: GGMLBlockEncoder.blockSize) {
                let group = r * matrix.groupsPerRow + start / matrix.groupSize
                let first = r * matrix.columns + start
                GGMLBlockEncoder.appendQ4_1(codes: codes[first..<(first + GGMLBlockEncoder.blockSize)],
                                            scaleBits: matrix.scales[group], minimumBits: matrix.minimums[group], to: &out)
            }
        }
        return out
    }

    /// Bias `p` (0 gate, 1 up, 2 down) of a biased expert record (gpt-oss), widened to f32:
    /// imported records hold them in the checkpoint's dtype, merged and quantized ones in f32,
    /// always after the three matrices.
    static func bias(of record: ExpertRecord, projection p: Int, store: ExpertStore) throws -> [Float] {
        guard [.expertSwiGLU, .expertQuantized].contains(record.kind), record.tensors.count == 6,
              let type = floatType(record.tensors[3 + p].dtype) else {
            throw StoreError.corruptRecord(path: store.path, record: "expert record (\(record.key))",
                                           reason: "an expert with biases is three matrices and three f32, bf16 or f16 biases, found \(record.kind) with \(record.tensors.count) tensors")
        }
        let bytes = record.payloads[3 + p]
        return GGMLBlockEncoder.decode(bytes, as: type, count: bytes.count / record.tensors[3 + p].dtype.byteSize)
    }

    /// Emits `bytes` (`rows` equal rows) with the rows in `rowOrder` when given.
    static func emit(_ bytes: [UInt8], rowOrder: [Int]?, rows: Int, _ emit: (UnsafeRawBufferPointer) throws -> Void) throws {
        try bytes.withUnsafeBytes { raw in
            guard let rowOrder else { return try emit(raw) }
            let rowBytes = bytes.count / rows
            for r in rowOrder { try emit(UnsafeRawBufferPointer(rebasing: raw[(r * rowBytes)..<((r + 1) * rowBytes)])) }
        }
    }
}
