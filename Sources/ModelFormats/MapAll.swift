extension Sequence {
    /// The elements transformed, or nil if `transform` fails for any of them: reads a JSON or
    /// GGUF array as `[String]` or `[Int]` only if every element has that type.
    ///
    /// `package`: shared by the modules of this package, not part of their API.
    package func mapAll<T>(_ transform: (Element) throws -> T?) rethrows -> [T]? {
        var result: [T] = []
        result.reserveCapacity(underestimatedCount)
        for element in self {
            guard let transformed = try transform(element) else { return nil }
            result.append(transformed)
        }
        return result
    }
}
