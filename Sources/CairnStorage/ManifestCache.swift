import CairnCore
import Foundation
import Synchronization

/// Decoded `MANIFEST`s, by the object each was read from, for a process that
/// lists the same shards again and again (ctld's scheduler and inventory list
/// every shard about once a minute). A `MANIFEST` is written last and once,
/// so an object with the same key, size and modification time holds the same
/// manifest; anything else (a rewrite by `rotate-key`, a removal and a new
/// backup of the same name) is a miss and is read again. Objects without a
/// modification time are never cached.
///
/// Entries are kept per shard (a `group`, the shard's prefix), and each
/// listing of a shard drops the entries of manifests it no longer found
/// (``retain(group:keys:)``): what the cache holds follows what storage
/// holds, so it stays flat while retention removes as many backups as the
/// schedule adds. Bounded as well: once it holds `capacity` manifests, new
/// ones are not admitted until listings drop others. Listings go round the
/// fleet in a cycle, where evicting the oldest would evict exactly what the
/// next listing needs; keeping what is held keeps those shards' listings
/// cheap. A manifest takes about 1-2 KiB in memory, so the default of
/// 20,000 is at most about 40 MiB.
public final class ManifestCache: Sendable {
    public let capacity: Int
    private let state: Mutex<State>

    struct State {
        /// By group, then by object key.
        var groups: [String: [String: (object: StorageObject, manifest: BackupManifest)]] = [:]
        var count = 0
        var hits = 0
        var misses = 0
        /// Manifests not admitted because the cache was full.
        var refused = 0
    }

    public init(capacity: Int = 20_000) {
        self.capacity = max(1, capacity)
        self.state = Mutex(State())
    }

    /// The manifest read before from exactly this object, if it is held.
    public func manifest(for object: StorageObject, group: String) -> BackupManifest? {
        guard object.lastModified != nil else { return nil }
        return state.withLock { state in
            guard let entry = state.groups[group]?[object.key], entry.object == object else {
                state.misses += 1
                return nil
            }
            state.hits += 1
            return entry.manifest
        }
    }

    /// Remembers `manifest` as what `object` holds (unless the cache is full).
    public func store(_ manifest: BackupManifest, for object: StorageObject, group: String) {
        guard object.lastModified != nil else { return }
        state.withLock { state in
            if state.groups[group]?[object.key] != nil {
                state.groups[group]?[object.key] = (object, manifest)
            } else if state.count < capacity {
                state.groups[group, default: [:]][object.key] = (object, manifest)
                state.count += 1
            } else {
                state.refused += 1
            }
        }
    }

    /// After a listing of `group`: forgets its manifests whose keys are not in `keys`.
    public func retain(group: String, keys: Set<String>) {
        state.withLock { state in
            guard let entries = state.groups[group] else { return }
            let kept = entries.filter { keys.contains($0.key) }
            guard kept.count != entries.count else { return }
            state.count -= entries.count - kept.count
            state.groups[group] = kept.isEmpty ? nil : kept
        }
    }

    /// How many manifests are held, the lookups that found one and did not,
    /// and the manifests not admitted because the cache was full.
    public var statistics: (count: Int, hits: Int, misses: Int, refused: Int) {
        state.withLock { ($0.count, $0.hits, $0.misses, $0.refused) }
    }
}
