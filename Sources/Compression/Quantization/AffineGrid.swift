/// The quantization grid of one group, `w ≈ scale·q + minimum` for `q` in `0 ... maximumCode`.
///
/// Scale and minimum are stored in half precision. Rounding them to nearest could shrink the
/// grid so that the group's extreme weights fall outside it, so they are rounded *outward*: the
/// minimum down and the scale up. The grid then still spans the group's range and every weight
/// lies within `scale/2` of a grid point (up to float rounding), the round-to-nearest bound.
struct AffineGrid: Equatable {
    let scale: Float
    let minimum: Float
    let maximumCode: Int

    /// The grid of a group whose weights lie in `[low, high]`. Both must be finite and within
    /// half precision's range (callers check with `AffineGrid.isRepresentable`).
    init(low: Float, high: Float, maximumCode: Int) {
        precondition(Self.isRepresentable(low) && Self.isRepresentable(high) && low <= high)
        var minimum = Float16(low)
        if Float(minimum) > low { minimum = minimum.nextDown }
        let exactScale = (high - Float(minimum)) / Float(maximumCode)
        var scale = Float16(exactScale)
        if Float(scale) < exactScale { scale = scale.nextUp }
        self.init(scaleBits: scale.bitPattern, minimumBits: minimum.bitPattern, maximumCode: maximumCode)
    }

    /// A grid read back from storage.
    init(scaleBits: UInt16, minimumBits: UInt16, maximumCode: Int) {
        self.scale = Float(Float16(bitPattern: scaleBits))
        self.minimum = Float(Float16(bitPattern: minimumBits))
        self.maximumCode = maximumCode
    }

    /// Whether a weight can be quantized at all: scales and minimums are half precision.
    static func isRepresentable(_ w: Float) -> Bool { w.isFinite && abs(w) <= Float(Float16.greatestFiniteMagnitude) }

    var scaleBits: UInt16 { Float16(scale).bitPattern }
    var minimumBits: UInt16 { Float16(minimum).bitPattern }

    /// The nearest grid point's code (ties to even, as torch.round in the GPTQ reference).
    func code(for w: Float) -> UInt8 {
        guard scale > 0 else { return 0 }  // a constant group: every weight is the minimum
        let q = ((w - minimum) / scale).rounded(.toNearestOrEven)
        return UInt8(min(max(q, 0), Float(maximumCode)))
    }

    func value(of code: UInt8) -> Float { scale * Float(code) + minimum }
}
