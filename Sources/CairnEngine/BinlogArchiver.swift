import CairnCore
import CairnMySQL
import CairnStorage
import CairnSystem
import Foundation
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// What the archiver has done, for status displays and heartbeats.
public struct ArchiveStatus: Sendable, Hashable {
    /// The position after the newest transaction in storage.
    public var archivedPosition: ReplicationPosition?
    /// The position after the newest whole transaction received.
    public var receivedPosition: ReplicationPosition?
    /// The newest stored transaction's time.
    public var lastArchivedEventTime: Date?
    /// When the newest segment was stored.
    public var lastSegmentTime: Date?
    public var segmentsWritten = 0
    public var connected = false
    /// Seconds the oldest received but not yet stored transaction has waited (0 when none waits).
    public var lagSeconds: Double = 0
    /// The last failure (connection or storage), cleared by the next success.
    public var lastError: String?
}

/// Continuous binary log archiving for one shard (issue 11): receives the
/// server's binary log over the replication protocol and stores it as
/// segments (docs/STORAGE.md, "Binary log archive"), each a self-contained
/// binary log file of whole transactions, at least every `interval` and
/// every `maxSegmentBytes`.
///
/// A swift-service-lifecycle `Service`: `cairn archive` runs it alone, a
/// tablet can run it in its `ServiceGroup`. On graceful shutdown it stores
/// what it has received and returns; on cancellation it returns at once.
public final class BinlogArchiver: Service, Sendable {
    public struct Settings: Sendable {
        public var shard: KeyspaceShard
        public var mysql: MySQLConnectionConfiguration
        public var storage: any BackupStorage
        public var interval: Duration
        public var maxSegmentBytes: Int
        /// Sealed segments waiting for storage, at most this many bytes
        /// (compressed, as they will be stored); past it the archiver stops
        /// receiving (the server keeps the binary logs).
        public var spoolLimitBytes: Int
        /// The server id the archiver uses as a replica.
        public var replicaServerID: UInt32?
        public var compression: CompressionSettings
        public var heartbeatSeconds: Double
        public var maxBackoff: Duration
        /// With master keys, each segment is encrypted under its own data key,
        /// wrapped in the segment's manifest (nil: stored in the clear).
        public var keyring: MasterKeyring?

        public init(shard: KeyspaceShard, mysql: MySQLConnectionConfiguration, storage: any BackupStorage,
                    interval: Duration = .seconds(5), maxSegmentBytes: Int = 4 << 20, spoolLimitBytes: Int = 24 << 20,
                    replicaServerID: UInt32? = nil, compression: CompressionSettings = .singleThreaded(),
                    heartbeatSeconds: Double = 1, maxBackoff: Duration = .seconds(30), keyring: MasterKeyring? = nil) {
            self.keyring = keyring
            self.shard = shard
            self.mysql = mysql
            self.storage = storage
            self.interval = interval
            self.maxSegmentBytes = maxSegmentBytes
            self.spoolLimitBytes = spoolLimitBytes
            self.replicaServerID = replicaServerID
            self.compression = compression
            self.heartbeatSeconds = heartbeatSeconds
            self.maxBackoff = maxBackoff
        }
    }

    /// The default replica server id for a source: high, and different per source server id.
    public static func defaultReplicaServerID(source: UInt32) -> UInt32 {
        4_000_000_000 &+ (source % 294_967_000)
    }

    public let settings: Settings
    let logger: Logger
    /// Compresses sealed segments, with one zstd context for the archiver's life.
    let compressor: SegmentCompressor
    /// Names this archiver's data files apart from any other's (see ``store(_:sourceServerID:repository:)``).
    let writerTag: String = String(UInt32.random(in: 0...UInt32.max), radix: 16).leftPadded(to: 8)
    /// The data file names of the segments this archiver stored last, by sequence.
    private let storedDataNames = Mutex<[Int: String]>([:])
    private let state = Mutex(ArchiveStatus())
    private let stopRequested = Atomic<Bool>(false)

    public init(settings: Settings, logger: Logger) {
        self.settings = settings
        self.logger = logger
        self.compressor = SegmentCompressor(settings.compression)
    }

    public var status: ArchiveStatus { state.withLock { $0 } }

    /// Asks the archiver to store what it has and return (what graceful shutdown does).
    public func requestStop() { stopRequested.store(true, ordering: .relaxed) }

