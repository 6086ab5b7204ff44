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
/// Bounded: past `capacity` entries the oldest stored go first. A manifest
/// takes about 1 KiB in memory, so the default of 20,000 is about 20 MiB.
public final class ManifestCache: Sendable {
    public let capacity: Int
    private let state: Mutex<State>

    struct State {
        var entries: [String: (object: StorageObject, manifest: BackupManifest)] = [:]
        /// Keys in the order they were stored, oldest first, from `head` on.
        var order: [String] = []
        var head = 0
        var hits = 0
        var misses = 0
    }

    public init(capacity: Int = 20_000) {
        self.capacity = max(1, capacity)
        self.state = Mutex(State())
    }

    /// The manifest read before from exactly this object, if it is still held.
    public func manifest(for object: StorageObject) -> BackupManifest? {
        guard object.lastModified != nil else { return nil }
        return state.withLock { state in
            guard let entry = state.entries[object.key], entry.object == object else {
                state.misses += 1
                return nil
            }
            state.hits += 1
            return entry.manifest
        }
    }

    /// Remembers `manifest` as what `object` holds.
    public func store(_ manifest: BackupManifest, for object: StorageObject) {
        guard object.lastModified != nil else { return }
        state.withLock { state in
            if state.entries.updateValue((object, manifest), forKey: object.key) == nil {
                state.order.append(object.key)
            }
            while state.entries.count > capacity, state.head < state.order.count {
                state.entries.removeValue(forKey: state.order[state.head])
                state.head += 1
            }
            // Drop the evicted keys' slots once they are half the array.
            if state.head > 1024, state.head * 2 > state.order.count {
                state.order.removeFirst(state.head)
                state.head = 0
            }
        }
    }

    /// How many manifests are held, and the lookups that found one and did not.
    public var statistics: (count: Int, hits: Int, misses: Int) {
        state.withLock { ($0.entries.count, $0.hits, $0.misses) }
    }
}
