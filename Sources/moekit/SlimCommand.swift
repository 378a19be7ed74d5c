import ArgumentParser
import Compression
import ExpertStore
import Foundation
import MoE
import Routing

struct SlimCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "slim",
        abstract: "Build a slimmed expert set (a plan) from a routing profile and store it.",
        discussion: """
        Pruning ranks experts by a criterion and keeps --keep of them (super experts are always \
        kept unless --prune-super-experts), the same fraction in every layer, under one threshold \
        (--budget global), or with per-layer counts that minimise the measured block-output error \
        (--budget search). --novices turns that fraction of each layer's experts, among the pruned, \
        into constant outputs added outside the top-k with the gate the unpruned router gives them \
        (MoNE; vectors by --novice-fit mean or lsq). --refit then refits the kept experts' down \
        projections by ridge least squares, layer by layer, on calibration text run through the \
        already-compressed layers. --shrink removes that fraction of every kept expert's \
        intermediate neurons, those with the least gate-weighted output energy on calibration \
        text (CAMERA-P; --shrink-scope layer: one threshold per layer, so widths vary by expert), \
        before the refit and quantization. --merge clusters experts instead of dropping them. --bits \
        quantizes every remaining expert, choosing each one's width by an exact knapsack that \
        minimises the block-output error measured on calibration text under the average-bit \
        budget (MC-MoE); --uniform-bits quantizes all at one width.
        Example: moekit slim --profile python --prune reap --keep 0.5 --novices 0.1 --bits 3.0 --name python-slim
        """)

    @OptionGroup var storeOption: StoreOption
    @Option(help: "The routing profile to build from.") var profile: String
    @Option(help: "Name of the plan to store.") var name: String
    @Flag(help: "Overwrite a stored plan of the same --name (its old derived records are left for `moekit gc`).") var replace = false
    @Option(help: "Prune by criterion: \(Criterion.allCases.map(\.rawValue).joined(separator: ", ")).") var prune: String?
    @Option(help: "Merge instead of pruning: hc-smoe or m-smoe.") var merge: String?
    @Option(help: "Fraction of experts kept (pruning) or of groups left (merging).") var keep: Double = 1
    @Option(help: "Budget: uniform (same fraction per layer), global (one threshold over all layers) or search (per-layer counts that minimise the measured block-output error).") var budget: PruningBudget = .uniform
    @Option(help: "Fraction of each layer's experts that become novices (added outside the top-k) instead of being dropped.") var novices: Double = 0
    @Option(help: "Novice vectors: mean (the expert's mean routed output) or lsq (least squares on calibration text, with --refit if given).") var noviceFit: SlimOptions.NoviceFit = .mean
    @Flag(help: "Refit the kept and merged experts' down projections by ridge least squares on calibration text, layer by layer.") var refit = false
    @Option(help: "The refit's ridge: λ = this × mean diag(ZᵀZ).") var refitRidge = 0.05
    @Option(help: "Experts chosen per token instead of the family's top-k: one value for every MoE layer, or one per MoE layer (e.g. 8,8,6,6).") var topK: TopKList?
    @Option(help: "Skip low-weight experts token by token: lu (Lu et al.: rank r runs while p_r ≥ β·p_1, β the median of p_r/p_1 in the profile; lu:Q another quantile), ser:KMIN,T (always the best KMIN, the rest while p_r > T·p_1) or top-p:P (the fewest experts whose probability reaches P).",
            transform: { try SkipSpecification(parsing: $0) }) var skip: SkipSpecification?
    @Option(help: "Remove this fraction of each expert's intermediate neurons, lowest gate-weighted output energy first (pruning inside experts), in [0, 1).") var shrink: Double?
    @Option(help: "Which neurons compete under --shrink: expert (each expert loses the same share) or layer (one threshold over a layer's experts).") var shrinkScope: ExpertShrinking.Scope = .expert
    @Flag(help: "Allow super experts to be pruned.") var pruneSuperExperts = false
    @Option(help: "Average bits per expert weight (mixed precision).") var bits: Double?
    @Option(help: "Quantize every expert at this width instead (2, 3, 4 or 8).") var uniformBits: Int?
    @Option(help: "Quantization group size: 32, 64 or 128.") var group = 64
    @Option(help: "Also quantize dense weights (attention, shared experts, dense layers, output head) at 8 or 4 bits, groups of --group; routers and norms stay full precision.") var denseBits: Int?
    @Flag(help: "Quantize with GPTQ (per-expert Hessians from the calibration replay) instead of round-to-nearest.") var gptq = false
    @Option(help: "Calibration text for quantization, the refit, lsq novices and the budget search (default: the profile's own source).") var calib: String?
    @Option(help: "Calibration samples used by quantization, the refit, lsq novices and the budget search.") var maxSamples = 32
    @Flag(help: "Replay calibration layer by layer from the store (chosen automatically when the model does not fit in memory).") var streaming = false
    @Flag(help: "Print the summary as JSON (and no progress).") var json = false

    func validate() throws {
        try PlanNames.checkNew(name)
        if prune != nil && merge != nil { throw ValidationError("choose --prune or --merge, not both") }
        if prune == nil && merge == nil && bits == nil && uniformBits == nil && denseBits == nil && topK == nil && skip == nil && shrink == nil {
            throw ValidationError("nothing to do: give --prune, --merge, --shrink, --bits, --uniform-bits, --dense-bits, --top-k or --skip")
        }
        if let prune, Criterion(rawValue: prune) == nil {
            throw ValidationError("unknown criterion '\(prune)'; choose one of \(Criterion.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if let merge, SlimOptions.MergeMethod(rawValue: merge) == nil { throw ValidationError("unknown merge method '\(merge)'; choose hc-smoe or m-smoe") }
        if budget != .uniform && prune == nil { throw ValidationError("--budget \(budget.rawValue) needs --prune") }
        if refit && prune == nil && merge == nil && topK == nil && skip == nil && shrink == nil {
            throw ValidationError("--refit needs --prune, --merge, --shrink, --top-k or --skip")
        }
        if let shrink, !(shrink >= 0 && shrink < 1) { throw ValidationError("--shrink must be in [0, 1), got \(shrink)") }
        guard refitRidge > 0 else { throw ValidationError("--refit-ridge must be positive") }
        if noviceFit == .leastSquares && novices == 0 { throw ValidationError("--novice-fit lsq needs --novices") }
        guard keep > 0 && keep <= 1 else { throw ValidationError("--keep must be in (0, 1]") }
        guard novices >= 0 && novices < 1 else { throw ValidationError("--novices must be in [0, 1)") }
        if novices > 0 && prune == nil { throw ValidationError("--novices needs --prune") }
        if let bits, !(2...8).contains(bits) { throw ValidationError("--bits must be between 2 and 8") }
        if let denseBits, ![4, 8].contains(denseBits) { throw ValidationError("--dense-bits must be 8 or 4") }
    }

    func run() throws {
        let store = try ExpertStore(url: storeOption.url, readOnly: false)
        try PlanNames.checkAvailable(name, in: store, replace: replace)
        guard let routing = try store.profiles.get(RoutingProfile.self, named: profile) else {
            throw ValidationError("no profile named '\(profile)' in \(store.path); stored: \(try store.profiles.names().joined(separator: ", "))")
        }
        var options = SlimOptions(name: name)
        options.prune = prune.flatMap(Criterion.init(rawValue:))
        options.merge = merge.flatMap(SlimOptions.MergeMethod.init(rawValue:))
        options.keepFraction = keep
        options.budget = budget
        options.noviceFraction = novices
        options.noviceFit = noviceFit
        options.refit = refit
        options.refitRidge = refitRidge
        options.topK = topK?.counts
        options.skip = skip
        options.shrink = shrink
        options.shrinkScope = shrinkScope
        options.pruneSuperExperts = pruneSuperExperts
        options.averageBits = bits
        options.uniformBits = uniformBits
        options.groupSize = group
        options.gptq = gptq
        options.denseBits = denseBits

        var calibration = [[Int]]()
        if bits != nil || uniformBits != nil || refit || shrink != nil || noviceFit == .leastSquares || budget == .search {
            let tokenizer = try StoreFiles.tokenizer(store)
            let source = calib ?? routing.source
            let data = try CalibrationData(contentsOf: URL(fileURLWithPath: source))
            let limit = try store.modelDescription().maxPositionEmbeddings
            calibration = data.texts.prefix(maxSamples).map { Array(tokenizer.encode($0).prefix(min(512, limit))) }.filter { $0.count >= 2 }
        }
        if !calibration.isEmpty {
            // In memory the replay holds the whole model and every layer's routed inputs.
            let description = try store.modelDescription()
            let routedBytes = calibration.reduce(0) { $0 + $1.count } * description.hiddenSize * 4
                * description.moeLayerIndices.reduce(0) { $0 + description.layers[$1].moe!.topK }
            if ExecutionMode.streams("slim", neededBytes: ExecutionMode.inMemoryBytes(try store.footprint()) + routedBytes, forced: streaming) {
                options.layerRecordSink = { [store] records in try store.putExpertRecords(records) }
            }
        }
        let progress = TerminalProgress(quiet: json)
        let slimmer = try Slimmer(store: store)
        let result = try slimmer.slim(profile: routing, profileName: profile, options: options, calibration: calibration) {
            progress.update("slimming \(name): \($0)")
        }
        try slimmer.commit(result)
        progress.finish()
        let summary = PlanSummary(result: result)
        try Output.print(summary, json: json, text: summary.text)
    }
}

/// What `slim` prints about the plan it stored.
struct PlanSummary: Encodable {
    var name: String
    var method: String
    var routableExperts: Int
    var slots: Int
    var novices: Int
    var mergedGroups: Int
    var bitHistogram: [String: Int]
    var expectedExpertBytes: Int
    var expectedDenseBytes: Int?
    var originalExpertBytes: Int
    var protectedSuperExperts: [LayerExpert]
    var perLayerKept: [Int]
    var refitRidge: Double?
    var noviceFit: String?
    /// `--top-k` and `--skip` as given, and the rule of each MoE layer (nil: the family's routing).
    var topK: [Int]?
    var skip: String?
    var routingRules: [RoutingRule?]
    /// `--shrink` and the narrowest and widest expert after it.
    var shrink: Double?
    var expertWidths: [Int]?

    init(result: SlimResult) {
        let plan = result.plan
        name = plan.name
        method = plan.recipe.method
        routableExperts = plan.routableExpertCount
        slots = plan.slotCount
        novices = result.noviceCount
        mergedGroups = result.mergedGroupCount
        bitHistogram = Dictionary(uniqueKeysWithValues: result.bitHistogram.map { ("\($0.key)", $0.value) })
        expectedExpertBytes = plan.expectedExpertBytes
        expectedDenseBytes = plan.expectedDenseBytes
        originalExpertBytes = result.originalExpertBytes
        protectedSuperExperts = plan.recipe.protectedSuperExperts
        perLayerKept = plan.layers.compactMap { layer in layer.map { $0.slots.count - ($0.expertMap.noviceSlotOfExpert?.compactMap { $0 }.count ?? 0) } }
        refitRidge = plan.recipe.refitRidge
        noviceFit = plan.recipe.noviceFit
        topK = plan.recipe.topK
        skip = plan.recipe.skip
        routingRules = plan.layers.compactMap { $0.map { $0.expertMap.routingRule } }
        shrink = plan.recipe.shrink
        expertWidths = plan.recipe.expertWidths
    }

    var text: String {
        var lines = ["plan '\(name)' (\(method)): \(slots) expert slots over \(perLayerKept.count) layers (per layer: \(perLayerKept.map(String.init).joined(separator: ", ")))"]
        if novices > 0 { lines.append("novices (outside the top-k): \(novices)\(noviceFit.map { ", vectors by \($0)" } ?? "")") }
        if let refitRidge { lines.append("down projections refit by ridge least squares (α = \(refitRidge))") }
        if let shrink, let widths = expertWidths, widths.count == 2 {
            let range = widths[0] == widths[1] ? "\(widths[0])" : "\(widths[0])–\(widths[1])"
            lines.append(String(format: "%.0f%% of expert neurons removed: experts are %@ neurons wide", 100 * shrink, range))
        }
        if mergedGroups > 0 { lines.append("merged groups: \(mergedGroups)") }
        if let topK { lines.append("experts chosen per token: \(topK.map(String.init).joined(separator: ", ")) instead of the family's top-k") }
        if let skip {
            lines.append("skipping \(skip) (moekit eval reports the experts run per token)")
            if case .ratio = routingRules.first??.skip {
                lines.append("  thresholds β_r for ranks 2… by layer: " + routingRules.map { rule in
                    guard case let .ratio(thresholds)? = rule?.skip else { return "-" }
                    return "[" + thresholds.map { String(format: "%.3f", $0) }.joined(separator: " ") + "]"
                }.joined(separator: ", "))
            }
        }
        if !bitHistogram.isEmpty {
            lines.append("bit widths: " + bitHistogram.sorted { Int($0.key)! < Int($1.key)! }.map { "\($0.value) experts at \($0.key) bits" }.joined(separator: ", "))
        }
        if !protectedSuperExperts.isEmpty {
            lines.append("kept super experts: " + protectedSuperExperts.map { "layer \($0.layer) expert \($0.expert)" }.joined(separator: ", "))
        }
        lines.append(String(format: "expected expert memory: %@ bytes (%.1f%% of the full model's %@)",
                            expectedExpertBytes.formatted(), 100 * Double(expectedExpertBytes) / Double(max(originalExpertBytes, 1)),
                            originalExpertBytes.formatted()))
        if let expectedDenseBytes { lines.append("dense weights in memory: \(expectedDenseBytes.formatted()) bytes") }
        return lines.joined(separator: "\n")
    }
}
