import CairnCore
import CairnStorage
import CairnTestSupport
import Foundation
import Hummingbird
import HummingbirdTesting
import NIOCore
import Testing
@testable import CairnCluster

/// The console's login, session cookie and CSRF checks through the router
/// (the browser test drives the pages themselves).
@Suite("ConsoleRoutes")
struct ConsoleRouteTests {
    func form(_ fields: [String: String]) -> ByteBuffer {
        ByteBuffer(string: fields.map { "\($0.key)=\($0.value.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "")" }.joined(separator: "&"))
    }

    let formHeaders: HTTPFields = [.contentType: "application/x-www-form-urlencoded"]

    @Test("nothing without a login; the token logs in with an HttpOnly SameSite=Strict cookie; forms need the session's CSRF token")
    func loginAndCSRF() async throws {
        let harness = try ControlServerHarness()
        try await harness.test { client in
            #expect(try await client.call(.post, "/tablets", json: ControlServerHarness.registration()).status == .ok)
            for path in ["/", "/ui/tablets", "/ui/jobs", "/ui/shards/commerce/0", "/ui/keyspaces/commerce"] {
                let response = try await client.execute(uri: path, method: .get)
                #expect(response.status == .seeOther && response.headers[.location] == "/login", "\(path)")
                #expect(!String(buffer: response.body).contains("commerce"), "\(path)")
            }
            let login = try await client.execute(uri: "/login", method: .get)
            #expect(login.status == .ok && String(buffer: login.body).contains("name=\"token\""))
            #expect(login.headers[.contentSecurityPolicy]?.contains("default-src 'none'") == true)

            let wrong = try await client.execute(uri: "/login", method: .post, headers: formHeaders, body: form(["token": "wrong-token-0123456789"]))
            #expect(wrong.status == .unauthorized && wrong.headers[.setCookie] == nil)
            // The tablets' token is not a console login.
            let tablet = try await client.execute(uri: "/login", method: .post, headers: formHeaders, body: form(["token": ControlServerHarness.tabletToken]))
            #expect(tablet.status == .unauthorized)

            let right = try await client.execute(uri: "/login", method: .post, headers: formHeaders, body: form(["token": ControlServerHarness.token]))
            #expect(right.status == .seeOther)
            let setCookie = try #require(right.headers[.setCookie])
            #expect(setCookie.contains("HttpOnly") && setCookie.contains("SameSite=Strict") && setCookie.contains("Path=/"))
            let cookie = String(setCookie.prefix { $0 != ";" })
            let home = try await client.execute(uri: "/", method: .get, headers: [.cookie: cookie])
            #expect(home.status == .ok && String(buffer: home.body).contains("/ui/keyspaces/commerce"))
            let page = String(buffer: try await client.execute(uri: "/ui/shards/commerce/0", method: .get, headers: [.cookie: cookie]).body)
            let csrf = try #require(page.firstMatch(of: /name="csrf" value="([0-9a-f]+)"/)?.1).description

            // A form without the CSRF token, or with another one, starts nothing.
            for fields in [["type": "full"], ["type": "full", "csrf": String(repeating: "0", count: 64)]] {
                var headers = formHeaders
                headers[.cookie] = cookie
                let refused = try await client.execute(uri: "/ui/shards/commerce/0/backup", method: .post, headers: headers, body: form(fields))
                #expect(refused.status == .forbidden)
            }
            // With it, ctld tries to start the backup (and says why it cannot: the tablet never heartbeat).
            var headers = formHeaders
            headers[.cookie] = cookie
            let started = try await client.execute(uri: "/ui/shards/commerce/0/backup", method: .post, headers: headers,
                                                   body: form(["type": "full", "csrf": csrf]))
            let startedPage = String(buffer: started.body)
            #expect(started.status == .conflict && startedPage.contains("The backup did not start: shard commerce/0 has no healthy primary tablet"), "\(startedPage)")
            // No form posts without a session at all.
            let anonymous = try await client.execute(uri: "/ui/shards/commerce/0/backup", method: .post, headers: formHeaders,
                                                     body: form(["type": "full", "csrf": csrf]))
            #expect(anonymous.status == .seeOther && anonymous.headers[.location] == "/login")

            // The cookie is no API credential.
            #expect(try await client.execute(uri: ClusterAPI.prefix + "/jobs", method: .get, headers: [.cookie: cookie]).status == .unauthorized)

            // Logging out ends the session.
            let out = try await client.execute(uri: "/logout", method: .post, headers: headers, body: form(["csrf": csrf]))
            #expect(out.status == .seeOther && out.headers[.setCookie]?.contains("Max-Age=0") == true)
            #expect(try await client.execute(uri: "/", method: .get, headers: [.cookie: cookie]).status == .seeOther)
        }
    }

