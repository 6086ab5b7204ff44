import CairnCore
import Foundation
import Logging

/// What storage holds of a shard's binary log archive.
public struct ArchiveListing: Sendable {
    /// Committed segments (their manifest is stored and readable), by sequence.
    public var timeline: ArchiveTimeline
    /// Segment manifests that could not be read, with why: each is a gap.
    public var unreadable: [(name: String, problem: String)]
    /// Every object under the archive directory.
    public var objects: [StorageObject]

    public var segments: [ArchiveSegmentManifest] { timeline.segments }
}

/// The binary log archive's layout, beside the shard's backups:
/// `<keyspace>/<shard>/binlog-archive/<sequence>.binlog.zst` (the data),
/// then `<keyspace>/<shard>/binlog-archive/<sequence>.<first>.<last>.json`
/// (its manifest, the commit point, written after the data is durable).
extension BackupRepository {
    public static func archivePrefix(_ shard: KeyspaceShard) -> String {
        "\(prefix(shard))\(ArchiveSegmentManifest.directoryName)/"
    }

    public func archiveKey(_ shard: KeyspaceShard, _ name: String) -> String {
        "\(Self.archivePrefix(shard))\(name)"
    }

    /// Lists the archive (or takes `objects`, the archive's part of a shard
    /// listing already made) and reads the manifests of the segments that
    /// `include` selects by what their names say (all by default), 16 at a time.
    public func listArchive(_ shard: KeyspaceShard, objects listed: [StorageObject]? = nil,
                            include: @Sendable (ArchiveSegmentManifest.NameInfo) -> Bool = { _ in true }) async throws -> ArchiveListing {
        let prefix = Self.archivePrefix(shard)
        let objects: [StorageObject]
        if let listed { objects = listed } else { objects = try await storage.list(prefix: prefix) }
        let wanted = objects.compactMap { object -> (StorageObject, ArchiveSegmentManifest.NameInfo)? in
            let name = String(object.key.dropFirst(prefix.count))
            guard let info = ArchiveSegmentManifest.parseManifestName(name), include(info) else { return nil }
            return (object, info)
        }
        var segments: [ArchiveSegmentManifest] = []
        var unreadable: [(String, String)] = []
        let storage = self.storage
        try await withThrowingTaskGroup(of: (String, Result<ArchiveSegmentManifest, CairnError>?).self) { group in
            var next = 0
            func addNext() {
                guard next < wanted.count else { return }
                let (object, _) = wanted[next]
                next += 1
                group.addTask {
                    let name = String(object.key.dropFirst(prefix.count))
                    do {
                        let data = try await storage.readAll(key: object.key, limit: 1 << 20)
                        let segment = try ArchiveSegmentManifest.decode(data, name: name)
                        guard segment.keyspace == shard.keyspace, segment.shard == shard.shard,
                              segment.manifestName == name else {
                            return (name, .failure(CairnError(.manifest, "it describes \(segment.keyspace)/\(segment.shard) segment \(segment.manifestName), not this one")))
                        }
                        return (name, .success(segment))
                    } catch let error as CairnError where error.code == .notFound {
                        return (name, nil)
                    } catch let error as CairnError where error.code == .manifest || error.code == .storage {
                        return (name, .failure(error))
                    }
                }
            }
            for _ in 0..<16 { addNext() }
            while let (name, result) = try await group.next() {
                switch result {
                case .success(let segment): segments.append(segment)
                case .failure(let error):
                    logger.warning("an archived segment's manifest cannot be read", metadata: ["shard": "\(shard)", "segment": "\(name)", "error": "\(error.message)"])
                    unreadable.append((name, error.message))
                case nil: break
                }
                addNext()
            }
        }
        return ArchiveListing(timeline: ArchiveTimeline(segments), unreadable: unreadable.sorted { $0.0 < $1.0 }, objects: objects)
    }

    /// The committed manifests of `sequences` (more than one of a sequence
    /// only when two archivers raced for it), read from one listing of the
    /// names the sequences share a prefix with (the fencing's checks, see
    /// `BinlogArchiver.store`).
    public func segmentManifests(_ shard: KeyspaceShard, sequences: ClosedRange<Int>) async throws -> [Int: [ArchiveSegmentManifest]] {
        let first = Array(ArchiveSegmentManifest.stem(sequences.lowerBound))
        let last = Array(ArchiveSegmentManifest.stem(sequences.upperBound))
        let common = String(zip(first, last).prefix { $0 == $1 }.map(\.0))
        let directory = Self.archivePrefix(shard)
        var manifests: [Int: [ArchiveSegmentManifest]] = [:]
        for object in try await storage.list(prefix: directory + common) {
            let name = String(object.key.dropFirst(directory.count))
            guard let sequence = ArchiveSegmentManifest.parseManifestName(name)?.sequence, sequences.contains(sequence) else { continue }
            do {
                let segment = try ArchiveSegmentManifest.decode(try await storage.readAll(key: object.key, limit: 1 << 20), name: name)
                manifests[sequence, default: []].append(segment)
            } catch let error as CairnError where error.code == .notFound {
                continue
            }
        }
        return manifests
    }

    /// Commits a segment whose data file is durable: writes its manifest.
    public func commitSegment(_ segment: ArchiveSegmentManifest, shard: KeyspaceShard) async throws {
        try await storage.writeAll(key: archiveKey(shard, segment.manifestName), data: segment.encoded())
    }

    /// Deletes segments: each manifest first (from then on the segment is
    /// gone to every reader), then its data.
    public func deleteSegments(_ segments: [ArchiveSegmentManifest], shard: KeyspaceShard) async throws {
        guard !segments.isEmpty else { return }
        try await storage.delete(keys: segments.map { archiveKey(shard, $0.manifestName) })
        try await storage.delete(keys: segments.map { archiveKey(shard, $0.file.name) })
    }
}
