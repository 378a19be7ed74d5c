import Foundation

/// What a full checksum pass over the experts found.
public struct VerificationReport: Sendable, Equatable, Codable {
    public var records: Int
    /// Record bytes read (headers and payloads).
    public var bytes: Int
}

extension ExpertStore {
    /// Walks every expert record in key order with one cursor and checks each header and
    /// CRC-32C, reading straight from the map. Throws at the first damaged record.
    public func verifyExperts() throws -> VerificationReport {
        var report = VerificationReport(records: 0, bytes: 0)
        try environment.read { txn in
            try txn.forEach(experts) { key, record in
                let name = ExpertKey(bytes: key).map { "expert record (\($0))" } ?? "an expert record with a \(key.count)-byte key"
                let header = try RecordCodec.header(of: record, name: name, store: path)
                try RecordCodec.verify(record, header: header, name: name, store: path)
                report.records += 1
                report.bytes += record.count
                return true
            }
        }
        return report
    }
}