    var stopping: Bool { stopRequested.load(ordering: .relaxed) || Task.isCancelled }

    public func run() async throws {
        try await withGracefulShutdownHandler {
            try await self.archive()
        } onGracefulShutdown: {
            self.requestStop()
        }
    }

    // MARK: - The loop

    struct Sealed: Sendable {
        var sequence: Int
        /// The segment's binary log file, then (once ``compressed``) its stored form.
        var bytes: ByteBuffer
        var compressed = false
        /// The size of the binary log file.
        var rawSize: Int
        var from: MariaDBGTIDList
        var position: MariaDBGTIDList
        var firstEventTime: UInt32
        var lastEventTime: UInt32
        var transactionCount: Int
        var sealedAt: ContinuousClock.Instant
    }

    /// Everything the loop keeps between events.
    struct Progress {
        var nextSequence: Int
        /// After the newest whole transaction received (or the start).
        var received: MariaDBGTIDList
        var assembler = BinlogTransactionAssembler()
        var open: OpenSegment? = nil
        var pending: [Sealed] = []
        var sourceServerID: UInt32 = 0
        /// Another archiver stored a sequence this one was about to: stop.
        var conflict: CairnError? = nil

        var pendingBytes: Int { pending.reduce(0) { $0 + $1.bytes.readableBytes } }
        /// A new segment's buffer: its size limit and room for the transaction that crosses it.
        var segmentCapacity = 0

        mutating func seal(now: ContinuousClock.Instant) {
            guard let segment = open, !segment.isEmpty else { return }
            pending.append(Sealed(sequence: nextSequence, bytes: segment.bytes, rawSize: segment.bytes.readableBytes, from: segment.fromPosition,
                                  position: segment.position, firstEventTime: segment.firstEventTime ?? 0,
                                  lastEventTime: segment.lastEventTime ?? 0, transactionCount: segment.transactionCount,
                                  sealedAt: now))
            nextSequence += 1
            open = OpenSegment(formatDescription: segment.formatDescription, from: segment.position, capacity: segmentCapacity)
        }
    }

