import CairnCore
import Foundation

/// A parsed storage URL: `file:///path`, `s3://bucket[/prefix]`, `gs://bucket[/prefix]`.
public enum StorageLocation: Sendable, Hashable, CustomStringConvertible {
    case file(path: String)
    case s3(bucket: String, prefix: String)
    case gcs(bucket: String, prefix: String)

    public init(parsing url: String) throws {
        if url.hasPrefix("file://") {
            let path = String(url.dropFirst("file://".count))
            guard path.hasPrefix("/") else {
                throw CairnError(.configuration, "storage URL \(url) must name an absolute path, e.g. file:///var/backups/cairn")
            }
            self = .file(path: path.removingPercentEncoding ?? path)
            return
        }
        for scheme in ["s3://", "gs://"] where url.hasPrefix(scheme) {
            let rest = url.dropFirst(scheme.count)
            let parts = rest.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
            let bucket = String(parts[0])
            guard bucket.count >= 3, bucket.count <= 63,
                  bucket.unicodeScalars.allSatisfy({ $0.isASCII && ($0.properties.isLowercase || ("0"..."9").contains($0) || $0 == "-" || $0 == "." || $0 == "_") }) else {
                throw CairnError(.configuration, "storage URL \(url) does not name a valid bucket (3-63 lower-case letters, digits, '-', '_' or '.')")
            }
            var prefix = parts.count > 1 ? String(parts[1]) : ""
            while prefix.hasSuffix("/") { prefix.removeLast() }
            while prefix.hasPrefix("/") { prefix.removeFirst() }
            self = scheme == "s3://" ? .s3(bucket: bucket, prefix: prefix) : .gcs(bucket: bucket, prefix: prefix)
            return
        }
        if url.hasPrefix("/") {
            self = .file(path: url)
            return
        }
        throw CairnError(.configuration, "storage URL \"\(url)\" is not supported; use file:///path, s3://bucket[/prefix] or gs://bucket[/prefix]")
    }

    public var description: String {
        switch self {
        case .file(let path): "file://\(path)"
        case .s3(let b, let p): p.isEmpty ? "s3://\(b)" : "s3://\(b)/\(p)"
        case .gcs(let b, let p): p.isEmpty ? "gs://\(b)" : "gs://\(b)/\(p)"
        }
    }
}
