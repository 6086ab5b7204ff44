import CairnCore
import CairnMySQL
import CairnStorage
import CairnSystem
import Foundation
import Logging
import NIOCore
import Synchronization

/// Incremental backups: the binary log files holding every transaction
/// after the parent backup's position, and their replay on restore.
enum BinlogEngine {
    /// The binary log files an incremental will copy.
    struct Plan: Sendable {
        var parent: BackupManifest
        var from: ReplicationPosition
        var files: [(name: String, start: ReplicationPosition)]
        /// The position at the end of the last file: where the new backup ends.
        var end: ReplicationPosition
        var purged: ReplicationPosition
        var binlogDirectory: String
    }

    /// Flushes the binary log and chooses the closed files that hold every
    /// transaction after `parent`. Returns nil when nothing was committed
    /// since the parent (and then flushes nothing).
    static func plan(parent: BackupManifest, info: ServerInfo, connection: MySQLConnection, logger: Logger) async throws -> Plan? {
        let from = parent.position
        let current = info.gtidBinlogPosition
        if from.contains(current) { return nil }
        guard current.contains(from) else {
            throw CairnError(.chain, "this server's binary log position \(current) does not include the chain's position \(from) (backup \(parent.backupName)); it is behind or diverged, take the backup on a tablet that has caught up, or take a full backup")
        }
        guard let basename = info.binlogBasename, !basename.isEmpty else {
            throw CairnError(.mysql, "the server does not report where its binary logs are (@@log_bin_basename); Cairn needs log_bin on")
        }
        // Close the file being written, so only complete files are copied.
        try await connection.query("FLUSH BINARY LOGS")
        let logs = try await connection.binaryLogs()
        guard let active = logs.last else {
            throw CairnError(.mysql, "SHOW BINARY LOGS returned nothing after FLUSH BINARY LOGS")
        }
        var starts: [ReplicationPosition] = []
        for log in logs { starts.append(try await connection.binlogStartPosition(log.name)) }
        let end = starts.last!
        let closed = Array(logs.dropLast())
        // The newest closed file that starts at or before the parent's position.
        guard let first = closed.indices.last(where: { from.contains(starts[$0]) }) else {
            let oldest = starts.first ?? end
            let missing = from.describeMissing(comparedTo: oldest)
            throw CairnError(.binlogsPurged, "the binary logs holding the transactions after \(from) were purged on this server (the oldest binary log, \(logs.first?.name ?? active.name), starts at \(oldest); missing: \(missing.isEmpty ? "unknown" : missing)); take a full backup (--type full)")
        }
        let files = (first..<closed.count).map { (name: closed[$0].name, start: starts[$0]) }
        logger.info("incremental backup will copy binary logs", metadata: [
            "files": "\(files.map(\.name).joined(separator: ","))", "from": "\(from)", "to": "\(end)",
        ])
        return Plan(parent: parent, from: from, files: files, end: end, purged: starts.first ?? end,
                    binlogDirectory: (basename as NSString).deletingLastPathComponent)
    }

    struct Result: Sendable {
        var files: [ManifestFile]
        var firstEventTime: Date?
        var lastEventTime: Date?
    }

    /// Streams the planned binary log files into storage, noting the first
    /// and last transaction times after the parent's position.
    static func backup(_ context: BackupContext, name: String, plan: Plan) async throws -> Result {
        var files: [ManifestFile] = []
        let times = Mutex<(first: UInt32?, last: UInt32?)>((nil, nil))
        let applied = plan.from.mariadb ?? MariaDBGTIDList()
        for file in plan.files {
            let path = "\(plan.binlogDirectory)/\(file.name)"
            let source = try FileSource(path: path)
            let scanner = Mutex(BinlogScanner(fileName: file.name))
            let storedName = file.name + context.compression.fileSuffix
            context.progress?.setPhase("copying \(file.name)")
            var entry = try await UploadPipeline.upload(
                from: source, to: context.storage,
                key: context.repository.key(context.shard, name, storedName), fileName: storedName,
                compression: context.compression, encryption: context.dataKey?.fileKey(storedName),
                progress: context.progress,
                inspect: { chunk in
                    let events = try scanner.withLock { try $0.feed(chunk) }
                    let fresh = events.filter { !applied.includes($0.gtid) }
                    guard !fresh.isEmpty else { return }
                    times.withLock { t in
                        if t.first == nil { t.first = fresh.first!.timestamp }
                        t.last = fresh.last!.timestamp
                    }
                },
                beforeFinish: {
                    guard scanner.withLock({ $0.endsAtEventBoundary }) else {
                        throw CairnError(.integrity, "binary log \(file.name) ends in the middle of an event; it may have been purged or damaged while being copied, retry the backup")
                    }
                })
            entry.binlogFile = file.name
            entry.startPosition = file.start
            files.append(entry)
        }
        let t = times.withLock { $0 }
        return Result(files: files,
                      firstEventTime: t.first.map { Date(timeIntervalSince1970: TimeInterval($0)) },
                      lastEventTime: t.last.map { Date(timeIntervalSince1970: TimeInterval($0)) })
    }