    func archive() async throws {
        let shard = settings.shard
        let repository = BackupRepository(storage: settings.storage, logger: logger)
        var progress = try await startingPoint(repository: repository)
        progress.segmentCapacity = settings.maxSegmentBytes + (256 << 10)
        logger.info("archiving the binary log", metadata: [
            "shard": "\(shard)", "after": "\(progress.received)", "next_segment": "\(progress.nextSequence)",
            "interval": "\(settings.interval)", "storage": "\(settings.storage.displayURL)",
        ])
        var backoff = Duration.milliseconds(500)
        var storageRetry = StorageRetry()
        while !stopping {
            var stream: BinlogStream? = nil
            do {
                let info = try await MySQLConnection.with(settings.mysql, logger: logger) { try await $0.serverInfo() }
                guard info.logBin else {
                    throw CairnError(.mysql, "MariaDB at \(settings.mysql.endpoint) has no binary log (log_bin is off); turn it on to archive it")
                }
                progress.sourceServerID = info.serverID
                let replicaID = settings.replicaServerID ?? Self.defaultReplicaServerID(source: info.serverID)
                stream = try await BinlogStream.open(settings.mysql, replicaServerID: replicaID,
                                                     start: ReplicationPosition(mariadb: progress.received),
                                                     heartbeatSeconds: settings.heartbeatSeconds, logger: logger)
                progress.assembler = BinlogTransactionAssembler()
                state.withLock { $0.connected = true; $0.lastError = nil }
                backoff = .milliseconds(500)
                while !stopping {
                    if let conflict = progress.conflict { throw conflict }
                    if progress.pendingBytes >= settings.spoolLimitBytes {
                        // Storage is not keeping up: stop receiving until it does. The server
                        // keeps the binary logs meanwhile, so this is lag, not a gap (unless
                        // they are purged before storage returns, which the planner then names).
                        let message = "the archiver holds \(progress.pendingBytes / (1 << 20)) MiB of segments storage has not taken (the spool limit); it stopped receiving until storage accepts them"
                        if state.withLock({ $0.lastError != message }) {
                            logger.error("\(message)", metadata: ["shard": "\(shard)", "storage": "\(settings.storage.displayURL)"])
                        }
                        if let at = storageRetry.at { await sleepUnlessStopping(ContinuousClock.now.duration(to: at)) }
                        await storeIfDue(&progress, &storageRetry, repository: repository)
                        if progress.pendingBytes >= settings.spoolLimitBytes { state.withLock { $0.lastError = message } }
                        continue
                    }
                    let events = try await stream!.fetch(maxBytes: 256 << 10)
                    let now = ContinuousClock.now
                    for event in events { try receive(event.bytes, into: &progress, now: now) }
                    if progress.open?.isDue(now: now, interval: settings.interval, maxBytes: settings.maxSegmentBytes) == true {
                        progress.seal(now: now)
                    }
                    // A storage failure does not interrupt receiving: sealed segments wait,
                    // compressed (up to the spool limit), and are retried with backoff.
                    try await compressSealed(&progress)
                    await storeIfDue(&progress, &storageRetry, repository: repository)
                    updateLag(progress, now: ContinuousClock.now)
                }
                await stream?.close()
            } catch let error as CairnError where error.code == .alreadyExists {
                // Fenced off (docs/CLUSTER.md): another archiver holds the archive.
                await stream?.close()
                state.withLock { $0.connected = false; $0.lastError = error.message }
                throw error
            } catch let error as CairnError where error.code == .binlogsPurged {
                await stream?.close()
                state.withLock { $0.connected = false; $0.lastError = error.message }
                progress.seal(now: .now)
                try? await storePending(&progress, repository: repository)
                progress.received = try await resumePointAfterPurge(progress.received, repository: repository)
                progress.open = nil
            } catch {
                await stream?.close()
                let message = (error as? CairnError)?.message ?? "\(error)"
                state.withLock { $0.connected = false; $0.lastError = message }
                // The source may be gone: what arrived whole goes to storage now, not at the next interval.
                progress.seal(now: .now)
                storageRetry.at = nil
                await storeIfDue(&progress, &storageRetry, repository: repository)
                if let conflict = progress.conflict { throw conflict }
                if stopping { break }
                logger.warning("binary log archiving interrupted; retrying", metadata: [
                    "error": "\(message)", "retry_in": "\(backoff)",
                ])
                await sleepUnlessStopping(backoff)
                backoff = min(backoff * 2, settings.maxBackoff)
            }
        }
        // Shutdown: store everything received whole, retrying a few times.
        progress.seal(now: .now)
        var attempt = 0
        while !progress.pending.isEmpty {
            do {
                try await storePending(&progress, repository: repository)
            } catch let error as CairnError where error.code == .alreadyExists {
                throw error
            } catch {
                attempt += 1
                if attempt >= 5 || Task.isCancelled {
                    throw CairnError(.storage, "the archiver stopped with \(progress.pending.count) received segment(s) not stored (\((error as? CairnError)?.message ?? "\(error)")); the next run receives them again from the server")
                }
                try? await Task.sleep(for: .seconds(1))
            }
        }
        state.withLock { $0.connected = false; $0.lagSeconds = 0 }
        logger.info("binary log archiver stopped", metadata: ["archived": "\(progress.received)"])
    }

    func receive(_ event: [UInt8], into progress: inout Progress, now: ContinuousClock.Instant) throws {
        switch try progress.assembler.feed(event) {
        case .nothing, .heartbeat:
            break
        case .formatDescription(let fde):
            // Each connection and each binary log file starts with one; a
            // segment keeps one format, so a different one starts a new segment.
            if let open = progress.open, !open.isEmpty, OpenSegment.sameFormat(open.formatDescription, fde) { break }
            progress.seal(now: now)
            progress.open = OpenSegment(formatDescription: fde, from: progress.received, capacity: progress.segmentCapacity)
        case .transaction(let transaction):
            guard progress.open != nil else {
                throw CairnError(.integrity, "the server sent a transaction before a Format_description event; reconnecting")
            }
            if progress.received.includes(transaction.gtid) { return }
            progress.open!.append(transaction, now: now)
            progress.received.advance(to: transaction.gtid)
            state.withLock { $0.receivedPosition = ReplicationPosition(mariadb: progress.received) }
            if progress.open!.bytes.readableBytes >= settings.maxSegmentBytes { progress.seal(now: now) }
        }
    }

    /// When storage may be tried again after a failure.
    struct StorageRetry {
        var at: ContinuousClock.Instant? = nil
        var backoff = Duration.milliseconds(500)
    }

