import CBLAS
import CKernels
import Compression
import Foundation
import MoE

// Matrix-vector throughput on packed quantized weights against f32 OpenBLAS sgemv, on the
// same 4096 x 4096 matrix in the same run. Build with -c release.

/// Best of `repeats` timings of `body`, after one warm-up call.
func best(_ repeats: Int, _ body: () -> Void) -> Double {
    body()
    return (0..<repeats).map { _ in seconds(body) }.min()!
}

func run() throws {
    // Single-core kernel throughput: the pool and OpenBLAS on one thread (QUANT_BENCH_THREADS to change).
    let threads = Int(ProcessInfo.processInfo.environment["QUANT_BENCH_THREADS"] ?? "1") ?? 1
    ComputePool.configure(threads: threads)
    print("threads: \(threads)")
    let n = 4096
    var generator = SystemRandomNumberGenerator()
    let weight = Matrix(rows: n, columns: n, values: (0..<(n * n)).map { _ in Float.random(in: -0.05...0.05, using: &generator) })
    let x = (0..<n).map { _ in Float.random(in: -1...1, using: &generator) }
    let flops = 2.0 * Double(n * n)

    // The contenders: f32 OpenBLAS sgemv and the packed gemv at every width.
    var y = [Float](repeating: 0, count: n)
    var sink: Float = 0
    var contenders: [(name: String, bytes: Int, body: () -> Void)] = [("f32 sgemv", n * n * 4, {
        weight.values.withUnsafeBufferPointer { w in
            x.withUnsafeBufferPointer { v in
                y.withUnsafeMutableBufferPointer { out in
                    cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(n), Int32(n), 1, w.baseAddress, Int32(n),
                                v.baseAddress, 1, 0, out.baseAddress, 1)
                }
            }
        }
    })]
    let row = Matrix(rows: 1, columns: n, values: x)
    var halves = [UInt16](repeating: 0, count: n * n)
    moe_f32_to_bf16(weight.values, &halves, n * n)
    let half = HalfMatrix(rows: n, columns: n, format: .bf16, values: halves)
    contenders.append(("bf16", half.byteCount, { sink += half.linear(row).values[0] }))
    for bits in [8, 4, 3, 2] {
        for group in [128, 32] {
            let q = try QuantizedMatrix(quantizing: weight, format: QuantizationFormat(bits: bits, groupSize: group))
            contenders.append(("\(bits)-bit g\(group)", q.byteCount, { sink += q.gemv(x)[0] }))
            if bits != 3 {  // the integer kernel on 8-bit activations (what decode runs)
                contenders.append(("\(bits)b g\(group) i8", q.byteCount, { sink += q.linear(row).values[0] }))
            }
        }
    }
    // The machine is shared, so rounds interleave the contenders and each keeps its best time.
    let rounds = 8, repeats = 25
    var bestTimes = [Double](repeating: .infinity, count: contenders.count)
    for _ in 0..<rounds {
        for (i, contender) in contenders.enumerated() { bestTimes[i] = min(bestTimes[i], best(repeats, contender.body)) }
    }
    print("gemv \(n)x\(n), best of \(rounds) interleaved rounds x \(repeats) calls (packed kernel SIMD: \(QuantizedMatrix.kernelUsesSIMD))")
    print("format        bytes/param  weight MiB   ms/gemv   GB/s(weights)  GFLOP/s  speedup vs f32")
    for (contender, time) in zip(contenders, bestTimes) {
        print(String(format: "%-12@  %11.4f  %10.2f  %8.3f  %13.1f  %7.2f  %6.2fx", contender.name as NSString,
                     Double(contender.bytes) / Double(n * n), Double(contender.bytes) / 1_048_576, time * 1e3,
                     Double(contender.bytes) / time / 1e9, flops / time / 1e9, bestTimes[0] / time))
    }
    if sink.isNaN { print("") }

    // Batched path (dequantize a block of rows, then sgemm) against f32 sgemm, 32 tokens,
    // interleaved in rounds like the gemv.
    let tokens = 32
    let batch = Matrix(rows: tokens, columns: n, values: (0..<(tokens * n)).map { _ in Float.random(in: -1...1, using: &generator) })
    var batched: [(name: String, body: () -> Void)] = [("f32 sgemm", { _ = LinearAlgebra.linear(batch, weight) })]
    for bits in [8, 4, 3] {
        let q = try QuantizedMatrix(quantizing: weight, format: QuantizationFormat(bits: bits, groupSize: 128))
        batched.append(("\(bits)-bit g128", { _ = q.linear(batch) }))
    }
    var batchTimes = [Double](repeating: .infinity, count: batched.count)
    for _ in 0..<4 {
        for (i, contender) in batched.enumerated() { batchTimes[i] = min(batchTimes[i], best(3, contender.body)) }
    }
    print("\nlinear, \(tokens) tokens x \(n)x\(n):")
    for (contender, time) in zip(batched, batchTimes) {
        print(String(format: "  %-10@ %7.2f ms  %5.2fx f32", contender.name as NSString, time * 1e3, batchTimes[0] / time))
    }

    // GPTQ on one Qwen3-30B-A3B-sized projection (gate/up: 768 x 2048) with 2048 calibration tokens.
    let projection = Matrix(rows: 768, columns: 2048, values: (0..<(768 * 2048)).map { _ in Float.random(in: -0.05...0.05, using: &generator) })
    let calibration = Matrix(rows: 2048, columns: 2048, values: (0..<(2048 * 2048)).map { _ in Float.random(in: -1...1, using: &generator) })
    var hessian = InputHessian(dimension: 2048)
    let accumulate = seconds { hessian.add(calibration) }
    var result: GPTQResult?
    let gptq = try seconds { result = try GPTQ(format: QuantizationFormat(bits: 4, groupSize: 128)).quantize(projection, hessian: hessian.values) }
    print(String(format: "\nGPTQ 4-bit g128 on 768x2048: %.2f s (Hessian of 2048 tokens: %.2f s), fallback: %@",
                 gptq, accumulate, String(describing: result?.fallback) as NSString))
}

func seconds(_ body: () throws -> Void) rethrows -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    try body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

try run()
