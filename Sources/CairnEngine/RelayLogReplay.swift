#if canImport(Glibc)
import Glibc
#endif
import CairnCore
import CairnMySQL
import CairnStorage
import CairnSystem
import Foundation
import Logging
import NIOCore
import Synchronization

/// How a restore applies binary logs after the full backup.
public enum BinlogReplayMethod: String, Sendable, CaseIterable {
    /// The restore server's own SQL thread applies them as relay logs (the default).
    case sqlThread = "sql-thread"
    /// `mariadb-binlog | mariadb`: the earlier path, kept for comparison (tests, benchmarks).
    case clientPipe = "client"
}

/// One stored binary-log-format file to replay: an incremental backup's
/// binary log now, an archived segment later. Each is a whole file (magic,
/// Format_description event, whole transactions) stored under `key`.
public struct StoredBinlog: Sendable {
    public var file: ManifestFile
    public var key: String
    public var compression: CompressionInfo
    /// The file's key when its backup or segment is encrypted.
    public var fileKey: FileKey?
    /// The GTID position where the file starts, when the manifest records it.
    public var startPosition: ReplicationPosition?
    /// How errors name it: "binary log binlog.000007 of backup 2026-...".
    public var label: String

    public init(file: ManifestFile, key: String, compression: CompressionInfo, startPosition: ReplicationPosition?, label: String,
                fileKey: FileKey? = nil) {
        self.fileKey = fileKey
        self.file = file
        self.key = key
        self.compression = compression
        self.startPosition = startPosition
        self.label = label
    }

    /// The binary logs of `manifests` (a plan's incrementals, then its
    /// archived segments as one-file binlog backups), in order, without the
    /// files that start at or after `stopPosition` (nothing up to it is in them).
    static func files(of manifests: [BackupManifest], stopPosition: ReplicationPosition?, repository: BackupRepository,
                      shard: KeyspaceShard, keyring: MasterKeyring?) throws -> [StoredBinlog] {
        var result: [StoredBinlog] = []
        for manifest in manifests {
            let dataKey = try MasterKeyring.dataKey(of: manifest, keyring: keyring)
            for file in manifest.files {
                if let stop = stopPosition, let start = file.startPosition, start.contains(stop) { return result }
                result.append(StoredBinlog(file: file, key: repository.key(shard, manifest.backupName, file.name),
                                           compression: manifest.compression, startPosition: file.startPosition,
                                           label: "binary log \(file.binlogFile ?? file.name) of backup \(manifest.backupName)",
                                           fileKey: dataKey?.fileKey(file.name)))
            }
        }
        return result
    }
}

/// Turns a binary log into a relay log for the restore server: passes the
/// file's header events and every transaction not yet applied and not past
/// the stop position, and drops the others whole (from their GTID event to
/// the next one). Per domain, as `mariadb-binlog --start-position
/// --stop-position` count, so interleaved domains are cut correctly. Pure:
/// it sees bytes and returns bytes.
///
/// After the Format_description event it inserts what the IO thread writes
/// at the start of a relay log: an artificial Rotate event naming the
/// source's binary log, then the source's Format_description event again.
/// Without it the SQL thread does not know the source's file name, and with
/// `slave_parallel_threads` mariadbd 10.11 crashes on that (in `compare_log_name`).
public struct RelayLogFilter: Sendable {
    let fileName: String
    /// The output's first bytes until they hold the Format_description event; nil once it is out.
    var prologue: [UInt8]? = []
    var scanner: BinlogScanner
    let stop: MariaDBGTIDList?
    let refusedServerID: UInt32?
    /// Every transaction applied before this file plus those this filter passed.
    public private(set) var reached: MariaDBGTIDList
    /// Transactions passed on.
    public private(set) var transactions = 0
    var keeping = true
    var held = ByteBufferAllocator().buffer(capacity: 64)
    var heldStart: Int64 = 0

    /// `applied`: the position the restore already holds; `stop`: apply
    /// nothing past it; a transaction stamped with `refusedServerID` is an
    /// error (the restore server would skip it as its own).
    public init(fileName: String, applied: MariaDBGTIDList, stop: MariaDBGTIDList?, refusedServerID: UInt32? = nil) {
        self.fileName = fileName
        scanner = BinlogScanner(fileName: fileName)
        reached = applied
        self.stop = stop
        self.refusedServerID = refusedServerID
    }

