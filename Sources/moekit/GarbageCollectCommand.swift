import ArgumentParser
import Compression
import ExpertStore
import Foundation

struct GarbageCollectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gc",
        abstract: "Drop derived expert records and dense variants that no stored plan references.",
        discussion: """
        One write transaction reads every plan and deletes the quantized, merged, novice and refit \
        records (and quantized dense tensors) none of them uses; the imported weights are never \
        touched. LMDB keeps the freed pages inside data.mdb and reuses them for later writes, so \
        the file does not shrink. Do not run it while a `slim` on the same store is running: \
        the records that slim has written before storing its plan are not referenced yet.
        """)

    @OptionGroup var storeOption: StoreOption
    @Flag(help: "Report what would be dropped without dropping it.") var dryRun = false
    @Flag(help: "Print JSON instead of text.") var json = false

    func run() throws {
        let store = try ExpertStore(url: storeOption.url, readOnly: false)
        let report = try StoreHygiene.collectGarbage(in: store, dryRun: dryRun)
        let verb = dryRun ? "would drop" : "dropped"
        let text = "\(verb) \(report.expertRecords) expert records (\(report.expertBytes.formatted()) bytes) and "
            + "\(report.denseVariantRecords) dense variants (\(report.denseVariantBytes.formatted()) bytes) that no plan references; "
            + "\(report.records) records, \(report.bytes.formatted()) bytes in all (plans kept: "
            + (report.plans.isEmpty ? "none" : report.plans.joined(separator: ", ")) + ")"
        try Output.print(report, json: json, text: text)
    }
}