    /// Stores the sealed segments unless storage failed a moment ago; a
    /// failure is logged and retried later with backoff (0.5 s doubling to
    /// `maxBackoff`), while receiving goes on.
    func storeIfDue(_ progress: inout Progress, _ retry: inout StorageRetry, repository: BackupRepository) async {
        guard !progress.pending.isEmpty else { return }
        let now = ContinuousClock.now
        if let at = retry.at, now < at { return }
        do {
            try await storePending(&progress, repository: repository)
            retry = StorageRetry()
        } catch let error as CairnError where error.code == .alreadyExists {
            progress.conflict = error
        } catch {
            let message = (error as? CairnError)?.message ?? "\(error)"
            state.withLock { $0.lastError = message }
            logger.warning("storing archived segments failed; they wait in memory and are retried", metadata: [
                "shard": "\(settings.shard)", "error": "\(message)", "pending": "\(progress.pending.count)",
                "retry_in": "\(retry.backoff)",
            ])
            retry.at = now.advanced(by: retry.backoff)
            retry.backoff = min(retry.backoff * 2, settings.maxBackoff)
        }
    }

    /// Compresses the sealed segments that are not yet: the segment's
    /// buffer is freed as soon as it is sealed and compressed, and while
    /// storage fails the spool holds segments as they will be stored.
    func compressSealed(_ progress: inout Progress) async throws {
        for i in progress.pending.indices where !progress.pending[i].compressed {
            progress.pending[i].bytes = try await compressor.compress(progress.pending[i].bytes)
            progress.pending[i].compressed = true
        }
    }

    /// Stores the sealed segments in order, compressing them first; each is
    /// visible once its manifest is written.
    func storePending(_ progress: inout Progress, repository: BackupRepository) async throws {
        try await compressSealed(&progress)
        while let segment = progress.pending.first {
            let manifest = try await store(segment, sourceServerID: progress.sourceServerID, repository: repository)
            progress.pending.removeFirst()
            state.withLock {
                $0.archivedPosition = manifest.position
                $0.lastArchivedEventTime = manifest.lastEventTime
                $0.lastSegmentTime = manifest.archivedTime
                $0.segmentsWritten += 1
                $0.lastError = nil
            }
        }
    }

    /// Stores one segment: its data under a name of this archiver's own, then
    /// its manifest, the commit point.
    ///
    /// Fencing (docs/CLUSTER.md, "Binary log archiving"; the cluster's lease
    /// is the first line): before writing, one listing shows whether another
    /// archiver has committed this sequence, or replaced this archiver's
    /// previous segment; after committing, whether another committed this
    /// sequence at the same moment. Of two committed manifests of one
    /// sequence, readers keep the one ``ArchiveSegmentManifest/precedes(_:_:)``
    /// puts first; the archiver that sees both deletes the other, and the one
    /// not kept stops with an `alreadyExists` error. A race these checks miss
    /// (an archiver stalled between its check and its commit for a whole
    /// segment) ends as a gap the planner names, never as a transaction
    /// restored twice or lost silently: segments join by GTID, not by number.
    func store(_ segment: Sealed, sourceServerID: UInt32, repository: BackupRepository) async throws -> ArchiveSegmentManifest {
        let shard = settings.shard
        let dataName = ArchiveSegmentManifest.dataFileName(sequence: segment.sequence, suffix: settings.compression.fileSuffix,
                                                           writer: writerTag)
        let previous = max(1, segment.sequence - 1)
        let committed = try await repository.segmentManifests(shard, sequences: previous...segment.sequence)
        let existing = committed[segment.sequence] ?? []
        if let mine = existing.first(where: { $0.file.name == dataName }) {
            // An earlier attempt committed it and failed after: it is stored.
            try await keepOnlyOne(of: existing, mine: mine, repository: repository)
            return mine
        }
        if let other = existing.first { throw fenced(segment.sequence, by: other) }
        if segment.sequence > 1, let before = committed[previous]?.min(by: ArchiveSegmentManifest.precedes),
           let storedBefore = storedDataNames.withLock({ $0[previous] }), before.file.name != storedBefore {
            throw fenced(previous, by: before)
        }
        let dataKey = try settings.keyring?.newDataKey()
        // Compressed already: the pipeline encrypts (with a key), hashes and writes.
        var file = try await UploadPipeline.upload(
            from: BytesSource(segment.bytes), to: settings.storage, key: repository.archiveKey(shard, dataName),
            fileName: dataName, compression: CompressionSettings(algorithm: "none"), encryption: dataKey?.fileKey(dataName),
            progress: nil)
        file.rawSize = Int64(segment.rawSize)
        let manifest = ArchiveSegmentManifest(
            keyspace: shard.keyspace, shard: shard.shard, sequence: segment.sequence,
            fromPosition: ReplicationPosition(mariadb: segment.from), position: ReplicationPosition(mariadb: segment.position),
            firstEventTime: Date(timeIntervalSince1970: TimeInterval(segment.firstEventTime)),
            lastEventTime: Date(timeIntervalSince1970: TimeInterval(segment.lastEventTime)),
            transactionCount: segment.transactionCount, archivedTime: Date(), sourceServerID: sourceServerID,
            sourceHost: FileSystem.hostname,
            archiverServerID: settings.replicaServerID ?? Self.defaultReplicaServerID(source: sourceServerID),
            compression: settings.compression.info,
            encryption: dataKey == nil ? EncryptionScheme.none : EncryptionScheme.aes256GCM, file: file,
            keyID: dataKey?.keyID, wrappedKey: dataKey?.wrapped)
        try await repository.commitSegment(manifest, shard: shard)
        let after = try await repository.segmentManifests(shard, sequences: segment.sequence...segment.sequence)
        try await keepOnlyOne(of: after[segment.sequence] ?? [manifest], mine: manifest, repository: repository)
        logger.debug("archived segment", metadata: [
            "segment": "\(manifest.manifestName)", "transactions": "\(segment.transactionCount)",
            "to": "\(manifest.position)", "bytes": "\(file.storedSize)",
        ])
        return manifest
    }

