import CairnCore
import Crypto
import Foundation
import NIOCore

/// The stored form of an encrypted file (issue 14): a header, then the
/// compressed bytes cut into chunks that are each sealed with AES-256-GCM
/// under the backup's data key.
///
/// ```
/// header  "CAIRNAE1" | chunk size (u32 BE) | file id (16 random bytes)
/// chunk i ciphertext (chunk size bytes, fewer for the last) | tag (16 bytes)
/// ```
///
/// Chunk i's nonce is the first 4 bytes of the file id followed by i as a
/// 64-bit big-endian counter; its authenticated data is the file id, i, and
/// whether it is the last chunk. So a flipped byte anywhere fails its tag,
/// chunks swapped or moved fail theirs (the index is in the nonce and the
/// authenticated data), and a file cut at a chunk boundary is caught because
/// no chunk claims to be the last. Every chunk but the last has the same
/// size, so a ranged read finds chunk i at `header + i * (chunk size + 16)`.
public enum EncryptedFraming {
    public static let magic = Array("CAIRNAE1".utf8)
    public static let headerSize = 8 + 4 + 16
    public static let tagSize = 16
    public static let defaultChunkSize = 1 << 20

    static func nonce(fileID: [UInt8], index: UInt64) throws -> AES.GCM.Nonce {
        var bytes = Array(fileID.prefix(4))
        withUnsafeBytes(of: index.bigEndian) { bytes.append(contentsOf: $0) }
        return try AES.GCM.Nonce(data: bytes)
    }

    static func authenticatedData(fileID: [UInt8], index: UInt64, last: Bool) -> [UInt8] {
        var data = fileID
        withUnsafeBytes(of: index.bigEndian) { data.append(contentsOf: $0) }
        data.append(last ? 1 : 0)
        return data
    }
}

/// Seals a stream: feed plaintext in pieces of any size, then `finish()`.
/// Memory holds one chunk.
public struct EncryptingStream: ~Copyable {
    let key: SymmetricKey
    let chunkSize: Int
    let fileID: [UInt8]
    /// Plaintext not yet sealed; consumed by moving its reader index, so a
    /// chunk costs one copy in and one seal, never a shift of what follows.
    var pending = ByteBuffer()
    var index: UInt64 = 0
    var headerWritten = false

    public init(key: SymmetricKey, chunkSize: Int = EncryptedFraming.defaultChunkSize) {
        self.key = key
        self.chunkSize = chunkSize
        var id = [UInt8](repeating: 0, count: 16)
        var generator = SystemRandomNumberGenerator()
        for i in id.indices { id[i] = UInt8.random(in: 0...255, using: &generator) }
        self.fileID = id
    }

    /// Sealed bytes for `plaintext`; whole chunks only (the rest waits for more input or `finish()`).
    public mutating func update(_ plaintext: ByteBuffer) throws -> ByteBuffer {
        var out = ByteBuffer()
        try update(plaintext, into: &out)
        return out
    }

    /// Appends the sealed bytes for `plaintext` to `out`.
    public mutating func update(_ plaintext: ByteBuffer, into out: inout ByteBuffer) throws {
        writeHeaderIfNeeded(&out)
        var input = plaintext
        pending.writeBuffer(&input)
        // A full chunk is sealed only once more follows it: the last chunk must be marked last.
        while pending.readableBytes > chunkSize {
            let chunk = pending.readSlice(length: chunkSize)!
            try seal(chunk, last: false, into: &out)
        }
        // Moves what is left (less than a chunk) to the front, once per sealed batch.
        pending.discardReadBytes()
    }

    /// Seals what is left as the last chunk (possibly empty).
    public mutating func finish() throws -> ByteBuffer {
        var out = ByteBuffer()
        try finish(into: &out)
        return out
    }

    public mutating func finish(into out: inout ByteBuffer) throws {
        writeHeaderIfNeeded(&out)
        let rest = pending
        try seal(rest, last: true, into: &out)
        pending.clear()
    }

    mutating func writeHeaderIfNeeded(_ out: inout ByteBuffer) {
        guard !headerWritten else { return }
        out.writeBytes(EncryptedFraming.magic)
        out.writeInteger(UInt32(chunkSize), endianness: .big)
        out.writeBytes(fileID)
        headerWritten = true
    }

    mutating func seal(_ chunk: ByteBuffer, last: Bool, into out: inout ByteBuffer) throws {
        let nonce = try EncryptedFraming.nonce(fileID: fileID, index: index)
        let aad = EncryptedFraming.authenticatedData(fileID: fileID, index: index, last: last)
        let box = try chunk.withUnsafeReadableBytes { try AES.GCM.seal($0, using: key, nonce: nonce, authenticating: aad) }
        out.writeBytes(box.ciphertext)
        out.writeBytes(box.tag)
        index += 1
    }
}

/// Opens a stream sealed by ``EncryptingStream``: feed the stored bytes in
/// pieces of any size, then `finish()`, which fails if the file was cut
/// short. `file` names the stored file in errors.
public struct DecryptingStream: ~Copyable {
    let key: SymmetricKey
    let file: String
    /// Stored bytes not yet opened; consumed by moving the reader index.
    var buffer = ByteBuffer()
    var chunkSize: Int?
    var fileID: [UInt8] = []
    var index: UInt64 = 0
    var sawLast = false

    public init(key: SymmetricKey, file: String) {
        self.key = key
        self.file = file
    }

