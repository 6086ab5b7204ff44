import CairnCore
import Foundation
import Testing

@Suite("Configuration")
struct ConfigurationTests {
    func parse(_ json: String) throws -> CairnConfiguration {
        try CairnConfiguration.parse(Data(json.utf8), source: "test.json")
    }

    @Test("encryption: the current key file with its optional id, and older key files as paths or with their ids")
    func encryption() throws {
        let c = try parse("""
            {"encryption": {"key_file": "/etc/cairn/k2", "key_id": "k-2026",
                            "previous_key_files": ["/etc/cairn/k1", {"key_file": "/etc/cairn/k0", "key_id": "k-2024"}]}}
            """)
        #expect(c.encryption == EncryptionConfig(current: .init(path: "/etc/cairn/k2", keyID: "k-2026"),
                                                 previous: [.init(path: "/etc/cairn/k1"), .init(path: "/etc/cairn/k0", keyID: "k-2024")]))
        #expect(try parse("{}").encryption == nil)
        for (json, named) in [
            (#"{"encryption": {"key_id": "x"}}"#, "encryption.key_file"),
            (#"{"encryption": {"key_file": "/k", "keyfile": "/k"}}"#, "encryption.keyfile"),
            (#"{"encryption": {"key_file": "/k", "previous_key_files": [3]}}"#, "encryption.previous_key_files[0]"),
            (#"{"encryption": {"key_file": "/k", "key_id": "has space"}}"#, "encryption.key_id"),
        ] {
            #expect { try parse(json) } throws: { ($0 as? CairnError)?.message.contains(named) == true }
        }
    }

    @Test("the seed's vtbackup.json is accepted as written")
    func seedConfig() throws {
        let c = try parse("""
            {
              "bucket": "s3://my-vitess-backups",
              "aws_region": "us-east-1",
              "backup_strategy": { "full_backup_interval": "24h", "incremental_backup_interval": "1h" },
              "upload_concurrency": 4
            }
            """)
        #expect(c.bucket == "s3://my-vitess-backups")
        #expect(c.awsRegion == "us-east-1")
        #expect(c.backupStrategy?.fullBackupInterval.seconds == 86400)
        #expect(c.backupStrategy?.incrementalBackupInterval?.seconds == 3600)
        #expect(c.uploadConcurrency == 4)
        #expect(c.engine == .physical && c.compressionLevel == 3)
    }

    @Test("binlog_archive_interval turns on archiving in the cluster, and 0s is refused with its name")
    func binlogArchiveInterval() throws {
        let c = try parse(#"{"backup_strategy": {"full_backup_interval": "24h", "binlog_archive_interval": "5s"}}"#)
        #expect(c.backupStrategy?.binlogArchiveInterval?.seconds == 5)
        #expect(try parse(#"{"backup_strategy": {"full_backup_interval": "24h"}}"#).backupStrategy?.binlogArchiveInterval == nil)
        #expect {
            try parse(#"{"backup_strategy": {"full_backup_interval": "24h", "binlog_archive_interval": "0s"}}"#)
        } throws: { error in
            (error as? CairnError)?.message.contains("binlog_archive_interval") == true
        }
    }

    @Test("an unknown key is an error naming it", arguments: [
        (#"{"bukket": "file:///x"}"#, "bukket"),
        (#"{"backup_strategy": {"full_backup_interval": "1h", "hourly": true}}"#, "backup_strategy.hourly"),
    ])
    func unknownKey(_ json: String, _ key: String) {
        #expect {
            try parse(json)
        } throws: { error in
            guard let e = error as? CairnError else { return false }
            return e.code == .configuration && e.message.contains("\"\(key)\"") && e.message.contains("test.json")
        }
    }

    @Test("bad values name their key", arguments: [
        (#"{"upload_concurrency": 0}"#, "upload_concurrency"),
        (#"{"upload_concurrency": "4"}"#, "upload_concurrency"),
        (#"{"upload_concurrency": 2.5}"#, "upload_concurrency"),
        (#"{"backup_strategy": {"full_backup_interval": "daily"}}"#, "backup_strategy.full_backup_interval"),
        (#"{"backup_strategy": {"incremental_backup_interval": "1h"}}"#, "backup_strategy.full_backup_interval"),
        (#"{"engine": "xtrabackup"}"#, "engine"),
        (#"{"s3_force_path_style": 1}"#, "s3_force_path_style"),
        (#"{"compression_level": 40}"#, "compression_level"),
        (#"{"storage_file_mode": "0400"}"#, "storage_file_mode"),
        (#"{"storage_file_mode": "0755"}"#, "storage_file_mode"),
        (#"{"storage_file_mode": "rw-r-----"}"#, "storage_file_mode"),
        (#"{"storage_file_mode": 640}"#, "storage_file_mode"),
        (#"{"storage_directory_mode": "0600"}"#, "storage_directory_mode"),
        (#"{"storage_directory_mode": "01777"}"#, "storage_directory_mode"),
    ])
    func badValues(_ json: String, _ key: String) {
        #expect {
            try parse(json)
        } throws: { error in
            (error as? CairnError)?.message.contains(key) == true
        }
    }

    @Test("file storage permissions are private by default and can be widened for a group")
    func storageModes() throws {
        let defaults = try parse("{}")
        #expect(defaults.storageFileMode == 0o600 && defaults.storageDirectoryMode == 0o700)
        let group = try parse(#"{"storage_file_mode": "0640", "storage_directory_mode": "750"}"#)
        #expect(group.storageFileMode == 0o640 && group.storageDirectoryMode == 0o750)
    }

    @Test("not JSON, or not an object, is refused")
    func notJSON() {
        #expect(throws: CairnError.self) { try parse("bucket = x") }
        #expect(throws: CairnError.self) { try parse("[1, 2]") }
    }

    @Test("durations take s, m, h, d and combinations", arguments: [
        ("90s", 90), ("30m", 1800), ("24h", 86400), ("7d", 604800), ("1h30m", 5400), ("2w", 1_209_600),
    ])
    func durations(_ text: String, _ seconds: Int64) {
        #expect(ConfigDuration(parsing: text)?.seconds == seconds)
    }

    @Test("malformed durations are refused", arguments: ["", "h", "10", "-5m", "1.5h", "5 minutes", "1y"])
    func badDurations(_ text: String) {
        #expect(ConfigDuration(parsing: text) == nil)
    }
}
