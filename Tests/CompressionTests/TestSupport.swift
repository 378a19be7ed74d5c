import MoE

/// A small seeded generator (SplitMix64) so every test draws the same numbers on every run.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A standard normal draw (Box–Muller).
    mutating func normal() -> Float {
        let u1 = Double.random(in: Double.ulpOfOne..<1, using: &self), u2 = Double.random(in: 0..<1, using: &self)
        return Float((-2 * Foundation.log(u1)).squareRoot() * Foundation.cos(2 * Double.pi * u2))
    }

    mutating func matrix(_ rows: Int, _ columns: Int, scale: Float = 1) -> Matrix {
        Matrix(rows: rows, columns: columns, values: (0..<(rows * columns)).map { _ in scale * normal() })
    }
}

import Foundation

/// Every supported (bits, group size) pair.
let allFormats: [(bits: Int, groupSize: Int)] = [2, 3, 4, 8].flatMap { b in [32, 64, 128].map { (b, $0) } }

/// `x · Wᵀ` in Double, the reference for the kernels.
func referenceLinear(_ x: Matrix, _ w: Matrix) -> [Double] {
    var out = [Double](repeating: 0, count: x.rows * w.rows)
    for t in 0..<x.rows {
        for r in 0..<w.rows {
            var sum = 0.0
            for c in 0..<w.columns { sum += Double(x[t, c]) * Double(w[r, c]) }
            out[t * w.rows + r] = sum
        }
    }
    return out
}

/// ‖a − b‖ / ‖b‖.
func relativeError(_ a: [Float], _ b: [Double]) -> Double {
    precondition(a.count == b.count)
    let difference = zip(a, b).reduce(0.0) { $0 + (Double($1.0) - $1.1) * (Double($1.0) - $1.1) }
    let norm = b.reduce(0.0) { $0 + $1 * $1 }
    return (difference / max(norm, .leastNormalMagnitude)).squareRoot()
}