    public mutating func process(_ chunk: ByteBuffer) throws -> ByteBuffer {
        let events = try scanner.feed(chunk)
        var combined = held
        combined.writeImmutableBuffer(chunk)
        let base = combined.readerIndex
        var out = ByteBufferAllocator().buffer(capacity: combined.readableBytes)
        var cursor = heldStart
        func pass(upTo end: Int64) {
            if keeping && end > cursor {
                out.writeImmutableBuffer(combined.getSlice(at: base + Int(cursor - heldStart), length: Int(end - cursor))!)
            }
            cursor = end
        }
        for event in events {
            pass(upTo: event.offset)
            keeping = try decide(event.gtid)
        }
        let safe = scanner.safeBoundary
        pass(upTo: safe)
        held = combined.getSlice(at: base + Int(safe - heldStart), length: combined.readableBytes - Int(safe - heldStart))!
        heldStart = safe
        return try insertingRotate(out)
    }

    /// Holds the output back until it has the Format_description event, then
    /// puts the Rotate event and the Format_description event again after it.
    mutating func insertingRotate(_ out: ByteBuffer) throws -> ByteBuffer {
        guard var bytes = prologue else { return out }
        bytes.append(contentsOf: out.readableBytesView)
        let header = BinlogScanner.headerLength
        guard bytes.count >= 4 + header else { prologue = bytes; return ByteBuffer() }
        let descriptionLength = Int(le32(bytes, 4 + 9))
        guard bytes[4 + 4] == RelayLogFilter.formatDescriptionEventType, descriptionLength > header + 5 else {
            throw CairnError(.integrity, "\(fileName) does not start with a Format_description event")
        }
        guard bytes.count >= 4 + descriptionLength else { prologue = bytes; return ByteBuffer() }
        prologue = nil
        let description = bytes[4..<(4 + descriptionLength)]
        // The checksum algorithm is the byte before the event's own checksum.
        let checksummed = description[description.endIndex - 5] != 0
        let serverID = le32(bytes, 4 + 5)
        var rotate: [UInt8] = []
        let name = Array(fileName.utf8)
        let length = header + 8 + name.count + (checksummed ? 4 : 0)
        appendLE(&rotate, UInt32(0), bytes: 4)
        rotate.append(RelayLogFilter.rotateEventType)
        appendLE(&rotate, serverID, bytes: 4)
        appendLE(&rotate, UInt32(length), bytes: 4)
        appendLE(&rotate, UInt32(0), bytes: 4)
        appendLE(&rotate, UInt32(RelayLogFilter.artificialFlag), bytes: 2)
        appendLE(&rotate, UInt32(4), bytes: 4)
        appendLE(&rotate, UInt32(0), bytes: 4)
        rotate += name
        if checksummed { appendLE(&rotate, CRC32.checksum(rotate), bytes: 4) }
        var result = ByteBufferAllocator().buffer(capacity: bytes.count + rotate.count + descriptionLength)
        result.writeBytes(bytes[0..<(4 + descriptionLength)])
        result.writeBytes(rotate)
        result.writeBytes(description)
        result.writeBytes(bytes[(4 + descriptionLength)...])
        return result
    }

    static let formatDescriptionEventType: UInt8 = 0x0f
    static let rotateEventType: UInt8 = 0x04
    /// LOG_EVENT_ARTIFICIAL_F: made up by the replica, not written by the source.
    static let artificialFlag: UInt16 = 0x20

    func le32(_ b: [UInt8], _ at: Int) -> UInt32 {
        UInt32(b[at]) | UInt32(b[at + 1]) << 8 | UInt32(b[at + 2]) << 16 | UInt32(b[at + 3]) << 24
    }

    func appendLE(_ b: inout [UInt8], _ value: UInt32, bytes: Int) {
        for i in 0..<bytes { b.append(UInt8(truncatingIfNeeded: value >> (8 * i))) }
    }

