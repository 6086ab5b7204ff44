/// The size of each multipart part for an upload whose length is not known
/// in advance.
///
/// The rule: parts 1-1000 are the minimum size (`s3_part_size`, 5 MiB by
/// default), and the size doubles every 1,000 parts after that: parts
/// 1001-2000 are twice the minimum, 2001-3000 four times, and so on, never
/// above S3's 5 GiB part limit. An object of any size up to the sum of the
/// 10,000 parts fits: with 5 MiB, parts 1-1000 hold 4.9 GiB, 2000 parts
/// 14.6 GiB, 4000 parts 73 GiB, and all 10,000 parts about 4.9 TiB (S3's own
/// object limit is 5 TiB). Small files keep small parts, so the memory held
/// (about `upload_concurrency` parts) grows only for very large files.
public enum S3PartSizing {
    public static let maximumParts = 10_000
    public static let partsPerStep = 1_000
    public static let maximumPartSize: Int64 = 5 * 1024 * 1024 * 1024
    public static let defaultMinimumPartSize: Int64 = 5 * 1024 * 1024

    /// The size of part `number` (1-based).
    public static func partSize(forPart number: Int, minimum: Int64) -> Int64 {
        let step = min(max(number - 1, 0) / partsPerStep, 20)
        let size = minimum << Int64(step)
        return min(size, maximumPartSize)
    }

    /// The largest object the rule can upload in `maximumParts` parts.
    public static func maximumObjectSize(minimum: Int64) -> Int64 {
        (1...maximumParts).reduce(Int64(0)) { $0 + partSize(forPart: $1, minimum: minimum) }
    }
}
