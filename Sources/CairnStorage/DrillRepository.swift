import CairnCore
import Foundation
import Logging

/// Where a shard's restore drills keep their records and references.
///
/// ```
/// <keyspace>/<shard>/drills/<drill>.json                 one per drill (DrillRecord)
/// <keyspace>/<shard>/drills/references/<full>.<digest>.json   checksums at a point (DrillReference)
/// ```
///
/// Each is one small JSON object written whole. `drills` is not a backup
/// name, so backup listings pass over it, and the shard's one listing
/// (``ShardListing/drillObjects``) finds the newest record without another request.
public struct DrillRepository: Sendable {
    public let storage: any BackupStorage
    let logger: Logger
    /// How many drill records a shard keeps; older ones go after each drill.
    public static let recordsKept = 50

    public static let directory = "drills"
    static let references = "references"

    public init(storage: any BackupStorage, logger: Logger) {
        self.storage = storage
        self.logger = logger
    }

    public static func prefix(_ shard: KeyspaceShard) -> String {
        "\(BackupRepository.prefix(shard))\(directory)/"
    }

    public static func recordKey(_ shard: KeyspaceShard, name: String) -> String {
        "\(prefix(shard))\(name).json"
    }

    static func referenceKey(_ shard: KeyspaceShard, fullBackup: String, position: ReplicationPosition) -> String {
        "\(prefix(shard))\(references)/\(DrillReference.key(fullBackup: fullBackup, position: position)).json"
    }

    /// The record keys among `objects` (a listing of the shard or of its drill directory), oldest first.
    public static func recordKeys(_ shard: KeyspaceShard, in objects: [StorageObject]) -> [String] {
        let prefix = prefix(shard)
        return objects.map(\.key).filter { key in
            guard key.hasPrefix(prefix), key.hasSuffix(".json") else { return false }
            let name = key.dropFirst(prefix.count).dropLast(".json".count)
            return !name.contains("/") && DrillRecord.isValidName(String(name))
        }.sorted()
    }

    public func save(_ record: DrillRecord) async throws {
        let shard = try KeyspaceShard(keyspace: record.keyspace, shard: record.shard)
        guard DrillRecord.isValidName(record.name) else {
            throw CairnError(.internal, "drill name \(record.name) is not a valid name")
        }
        try await storage.writeAll(key: Self.recordKey(shard, name: record.name), data: try CairnJSON.encoder(pretty: true).encode(record))
    }

    public func load(key: String) async throws -> DrillRecord {
        let data = try await storage.readAll(key: key, limit: 4 << 20)
        do {
            return try CairnJSON.decoder().decode(DrillRecord.self, from: data)
        } catch {
            throw CairnError(.manifest, "the drill record \(key) is not valid JSON of a drill; remove it")
        }
    }

    /// The shard's drills, newest first, at most `limit`; an unreadable record is logged and left out.
    public func list(_ shard: KeyspaceShard, limit: Int = 20) async throws -> [DrillRecord] {
        let keys = Self.recordKeys(shard, in: try await storage.list(prefix: Self.prefix(shard)))
        var records: [DrillRecord] = []
        for key in keys.reversed().prefix(limit) {
            do {
                records.append(try await load(key: key))
            } catch let error as CairnError {
                logger.warning("a drill record cannot be read", metadata: ["key": "\(key)", "error": "\(error.message)"])
            }
        }
        return records
    }

    /// The reference checksums recorded for `position` of `fullBackup`'s chain, if any drill recorded them.
    public func reference(_ shard: KeyspaceShard, fullBackup: String, position: ReplicationPosition) async throws -> DrillReference? {
        let key = Self.referenceKey(shard, fullBackup: fullBackup, position: position)
        let data: Data
        do {
            data = try await storage.readAll(key: key, limit: 16 << 20)
        } catch let error as CairnError where error.code == .notFound {
            return nil
        }
        guard let reference = try? CairnJSON.decoder().decode(DrillReference.self, from: data),
              reference.fullBackup == fullBackup, reference.position == position else {
            throw CairnError(.manifest, "the drill reference \(key) is damaged or belongs to another point; remove it and the next drill records it again")
        }
        return reference
    }

    public func saveReference(_ shard: KeyspaceShard, _ reference: DrillReference) async throws {
        try await storage.writeAll(key: Self.referenceKey(shard, fullBackup: reference.fullBackup, position: reference.position),
                                   data: try CairnJSON.encoder(pretty: true).encode(reference))
    }

    /// Keeps the newest ``recordsKept`` records and the references of full
    /// backups that still exist; deletes the rest. Returns how many went.
    @discardableResult
    public func prune(_ shard: KeyspaceShard, existingFullBackups: Set<String>) async throws -> Int {
        let objects = try await storage.list(prefix: Self.prefix(shard))
        var doomed = Array(Self.recordKeys(shard, in: objects).dropLast(Self.recordsKept))
        let referencePrefix = "\(Self.prefix(shard))\(Self.references)/"
        for object in objects where object.key.hasPrefix(referencePrefix) {
            let name = object.key.dropFirst(referencePrefix.count)
            // `<full>.<digest>.json`: the full backup's name is what precedes the digest.
            let parts = name.split(separator: ".")
            guard parts.count >= 3 else { continue }
            let full = parts.dropLast(2).joined(separator: ".")
            if !existingFullBackups.contains(full) { doomed.append(object.key) }
        }
        guard !doomed.isEmpty else { return 0 }
        try await storage.delete(keys: doomed)
        return doomed.count
    }
}
