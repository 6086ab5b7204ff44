public import Foundation

/// The one JSON encoding Cairn uses everywhere it prints or exchanges JSON
/// (command output, the control server's API, manifests): explicit
/// snake_case keys, RFC 3339 UTC times with milliseconds.
public enum CairnJSON {
    public static func encoder(pretty: Bool = false) -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var c = encoder.singleValueContainer()
            try c.encode(UTCTime.rfc3339(date))
        }
        return encoder
    }

    public static func decoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let c = try decoder.singleValueContainer()
            let s = try c.decode(String.self)
            guard let d = UTCTime.parseRFC3339(s) else {
                throw DecodingError.dataCorruptedError(in: c, debugDescription: "invalid time \"\(s)\"")
            }
            return d
        }
        return decoder
    }
}
