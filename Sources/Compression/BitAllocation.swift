/// Mixed-precision bit allocation in the manner of MC-MoE's PMQ (METHODS.md §2): choose one
/// width per expert so that the summed quantization error is smallest under a storage budget.
///
/// This is a multiple-choice knapsack, solved exactly by dynamic programming over total cost
/// measured in units of a quantum. The default quantum is the gcd of all option costs, which
/// keeps the solution exact; experts of one model share a shape, so their costs share a large
/// common factor (for P weights in groups of 128, `b·P + 32·P/128` bits are all multiples of
/// P/4) and the table stays small. A coarser quantum may be given for speed: costs are then
/// rounded *up* to whole quanta, so the answer still respects the budget but is optimal only
/// for the rounded costs (`Solution.isExact` says which).
///
/// Requirements "at least one item at a width in this range" (MC-MoE asks for at least one
/// expert at 2 bits and one at 3) are handled exactly by carrying, per cost, a bit mask of the
/// requirements met so far; the table grows by 2^requirements.
public enum BitAllocation {
    /// One way to store one item.
    public struct Option: Sendable, Equatable {
        public var bits: Int
        /// Storage cost in bits (or any integer unit shared with the budget).
        public var cost: Int
        /// The error this choice adds (e.g. importance-weighted output error).
        public var error: Double

        public init(bits: Int, cost: Int, error: Double) {
            self.bits = bits
            self.cost = cost
            self.error = error
        }

        /// An option priced as its quantized storage: `bits·P` plus the group scales and minimums.
        public init(format: QuantizationFormat, parameterCount: Int, error: Double) {
            self.init(bits: format.bits, cost: format.storageBits(parameterCount: parameterCount), error: error)
        }
    }

    /// At least one item must take an option whose width lies in `bits`.
    public struct Requirement: Sendable, Equatable {
        public var bits: ClosedRange<Int>
        public init(bits: ClosedRange<Int>) { self.bits = bits }
    }

    public struct Solution: Sendable, Equatable {
        /// Index of the chosen option of each item.
        public let choices: [Int]
        /// Width of each item's chosen option.
        public let bits: [Int]
        public let totalCost: Int
        public let totalError: Double
        /// False when a quantum coarser than the costs' gcd rounded some costs up.
        public let isExact: Bool
    }

    public enum Failure: Error, Sendable, Equatable, CustomStringConvertible {
        case noOptions(item: Int)
        case invalidOption(item: Int, option: Int)
        case invalidBudget(Int)
        case invalidQuantum(Int)
        /// No choice meets the budget and requirements; `cheapestCost` is the cost of the
        /// cheapest option of every item, ignoring requirements (a lower bound).
        case infeasible(budget: Int, cheapestCost: Int)
        /// The table would need this many cells; pass a coarser quantum.
        case tableTooLarge(cells: Int)

        public var description: String {
            switch self {
            case .noOptions(let item): "bit allocation: item \(item) has no options"
            case .invalidOption(let item, let option): "bit allocation: option \(option) of item \(item) has a negative cost or a non-finite error"
            case .invalidBudget(let budget): "bit allocation: negative budget \(budget)"
            case .invalidQuantum(let quantum): "bit allocation: quantum \(quantum) must be positive"
            case .infeasible(let budget, let cheapest):
                "bit allocation: no choice fits the budget of \(budget) under the requirements (the cheapest options alone cost \(cheapest))"
            case .tableTooLarge(let cells): "bit allocation: \(cells) table cells; pass a coarser quantum"
            }
        }
    }

    /// Largest table (items × cost units × requirement masks) the solver builds.
    public static let maximumCells = 1 << 24

