import CairnCore
import Foundation

extension BackupRepository {
    /// The largest `MANIFEST` Cairn reads. One Cairn writes is a few KiB (at
    /// most 10,000 files); a larger one was not written by Cairn.
    public static let manifestSizeLimit = 16 * 1024 * 1024

    /// Reads one listed `MANIFEST`. One larger than ``manifestSizeLimit`` (by
    /// its listed size) is a `.manifest` error, so its backup is listed as
    /// unreadable with the reason and is never read into memory.
    func readManifest(_ object: StorageObject) async throws -> Data {
        guard object.size <= Self.manifestSizeLimit else {
            let name = object.key.split(separator: "/").dropLast().last.map(String.init) ?? object.key
            throw CairnError(.manifest, "the MANIFEST of backup \(name) is \(object.size) bytes, larger than the \(Self.manifestSizeLimit / (1024 * 1024)) MiB limit; the backup cannot be used, check the file or remove the backup")
        }
        return try await storage.readAll(key: object.key, limit: Self.manifestSizeLimit)
    }
}