    /// Replays one incremental's binary logs into the restore server, from
    /// its starting position, stopping at `stopPosition` (inclusive) or
    /// before the first transaction stamped at or after `stopTime`.
    /// Returns false when a stop was reached (later backups must not be applied).
    static func apply(_ manifest: BackupManifest, into server: RestoreServer, stopPosition: ReplicationPosition?,
                      stopTime: Date?, context: RestoreContext) async throws -> Bool {
        guard let from = manifest.fromPosition else {
            throw CairnError(.manifest, "incremental backup \(manifest.backupName) has no from_position")
        }
        for file in manifest.files {
            if let stopPosition, let start = file.startPosition, start.contains(stopPosition) {
                // Everything up to the stop is in earlier files.
                return false
            }
            context.progress?.setPhase("replaying \(manifest.backupName)/\(file.binlogFile ?? file.name)")
            var binlogArgs: [String] = []
            if !from.isEmpty { binlogArgs.append("--start-position=\(from.gtidText)") }
            if let stopPosition { binlogArgs.append("--stop-position=\(stopPosition.gtidText)") }
            binlogArgs.append("-")
            let pipe = try ChildProcess.makePipe()
            let decoder: ChildProcess
            let client: ChildProcess
            do {
                decoder = try ChildProcess("mariadb-binlog", arguments: binlogArgs, environment: ["TZ": "UTC"], stdin: .pipe,
                                           stdout: .fileDescriptor(pipe.write), stderr: .capture(limit: 64 * 1024),
                                           logger: context.logger)
                client = try ChildProcess("mariadb", arguments: server.clientArguments + ["--binary-mode"],
                                          environment: server.clientEnvironment, stdin: .fileDescriptor(pipe.read),
                                          stdout: .capture(limit: 16 * 1024), stderr: .capture(limit: 64 * 1024),
                                          logger: context.logger)
            } catch {
                close(pipe.read)
                close(pipe.write)
                throw error
            }
            close(pipe.read)
            close(pipe.write)
            var cut: LockedTimeCut? = nil
            if let stopTime {
                cut = LockedTimeCut(BinlogTimeCut(fileName: file.binlogFile ?? file.name, stopTime: stopTime,
                                                  applied: from.mariadb ?? MariaDBGTIDList()))
            }
            let completed: Bool
            do {
                let key = context.repository.key(context.shard, manifest.backupName, file.name)
                var transform: (@Sendable (ByteBuffer) throws -> (ByteBuffer, continue: Bool))? = nil
                if let cut {
                    transform = { chunk in try cut.state.withLock { try $0.process(chunk) } }
                }
                let sink = DecoderSink(decoder: decoder, mayStopEarly: stopPosition != nil)
                completed = try await DownloadPipeline.download(
                    file, key: key, from: context.storage, compression: manifest.compression,
                    decryption: try context.fileKey(manifest, file),
                    to: sink, progress: context.progress, transform: transform).completed
                try await decoder.checkSuccess(doing: "decoding binary log \(file.binlogFile ?? file.name) of backup \(manifest.backupName)")
                try await client.checkSuccess(doing: "applying binary log \(file.binlogFile ?? file.name) of backup \(manifest.backupName)")
            } catch {
                decoder.kill()
                client.kill()
                _ = await decoder.wait()
                _ = await client.wait()
                throw error
            }
            if !completed { return false }
        }
        return true
    }
}

/// A time cut shared with the download pipeline's transform.
final class LockedTimeCut: Sendable {
    let state: Mutex<BinlogTimeCut>
    init(_ cut: BinlogTimeCut) { state = Mutex(cut) }
}

/// Feeds `mariadb-binlog`; when it was given a stop position it may exit
/// as soon as it gets there, which ends the download instead of failing it.
struct DecoderSink: ByteSink {
    let decoder: ChildProcess
    let mayStopEarly: Bool

    func write(_ chunk: ByteBuffer) async throws {
        do {
            try await decoder.write(chunk)
        } catch {
            if mayStopEarly, await decoder.wait().succeeded { throw ConsumerFinished() }
            throw error
        }
    }
}
