import Models

// TEMPORARY until the `prefix` branch (frozen-past prefixes) is merged.
extension Transformer {
    func prefix(_ sequences: [[Int]], past: [[Int]], layers: Int) throws -> Prefix {
        precondition(past.allSatisfy(\.isEmpty))
        return try prefix(sequences, layers: layers)
    }
}
