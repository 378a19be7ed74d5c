/// ggml's Q4_K ("k-quant") block, written from the layout in ggml's `ggml-common.h`
/// (`block_q4_K`) and its dequantization (`dequantize_row_q4_K`); the search for the scales is
/// MoEKit's own, so the bytes are a valid Q4_K block but not necessarily the ones
/// `llama-quantize` would choose for the same values.
///
/// A super-block holds 256 consecutive values of one row as 8 sub-blocks of 32, in 144 bytes:
///
/// - `d` and `dmin` (f16): the super-block's scale of scales and scale of minimums;
/// - 12 bytes holding, for each sub-block `j`, a 6-bit scale `sc[j]` and a 6-bit minimum
///   `m[j]`. Bytes 0–3 carry `sc[0…3]` in their low six bits, bytes 4–7 carry `m[0…3]` in their
///   low six bits; bytes 8–11 carry the low four bits of `sc[4…7]` (low nibble) and of
///   `m[4…7]` (high nibble), and the top two bits of `sc[4…7]` sit in bits 6–7 of bytes 0–3,
///   those of `m[4…7]` in bits 6–7 of bytes 4–7;
/// - 128 bytes of 4-bit codes: bytes `32c…32c+31` hold sub-block `2c` in their low nibbles and
///   sub-block `2c+1` in their high nibbles (`c` in 0..<4).
///
/// Value `l` of sub-block `j` is `(d·sc[j])·q − (dmin·m[j])`: every sub-block is an affine
/// 4-bit grid whose offset is at most zero (a sub-block whose values are all positive starts
/// its grid at 0).
extension GGMLBlockEncoder {
    public static let superBlockSize = 256
    static let subBlockSize = 32
    static let subBlocks = 8

    /// One super-block of 256 values.
    ///
    /// 1. Each sub-block gets an affine grid `s·q − o` (o ≥ 0): the min–max fit, then a few
    ///    two rounds of least squares on the codes it gives, kept while the error falls.
    /// 2. `d` and `dmin` are the largest `s` and `o` over 63, rounded to f16; each sub-block's
    ///    6-bit `sc` and `m` are the better of the multiples either side of its `s` and `o`
    ///    (rounding to the nearest is not always best once the codes are re-chosen).
    /// 3. The codes are the nearest points of the final grid, so every value lands on the
    ///    grid point closest to it.
    static func appendQ4_K(_ block: ArraySlice<Float>, to out: inout [UInt8]) {
        precondition(block.count == superBlockSize, "a Q4_K block is 256 values")
        block.withUnsafeBufferPointer { values in
            var scales = [Float](repeating: 0, count: subBlocks), offsets = scales
            for j in 0..<subBlocks { (scales[j], offsets[j]) = fitGrid(subBlock(values, j)) }
            let d = Float(Float16(scales.max()! / 63)), dmin = Float(Float16(offsets.max()! / 63))

            var sc = [UInt8](repeating: 0, count: subBlocks), m = sc
            for j in 0..<subBlocks {
                let sub = subBlock(values, j)
                var best = (error: Float.infinity, sc: 0, m: 0)
                for a in sixBitNeighbours(d == 0 ? 0 : scales[j] / d) {
                    for b in sixBitNeighbours(dmin == 0 ? 0 : offsets[j] / dmin) {
                        let error = squaredError(sub, scale: d * Float(a), offset: dmin * Float(b))
                        if error < best.error { best = (error, a, b) }
                    }
                }
                sc[j] = UInt8(best.sc)
                m[j] = UInt8(best.m)
            }

            out.appendLittleEndian(Float16(d).bitPattern)
            out.appendLittleEndian(Float16(dmin).bitPattern)
            out += packScalesAndMins(sc, m)
            var codes = [UInt8](repeating: 0, count: superBlockSize)
            for j in 0..<subBlocks {
                let scale = d * Float(sc[j]), offset = dmin * Float(m[j])
                for l in 0..<subBlockSize { codes[j * subBlockSize + l] = nearestCode(values[j * subBlockSize + l], scale: scale, offset: offset) }
            }
            for c in 0..<(subBlocks / 2) {
                for l in 0..<subBlockSize { out.append(codes[64 * c + l] | codes[64 * c + 32 + l] << 4) }
            }
        }
    }

    /// The 6-bit integers either side of `ratio` (one when it is whole), clamped to 0…63.
    static func sixBitNeighbours(_ ratio: Float) -> ClosedRange<Int> {
        min(63, max(0, Int(ratio.rounded(.down))))...min(63, max(0, Int(ratio.rounded(.up))))
    }

