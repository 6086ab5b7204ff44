import CairnCore
import Logging
import NIOCore

/// A streaming upload of unknown length.
///
/// Bytes collect into one part-sized buffer. An object that ends within the
/// first part goes up as one PutObject. Past that, the upload becomes a
/// multipart upload: each full part is sent while the next one fills, with
/// at most `upload_concurrency` parts in flight; `write` waits when the
/// window is full, so memory stays near (concurrency + 1) x part size.
/// Part sizes follow ``S3PartSizing``. Every part carries Content-MD5.
/// `finish()` completes the upload, and only then does the object exist;
/// a failure or `abort()` aborts the multipart upload.
///
/// One caller at a time: `write`, `finish` and `abort` must not overlap.
actor S3ObjectWriter: StorageWriter {
    struct InFlight {
        var number: Int
        var task: Task<String, any Error>
    }

    enum State {
        case open
        case finished
        case failed
        case aborted
    }

    let client: S3Client
    let objectKey: String
    let minimumPartSize: Int64
    let concurrency: Int

    private var current = ByteBuffer()
    private var uploadID: String?
    private var nextPart = 1
    private var inFlight: [InFlight] = []
    private var completed: [(number: Int, etag: String)] = []
    private var total: Int64 = 0
    private var state = State.open

    init(client: S3Client, objectKey: String) {
        self.client = client
        self.objectKey = objectKey
        self.minimumPartSize = client.settings.minimumPartSize
        self.concurrency = max(1, client.settings.uploadConcurrency)
    }

    deinit {
        // Dropped without finish() or abort(): the parts already sent would
        // linger as an unfinished upload, so abort it in the background.
        if state == .open, let uploadID {
            for part in inFlight { part.task.cancel() }
            let client = self.client
            let key = objectKey
            Task { try? await client.abortMultipartUpload(objectKey: key, uploadID: uploadID) }
        }
    }

    /// Parts sent and not yet acknowledged; never more than `concurrency`.
    var partsInFlight: Int { inFlight.count }

    private var currentPartSize: Int {
        Int(S3PartSizing.partSize(forPart: nextPart, minimum: minimumPartSize))
    }

    func write(_ chunk: ByteBuffer) async throws {
        try checkOpen("write")
        var chunk = chunk
        total += Int64(chunk.readableBytes)
        while chunk.readableBytes > 0 {
            // A full part goes only once more bytes come, so an object of
            // exactly one part stays a single PutObject.
            if current.readableBytes >= currentPartSize {
                try await sendCurrentPart()
            }
            if current.capacity < currentPartSize {
                current.reserveCapacity(currentPartSize)
            }
            let n = min(chunk.readableBytes, currentPartSize - current.readableBytes)
            var slice = chunk.readSlice(length: n)!
            current.writeBuffer(&slice)
        }
    }

    func finish() async throws -> Int64 {
        try checkOpen("finish")
        do {
            guard let uploadID else {
                try await client.putObject(objectKey: objectKey, body: current)
                current = ByteBuffer()
                state = .finished
                return total
            }
            if current.readableBytes > 0 {
                try await sendCurrentPart()
            }
            while !inFlight.isEmpty {
                try await collectOldestPart()
            }
            try await client.completeMultipartUpload(objectKey: objectKey, uploadID: uploadID, parts: completed)
            state = .finished
            return total
        } catch {
            await fail()
            throw error
        }
    }

    func abort() async {
        guard state == .open || state == .failed else { return }
        state = .aborted
        current = ByteBuffer()
        await discardUpload()
    }

    private func checkOpen(_ what: String) throws {
        switch state {
        case .open: return
        case .failed: throw CairnError(.storage, "\(what) on \(client.settings.displayURL) after an earlier upload failure; start the file again")
        case .finished, .aborted: throw CairnError(.internal, "\(what) after finish or abort")
        }
    }

    /// Hands the filled buffer to a new part upload, starting the multipart
    /// upload first if needed and waiting for room in the window.
    private func sendCurrentPart() async throws {
        do {
            if uploadID == nil {
                uploadID = try await client.createMultipartUpload(objectKey: objectKey)
            }
            guard nextPart <= S3PartSizing.maximumParts else {
                throw CairnError(.storage, "\(objectKey) in \(client.settings.displayURL) is larger than \(S3PartSizing.maximumParts) parts can hold; raise s3_part_size")
            }
            while inFlight.count >= concurrency {
                try await collectOldestPart()
            }
            let client = self.client
            let key = objectKey
            let id = uploadID!
            let number = nextPart
            let body = current
            let task = Task { try await client.uploadPart(objectKey: key, uploadID: id, number: number, body: body) }
            inFlight.append(InFlight(number: number, task: task))
            nextPart += 1
            current = ByteBuffer()
        } catch {
            await fail()
            throw error
        }
    }

    private func collectOldestPart() async throws {
        let part = inFlight.removeFirst()
        let etag = try await part.task.value
        completed.append((part.number, etag))
    }

    private func fail() async {
        guard state == .open else { return }
        state = .failed
        current = ByteBuffer()
        await discardUpload()
    }

    /// Stops the parts in flight and aborts the multipart upload (retried;
    /// what still fails is left for `discardUnfinishedUploads`).
    private func discardUpload() async {
        let parts = inFlight
        inFlight = []
        for part in parts { part.task.cancel() }
        for part in parts { _ = try? await part.task.value }
        guard let uploadID else { return }
        self.uploadID = nil
        do {
            try await client.abortMultipartUpload(objectKey: objectKey, uploadID: uploadID)
        } catch {
            client.logger.warning("could not abort an unfinished multipart upload; the next backup of this shard discards it", metadata: [
                "bucket": "\(client.settings.bucket)", "key": "\(objectKey)", "reason": "\(error)",
            ])
        }
    }
}
