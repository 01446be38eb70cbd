import Foundation
import ModelFormats

/// The text second-moment statistics are collected from: one file, or every corpus file under a
/// folder, split into documents.
///
/// - `.txt`: documents start at WikiText-style top-level headings (` = Title = ` lines, as in
///   the shared enwiki sample) when the file has any, otherwise they are separated by blank
///   lines.
/// - `.tokens` (also `*.tokens.<suffix>`, such as the shared `wiki.train.tokens.first_2.75MiB`):
///   WikiText token files, split at top-level headings and detokenised (``WikiText``).
/// - `.jsonl`: one document per line, its `text` field.
/// - A folder: all such files below it, recursively, in sorted order of their relative paths.
public struct TextCorpus: Sendable {
    /// The path given.
    public let root: URL
    /// Paths of the files read, relative to ``root`` (the file name when `root` is a file).
    public let fileNames: [String]
    /// Documents of every file, in file order.
    public let documents: [String]
    /// SHA-256 over, for each file in order, `name \n byteCount \n bytes`: the identity of
    /// everything read, whatever folder the corpus is in.
    public let sha256: String

    /// The list of files, comma-separated: the corpus identity recorded with statistics.
    public var identity: String { fileNames.joined(separator: ",") }

    /// Reads and splits a corpus.
    ///
    /// - Throws: ``StatisticsError/unreadable(file:reason:)`` for a missing path, a file that
    ///   cannot be read or is not UTF-8; ``StatisticsError/empty(file:detail:)`` for a file
    ///   without text or a folder without corpus files; ``StatisticsError/badJSONLine(file:line:detail:)``.
    public init(url: URL) throws {
        root = url
        let files = try Self.listFiles(url)
        var hasher = SHA256()
        var documents: [String] = []
        for (name, file) in files {
            let data: Data
            do { data = try MappedFile.contents(of: file) } catch {
                throw StatisticsError.unreadable(file: file.path, reason: error.detail)
            }
            data.withUnsafeBytes { Self.hashFile(name: name, bytes: $0, into: &hasher) }
            guard let text = String(data: data, encoding: .utf8) else {
                throw StatisticsError.unreadable(file: file.path, reason: "not UTF-8 text")
            }
            let found = try Self.documents(of: text, kind: Kind(name), file: file.path)
            guard !found.isEmpty else {
                throw StatisticsError.empty(file: file.path, detail: "no text in the file")
            }
            documents += found
        }
        fileNames = files.map(\.name)
        self.documents = documents
        sha256 = hasher.finalizeHex()
    }

    /// Adds one file to a corpus hash (``sha256``): `name \n byteCount \n bytes`.
    static func hashFile(name: String, bytes: UnsafeRawBufferPointer, into hasher: inout SHA256) {
        Data("\(name)\n\(bytes.count)\n".utf8).withUnsafeBytes { hasher.update($0) }
        hasher.update(bytes)
    }

    enum Kind {
        case text, wikiText, jsonLines

        init?(_ name: String) {
            let base = (name as NSString).lastPathComponent.lowercased()
            if base.hasSuffix(".jsonl") {
                self = .jsonLines
            } else if base.hasSuffix(".tokens") || base.contains(".tokens.") {
                self = .wikiText
            } else if base.hasSuffix(".txt") {
                self = .text
            } else {
                return nil
            }
        }
    }