    static func subBlock(_ values: UnsafeBufferPointer<Float>, _ j: Int) -> UnsafeBufferPointer<Float> {
        UnsafeBufferPointer(rebasing: values[(j * subBlockSize)..<((j + 1) * subBlockSize)])
    }

    /// The 12 bytes holding eight 6-bit scales and eight 6-bit minimums (layout above).
    static func packScalesAndMins(_ sc: [UInt8], _ m: [UInt8]) -> [UInt8] {
        precondition(sc.count == subBlocks && m.count == subBlocks && (sc + m).allSatisfy { $0 < 64 })
        var packed = [UInt8](repeating: 0, count: 12)
        for j in 0..<4 {
            packed[j] = sc[j] | (sc[j + 4] >> 4) << 6
            packed[j + 4] = m[j] | (m[j + 4] >> 4) << 6
            packed[j + 8] = (sc[j + 4] & 0x0F) | (m[j + 4] & 0x0F) << 4
        }
        return packed
    }

    /// Sub-block `j`'s 6-bit scale and minimum from the 12 packed bytes.
    static func scaleAndMin(_ packed: ArraySlice<UInt8>, _ j: Int) -> (sc: UInt8, m: UInt8) {
        let p = Array(packed)
        if j < 4 { return (p[j] & 0x3F, p[j + 4] & 0x3F) }
        return ((p[j + 4] & 0x0F) | (p[j - 4] >> 6) << 4, (p[j + 4] >> 4) | (p[j] >> 6) << 4)
    }

    /// A sub-block's affine grid `s·q − o`, `o ≥ 0`, q in 0…15.
    static func fitGrid(_ x: UnsafeBufferPointer<Float>) -> (scale: Float, offset: Float) {
        var low: Float = 0, high = x[0]
        for v in x { low = min(low, v); high = max(high, v) }
        var best = (scale: (high - low) / 15, offset: 0 - low)   // 0 − 0 is +0, not −0
        guard best.scale > 0 else { return (0, best.offset) }
        var bestError = squaredError(x, scale: best.scale, offset: best.offset)
        for _ in 0..<2 {
            // Least squares of x ≈ s·q − o over the current codes.
            var sq: Float = 0, sqq: Float = 0, sx: Float = 0, sqx: Float = 0
            for v in x {
                let q = Float(nearestCode(v, scale: best.scale, offset: best.offset))
                sq += q
                sqq += q * q
                sx += v
                sqx += q * v
            }
            let n = Float(x.count), det = n * sqq - sq * sq
            guard det > 0 else { break }
            var s = (n * sqx - sq * sx) / det
            var o = (sq * sqx - sqq * sx) / det
            if !(o > 0) { (o, s) = (0, sqx / sqq) }   // the best scale with the grid at 0
            guard s > 0 else { break }
            let error = squaredError(x, scale: s, offset: o)
            guard error < bestError else { break }
            (best, bestError) = ((s, o), error)
        }
        return best
    }

    static func nearestCode(_ x: Float, scale: Float, offset: Float) -> UInt8 {
        guard scale > 0 else { return 0 }
        return UInt8(min(15, max(0, ((x + offset) / scale).rounded())))
    }

    static func squaredError(_ x: UnsafeBufferPointer<Float>, scale: Float, offset: Float) -> Float {
        var sum: Float = 0
        for v in x {
            let e = scale * Float(nearestCode(v, scale: scale, offset: offset)) - offset - v
            sum += e * e
        }
        return sum
    }

    /// The 256 values of one Q4_K block (144 bytes), as ggml dequantizes them.
    static func appendDecodedQ4_K(_ block: ArraySlice<UInt8>, to out: inout [Float]) {
        let b = Array(block)
        func half(_ i: Int) -> Float { Float(Float16(bitPattern: UInt16(b[i]) | UInt16(b[i + 1]) << 8)) }
        let d = half(0), dmin = half(2)
        for j in 0..<subBlocks {
            let (sc, m) = scaleAndMin(b[4..<16], j)
            let scale = d * Float(sc), offset = dmin * Float(m)
            let start = 16 + 32 * (j / 2)
            for l in 0..<subBlockSize {
                let q = j % 2 == 0 ? b[start + l] & 0x0F : b[start + l] >> 4
                out.append(scale * Float(q) - offset)
            }
        }
    }
}