    @Test("a shard's page draws its backups, the restorable window and the keyspace's restore points on the timeline")
    func shardTimeline() async throws {
        let harness = try ControlServerHarness()
        let shard = harness.shard
        let now = Date()
        let start = Date(timeIntervalSince1970: (now.timeIntervalSince1970 - 7200).rounded(.down))
        let full = try await SyntheticBackups.writeComplete(
            SyntheticBackups.manifest(shard: shard, start: start, finish: start.addingTimeInterval(60), parent: nil, seq: 5),
            to: harness.storage, shard: shard)
        let incremental = try await SyntheticBackups.writeComplete(
            SyntheticBackups.manifest(shard: shard, start: start.addingTimeInterval(3600), finish: start.addingTimeInterval(3605), parent: full, seq: 9),
            to: harness.storage, shard: shard)
        try await RestorePointRepository(storage: harness.storage, logger: testLogger).save(RestorePoint(
            name: "before-migration", keyspace: "commerce", createdAt: start.addingTimeInterval(1800), blockedMilliseconds: 7,
            shards: ["0": .init(position: SyntheticBackups.position(7), tablet: "zone1-100", blockedMilliseconds: 7)]))
        try await harness.test { client in
            #expect(try await client.call(.post, "/tablets", json: ControlServerHarness.registration()).status == .ok)
            try await ShardInventoryRefresher(server: harness.server).pass(BackupRepository(storage: harness.storage, logger: testLogger))
            let login = try await client.execute(uri: "/login", method: .post, headers: formHeaders, body: form(["token": ControlServerHarness.token]))
            let cookie = String(try #require(login.headers[.setCookie]).prefix { $0 != ";" })
            let page = String(buffer: try await client.execute(uri: "/ui/shards/commerce/0", method: .get, headers: [.cookie: cookie]).body)
            // One bar per backup, each titled with its name and kind.
            #expect(page.contains("<title>\(full.backupName): full,"))
            #expect(page.contains("<title>\(incremental.backupName): incremental,"))
            #expect(page.contains("restorable: \(UTCTime.rfc3339(full.finishTime, fractional: false)) to \(UTCTime.rfc3339(incremental.startTime, fractional: false))"))
            #expect(page.contains("restore point before-migration at \(UTCTime.rfc3339(start.addingTimeInterval(1800), fractional: false))"))
            #expect(!page.contains("Binary log archiver"), "no archiver line while nothing archives and archiving is not configured")

            // The primary reports its archiver (and so holds the lease): the page says who archives and how far behind.
            let report = ClusterAPI.ArchiveReport(running: true, connected: true, lagSeconds: 1.5, archivedPosition: "MariaDB/0-100-9",
                                                  lastEventTime: nil, lastSegmentTime: nil, segmentsWritten: 2, error: nil)
            let beat = ClusterAPI.Heartbeat(alias: "zone1-100", type: .primary, healthy: true, serving: true, replication: nil,
                                            position: "0-100-9", currentJob: nil, finishedJobs: [], archive: report)
            #expect(try await client.call(.post, "/tablets/zone1-100/heartbeat", json: beat).status == .ok)
            let archiving = String(buffer: try await client.execute(uri: "/ui/shards/commerce/0", method: .get, headers: [.cookie: cookie]).body)
            #expect(archiving.contains("Binary log archiver: tablet zone1-100, lag 1.5s, archived up to MariaDB/0-100-9"), "\(archiving)")
        }
    }

    @Test("a shard's page draws its archived binary log as one band with each gap cut out")
    func archiveOnTimeline() async throws {
        let harness = try ControlServerHarness()
        let shard = harness.shard
        let start = Date(timeIntervalSince1970: (Date().timeIntervalSince1970 - 7200).rounded(.down))
        let full = try await SyntheticBackups.writeComplete(
            SyntheticBackups.manifest(shard: shard, start: start, finish: start.addingTimeInterval(60), parent: nil, seq: 5),
            to: harness.storage, shard: shard)
        func segment(_ sequence: Int, from: UInt64, to: UInt64, minutes: Double) -> ArchiveSegmentManifest {
            let first = start.addingTimeInterval(minutes * 60)
            return ArchiveSegmentManifest(
                keyspace: "commerce", shard: "0", sequence: sequence, fromPosition: SyntheticBackups.position(from),
                position: SyntheticBackups.position(to), firstEventTime: first, lastEventTime: first.addingTimeInterval(50),
                transactionCount: Int(to - from), archivedTime: first.addingTimeInterval(51), sourceServerID: 1, sourceHost: "h",
                archiverServerID: 4_000_000_001, compression: .zstd(level: 3),
                file: ManifestFile(name: ArchiveSegmentManifest.dataFileName(sequence: sequence, suffix: ".zst"),
                                   rawSize: 1, storedSize: 1, sha256: String(repeating: "0", count: 64)))
        }
        let repository = BackupRepository(storage: harness.storage, logger: testLogger)
        // Segments 1 and 2 continue the full backup; segment 3 is missing, so 4 starts after a gap.
        for s in [segment(1, from: 5, to: 6, minutes: 2), segment(2, from: 6, to: 7, minutes: 3), segment(4, from: 8, to: 9, minutes: 10)] {
            try await harness.storage.writeAll(key: "commerce/0/binlog-archive/\(s.file.name)", data: Data([0]))
            try await repository.commitSegment(s, shard: shard)
        }
        try await harness.test { client in
            #expect(try await client.call(.post, "/tablets", json: ControlServerHarness.registration()).status == .ok)
            try await ShardInventoryRefresher(server: harness.server).pass(BackupRepository(storage: harness.storage, logger: testLogger))
            let login = try await client.execute(uri: "/login", method: .post, headers: formHeaders, body: form(["token": ControlServerHarness.token]))
            let cookie = String(try #require(login.headers[.setCookie]).prefix { $0 != ";" })
            let page = String(buffer: try await client.execute(uri: "/ui/shards/commerce/0", method: .get, headers: [.cookie: cookie]).body)
            #expect(page.contains("<title>\(full.backupName): full,"))
            let from = UTCTime.rfc3339(start.addingTimeInterval(120), fractional: false)
            let to = UTCTime.rfc3339(start.addingTimeInterval(650), fractional: false)
            #expect(page.contains("archived binary log: 3 segments, transactions from \(from) to \(to)"), "\(page)")
            #expect(page.contains("<title>gap: "), "\(page)")
            #expect(page.contains("archived binary log</span>"))
        }
    }

    @Test("values from outside are escaped in pages")
    func escaping() {
        #expect(ConsoleHTML.escape(#"<script>alert("x&y")</script>'"#) == "&lt;script&gt;alert(&quot;x&amp;y&quot;)&lt;/script&gt;&#39;")
        #expect(ConsoleHTML.shardPath("commerce", "-80") == "/ui/shards/commerce/-80")
        #expect(FormBody.parse("token=a%2Bb+c&csrf=") == ["token": "a+b c", "csrf": ""])
    }
}