    /// The corpus files of `url` with their relative names.
    static func listFiles(_ url: URL) throws -> [(name: String, url: URL)] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory) else {
            throw StatisticsError.unreadable(file: url.path, reason: "no such file or folder")
        }
        guard isDirectory.boolValue else {
            guard Kind(url.lastPathComponent) != nil else {
                throw StatisticsError.unreadable(file: url.path, reason: "not a .txt, .jsonl or .tokens file")
            }
            return [(url.lastPathComponent, url)]
        }
        guard let walker = FileManager.default.enumerator(atPath: url.path) else {
            throw StatisticsError.unreadable(file: url.path, reason: "cannot list the folder")
        }
        let names = walker.compactMap { $0 as? String }.filter { name in
            var isFolder: ObjCBool = false
            let path = url.appendingPathComponent(name).path
            return Kind(name) != nil && FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) && !isFolder.boolValue
        }.sorted()
        guard !names.isEmpty else {
            throw StatisticsError.empty(file: url.path, detail: "no .txt, .jsonl or .tokens files in the folder")
        }
        return names.map { ($0, url.appendingPathComponent($0)) }
    }

    /// Splits one file's text into documents (see the type's description).
    static func documents(of text: String, kind: Kind?, file: String) throws -> [String] {
        switch kind {
        case .jsonLines:
            var documents: [String] = []
            for (i, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated()
            where !line.allSatisfy(\.isWhitespace) {
                let object = try? JSONSerialization.jsonObject(with: Data(line.utf8))
                guard let text = (object as? [String: Any])?["text"] as? String else {
                    throw StatisticsError.badJSONLine(file: file, line: i + 1, detail: "expected an object with a string \"text\" field")
                }
                if !text.allSatisfy(\.isWhitespace) { documents.append(text) }
            }
            return documents
        case .wikiText:
            return (splitAtHeadings(text) ?? [text]).map(WikiText.detokenize).filter { !$0.isEmpty }
        case .text, nil:
            return splitAtHeadings(text) ?? splitAtBlankLines(text)
        }
    }

    /// Documents starting at each top-level ` = Title = ` line, or nil when there is none.
    static func splitAtHeadings(_ text: String) -> [String]? {
        var starts: [String.UTF8View.Index] = []
        for line in lines(text) where WikiText.isTopLevelHeading(line) { starts.append(line.startIndex) }
        guard !starts.isEmpty else { return nil }
        let utf8 = text.utf8
        return zip([utf8.startIndex] + starts, starts + [utf8.endIndex]).compactMap { start, end in
            let document = String(decoding: utf8[start..<end], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            return document.isEmpty ? nil : document
        }
    }

    /// Paragraphs: runs of non-blank lines.
    static func splitAtBlankLines(_ text: String) -> [String] {
        var documents: [String] = []
        var first: Substring.UTF8View?
        var last: Substring.UTF8View?
        func flush() {
            if let first, let last { documents.append(String(decoding: text.utf8[first.startIndex..<last.endIndex], as: UTF8.self)) }
            first = nil
        }
        for line in lines(text) {
            if line.allSatisfy(isSpace) {
                flush()
            } else {
                if first == nil { first = line }
                last = line
            }
        }
        flush()
        return documents
    }

    /// The lines of `text` as UTF-8 slices (byte-level: Foundation's string search is slow on Linux).
    static func lines(_ text: String) -> [Substring.UTF8View] {
        text.utf8.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).map { Substring($0).utf8 }
    }
}

/// Space, tab or carriage return.
func isSpace(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 || byte == 0x0D }

/// WikiText-103's tokenised format (` = Title = ` headings, spaces around punctuation, ` @-@ `
/// inside numbers and compounds), and its undoing, so that the statistics see text spelled as
/// prompts are.
public enum WikiText {
    /// Whether a line is a top-level heading (` = Title = `, not ` = = Section = = `).
    public static func isTopLevelHeading(_ line: Substring.UTF8View) -> Bool {
        let t = line.drop(while: isSpace).reversed().drop(while: isSpace).reversed()
        let equals = UInt8(ascii: "=")
        let space = UInt8(ascii: " ")
        return t.count >= 5 && t.starts(with: [equals, space]) && t.reversed().starts(with: [equals, space])
            && !t.starts(with: [equals, space, equals])
    }

    /// The usual WikiText detokenisation (a subset of lm-evaluation-harness's
    /// `wikitext_detokenizer`): joins ` @-@ `, ` @,@ `, ` @.@ `, removes the space before
    /// `, . ; : ! ? ) 's n't` and after `(`, and trims every line.
    public static func detokenize(_ text: String) -> String {
        var out: [UInt8] = []
        out.reserveCapacity(text.utf8.count)
        for line in TextCorpus.lines(text) {
            let padded = [0x20] + Array(line) + [0x20]
            var replaced: [UInt8] = []
            var i = 0
            while i < padded.count {
                let byte = padded[i]
                if byte == 0x20 || byte == UInt8(ascii: "("),
                    let (from, to) = replacements.first(where: { padded[i...].starts(with: $0.from) })
                {
                    replaced += to
                    i += from.count
                } else {
                    replaced.append(byte)
                    i += 1
                }
            }
            let trimmed = replaced.drop(while: isSpace).reversed().drop(while: isSpace).reversed()
            if !out.isEmpty || !trimmed.isEmpty { out += trimmed + [UInt8(ascii: "\n")] }
        }
        return String(decoding: out, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    private static let replacements: [(from: [UInt8], to: [UInt8])] = [
        (" @-@ ", "-"), (" @,@ ", ","), (" @.@ ", "."),
        (" , ", ", "), (" . ", ". "), (" ; ", "; "), (" : ", ": "), (" ! ", "! "), (" ? ", "? "),
        (" 's ", "'s "), (" n't ", "n't "), ("( ", "("), (" )", ")"),
    ].map { (Array($0.utf8), Array($1.utf8)) }
}