    mutating func decide(_ gtid: MariaDBGTID) throws -> Bool {
        if let refusedServerID, gtid.server == refusedServerID {
            throw CairnError(.internal, "transaction \(gtid) carries server id \(refusedServerID), which the restore server uses while it replays; restore with --binlog-replay client")
        }
        if reached.includes(gtid) { return false }
        if let stop, !stop.includes(gtid) { return false }
        reached.advance(to: gtid)
        transactions += 1
        return true
    }

    /// The end of the input: it must end at an event boundary.
    public func finish() throws {
        guard scanner.endsAtEventBoundary else {
            throw CairnError(.integrity, "\(scanner.fileName) ends in the middle of an event")
        }
        guard prologue == nil else {
            throw CairnError(.integrity, "\(scanner.fileName) ends before its Format_description event does")
        }
    }
}

/// Replays stored binary logs through the restore server's SQL thread.
///
/// Each file is downloaded (SHA-256 checked), decompressed and filtered into
/// a staged file in the data directory while the previous one is applied.
/// To apply one, the replica configuration is reset, the staged file becomes
/// `cairn-relay.000001`, the only entry of the relay log index, and
/// `CHANGE MASTER TO MASTER_HOST=<never contacted>, RELAY_LOG_FILE=...,
/// RELAY_LOG_POS=4` plus `START SLAVE SQL_THREAD` apply it; `MASTER_GTID_WAIT`
/// waits for its last transaction. The SQL thread purges the file once it is
/// through, so the disk holds at most the file applied and the next one.
/// It applies with ``RestoreContext/replayThreads`` worker threads (none: the SQL thread
/// itself), which keep each transaction's GTID, server id and timestamp
/// and, with `log_slave_updates`, write it to the restore server's binary log.
enum RelayLogReplay {
    static let relayBasename = "cairn-relay"
    static let relayFile = "cairn-relay.000001"
    /// Never contacted: only the SQL thread runs.
    static let dummyMaster = "cairn-restore.invalid"

    struct Staged: Sendable {
        var binlog: StoredBinlog
        var path: String
        /// The position after this file.
        var reached: MariaDBGTIDList
        var transactions: Int
        /// The stop was reached in this file: nothing after it is applied.
        var isLast: Bool
    }

    /// Applies `files` in order on top of `start`; returns the position reached.
    static func replay(_ files: [StoredBinlog], into server: RestoreServer, start: ReplicationPosition,
                       stopPosition: ReplicationPosition?, stopTime: Date?, context: RestoreContext) async throws -> ReplicationPosition {
        guard let first = files.first else { return start }
        guard let startList = start.mariadb else {
            throw CairnError(.internal, "replaying binary logs needs a MariaDB GTID position, and the full backup's is \(start)")
        }
        guard (0...255).contains(context.replayThreads) else {
            throw CairnError(.usage, "--replay-threads must be between 0 and 255, not \(context.replayThreads)")
        }
        let stop = stopPosition?.mariadb
        let directory = server.mysqld.options.dataDirectory
        let logger = context.logger
        let originalServerID = server.mysqld.options.serverID
        // The SQL thread skips events stamped with its own server id, and the
        // restore server runs with the source's: replay under another one.
        let replayServerID: UInt32 = originalServerID == UInt32.max ? UInt32.max - 1 : UInt32.max

        return try await server.withConnection { connection in
            try await connection.query("""
                SET GLOBAL server_id=\(replayServerID); SET GLOBAL slave_parallel_threads=\(context.replayThreads); \
                SET GLOBAL slave_parallel_mode='optimistic'
                """)
            var current = try await stage(first, index: 0, applied: startList, stop: stop, stopTime: stopTime,
                                          refusedServerID: replayServerID, directory: directory, context: context)
            var index = 0
            var applied = 0
            while true {
                let more = !current.isLast && index + 1 < files.count
                let nextBinlog = more ? files[index + 1] : nil
                let nextIndex = index + 1
                let previous = current
                // File N+1 downloads while file N is applied.
                async let next: Staged? = stageIfAny(nextBinlog, index: nextIndex, applied: previous.reached, stop: stop,
                                                     stopTime: stopTime, refusedServerID: replayServerID,
                                                     directory: directory, context: context)
                context.progress?.setPhase("replaying \(previous.binlog.label)")
                logger.info("replaying through the SQL thread", metadata: [
                    "file": "\(previous.binlog.label)", "transactions": "\(previous.transactions)",
                ])
                try await apply(previous, connection: connection, directory: directory)
                applied += previous.transactions
                guard let staged = try await next else { break }
                current = staged
                index += 1
            }
            try await connection.query("""
                STOP SLAVE SQL_THREAD; RESET SLAVE ALL; SET GLOBAL server_id=\(originalServerID); SET GLOBAL slave_parallel_threads=0
                """)
            let reached = ReplicationPosition(mariadb: current.reached)
            let binlog = ReplicationPosition(mariadb: try MariaDBGTIDList(parsing: try await connection.scalar("SELECT @@gtid_binlog_pos") ?? ""))
            guard binlog.contains(reached) && reached.contains(binlog) else {
                throw CairnError(.integrity, "the restore server's binary log reached \(binlog) but the replayed binary logs end at \(reached); the restore is incomplete, restore again")
            }
            logger.info("replay through the SQL thread finished", metadata: ["transactions": "\(applied)", "position": "\(reached)"])
            return reached
        }
    }

