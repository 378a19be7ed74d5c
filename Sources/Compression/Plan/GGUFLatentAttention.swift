import MoE

/// DeepSeek's multi-head latent attention as llama.cpp's `deepseek2` graph holds it.
///
/// llama.cpp runs MLA "absorbed": it keeps the latent as a single key-value head and
/// multiplies queries and outputs by per-head slices of `kv_b_proj`. So, as
/// convert_hf_to_gguf.py's DeepseekV2Model writes it, `kv_b_proj` ([heads·(nope + v), rank],
/// each head's `nope` key rows then its `v` value rows) becomes two 3-D tensors:
/// - `attn_k_b` [heads, rank, nope] (ggml dimensions `[nope, rank, heads]`): each head's key
///   rows, transposed;
/// - `attn_v_b` [heads, v, rank] (ggml `[rank, v, heads]`): each head's value rows as they are.
/// The split only moves elements, so it is exact in any element type.
enum GGUFLatentAttention {
    struct Split: Equatable {
        var keys: [UInt8]
        var values: [UInt8]
    }

    /// `kvB`'s bytes (row-major, `elementBytes` per element) split into `attn_k_b` and `attn_v_b`.
    static func split(_ kvB: [UInt8], elementBytes: Int, heads: Int, noPositionDim nope: Int, valueDim v: Int, rank: Int) -> Split {
        precondition(kvB.count == heads * (nope + v) * rank * elementBytes)
        var keys = [UInt8](), values = [UInt8]()
        keys.reserveCapacity(heads * nope * rank * elementBytes)
        values.reserveCapacity(heads * v * rank * elementBytes)
        func element(row: Int, column: Int) -> ArraySlice<UInt8> {
            let start = (row * rank + column) * elementBytes
            return kvB[start..<(start + elementBytes)]
        }
        for h in 0..<heads {
            let first = h * (nope + v)
            // k_b[h][r][i] = kv_b[h·(nope + v) + i][r]
            for r in 0..<rank {
                for i in 0..<nope { keys += element(row: first + i, column: r) }
            }
            // v_b[h][j][r] = kv_b[h·(nope + v) + nope + j][r]
            for j in 0..<v {
                for r in 0..<rank { values += element(row: first + nope + j, column: r) }
            }
        }
        return Split(keys: keys, values: values)
    }

    /// ggml dimensions (innermost first) of `attn_k_b` and `attn_v_b`.
    static func dimensions(heads: Int, noPositionDim nope: Int, valueDim v: Int, rank: Int) -> (keys: [Int], values: [Int]) {
        ([nope, rank, heads], [rank, v, heads])
    }

    /// llama.cpp's deepseek2 rotates adjacent pairs (its `NORM` RoPE), as DeepSeek does with
    /// `rope_interleave` true. A checkpoint that rotates halves instead gets the rope rows of
    /// its query projection (the last `ropeDim` rows of each head) and of `kv_a_proj_with_mqa`
    /// (its last `ropeDim` rows) reordered to pairs, as the `llama` graph's q and k are. Nil
    /// when the checkpoint already rotates pairs.
    static func ropeRowOrder(rows: Int, headDim: Int, ropeDim: Int, interleaved: Bool) -> [Int]? {
        guard !interleaved else { return nil }
        let pairs = GGUFArchitecture.interleavedRopeRows(rows: ropeDim, heads: 1)
        var order = [Int]()
        order.reserveCapacity(rows)
        for head in stride(from: 0, to: rows, by: headDim) {
            let ropeStart = head + headDim - ropeDim
            order += Array(head..<ropeStart) + pairs.map { ropeStart + $0 }
        }
        return order
    }
}