    /// The choice of one option per item with the smallest total error whose total cost is at
    /// most `budget` and that meets every requirement. Ties go to the smaller total cost (in
    /// units); remaining ties are broken deterministically (earlier cells and options first).
    public static func solve(_ items: [[Option]], budget: Int, requirements: [Requirement] = [],
                             quantum: Int? = nil) throws(Failure) -> Solution {
        guard budget >= 0 else { throw .invalidBudget(budget) }
        for (i, options) in items.enumerated() {
            guard !options.isEmpty else { throw .noOptions(item: i) }
            for (o, option) in options.enumerated() where option.cost < 0 || !option.error.isFinite {
                throw .invalidOption(item: i, option: o)
            }
        }
        let costs = items.flatMap { $0.map(\.cost) }
        let unit: Int
        if let quantum {
            guard quantum > 0 else { throw .invalidQuantum(quantum) }
            unit = quantum
        } else {
            unit = Swift.max(1, costs.reduce(0, gcd))
        }
        let isExact = costs.allSatisfy { $0 % unit == 0 }
        let cheapest = items.reduce(0) { $0 + $1.map(\.cost).min()! }

        let units = items.map { $0.map { ($0.cost + unit - 1) / unit } }
        // Total cost ≤ budget ⟺ units ≤ budget / unit when costs are multiples of the unit; no
        // choice can use more units than every item's dearest option together.
        let capacity = Swift.min(budget / unit, units.reduce(0) { $0 + $1.max()! })
        let masks = 1 << requirements.count
        let fullMask = masks - 1
        let optionMasks = items.map { options in
            options.map { option in
                requirements.enumerated().reduce(0) { $0 | ($1.element.bits.contains(option.bits) ? 1 << $1.offset : 0) }
            }
        }
        let width = (capacity + 1) * masks
        let (cells, overflow) = width.multipliedReportingOverflow(by: Swift.max(items.count, 1))
        guard !overflow, cells <= maximumCells else { throw .tableTooLarge(cells: overflow ? Int.max : cells) }

        // best[c·masks + m]: least error of the items so far with exactly c units and requirement
        // mask m; choice[i][…] records item i's option and the mask before it, to walk back.
        var best = [Double](repeating: .infinity, count: width)
        best[0] = 0
        var choice = [[Int32]]()
        choice.reserveCapacity(items.count)
        for (i, options) in items.enumerated() {
            var next = [Double](repeating: .infinity, count: width)
            var taken = [Int32](repeating: -1, count: width)
            for c in 0...capacity {
                for m in 0..<masks where best[c * masks + m] < .infinity {
                    let base = best[c * masks + m]
                    for o in options.indices {
                        let c2 = c + units[i][o]
                        guard c2 <= capacity else { continue }
                        let cell = c2 * masks + (m | optionMasks[i][o])
                        let candidate = base + options[o].error
                        if candidate < next[cell] {
                            next[cell] = candidate
                            taken[cell] = Int32(o * masks + m)   // option and the mask it came from
                        }
                    }
                }
            }
            best = next
            choice.append(taken)
        }

        var end: Int?
        for c in 0...capacity where best[c * masks + fullMask] < .infinity {
            if end == nil || best[c * masks + fullMask] < best[end! * masks + fullMask] { end = c }
        }
        guard let endUnits = end else { throw .infeasible(budget: budget, cheapestCost: cheapest) }

        var picks = [Int](repeating: 0, count: items.count)
        var c = endUnits, m = fullMask
        for i in stride(from: items.count - 1, through: 0, by: -1) {
            let record = Int(choice[i][c * masks + m])
            let o = record / masks
            picks[i] = o
            c -= units[i][o]
            m = record % masks
        }
        let chosen = zip(items, picks).map { $0[$1] }
        return Solution(choices: picks, bits: chosen.map(\.bits), totalCost: chosen.reduce(0) { $0 + $1.cost },
                        totalError: chosen.reduce(0) { $0 + $1.error }, isExact: isExact)
    }

    /// The budget, in bits, of `averageBits` per weight over `parameterCount` weights (rounded down).
    public static func budget(averageBits: Double, parameterCount: Int) -> Int {
        Int((averageBits * Double(parameterCount)).rounded(.down))
    }

    private static func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }
}