    static func stageIfAny(_ binlog: StoredBinlog?, index: Int, applied: MariaDBGTIDList, stop: MariaDBGTIDList?, stopTime: Date?,
                           refusedServerID: UInt32, directory: String, context: RestoreContext) async throws -> Staged? {
        guard let binlog else { return nil }
        return try await stage(binlog, index: index, applied: applied, stop: stop, stopTime: stopTime,
                               refusedServerID: refusedServerID, directory: directory, context: context)
    }

    /// Downloads, verifies, decompresses and filters one file into the data directory.
    static func stage(_ binlog: StoredBinlog, index: Int, applied: MariaDBGTIDList, stop: MariaDBGTIDList?, stopTime: Date?,
                      refusedServerID: UInt32, directory: String, context: RestoreContext) async throws -> Staged {
        let path = "\(directory)/cairn-staged-relay.\(index)"
        let name = binlog.file.binlogFile ?? binlog.file.name
        let filter = LockedRelayLogFilter(RelayLogFilter(fileName: name, applied: applied, stop: stop, refusedServerID: refusedServerID))
        let cut = stopTime.map { LockedTimeCut(BinlogTimeCut(fileName: name, stopTime: $0, applied: applied)) }
        let sink = try RelayLogFileSink(path: path)
        let completed: Bool
        do {
            completed = try await DownloadPipeline.download(
                binlog.file, key: binlog.key, from: context.storage, compression: binlog.compression,
                decryption: binlog.fileKey, to: sink,
                progress: context.progress,
                transform: { chunk in
                    var piece = chunk
                    var keepGoing = true
                    if let cut { (piece, keepGoing) = try cut.state.withLock { try $0.process(chunk) } }
                    return (try filter.state.withLock { try $0.process(piece) }, keepGoing)
                }).completed
            if completed {
                if let cut {
                    let tail = cut.state.withLock { $0.flush() }
                    if tail.readableBytes > 0 { try await sink.write(try filter.state.withLock { try $0.process(tail) }) }
                }
                try filter.state.withLock { try $0.finish() }
            }
            try sink.close()
        } catch {
            try? sink.close()
            unlink(path)
            if let error = error as? CairnError, error.code == .integrity, !error.message.contains(binlog.key) {
                throw CairnError(.integrity, "\(binlog.label) (\(binlog.key)) is damaged: \(error.message); restore another point")
            }
            throw error
        }
        let (reached, transactions) = filter.state.withLock { ($0.reached, $0.transactions) }
        let stopReached = stop.map { reached.contains($0) } ?? false
        return Staged(binlog: binlog, path: path, reached: reached, transactions: transactions, isLast: !completed || stopReached)
    }

