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
}