    /// Of one sequence's committed manifests, readers keep the one that
    /// precedes: delete the others (their data too); throw when it is not `mine`.
    func keepOnlyOne(of manifests: [ArchiveSegmentManifest], mine: ArchiveSegmentManifest, repository: BackupRepository) async throws {
        let shard = settings.shard
        guard let kept = manifests.min(by: ArchiveSegmentManifest.precedes) else { return }
        let others = manifests.filter { $0.file.name != kept.file.name }
        if !others.isEmpty {
            // A manifest name the kept one shares was overwritten by it: only the data goes.
            let manifestKeys = others.filter { $0.manifestName != kept.manifestName }.map { repository.archiveKey(shard, $0.manifestName) }
            try await settings.storage.delete(keys: manifestKeys)
            try await settings.storage.delete(keys: others.map { repository.archiveKey(shard, $0.file.name) })
        }
        if kept.file.name != mine.file.name {
            if kept.manifestName != mine.manifestName {
                try await settings.storage.delete(keys: [repository.archiveKey(shard, mine.manifestName)])
            }
            try await settings.storage.delete(keys: [repository.archiveKey(shard, mine.file.name)])
            throw fenced(mine.sequence, by: kept)
        }
        storedDataNames.withLock { names in
            names[mine.sequence] = mine.file.name
            names = names.filter { $0.key >= mine.sequence - 1 }
        }
    }

    func fenced(_ sequence: Int, by other: ArchiveSegmentManifest) -> CairnError {
        CairnError(.alreadyExists, "archived segment \(ArchiveSegmentManifest.stem(sequence)) of \(settings.shard) was stored by another archiver (of server \(other.sourceServerID) on \(other.sourceHost)); run one archiver per shard (in a cluster only the tablet holding the archive lease archives), and this one starts again after the newest archived segment")
    }

    func updateLag(_ progress: Progress, now: ContinuousClock.Instant) {
        let oldest = progress.pending.first?.sealedAt ?? progress.open?.openedAt
        let lag = oldest.map { $0.duration(to: now) } ?? .zero
        let seconds = Double(lag.components.seconds) + Double(lag.components.attoseconds) / 1e18
        state.withLock { $0.lagSeconds = seconds }
    }

    func sleepUnlessStopping(_ duration: Duration) async {
        let end = ContinuousClock.now.advanced(by: duration)
        while !stopping, ContinuousClock.now < end {
            try? await Task.sleep(for: min(.milliseconds(200), ContinuousClock.now.duration(to: end)))
        }
    }