    /// Makes `staged` the restore server's only relay log and lets the SQL thread apply it.
    static func apply(_ staged: Staged, connection: MySQLConnection, directory: String) async throws {
        try await connection.query("STOP SLAVE SQL_THREAD; RESET SLAVE ALL")
        try await Blocking.run {
            guard rename(staged.path, "\(directory)/\(relayFile)") == 0 else {
                throw CairnError(.fileSystem, "could not move \(staged.path) into place as a relay log: \(String(cString: strerror(errno)))")
            }
            guard FileManager.default.createFile(atPath: "\(directory)/\(relayBasename).index", contents: Data("./\(relayFile)\n".utf8)) else {
                throw CairnError(.fileSystem, "could not write the relay log index in \(directory); check free space")
            }
        }
        try await connection.query("""
            CHANGE MASTER TO MASTER_HOST='\(dummyMaster)', RELAY_LOG_FILE='\(relayFile)', RELAY_LOG_POS=4; \
            START SLAVE SQL_THREAD
            """)
        let target = MySQLConnection.quote(staged.reached.description)
        var idleChecks = 0
        while true {
            if Task.isCancelled { throw CairnError(.cancelled, "the replay of \(staged.binlog.label) was cancelled") }
            if try await connection.scalar("SELECT MASTER_GTID_WAIT(\(target), 0.5)") == "0" { return }
            let status = try await connection.query("SHOW SLAVE STATUS")
            func value(_ column: String) -> String { (status.values(column).first ?? nil) ?? "" }
            let lastError = value("Last_SQL_Error")
            if value("Slave_SQL_Running") != "Yes" || !lastError.isEmpty {
                let reason = lastError.isEmpty ? "the SQL thread stopped" : firstSentence(lastError)
                throw CairnError(.integrity, "the restore server could not apply \(staged.binlog.label) (relay log \(relayFile)): \(reason); the backup is damaged, restore another point")
            }
            // Through the whole relay log (the SQL thread moved on to the
            // server's own empty one) yet short of the file's end: twice in a row, to let a last commit land.
            if value("Relay_Log_File") != relayFile {
                idleChecks += 1
                if idleChecks >= 2 {
                    let slave = try await connection.scalar("SELECT @@gtid_slave_pos") ?? ""
                    throw CairnError(.integrity, "the restore server applied all of \(staged.binlog.label) but reached \(slave), not \(staged.reached); the backup is damaged, restore another point")
                }
            }
        }
    }

    /// The first sentence of a server message, on one line.
    static func firstSentence(_ message: String) -> String {
        let line = message.replacingOccurrences(of: "\n", with: " ")
        if let end = line.range(of: ". ") { return String(line[..<end.lowerBound]) }
        return line.hasSuffix(".") ? String(line.dropLast()) : line
    }
}

/// A relay log filter shared with the download pipeline's transform.
final class LockedRelayLogFilter: Sendable {
    let state: Mutex<RelayLogFilter>
    init(_ filter: RelayLogFilter) { state = Mutex(filter) }
}

/// A relay log being staged: plain writes to a new file in the data directory.
final class RelayLogFileSink: ByteSink {
    let fd: Mutex<Int32>
    let path: String

    init(path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o640)
        guard fd >= 0 else {
            throw CairnError(.fileSystem, "could not create \(path): \(String(cString: strerror(errno)))")
        }
        self.fd = Mutex(fd)
        self.path = path
    }

    func write(_ chunk: ByteBuffer) async throws {
        guard chunk.readableBytes > 0 else { return }
        try await Blocking.run { [self] in
            try fd.withLock { fd in
                try chunk.withUnsafeReadableBytes { bytes in
                    var done = 0
                    while done < bytes.count {
                        let n = Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done)
                        if n < 0 {
                            if errno == EINTR { continue }
                            throw CairnError(.fileSystem, "writing \(path) failed: \(String(cString: strerror(errno))); check free space")
                        }
                        done += n
                    }
                }
            }
        }
    }

    func close() throws {
        try fd.withLock { fd in
            guard fd >= 0 else { return }
            let result = Glibc.close(fd)
            fd = -1
            if result != 0 {
                throw CairnError(.fileSystem, "closing \(path) failed: \(String(cString: strerror(errno)))")
            }
        }
    }

    deinit { try? close() }
}
