import CairnCore
import CairnEngine
import Crypto
import Foundation
import NIOCore
import Testing

/// Issue 14's stored form, on its own: sealed in chunks, opened in pieces
/// of any size, and every kind of tampering named.
@Suite("Encrypted framing")
struct EncryptedFramingTests {
    let key = SymmetricKey(size: .bits256)

    func seal(_ data: [UInt8], chunkSize: Int, pieces: Int) throws -> [UInt8] {
        var stream = EncryptingStream(key: key, chunkSize: chunkSize)
        var out: [UInt8] = []
        for piece in data.chunked(max(1, pieces)) {
            out += Array(try stream.update(ByteBuffer(bytes: piece)).readableBytesView)
        }
        out += Array(try stream.finish().readableBytesView)
        return out
    }

    func open(_ stored: [UInt8], pieces: Int, key: SymmetricKey? = nil) throws -> [UInt8] {
        var stream = DecryptingStream(key: key ?? self.key, file: "commerce/0/b/backup.mbstream.zst")
        var out: [UInt8] = []
        for piece in stored.chunked(max(1, pieces)) {
            out += Array(try stream.update(ByteBuffer(bytes: piece)).readableBytesView)
        }
        out += Array(try stream.finish().readableBytesView)
        return out
    }

    @Test("what is sealed opens to the same bytes, whatever the sizes of the pieces on either side", arguments: [0, 1, 4095, 4096, 4097, 40_000])
    func roundTrip(size: Int) throws {
        let data = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        for (sealPieces, openPieces) in [(1, 1), (7, 3), (4096, 1000), (100_000, 100_000)] {
            let stored = try seal(data, chunkSize: 4096, pieces: sealPieces)
            let chunks = max(1, (size + 4095) / 4096)
            #expect(stored.count == EncryptedFraming.headerSize + size + chunks * EncryptedFraming.tagSize)
            #expect(try open(stored, pieces: openPieces) == data)
        }
    }

    @Test("a flipped byte, swapped chunks, a cut at a chunk boundary or mid-chunk, and a wrong key are each refused with the file named")
    func tampering() throws {
        let data = (0..<20_000).map { UInt8(truncatingIfNeeded: $0) }
        let stored = try seal(data, chunkSize: 4096, pieces: 1)
        let sealedChunk = 4096 + EncryptedFraming.tagSize
        let header = EncryptedFraming.headerSize

        var flipped = stored
        flipped[header + 5000] ^= 0x01
        let e1 = #expect(throws: CairnError.self) { try open(flipped, pieces: 777) }
        #expect(e1?.code == .integrity && e1?.message.contains("commerce/0/b/backup.mbstream.zst fails authentication at encrypted chunk 1") == true)

        var swapped = stored
        swapped.replaceSubrange(header..<(header + sealedChunk), with: stored[(header + sealedChunk)..<(header + 2 * sealedChunk)])
        swapped.replaceSubrange((header + sealedChunk)..<(header + 2 * sealedChunk), with: stored[header..<(header + sealedChunk)])
        #expect(throws: CairnError.self) { try open(swapped, pieces: 1) }

        // Cut after four whole chunks: the fourth is not marked last.
        let cutAtBoundary = Array(stored.prefix(header + 4 * sealedChunk))
        let e2 = #expect(throws: CairnError.self) { try open(cutAtBoundary, pieces: 1) }
        #expect(e2?.message.contains("may have been cut short") == true, "\(e2?.message ?? "")")
        let cutMidChunk = Array(stored.prefix(header + 2 * sealedChunk + 100))
        #expect(throws: CairnError.self) { try open(cutMidChunk, pieces: 1) }
        #expect(throws: CairnError.self) { try open(Array(stored.prefix(10)), pieces: 1) }

        let wrongKey = #expect(throws: CairnError.self) { try open(stored, pieces: 1, key: SymmetricKey(size: .bits256)) }
        #expect(wrongKey?.message.contains("chunk 0") == true)
    }

    @Test("a data key wrapped with a master key opens only with that key, whose id names it")
    func keyWrapping() throws {
        let master = SymmetricKey(size: .bits256)
        let id = DataKeyWrapping.keyID(of: master)
        #expect(id.count == 16 && id == DataKeyWrapping.keyID(of: master))
        #expect(id != DataKeyWrapping.keyID(of: SymmetricKey(size: .bits256)))
        let dataKey = DataKeyWrapping.newDataKey()
        let wrapped = try DataKeyWrapping.wrap(dataKey, with: master, keyID: id)
        let opened = try DataKeyWrapping.unwrap(wrapped, with: master, keyID: id)
        #expect(opened.withUnsafeBytes { Array($0) } == dataKey.withUnsafeBytes { Array($0) })
        let wrong = #expect(throws: CairnError.self) { try DataKeyWrapping.unwrap(wrapped, with: SymmetricKey(size: .bits256), keyID: id) }
        #expect(wrong?.message.contains("does not open with master key \(id)") == true)
    }
}

extension Array {
    func chunked(_ size: Int) -> [ArraySlice<Element>] {
        stride(from: 0, to: count, by: size).map { self[$0..<Swift.min($0 + size, count)] }
    }
}
