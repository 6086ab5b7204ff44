import CairnCore
import Foundation
import Testing

@Suite("Manifest")
struct ManifestTests {
    @Test("round-trips through JSON with every field the spec requires")
    func roundTrip() throws {
        var b = ChainBuilder()
        let f = b.full(at: 0, seq: 100)
        var i = b.incremental(after: f, at: 60, seq: 200)
        i.files = [ManifestFile(name: "binlog.000002.zst", rawSize: 10, storedSize: 5, sha256: String(repeating: "a", count: 64),
                                binlogFile: "binlog.000002", startPosition: ChainBuilder.pos(90))]
        let data = try i.encoded()
        let text = String(decoding: data, as: UTF8.self)
        for key in ["format_version", "backup_name", "keyspace", "shard", "tablet_alias", "hostname", "method", "incremental",
                    "parent_backup", "from_position", "position", "purged_position", "start_time", "finish_time",
                    "first_event_time", "last_event_time", "server_id", "server_version", "flavor", "compression",
                    "encryption", "raw_size", "stored_size", "sha256"] {
            #expect(text.contains("\"\(key)\""), "missing \(key)")
        }
        let back = try BackupManifest.decode(data, name: i.backupName)
        #expect(back.backupName == i.backupName && back.position == i.position && back.files == i.files)
        #expect(abs(back.startTime.timeIntervalSince(i.startTime)) < 0.001)
    }

