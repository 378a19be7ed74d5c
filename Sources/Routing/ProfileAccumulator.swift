import Foundation

/// The profiler: a `RoutingObserver` that adds every observation into a `RoutingProfile`.
/// Each calibration sample runs as its own unpadded sequence, so every observed token is
/// valid; `skipLeadingTokens` leaves out the first positions of each sequence if wanted.
public final class ProfileAccumulator: RoutingObserver {
    public private(set) var profile: RoutingProfile
    public let skipLeadingTokens: Int

    /// - Parameters:
    ///   - moeLayers: for each model layer, `(experts, hidden, topK)` if it is an MoE layer, else nil.
    ///   - denseSampleStride: run every expert on every n-th token for HC-SMoE's all-token mean (0 = off).
    public init(modelFingerprint: String, source: String, moeLayers: [(experts: Int, hidden: Int, topK: Int)?],
                denseSampleStride: Int = 16, skipLeadingTokens: Int = 0) {
        profile = RoutingProfile(
            modelFingerprint: modelFingerprint, source: source,
            layers: moeLayers.map { $0.map { LayerProfile(expertCount: $0.experts, hiddenSize: $0.hidden, topK: $0.topK) } },
            denseSampleStride: denseSampleStride)
        self.skipLeadingTokens = skipLeadingTokens
    }

    /// Counts calibration sequences; call once per sequence.
    public func countSequence() { profile.sequenceCount += 1 }

    public func observe(_ o: MoELayerObservation) throws {
        guard var layer = profile.layers[o.layer] else {
            throw ProfileError.incompatible("layer \(o.layer) reported routing but is not an MoE layer in the profile")
        }
        let (d, e, k) = (o.hiddenSize, o.expertCount, o.slotsPerToken)
        let first = min(skipLeadingTokens, o.tokenCount)
        let tokens = first..<o.tokenCount
        var denseRows = [Int]()
        for t in tokens {
            layer.tokenCount += 1
            let decision = o.decisions[t]
            let logits = o.routerLogits[(t * e)..<((t + 1) * e)]
            let logitBase = t * e

            // EASY-EP token contribution u_t = max(0, 1 - cos(h, h + y)).
            var hDotHy = 0.0, hNorm2 = 0.0, hyNorm2 = 0.0
            for c in 0..<d {
                let h = Double(o.residualBefore[t * d + c])
                let hy = h + Double(o.routedOutput[t * d + c])
                hDotHy += h * hy
                hNorm2 += h * h
                hyNorm2 += hy * hy
                if abs(h) > layer.residualMax { layer.residualMax = abs(h); layer.residualMaxChannel = c }
            }
            let cosine = (hNorm2 > 0 && hyNorm2 > 0) ? hDotHy / (hNorm2.squareRoot() * hyNorm2.squareRoot()) : 1
            let contribution = max(0, 1 - cosine)
            layer.residualCosineHistogram[Self.bin(cosine, low: -1, high: 1)] += 1

            for (slot, expert) in decision.experts.enumerated() {
                let g = Double(decision.gates[slot]), p = Double(decision.scores[slot])
                let outputBase = (t * k + slot) * d
                var norm2 = 0.0
                var stats = layer.experts[expert]
                for c in 0..<d {
                    let v = Double(o.expertOutputs[outputBase + c])
                    norm2 += v * v
                    layer.routedOutputSum[expert * d + c] += v
                    if abs(v) > stats.maxAbsOutput { stats.maxAbsOutput = abs(v); stats.maxAbsOutputChannel = c }
                }
                let norm = norm2.squareRoot()
                stats.count += 1
                stats.gateSum += g
                stats.scoreSum += p
                stats.gateNormSum += g * norm
                stats.scoreNormSum += p * norm
                stats.normSum += norm
                stats.normSquaredSum += norm2
                stats.gateSquaredNormSquaredSum += g * g * norm2
                stats.easyEPSum += g * norm * contribution
                layer.experts[expert] = stats
                for other in decision.experts { layer.coActivation[expert * e + other] += 1 }
            }
            if let top = decision.experts.first {
                layer.experts[top].topOneLogitSum += Double(logits[logitBase + top])
                layer.experts[top].topOneCount += 1
            }
            // Ratios of the r-th best raw score to the best (Lu et al.'s β, MC-MoE ODP).
            if let best = decision.scores.first, best > 0 {
                for r in 1..<decision.scores.count {
                    let ratio = Double(decision.scores[r] / best)
                    layer.scoreRatioHistogram[(r - 1) * LayerProfile.histogramBins + Self.bin(ratio, low: 0, high: 1)] += 1
                }
            }
            for i in 0..<e {
                let zi = Double(logits[logitBase + i])
                layer.experts[i].logitSum += zi
                layer.experts[i].logitSquaredSum += zi * zi
                for j in i..<e {
                    let product = zi * Double(logits[logitBase + j])
                    layer.logitGram[i * e + j] += product
                    if j != i { layer.logitGram[j * e + i] += product }
                }
            }
            // Dense sampling by position in the sequence, so that every layer, and the
            // streaming and in-memory modes, sample the same tokens.
            if profile.denseSampleStride > 0 && t % profile.denseSampleStride == 0 { denseRows.append(t) }
        }
        if !denseRows.isEmpty {
            layer.denseTokenCount += denseRows.count
            for expert in 0..<e {
                let outputs = try o.runExpert(expert, denseRows)
                for (i, _) in denseRows.enumerated() {
                    for c in 0..<d { layer.denseOutputSum[expert * d + c] += Double(outputs[i * d + c]) }
                }
            }
        }
        profile.layers[o.layer] = layer
    }

    static func bin(_ value: Double, low: Double, high: Double) -> Int {
        let bins = LayerProfile.histogramBins
        let position = Int(((value - low) / (high - low) * Double(bins)).rounded(.down))
        return min(max(position, 0), bins - 1)
    }
}
