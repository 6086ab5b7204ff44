import CairnCore
import Foundation
import Testing
@testable import CairnCluster

/// The cluster API's JSON: typed states, old spellings, unknown values, flat shapes.
@Suite("Cluster wire format")
struct WireTests {
    func decode<T: Decodable>(_ type: T.Type, _ json: String) throws -> T {
        try CairnJSON.decoder().decode(type, from: Data(json.utf8))
    }

    func keys<T: Encodable>(_ value: T) throws -> Set<String> {
        let object = try JSONSerialization.jsonObject(with: try CairnJSON.encoder().encode(value))
        return Set(try #require(object as? [String: Any]).keys)
    }

    /// A job as ctld stored it before phases were typed, with a detail after the phase.
    static let storedJob = """
        {"id":7,"keyspace":"commerce","shard":"0","tablet":"zone1-100","kind":"backup","backup_type":"auto",
         "scheduled":true,"phase":"copying mysql-bin.000003","bytes_done":1024,"stored_bytes":512,"rate":10.5,
         "created_at":"2024-05-01T10:00:00Z","started_at":"2024-05-01T10:00:01Z"}
        """

    @Test("every phase travels as the string it always had")
    func phaseStrings() throws {
        for phase in ClusterAPI.JobPhase.allCases {
            let text = String(decoding: try CairnJSON.encoder().encode([phase]), as: UTF8.self)
            #expect(text == "[\"\(phase.rawValue)\"]")
            #expect(try decode([ClusterAPI.JobPhase].self, text) == [phase])
        }
        #expect(ClusterAPI.JobPhase.nothingToDo.rawValue == "nothing_to_do")
        #expect(ClusterAPI.JobPhase.stoppingMysqld.rawValue == "stopping mysqld")
        // Backup phases keep the names the backup machine gives them.
        for phase in BackupPhase.allCases {
            #expect(ClusterAPI.JobPhase(phase).rawValue == phase.rawValue)
        }
        for phase in RestorePhase.allCases {
            #expect(ClusterAPI.JobPhase(phase).rawValue == phase.rawValue)
        }
    }

    @Test("phases stored or sent before they were typed still decode")
    func legacyPhases() throws {
        let job = try decode(ClusterAPI.Job.self, WireTests.storedJob)
        #expect(job.phase == .copying)
        #expect(job.bytesDone == 1024 && job.storedBytes == 512 && job.rate == 10.5)
        #expect(job.kind == .backup && job.result == nil && !job.isFinished)
        let restoring = ["extracting 2024-05-01.100000.zone1-100", "preparing x", "loading x", "initializing /d",
                         "replaying x/mysql-bin.000001", "shutting down"]
        for text in restoring {
            #expect(try decode([ClusterAPI.JobPhase].self, "[\"\(text)\"]") == [.restoring])
        }
    }

    @Test("a phase, kind or result this Cairn does not know is a clear error, not a crash")
    func unknownValues() throws {
        let body = WireTests.storedJob.replacingOccurrences(of: "copying mysql-bin.000003", with: "encrypting")
        let error = try #require(throws: CairnError.self) { try decode(ClusterAPI.Job.self, body) }
        #expect(error.code == .cluster)
        #expect(error.message.contains("unknown job phase \"encrypting\""))
        #expect(error.message.contains("upgrade"))
        let kind = try #require(throws: CairnError.self) {
            try decode(ClusterAPI.Job.self, WireTests.storedJob.replacingOccurrences(of: "\"kind\":\"backup\"", with: "\"kind\":\"archive\""))
        }
        #expect(kind.message.contains("unknown job kind \"archive\""))
        let result = try #require(throws: CairnError.self) {
            try decode(ClusterAPI.JobUpdate.self, #"{"id":1,"phase":"failed","bytes_done":0,"stored_bytes":0,"rate":0,"result":"aborted"}"#)
        }
        #expect(result.message.contains("unknown job result \"aborted\""))
        // Said with who sent it, when it came over the wire.
        let sent = try #require(WireEnumError.from("tablet zone1-100 at http://h:1", result))
        #expect(sent.message.hasPrefix("tablet zone1-100 at http://h:1 sent an unknown job result \"aborted\""))
        #expect(WireEnumError.from("x", CairnError(.cluster, "busy")) == nil)
    }

    @Test("a job keeps its flat JSON keys, its report beside its own fields")
    func jobShape() throws {
        var job = try decode(ClusterAPI.Job.self, WireTests.storedJob)
        #expect(try keys(job) == ["id", "keyspace", "shard", "tablet", "kind", "backup_type", "scheduled", "phase",
                                  "bytes_done", "stored_bytes", "rate", "created_at", "started_at"])
        job.apply(ClusterAPI.JobUpdate(id: 7, report: ClusterAPI.JobReport(
            phase: .completed, bytesDone: 2048, storedBytes: 900, rate: 20, endedAt: Date(timeIntervalSince1970: 1_714_557_700), result: .completed,
            backupName: "b1", position: "0-1-5", note: "full (physical)")))
        #expect(job.isFinished && job.result == .completed && job.endedAt == Date(timeIntervalSince1970: 1_714_557_700))
        #expect(try keys(job).isSuperset(of: ["result", "ended_at", "backup_name", "position", "note"]))
        let again = try decode(ClusterAPI.Job.self, String(decoding: try CairnJSON.encoder().encode(job), as: UTF8.self))
        #expect(again.report == job.report && again.id == 7 && again.scheduled)
        let update = ClusterAPI.JobUpdate(id: 3, report: ClusterAPI.JobReport(phase: .copying, bytesDone: 5))
        #expect(try keys(update) == ["id", "phase", "bytes_done", "stored_bytes", "rate"])
    }

    @Test("a failed job says so in its phase and result")
    func failing() {
        var job = ClusterAPI.Job(id: 1, keyspace: "k", shard: "0", tablet: "zone1-1", kind: .restore, scheduled: false, createdAt: Date())
        #expect(job.phase == .pending)
        job.fail("lost")
        #expect(job.phase == .failed && job.result == .failed && job.error == "lost" && job.endedAt != nil)
    }

    @Test("a tablet is its registration plus its health, flat on the wire")
    func tabletShape() throws {
        let registration = ClusterAPI.TabletRegistration(alias: "zone1-100", keyspace: "commerce", shard: "0", type: .primary,
                                                         agentURL: "http://127.0.0.1:1", mysqlHost: "127.0.0.1", mysqlPort: 3306,
                                                         hostname: "h")
        var tablet = ClusterAPI.Tablet(registration: registration)
        tablet.healthy = true
        tablet.lastHeartbeat = Date(timeIntervalSince1970: 1_700_000_000)
        #expect(try keys(tablet) == ["alias", "keyspace", "shard", "type", "agent_url", "mysql_host", "mysql_port", "hostname",
                                     "version", "healthy", "serving", "last_heartbeat"])
        #expect(tablet.alias == "zone1-100" && tablet.shardID == "commerce/0" && tablet.type == .primary)
        let again = try decode(ClusterAPI.Tablet.self, String(decoding: try CairnJSON.encoder().encode(tablet), as: UTF8.self))
        #expect(again.registration == registration && again.healthy && again.lastHeartbeat == tablet.lastHeartbeat)
        let unknown = try #require(throws: CairnError.self) {
            try decode(ClusterAPI.TabletRegistration.self,
                       #"{"alias":"zone1-1","keyspace":"k","shard":"0","type":"witness","agent_url":"u","hostname":"h"}"#)
        }
        #expect(unknown.message.contains("unknown tablet type \"witness\""))
    }
}
