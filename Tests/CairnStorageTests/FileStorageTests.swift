import CairnCore
import CairnStorage
import CairnTestSupport
import Foundation
import Testing
import NIOCore

@Suite("File storage")
struct FileStorageTests {
    @Test("conformance", arguments: StorageConformance.caseNames)
    func conformance(_ name: String) async throws {
        let dir = try TemporaryDirectory(prefix: "cairn-filestorage")
        defer { dir.remove() }
        try await StorageConformance.run(name, on: FileStorage(root: dir.path))
    }

    @Test("an interrupted write leaves only a hidden temporary file, never listed")
    func interruptedWriteIsHidden() async throws {
        let dir = try TemporaryDirectory(prefix: "cairn-filestorage")
        defer { dir.remove() }
        let storage = FileStorage(root: dir.path)
        let writer = try await storage.makeWriter(key: "ks/0/b/file")
        try await writer.write(.init(string: "partial"))
        // Without finish or abort, as if the process died here.
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.path + "/ks/0/b")
        #expect(names.count == 1 && names[0].hasPrefix(".cairn-tmp-"))
        #expect(try await storage.list(prefix: "").isEmpty)
        await writer.abort()
    }

    /// The permission bits of `path`.
    func mode(_ path: String) throws -> Int {
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        return (attributes[.posixPermissions] as? Int ?? -1) & 0o7777
    }

    @Test("backups are written 0600 in 0700 directories unless the configuration widens them")
    func permissions() async throws {
        let dir = try TemporaryDirectory(prefix: "cairn-filestorage")
        defer { dir.remove() }
        let root = dir.file("private")
        try await FileStorage(root: root).writeAll(key: "ks/0/b/accounts.sql", data: Data("password hashes\n".utf8))
        for path in ["\(root)/ks", "\(root)/ks/0", "\(root)/ks/0/b"] {
            #expect(try mode(path) == 0o700, "\(path)")
        }
        #expect(try mode("\(root)/ks/0/b/accounts.sql") == 0o600)

        let configuration = try CairnConfiguration.parse(Data(#"{"storage_file_mode": "0640", "storage_directory_mode": "0750"}"#.utf8), source: "test")
        let group = dir.file("group")
        let storage = try StorageFactory.make(url: "file://\(group)", configuration: configuration, logger: testLogger)
        try await storage.writeAll(key: "ks/0/b/dump.sql", data: Data("rows\n".utf8))
        #expect(try mode("\(group)/ks/0/b") == 0o750)
        #expect(try mode("\(group)/ks/0/b/dump.sql") == 0o640)
    }

    @Test("an unwritable root fails with a sentence naming it")
    func unwritableRoot() async throws {
        let storage = FileStorage(root: "/proc/cairn-cannot-write-here")
        let error = await #expect(throws: CairnError.self) {
            _ = try await storage.makeWriter(key: "ks/0/b/file")
        }
        #expect(error?.code == .storage)
        #expect(error?.message.contains("/proc/cairn-cannot-write-here") == true)
    }
}

@Suite("Memory storage")
struct MemoryStorageTests {
    @Test("conformance", arguments: StorageConformance.caseNames)
    func conformance(_ name: String) async throws {
        try await StorageConformance.run(name, on: MemoryStorage())
    }
}

@Suite("File storage: unfinished uploads")
struct FileStorageDiscardTests {
    @Test("discardUnfinishedUploads removes temporary files and keeps finished ones")
    func discard() async throws {
        let dir = try TemporaryDirectory(prefix: "cairn-filestorage")
        defer { dir.remove() }
        try await StorageConformance.checkDiscardUnfinished(FileStorage(root: dir.path))
    }
}