    // MARK: - Where to start

    /// After the newest archived segment; without one, after the newest
    /// complete backup; with neither, at the server's current position.
    func startingPoint(repository: BackupRepository) async throws -> Progress {
        let shard = settings.shard
        let listing = try await repository.listArchive(shard)
        if let newest = listing.timeline.newest {
            return Progress(nextSequence: newest.sequence + 1, received: newest.position.mariadb ?? MariaDBGTIDList())
        }
        if let position = newestBackupPosition(try await repository.completeManifests(shard)) {
            return Progress(nextSequence: 1, received: position.mariadb ?? MariaDBGTIDList())
        }
        let current = try await MySQLConnection.with(settings.mysql, logger: logger) { try await $0.serverInfo().gtidBinlogPosition }
        return Progress(nextSequence: 1, received: current.mariadb ?? MariaDBGTIDList())
    }

    /// The newest backup's position: one that contains every other, else the last started.
    func newestBackupPosition(_ manifests: [BackupManifest]) -> ReplicationPosition? {
        let positions = manifests.map(\.position)
        return positions.first { p in positions.allSatisfy { p.contains($0) } } ?? manifests.max { $0.startTime < $1.startTime }?.position
    }

    /// The server no longer has the binary logs after `received`: continue
    /// from a newer backup if one covers them, else from the oldest binary
    /// log the server has. The skipped range is a gap the planner names.
    func resumePointAfterPurge(_ received: MariaDBGTIDList, repository: BackupRepository) async throws -> MariaDBGTIDList {
        let receivedPosition = ReplicationPosition(mariadb: received)
        let oldest = try await MySQLConnection.with(settings.mysql, logger: logger) { try await $0.purgedPosition() }
        let backups = try await repository.completeManifests(settings.shard)
            .filter { $0.position.contains(receivedPosition) && $0.position.contains(oldest) }
        let resume = newestBackupPosition(backups) ?? oldest
        logger.error("the server purged binary logs before they were archived: the archive has a gap", metadata: [
            "shard": "\(settings.shard)", "archived_until": "\(receivedPosition)", "resuming_after": "\(resume)",
        ])
        return resume.mariadb ?? MariaDBGTIDList()
    }
}

extension CompressionSettings {
    /// zstd at `level` on the caller's thread: the archiver's default, for its small, frequent segments.
    public static func singleThreaded(level: Int = 3) -> CompressionSettings {
        var settings = CompressionSettings(level: level, threads: 1)
        settings.multithreaded = false
        return settings
    }
}

/// Compresses the archiver's sealed segments, each whole in one call (a
/// segment is in memory anyway), with one zstd context kept for the
/// archiver's life: its match tables are allocated once and reused, and
/// zstd keeps no window or block buffers of its own (see
/// ``ZstdCompressor/compressWhole(_:)``). Single-threaded whatever the
/// configured `compression_threads`. At level 3 a full 4 MiB segment needs
/// 1.2 MiB of tables and its compressed form (docs/BENCHMARKS.md, issue 11).
final class SegmentCompressor: Sendable {
    let settings: CompressionSettings
    private let context = Mutex<ZstdCompressor?>(nil)

    init(_ settings: CompressionSettings) { self.settings = settings }

    /// The stored form of a segment: one zstd frame, or the bytes themselves
    /// when compression is off.
    func compress(_ raw: ByteBuffer) async throws -> ByteBuffer {
        guard settings.algorithm != "none" else { return raw }
        let level = settings.level
        return try await Blocking.run { [self] in
            try context.withLock { context in
                if context == nil { context = try ZstdCompressor(level: level, threads: nil) }
                return try context!.compressWhole(raw)
            }
        }
    }
}

/// Hands out a buffer in slices of at most 1 MiB, without copying.
final class BytesSource: ByteSource {
    private let bytes: ByteBuffer
    private let offset = Mutex(0)

    init(_ bytes: ByteBuffer) { self.bytes = bytes }

    func next() async throws -> ByteBuffer? {
        offset.withLock { at -> ByteBuffer? in
            guard at < bytes.readableBytes else { return nil }
            let length = min(bytes.readableBytes - at, 1 << 20)
            let slice = bytes.getSlice(at: bytes.readerIndex + at, length: length)
            at += length
            return slice
        }
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