    /// Plaintext of every whole chunk received so far.
    public mutating func update(_ stored: ByteBuffer) throws -> ByteBuffer {
        var input = stored
        buffer.writeBuffer(&input)
        var out = ByteBuffer()
        try readHeaderIfPossible()
        guard let chunkSize else { return out }
        let sealedSize = chunkSize + EncryptedFraming.tagSize
        // Keep the newest whole chunk back: only the end of the input says whether it is the last.
        while buffer.readableBytes > sealedSize {
            let sealed = buffer.readSlice(length: sealedSize)!
            try open(sealed, last: false, into: &out)
        }
        buffer.discardReadBytes()
        return out
    }

    /// Opens the last chunk; fails when the file ends without one.
    public mutating func finish() throws -> ByteBuffer {
        try readHeaderIfPossible()
        guard chunkSize != nil else {
            throw CairnError(.integrity, "\(file) is shorter than an encrypted file's header; it was truncated, restore from another backup")
        }
        guard buffer.readableBytes >= EncryptedFraming.tagSize else {
            throw CairnError(.integrity, "\(file) ends inside chunk \(index) of its encryption; it was truncated, restore from another backup")
        }
        var out = ByteBuffer()
        let rest = buffer
        try open(rest, last: true, into: &out)
        buffer.clear()
        return out
    }

    mutating func readHeaderIfPossible() throws {
        guard chunkSize == nil, buffer.readableBytes >= EncryptedFraming.headerSize else { return }
        guard buffer.getBytes(at: buffer.readerIndex, length: 8)! == EncryptedFraming.magic else {
            throw CairnError(.integrity, "\(file) is not an encrypted Cairn file (its header is wrong); it was replaced or damaged, restore from another backup")
        }
        let size = Int(buffer.getInteger(at: buffer.readerIndex + 8, endianness: .big, as: UInt32.self)!)
        guard (1...(64 << 20)).contains(size) else {
            throw CairnError(.integrity, "\(file) declares an encryption chunk size of \(size) bytes, which Cairn never writes; it was damaged, restore from another backup")
        }
        chunkSize = size
        fileID = buffer.getBytes(at: buffer.readerIndex + 12, length: 16)!
        buffer.moveReaderIndex(forwardBy: EncryptedFraming.headerSize)
    }

    mutating func open(_ sealed: ByteBuffer, last: Bool, into out: inout ByteBuffer) throws {
        guard !sawLast else {
            throw CairnError(.integrity, "\(file) continues after its last encrypted chunk; it was tampered with, restore from another backup")
        }
        let index = self.index
        let fileID = self.fileID
        let key = self.key
        let opened: Data? = sealed.withUnsafeReadableBytes { bytes in
            let ciphertext = UnsafeRawBufferPointer(rebasing: bytes.dropLast(EncryptedFraming.tagSize))
            let tag = UnsafeRawBufferPointer(rebasing: bytes.suffix(EncryptedFraming.tagSize))
            guard let nonce = try? EncryptedFraming.nonce(fileID: fileID, index: index),
                  let box = try? AES.GCM.SealedBox(nonce: nonce, ciphertext: ciphertext, tag: tag) else { return nil }
            return try? AES.GCM.open(box, using: key,
                                     authenticating: EncryptedFraming.authenticatedData(fileID: fileID, index: index, last: last))
        }
        guard let opened else {
            let end = last ? " (the file's end: it may have been cut short)" : ""
            throw CairnError(.integrity, "\(file) fails authentication at encrypted chunk \(index)\(end): a byte was changed, chunks were moved or removed, or the key is not the one it was written with; restore from another backup")
        }
        out.writeBytes(opened)
        self.index += 1
        sawLast = last
    }
}

/// A backup's data key, sealed with a master key so the manifest can carry it.
public enum DataKeyWrapping {
    /// The id of a master key: derived from the key, so a wrong key file is recognized before anything is decrypted.
    public static func keyID(of masterKey: SymmetricKey) -> String {
        let digest = masterKey.withUnsafeBytes { SHA256.hash(data: Array("cairn-master-key-id:".utf8) + Array($0)) }
        return digest.prefix(8).map { String(format: "%02x", $0) }.joined()
    }

    /// A new random data key for one backup.
    public static func newDataKey() -> SymmetricKey { SymmetricKey(size: .bits256) }

    /// base64 of nonce, sealed key and tag.
    public static func wrap(_ dataKey: SymmetricKey, with masterKey: SymmetricKey, keyID: String) throws -> String {
        let sealed = try dataKey.withUnsafeBytes {
            try AES.GCM.seal(Array($0), using: masterKey, authenticating: Array("cairn-data-key:\(keyID)".utf8))
        }
        guard let combined = sealed.combined else {
            throw CairnError(.internal, "sealing a data key gave no combined form; retry")
        }
        return combined.base64EncodedString()
    }

    public static func unwrap(_ wrapped: String, with masterKey: SymmetricKey, keyID: String) throws -> SymmetricKey {
        guard let data = Data(base64Encoded: wrapped), let box = try? AES.GCM.SealedBox(combined: data),
              let key = try? AES.GCM.open(box, using: masterKey, authenticating: Array("cairn-data-key:\(keyID)".utf8)) else {
            throw CairnError(.integrity, "the backup's data key does not open with master key \(keyID); give the key file of key \(keyID) in encryption.key_file or encryption.previous_key_files")
        }
        return SymmetricKey(data: key)
    }
}