    @Test("a newer format or broken JSON is refused with a sentence naming the backup")
    func refusals() throws {
        var b = ChainBuilder()
        var f = b.full(at: 0, seq: 100)
        f.formatVersion = 99
        #expect {
            try BackupManifest.decode(try f.encoded(), name: "x")
        } throws: { e in
            (e as? CairnError)?.message.contains("newer") == true
        }
        #expect {
            try BackupManifest.decode(Data("{".utf8), name: "2026-01-01.000000.zone1-1")
        } throws: { e in
            guard let err = e as? CairnError else { return false }
            return err.code == .manifest && err.message.contains("2026-01-01.000000.zone1-1")
        }
    }

    static let hash = String(repeating: "ab", count: 32)

    static func file(_ name: String, size: Int64 = 10) -> ManifestFile {
        ManifestFile(name: name, rawSize: size, storedSize: size, sha256: hash)
    }

    /// The full backup of `method` with `files`, through encoding and `decode`.
    static func decodeFull(_ method: BackupMethod, _ files: [ManifestFile], compression: CompressionInfo = .zstd(level: 3)) throws -> BackupManifest {
        var b = ChainBuilder()
        var m = b.full(at: 0, seq: 100, method: method)
        m.compression = compression
        m.files = files
        return try BackupManifest.decode(try m.encoded(), name: m.backupName)
    }

    static func refusal(_ body: () throws -> BackupManifest) -> String? {
        do {
            _ = try body()
            return nil
        } catch let error as CairnError {
            return error.code == .manifest ? error.message : "wrong code \(error.code): \(error.message)"
        } catch {
            return "\(error)"
        }
    }

    @Test("what the engines write is accepted: one physical stream, a dump and its accounts, binary logs")
    func engineShapesAreValid() throws {
        _ = try Self.decodeFull(.physical, [Self.file("backup.mbstream.zst")])
        _ = try Self.decodeFull(.physical, [Self.file("backup.mbstream")], compression: .none)
        _ = try Self.decodeFull(.logical, [Self.file("dump.sql.zst"), Self.file("accounts.sql.zst")])
        _ = try Self.decodeFull(.logical, [Self.file("dump.sql"), Self.file("accounts.sql")], compression: .none)
        var b = ChainBuilder()
        let f = b.full(at: 0, seq: 100)
        var i = b.incremental(after: f, at: 60, seq: 200)
        i.files = [Self.file("binlog.000002.zst"), Self.file("binlog.000003.zst")]
        _ = try BackupManifest.decode(try i.encoded(), name: i.backupName)
    }

    @Test("a manifest missing a file its method writes, or listing another, is refused")
    func requiredFiles() {
        let renamed = Self.refusal { try Self.decodeFull(.logical, [Self.file("dump.sql.zst"), Self.file("accounts.sql.zst.bak")]) }
        #expect(renamed?.contains("accounts.sql.zst is missing") == true, "\(renamed ?? "accepted")")
        let dropped = Self.refusal { try Self.decodeFull(.logical, [Self.file("dump.sql.zst")]) }
        #expect(dropped?.contains("accounts.sql.zst is missing") == true, "\(dropped ?? "accepted")")
        let extra = Self.refusal { try Self.decodeFull(.physical, [Self.file("backup.mbstream.zst"), Self.file("other")]) }
        #expect(extra?.contains("not other") == true, "\(extra ?? "accepted")")
        let wrongSuffix = Self.refusal { try Self.decodeFull(.physical, [Self.file("backup.mbstream")]) }
        #expect(wrongSuffix != nil)
        let empty = Self.refusal { try Self.decodeFull(.physical, []) }
        #expect(empty != nil)
        var b = ChainBuilder()
        let f = b.full(at: 0, seq: 100)
        var i = b.incremental(after: f, at: 60, seq: 200)
        i.files = []
        let noLogs = Self.refusal { try BackupManifest.decode(try i.encoded(), name: i.backupName) }
        #expect(noLogs?.contains("no binary log files") == true, "\(noLogs ?? "accepted")")
    }

    @Test("duplicate names, 100,000 entries, bad sizes and hashes are refused")
    func countsAndSizes() {
        let twice = Self.refusal { try Self.decodeFull(.logical, [Self.file("dump.sql.zst"), Self.file("accounts.sql.zst"), Self.file("dump.sql.zst")]) }
        #expect(twice?.contains("listed twice") == true, "\(twice ?? "accepted")")
        let many = Self.refusal { try Self.decodeFull(.physical, Array(repeating: Self.file("backup.mbstream.zst"), count: 100_000)) }
        #expect(many?.contains("100000 files") == true, "\(many ?? "accepted")")
        let negative = Self.refusal { try Self.decodeFull(.physical, [Self.file("backup.mbstream.zst", size: -1)]) }
        #expect(negative?.contains("negative size") == true, "\(negative ?? "accepted")")
        var badHash = Self.file("backup.mbstream.zst")
        badHash.sha256 = "not-a-hash"
        let hash = Self.refusal { try Self.decodeFull(.physical, [badHash]) }
        #expect(hash?.contains("SHA-256") == true, "\(hash ?? "accepted")")
    }

    @Test("a file name that is not one plain name is refused, quoted short", arguments: [
        "../../etc/passwd", "a/b", "..", ".", "", "MANIFEST", "REMOVING", ".cairn-tmp-x", "tab\tname", String(repeating: "x", count: 300),
    ])
    func invalidNames(_ name: String) {
        var b = ChainBuilder()
        let f = b.full(at: 0, seq: 100)
        var i = b.incremental(after: f, at: 60, seq: 200)
        i.files = [Self.file(name)]
        let refused = Self.refusal { try BackupManifest.decode(try i.encoded(), name: i.backupName) }
        #expect(refused?.contains("is not a plain file name") == true, "\(refused ?? "accepted")")
        #expect((refused?.count ?? 0) < 400)
    }
}

@Suite("Error messages")
struct ErrorMessageTests {
    @Test("a 100 KB input is clipped in the message, which keeps its advice")
    func longInputsAreClipped() {
        let huge = String(repeating: "x", count: 100_000)
        for parse in [{ _ = try BackupName(parsing: huge) }, { _ = try KeyspaceShard(parsing: huge) },
                      { _ = try TabletAlias(parsing: huge) }, { _ = try ReplicationPosition(parsing: huge) }] as [() throws -> Void] {
            #expect {
                try parse()
            } throws: { e in
                let message = (e as! CairnError).message
                return message.count < 600 && message.contains("…")
            }
        }
        // Any message, however built, stays bounded and ends with its advice.
        let error = CairnError(.usage, "there is no backup named \(huge); list them with `cairn backups`")
        #expect(error.message.count == CairnError.maximumMessageLength)
        #expect(error.message.hasSuffix("list them with `cairn backups`"))
        #expect(clip("short") == "short")
    }
}
