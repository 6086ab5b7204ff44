/// One element of an XML document: just enough of XML for the replies of
/// S3-compatible stores (elements, character data, entities, CDATA; attributes
/// and namespaces are read past and dropped).
struct XMLNode: Sendable, Equatable {
    /// The local name, without a namespace prefix.
    var name: String
    /// The character data directly inside the element.
    var text: String = ""
    var children: [XMLNode] = []

    /// The first child element with this name.
    func child(_ name: String) -> XMLNode? {
        children.first { $0.name == name }
    }

    /// Every child element with this name, in document order.
    func children(named name: String) -> [XMLNode] {
        children.filter { $0.name == name }
    }

    /// The text of the first child element with this name.
    func string(_ name: String) -> String? {
        child(name)?.text
    }
}

/// Why a document could not be parsed; the text is for a developer, the
/// storage layer turns it into a sentence for the operator.
struct XMLParseError: Error, Equatable, CustomStringConvertible {
    var description: String
}

/// Builds XML request bodies and parses XML replies, without Foundation's
/// XMLParser (whose delegate model fits strict concurrency poorly).
enum XMLDocument {
    /// Parses a whole document and returns its root element.
    static func parse(_ bytes: some Collection<UInt8>) throws -> XMLNode {
        var parser = Parser(bytes: Array(bytes))
        return try parser.document()
    }

    /// Escapes text for element content.
    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for c in text.unicodeScalars {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&apos;"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    private struct Parser {
        let bytes: [UInt8]
        var i = 0

        init(bytes: [UInt8]) { self.bytes = bytes }

        mutating func document() throws -> XMLNode {
            // Prolog: declaration, comments, doctype, whitespace.
            while true {
                skipWhitespace()
                if starts(with: "<?") { try skip(past: "?>") }
                else if starts(with: "<!--") { try skip(past: "-->") }
                else if starts(with: "<!") { try skip(past: ">") }
                else { break }
            }
            guard i < bytes.count, bytes[i] == UInt8(ascii: "<") else {
                throw XMLParseError(description: "no root element")
            }
            return try element()
        }

        /// Parses from a `<name ...>` to its matching end tag.
        mutating func element() throws -> XMLNode {
            i += 1  // "<"
            let qualified = name()
            guard !qualified.isEmpty else { throw XMLParseError(description: "an element without a name at byte \(i)") }
            var node = XMLNode(name: localName(qualified))
            // Attributes are skipped, honouring quotes.
            while i < bytes.count, bytes[i] != UInt8(ascii: ">"), bytes[i] != UInt8(ascii: "/") {
                if bytes[i] == UInt8(ascii: "\"") || bytes[i] == UInt8(ascii: "'") {
                    let quote = bytes[i]
                    i += 1
                    while i < bytes.count, bytes[i] != quote { i += 1 }
                }
                i += 1
            }
            guard i < bytes.count else { throw XMLParseError(description: "the document ends inside <\(qualified)>") }
            if bytes[i] == UInt8(ascii: "/") {
                guard i + 1 < bytes.count, bytes[i + 1] == UInt8(ascii: ">") else {
                    throw XMLParseError(description: "a malformed empty element <\(qualified)/>")
                }
                i += 2
                return node
            }
            i += 1  // ">"
            var text: [UInt8] = []
            while true {
                guard i < bytes.count else { throw XMLParseError(description: "the document ends inside <\(qualified)>") }
                if bytes[i] != UInt8(ascii: "<") {
                    try characterData(into: &text)
                } else if starts(with: "</") {
                    i += 2
                    let end = name()
                    guard end == qualified else {
                        throw XMLParseError(description: "<\(qualified)> is closed by </\(end)>")
                    }
                    skipWhitespace()
                    guard i < bytes.count, bytes[i] == UInt8(ascii: ">") else {
                        throw XMLParseError(description: "a malformed end tag </\(end)")
                    }
                    i += 1
                    node.text = String(decoding: text, as: UTF8.self)
                    return node
                } else if starts(with: "<![CDATA[") {
                    i += 9
                    let start = i
                    try skip(past: "]]>")
                    text.append(contentsOf: bytes[start..<(i - 3)])
                } else if starts(with: "<!--") {
                    try skip(past: "-->")
                } else if starts(with: "<?") {
                    try skip(past: "?>")
                } else {
                    node.children.append(try element())
                }
            }
        }

        /// Reads character data up to the next `<`, decoding entities.
        mutating func characterData(into text: inout [UInt8]) throws {
            while i < bytes.count, bytes[i] != UInt8(ascii: "<") {
                if bytes[i] == UInt8(ascii: "&") {
                    guard let semicolon = bytes[i...].firstIndex(of: UInt8(ascii: ";")), semicolon - i <= 12 else {
                        throw XMLParseError(description: "an unterminated entity at byte \(i)")
                    }
                    let entity = String(decoding: bytes[(i + 1)..<semicolon], as: UTF8.self)
                    text.append(contentsOf: try decode(entity: entity).utf8)
                    i = semicolon + 1
                } else {
                    text.append(bytes[i])
                    i += 1
                }
            }
        }

        func decode(entity: String) throws -> String {
            switch entity {
            case "amp": return "&"
            case "lt": return "<"
            case "gt": return ">"
            case "quot": return "\""
            case "apos": return "'"
            default:
                var value: UInt32?
                if entity.hasPrefix("#x") || entity.hasPrefix("#X") {
                    value = UInt32(entity.dropFirst(2), radix: 16)
                } else if entity.hasPrefix("#") {
                    value = UInt32(entity.dropFirst(), radix: 10)
                }
                guard let value, let scalar = Unicode.Scalar(value) else {
                    throw XMLParseError(description: "an unknown entity &\(entity);")
                }
                return String(Character(scalar))
            }
        }

        mutating func name() -> String {
            let start = i
            while i < bytes.count {
                let b = bytes[i]
                if b == UInt8(ascii: ">") || b == UInt8(ascii: "/") || b == UInt8(ascii: " ") || b == UInt8(ascii: "\t")
                    || b == UInt8(ascii: "\n") || b == UInt8(ascii: "\r") { break }
                i += 1
            }
            return String(decoding: bytes[start..<i], as: UTF8.self)
        }

        func localName(_ qualified: String) -> String {
            if let colon = qualified.lastIndex(of: ":") { return String(qualified[qualified.index(after: colon)...]) }
            return qualified
        }

        func starts(with text: String) -> Bool {
            let t = Array(text.utf8)
            return i + t.count <= bytes.count && Array(bytes[i..<(i + t.count)]) == t
        }

        mutating func skip(past text: String) throws {
            let t = Array(text.utf8)
            while i + t.count <= bytes.count {
                if Array(bytes[i..<(i + t.count)]) == t {
                    i += t.count
                    return
                }
                i += 1
            }
            throw XMLParseError(description: "the document ends before \(text)")
        }

        mutating func skipWhitespace() {
            while i < bytes.count, [UInt8(ascii: " "), UInt8(ascii: "\t"), UInt8(ascii: "\n"), UInt8(ascii: "\r")].contains(bytes[i]) {
                i += 1
            }
        }
    }
}
