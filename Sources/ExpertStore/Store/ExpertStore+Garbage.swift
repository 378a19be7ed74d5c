import Foundation

/// Removing what no plan uses. The store cannot read plans (they are `Compression`'s
/// documents), so the caller says which records a set of plan documents references.
extension ExpertStore {
    /// In one write transaction: reads every stored plan document, asks `references` which
    /// derived records they use, and deletes every derived expert record (variant ≠ 0) and
    /// dense variant that is not among them. Reading the plans inside the same transaction
    /// that deletes means a plan committed by another process is either seen (and kept) or
    /// committed after the collection; a throw from `references` (a plan it cannot read)
    /// aborts everything. With `dryRun` nothing is deleted and the transaction is rolled back.
    ///
    /// Records a running `slim` wrote before committing its plan are not referenced yet and
    /// would be collected: run gc when no slim is running on the store.
    public func collectGarbage(dryRun: Bool = false,
                               references: ([(name: String, json: Data)]) throws -> StoreReferences) throws -> GarbageReport {
        guard !isReadOnly else { throw StoreError.readOnly(path: path, operation: "collecting garbage") }
        // Rolled back on purpose in a dry run: nothing of it may be committed.
        struct DryRunFinished: Error { let report: GarbageReport }
        do {
            return try environment.write { txn in
                var documents = [(name: String, json: Data)]()
                try txn.forEach(planDatabase) { key, value in
                    documents.append((String(decoding: key, as: UTF8.self), Data(value)))
                    return true
                }
                let used = try references(documents)
                var report = GarbageReport()
                report.plans = documents.map(\.name)
                report.dryRun = dryRun
                var doomedExperts = [[UInt8]]()
                try txn.forEach(experts) { key, value in
                    guard let decoded = ExpertKey(bytes: key) else {
                        throw StoreError.corruptRecord(path: path, record: "an expert key", reason: "\(key.count) bytes, expected \(ExpertKey.byteCount)")
                    }
                    if decoded.variant != .original && !used.experts.contains(decoded) {
                        doomedExperts.append(Array(key))
                        report.expertRecords += 1
                        report.expertBytes += value.count
                    }
                    return true
                }
                var doomedDense = [[UInt8]]()
                try txn.forEach(dense) { key, value in
                    let name = String(decoding: key, as: UTF8.self)
                    if Self.isDenseVariantKey(name) && !used.denseVariants.contains(name) {
                        doomedDense.append(Array(key))
                        report.denseVariantRecords += 1
                        report.denseVariantBytes += value.count
                    }
                    return true
                }
                if dryRun { throw DryRunFinished(report: report) }
                // Deleted after the walks: a cursor must not run over keys deleted under it.
                for key in doomedExperts { try txn.delete(experts, key) }
                for key in doomedDense { try txn.delete(dense, key) }
                return report
            }
        } catch let finished as DryRunFinished {
            return finished.report
        }
    }

    /// Stored bytes of each referenced record that exists (missing ones are left out).
    public func storedBytes(of references: StoreReferences) throws -> Int {
        try environment.read { txn in
            var total = 0
            for key in references.experts { total += try txn.get(experts, key.bytes)?.count ?? 0 }
            for name in references.denseVariants { total += try txn.get(dense, Array(name.utf8))?.count ?? 0 }
            return total
        }
    }
}
