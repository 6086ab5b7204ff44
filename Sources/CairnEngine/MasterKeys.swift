import CairnCore
import Crypto
import Foundation

/// A master key and the id manifests know it by. Its bytes never leave this
/// type except into AES: it has no description that shows them.
public struct MasterKey: Sendable, CustomStringConvertible {
    public let id: String
    /// Kept as bytes: `SymmetricKey` is not `Sendable`.
    private let bytes: [UInt8]
    var key: SymmetricKey { SymmetricKey(data: bytes) }

    public init(id: String? = nil, key: SymmetricKey) {
        self.bytes = key.withUnsafeBytes { Array($0) }
        self.id = id ?? DataKeyWrapping.keyID(of: key)
    }

    public var description: String { "master key \(id)" }

    /// Reads a key file: base64 of exactly 32 bytes, surrounding whitespace ignored.
    /// `setting` names the configuration key in errors; the file's contents never appear in them.
    public static func load(_ file: EncryptionConfig.KeyFile, setting: String) throws -> MasterKey {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: file.path))
        } catch {
            throw CairnError(.configuration, "the key file \(file.path) (\(setting)) cannot be read; check the path and that Cairn may read it")
        }
        let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let bytes = Data(base64Encoded: text), bytes.count == 32 else {
            throw CairnError(.configuration, "the key file \(file.path) (\(setting)) does not hold base64 of 32 bytes; write one with `head -c 32 /dev/urandom | base64 > FILE`")
        }
        return MasterKey(id: file.keyID, key: SymmetricKey(data: bytes))
    }
}

/// The master keys a process holds: the current one, which new backups are
/// encrypted under, and older ones for reading what they wrapped.
public struct MasterKeyring: Sendable {
    public let current: MasterKey
    public let previous: [MasterKey]

    public init(current: MasterKey, previous: [MasterKey] = []) {
        self.current = current
        self.previous = previous
    }

    /// The keyring `configuration` describes, or nil when it configures no encryption.
    public static func load(_ configuration: EncryptionConfig?) throws -> MasterKeyring? {
        guard let configuration else { return nil }
        let current = try MasterKey.load(configuration.current, setting: "encryption.key_file")
        let previous = try configuration.previous.map { try MasterKey.load($0, setting: "encryption.previous_key_files") }
        return MasterKeyring(current: current, previous: previous)
    }

    public var allKeys: [MasterKey] { [current] + previous }

    /// A new random data key for one backup or segment, and its wrapped form under the current key.
    public func newDataKey() throws -> DataKey {
        let key = DataKeyWrapping.newDataKey()
        return DataKey(key: key, keyID: current.id, wrapped: try DataKeyWrapping.wrap(key, with: current.key, keyID: current.id))
    }

    /// Opens a wrapped data key. `owner` names the backup or segment in the error.
    public func unwrap(keyID: String, wrapped: String, owner: String) throws -> DataKey {
        let candidates = allKeys.filter { $0.id == keyID }
        guard !candidates.isEmpty else {
            throw CairnError(.configuration, "\(owner) is encrypted with master key \(keyID), which is not in this configuration; add that key's file to encryption.key_file or encryption.previous_key_files")
        }
        for candidate in candidates {
            if let key = try? DataKeyWrapping.unwrap(wrapped, with: candidate.key, keyID: keyID) {
                return DataKey(key: key, keyID: keyID, wrapped: wrapped)
            }
        }
        throw CairnError(.configuration, "the key file configured for master key \(keyID) does not open the data key of \(owner), so it is not the key \(keyID) it was written with (or its MANIFEST was altered); configure the right key file for \(keyID)")
    }
}

/// The data key of one backup or segment, with its wrapped form.
public struct DataKey: Sendable {
    private let bytes: [UInt8]
    var key: SymmetricKey { SymmetricKey(data: bytes) }
    public let keyID: String
    public let wrapped: String

    init(key: SymmetricKey, keyID: String, wrapped: String) {
        self.bytes = key.withUnsafeBytes { Array($0) }
        self.keyID = keyID
        self.wrapped = wrapped
    }

    /// The key one stored file is sealed with: derived from the data key and
    /// the file's name, so that files swapped inside a backup fail to open.
    public func fileKey(_ fileName: String) -> FileKey {
        FileKey(key: HKDF<SHA256>.deriveKey(inputKeyMaterial: key, info: Array("cairn-file:\(fileName)".utf8), outputByteCount: 32))
    }
}

/// The key of one stored file.
public struct FileKey: Sendable {
    private let bytes: [UInt8]
    var key: SymmetricKey { SymmetricKey(data: bytes) }

    init(key: SymmetricKey) {
        self.bytes = key.withUnsafeBytes { Array($0) }
    }
}

extension MasterKeyring {
    /// The data key of an encrypted manifest's backup, nil for one stored in the clear.
    /// Fails, naming the key id, when this keyring cannot open it.
    public static func dataKey(of manifest: BackupManifest, keyring: MasterKeyring?) throws -> DataKey? {
        try dataKey(encryption: manifest.encryption, keyID: manifest.keyID, wrapped: manifest.wrappedKey,
                    owner: manifest.backupName == ArchiveSegmentManifest.directoryName ? "an archived binary log segment" : "backup \(manifest.backupName)",
                    keyring: keyring)
    }

    public static func dataKey(of segment: ArchiveSegmentManifest, keyring: MasterKeyring?) throws -> DataKey? {
        try dataKey(encryption: segment.encryption, keyID: segment.keyID, wrapped: segment.wrappedKey,
                    owner: "archived segment \(segment.manifestName)", keyring: keyring)
    }

    static func dataKey(encryption: String, keyID: String?, wrapped: String?, owner: String, keyring: MasterKeyring?) throws -> DataKey? {
        guard encryption != EncryptionScheme.none else { return nil }
        guard let keyID, let wrapped else {
            throw CairnError(.manifest, "\(owner) is encrypted but its manifest names no key; it cannot be read, restore another backup")
        }
        guard let keyring else {
            throw CairnError(.configuration, "\(owner) is encrypted with master key \(keyID), and no encryption key is configured; set encryption.key_file (or encryption.previous_key_files) to the file of key \(keyID)")
        }
        return try keyring.unwrap(keyID: keyID, wrapped: wrapped, owner: owner)
    }
}
