import CairnCore
import NIOCore
import Foundation
import NIOHTTP1

/// A streaming download: ranged GETs of `downloadRangeSize` bytes, up to
/// `download_concurrency` of them in flight, handed out in order.
///
/// The first range is fetched by ``open(client:objectKey:displayKey:range:)``:
/// its reply tells the object's size (Content-Range) and its ETag, and the
/// later ranges are asked for with If-Match on that ETag, so an object
/// replaced mid-read fails the read instead of mixing two versions. An object
/// that fits in the first range costs one GET.
actor S3ObjectReader: StorageReader {
    static let chunkSize = 1 << 20

    let client: S3Client
    let objectKey: String
    let etag: String?
    let end: Int64
    let rangeSize: Int64
    let concurrency: Int

    private var nextOffset: Int64
    private var pending: [Task<ByteBuffer, any Error>] = []
    private var current: ByteBuffer
    private var closed = false

    private init(client: S3Client, objectKey: String, etag: String?, first: ByteBuffer, nextOffset: Int64, end: Int64) {
        self.client = client
        self.objectKey = objectKey
        self.etag = etag
        self.current = first
        self.nextOffset = nextOffset
        self.end = end
        self.rangeSize = max(1, client.settings.downloadRangeSize)
        self.concurrency = max(1, client.settings.downloadConcurrency)
    }

    /// Fetches the first range and returns a reader positioned at `range`'s start.
    static func open(client: S3Client, objectKey: String, range: Range<Int64>?) async throws -> S3ObjectReader {
        let rangeSize = max(1, client.settings.downloadRangeSize)
        let lower = max(0, range?.lowerBound ?? 0)
        let upper = range?.upperBound ?? Int64.max
        // An empty range still asks for one byte, so a missing key is reported.
        let firstLast = upper > lower ? min(upper, lower + rangeSize) - 1 : lower
        let response = try await client.getObject(objectKey: objectKey, range: lower...firstLast, ifMatch: nil)
        let etag = response.headers.first(name: "etag")
        var body = response.body
        switch response.status {
        case 416:
            // The range starts at or past the end (an empty object, say): nothing to read.
            return S3ObjectReader(client: client, objectKey: objectKey, etag: etag, first: ByteBuffer(), nextOffset: lower, end: lower)
        case 206:
            guard let total = response.headers.first(name: "content-range").flatMap(S3ObjectReader.totalSize) else {
                throw CairnError(.storage, "\(client.settings.serviceName) answered a ranged GET of \(objectKey) in bucket \(client.settings.bucket) without a usable Content-Range; check that \(client.settings.endpoint) is an S3-compatible store")
            }
            let end = min(upper, total)
            let wanted = Int(max(0, min(firstLast + 1, end) - lower))
            body = body.getSlice(at: body.readerIndex, length: min(wanted, body.readableBytes)) ?? ByteBuffer()
            return S3ObjectReader(client: client, objectKey: objectKey, etag: etag, first: body, nextOffset: lower + Int64(body.readableBytes), end: end)
        default:
            // 200: the store sent the whole object; keep the asked-for part.
            let total = Int64(body.readableBytes)
            let end = min(upper, total)
            let from = Int(min(lower, total))
            let slice = body.getSlice(at: body.readerIndex + from, length: Int(max(0, end - Int64(from)))) ?? ByteBuffer()
            return S3ObjectReader(client: client, objectKey: objectKey, etag: etag, first: slice, nextOffset: end, end: end)
        }
    }

    /// The total of `bytes 0-8388607/12345678`.
    static func totalSize(_ contentRange: String) -> Int64? {
        guard let slash = contentRange.lastIndex(of: "/") else { return nil }
        return Int64(contentRange[contentRange.index(after: slash)...].trimmingCharacters(in: .whitespaces))
    }

    func read() async throws -> ByteBuffer? {
        guard !closed else { return nil }
        if current.readableBytes == 0 {
            refill()
            guard !pending.isEmpty else { return nil }
            let task = pending.removeFirst()
            do {
                current = try await task.value
            } catch {
                await close()
                throw error
            }
            refill()
        }
        let n = min(current.readableBytes, S3ObjectReader.chunkSize)
        return current.readSlice(length: n)
    }

    func close() async {
        closed = true
        current = ByteBuffer()
        for task in pending { task.cancel() }
        pending = []
    }

    /// Starts range fetches until `concurrency` are in flight or none remain.
    private func refill() {
        while pending.count < concurrency, nextOffset < end {
            let first = nextOffset
            let last = min(end, first + rangeSize) - 1
            nextOffset = last + 1
            let client = self.client
            let key = objectKey
            let etag = self.etag
            pending.append(Task {
                let response = try await client.getObject(objectKey: key, range: first...last, ifMatch: etag)
                let expected = Int(last - first + 1)
                guard response.status == 206, response.body.readableBytes == expected else {
                    throw CairnError(.storage, "\(client.settings.serviceName) returned \(response.body.readableBytes) bytes with HTTP \(response.status) for bytes \(first)-\(last) of \(key) in bucket \(client.settings.bucket); the object may have changed, so read it again")
                }
                return response.body
            })
        }
    }
}
