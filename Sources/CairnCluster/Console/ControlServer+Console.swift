import CairnCore
import CairnEngine
import CairnStorage
import Foundation
import Hummingbird
import Logging

/// The web console at `/` (docs/OBSERVABILITY.md): server-rendered pages
/// behind a login with ctld's client auth token. The login sets a session
/// cookie (HttpOnly, SameSite=Strict); every form carries the session's
/// CSRF token. Pages read the same in-memory inventory as `cairn status`;
/// only a shard's page lists that shard's backups in storage.
extension ControlServer {
    /// The paths the console serves; the API's bearer-token check leaves them to the console's own session check.
    /// (`/favicon.ico` too, which browsers ask for on every page: a quiet 404, not a 401 and a warning.)
    static func isConsolePath(_ path: String) -> Bool {
        path == "/" || path == "/login" || path == "/logout" || path.hasPrefix("/ui/") || path == "/favicon.ico"
    }

    func addConsoleRoutes(_ router: Router<BasicRequestContext>) {
        router.get("/") { request, _ in
            try await self.consolePage(request) { session in try await self.overviewPage(csrf: session.csrf) }
        }
        router.get("login") { _, _ in ConsoleHTML.response(ConsoleHTML.loginPage(error: nil)) }
        router.post("login") { request, _ in
            let form = try await FormBody.read(request)
            guard let offered = form["token"], constantTimeEqual(offered, self.options.authToken) else {
                self.logger.warning("console login refused", metadata: ["reason": "\(form["token"] == nil ? "no token" : "wrong token")"])
                return ConsoleHTML.response(ConsoleHTML.loginPage(error: "That is not ctld's auth token."), status: .unauthorized)
            }
            let (id, _) = self.consoleSessions.create(now: Date())
            return ConsoleHTML.redirect("/", headers: [.setCookie: ConsoleSessions.setCookie(id)])
        }
        router.post("logout") { request, _ in
            let id = ConsoleSessions.cookie(in: request)
            if let session = self.consoleSessions.session(id, now: Date()) {
                let form = try await FormBody.read(request)
                if let csrf = form["csrf"], constantTimeEqual(csrf, session.csrf) { self.consoleSessions.remove(id) }
            }
            return ConsoleHTML.redirect("/login", headers: [.setCookie: ConsoleSessions.clearCookie])
        }
        router.get("ui/keyspaces/:keyspace") { request, context in
            let keyspace = try context.parameters.require("keyspace")
            return try await self.consolePage(request) { session in try await self.keyspacePage(keyspace, csrf: session.csrf) }
        }
        router.get("ui/shards/:keyspace/:shard") { request, context in
            let shard = try KeyspaceShard(keyspace: try context.parameters.require("keyspace"), shard: try context.parameters.require("shard"))
            return try await self.consolePage(request) { session in try await self.shardPage(shard, csrf: session.csrf) }
        }
        router.post("ui/shards/:keyspace/:shard/backup") { request, context in
            let shard = try KeyspaceShard(keyspace: try context.parameters.require("keyspace"), shard: try context.parameters.require("shard"))
            return try await self.consoleForm(request) { session, form in
                let type = RequestedBackupType(rawValue: form["type"] ?? "auto") ?? .auto
                do {
                    let job = try await self.startBackup(ClusterAPI.BackupRequest(keyspace: shard.keyspace, shard: shard.shard, tablet: nil,
                                                                                  tabletType: nil, type: type, engine: nil), scheduled: false)
                    return ConsoleHTML.redirect("/ui/jobs/\(job.id)")
                } catch let error as CairnError {
                    return ConsoleHTML.response(try await self.shardPage(shard, csrf: session.csrf, message: "The backup did not start: \(error.message)"),
                                                status: .conflict)
                }
            }
        }
        router.post("ui/shards/:keyspace/:shard/drill") { request, context in
            let shard = try KeyspaceShard(keyspace: try context.parameters.require("keyspace"), shard: try context.parameters.require("shard"))
            return try await self.consoleForm(request) { session, form in
                do {
                    let job = try await self.startDrill(ClusterAPI.DrillRequest(keyspace: shard.keyspace, shard: shard.shard, tablet: nil,
                                                                                parameters: .init(randomPoint: form["point"] == "random")),
                                                        scheduled: false)
                    return ConsoleHTML.redirect("/ui/jobs/\(job.id)")
                } catch let error as CairnError {
                    return ConsoleHTML.response(try await self.shardPage(shard, csrf: session.csrf, message: "The drill did not start: \(error.message)"),
                                                status: .conflict)
                }
            }
        }
        router.post("ui/shards/:keyspace/:shard/plan") { request, context in
            let shard = try KeyspaceShard(keyspace: try context.parameters.require("keyspace"), shard: try context.parameters.require("shard"))
            return try await self.consoleForm(request) { session, form in
                try await self.planPage(shard, form: form, csrf: session.csrf)
            }
        }
        router.get("ui/jobs") { request, _ in
            try await self.consolePage(request) { session in try await self.jobsPage(csrf: session.csrf) }
        }
        router.get("ui/jobs/:id") { request, context in
            let id = try context.parameters.require("id", as: Int64.self)
            return try await self.consolePage(request) { session in try await self.jobPage(id, csrf: session.csrf) }
        }
        router.get("ui/tablets") { request, _ in
            try await self.consolePage(request) { session in try await self.tabletsPage(csrf: session.csrf) }
        }
    }

    /// A page for a logged-in session, or the way to the login page.
    func consolePage(_ request: Request, _ render: (ConsoleSessions.Session) async throws -> String) async throws -> Response {
        guard let session = consoleSessions.session(ConsoleSessions.cookie(in: request), now: Date()) else {
            return ConsoleHTML.redirect("/login")
        }
        do {
            return ConsoleHTML.response(try await render(session))
        } catch let error as CairnError {
            let status: HTTPResponse.Status = error.code == .notFound ? .notFound : .conflict
            return ConsoleHTML.response(ConsoleHTML.page(title: "Error", csrf: session.csrf, "<p class=\"error\">\(ConsoleHTML.escape(error.message))</p>"), status: status)
        }
    }

    /// A form post: a session and its CSRF token, or a refusal.
    func consoleForm(_ request: Request, _ handle: (ConsoleSessions.Session, [String: String]) async throws -> Response) async throws -> Response {
        guard let session = consoleSessions.session(ConsoleSessions.cookie(in: request), now: Date()) else {
            return ConsoleHTML.redirect("/login")
        }
        let form = try await FormBody.read(request)
        guard let csrf = form["csrf"], constantTimeEqual(csrf, session.csrf) else {
            logger.warning("console form refused: missing or wrong CSRF token", metadata: ["path": "\(request.uri.path)"])
            return ConsoleHTML.response(ConsoleHTML.page(title: "Refused", csrf: session.csrf,
                                                         "<p class=\"error\">This form is not from this console session; reload the page and try again.</p>"),
                                        status: .forbidden)
        }
        return try await handle(session, form)
    }

    // MARK: - Pages

    func overviewPage(csrf: String) async throws -> String {
        let status = try await fleetStatus()
        let byKeyspace = Dictionary(grouping: status.shards, by: \.keyspace)
        var body = "<h1>Keyspaces</h1>"
        if byKeyspace.isEmpty {
            body += "<p class=\"muted\">No tablet has registered yet.</p>"
        } else {
            let rows = byKeyspace.keys.sorted().map { ks -> [String] in
                let shards = byKeyspace[ks]!
                let protected = shards.filter { $0.protected == true }.count
                let troubled = shards.filter { !$0.problems.isEmpty }.count
                return ["<a href=\"/ui/keyspaces/\(ConsoleHTML.segment(ks))\">\(ConsoleHTML.escape(ks))</a>", "\(shards.count)",
                        protected == shards.count ? "<span class=\"ok\">\(protected)</span>" : "<span class=\"bad\">\(protected)</span>",
                        troubled == 0 ? "0" : "<span class=\"bad\">\(troubled)</span>"]
            }
            body += ConsoleHTML.table(["Keyspace", "Shards", "Protected", "With problems"], rows)
        }
        let troubled = status.shards.filter { !$0.problems.isEmpty }
        if !troubled.isEmpty {
            body += "<h2>Problems</h2>" + ConsoleHTML.table(["Shard", "Problems"], troubled.map {
                ["<a href=\"\(ConsoleHTML.shardPath($0.keyspace, $0.shard))\">\(ConsoleHTML.escape($0.id))</a>", ConsoleHTML.problemsList($0.problems)]
            })
        }
        return ConsoleHTML.page(title: "Keyspaces", csrf: csrf, body)
    }

    func keyspacePage(_ keyspace: String, csrf: String) async throws -> String {
        let shards = try await fleetStatus().shards.filter { $0.keyspace == keyspace }
        guard !shards.isEmpty else {
            throw CairnError(.notFound, "ctld knows no shard of keyspace \(clip(keyspace))")
        }
        let rows = shards.map { s -> [String] in
            ["<a href=\"\(ConsoleHTML.shardPath(s.keyspace, s.shard))\">\(ConsoleHTML.escape(s.shard))</a>",
             ConsoleHTML.protectedCell(s.protected),
             s.lastBackup.map { ConsoleHTML.escape("\($0.type), \($0.name)") } ?? "-",
             ConsoleHTML.age(s.lastBackupAgeSeconds),
             ConsoleHTML.windowText(s.window),
             ConsoleHTML.drillText(s.lastDrill),
             "\(s.healthyTablets)/\(s.tablets)"]
                + ["<div class=\"wrap\">\(ConsoleHTML.problemsList(s.problems))</div>"]
        }
        let body = "<h1>Keyspace \(ConsoleHTML.escape(keyspace))</h1>"
            + ConsoleHTML.table(["Shard", "Protected", "Last backup", "Age", "Restorable window (UTC)", "Last drill", "Healthy tablets", "Problems"], rows)
        return ConsoleHTML.page(title: keyspace, csrf: csrf, body)
    }

    func shardPage(_ shard: KeyspaceShard, csrf: String, message: String? = nil, extra: String = "") async throws -> String {
        guard let status = try await fleetStatus().shards.first(where: { $0.id == shard.description }) else {
            throw try await unknownShardError(shard)
        }
        let listing = try await listBackups(shard)
        let now = Date()
        let path = ConsoleHTML.shardPath(shard.keyspace, shard.shard)
        var body = "<h1>Shard \(ConsoleHTML.escape(shard.description))</h1>"
        if let message { body += "<p class=\"error\">\(ConsoleHTML.escape(message))</p>" }
        body += "<div class=\"box\"><p>Protected: \(ConsoleHTML.protectedCell(status.protected)) · last backup \(ConsoleHTML.age(status.lastBackupAgeSeconds)) ago · restorable \(ConsoleHTML.windowText(status.window)) · last drill \(ConsoleHTML.drillText(status.lastDrill))</p>"
        if let archiver = listing.archiver { body += "<p>Binary log archiver: \(ConsoleHTML.escape(archiver.summary))</p>" }
        body += "<p>Problems: \(ConsoleHTML.problemsList(status.problems))</p></div>"
        body += extra
        body += "<h2>Actions</h2><div class=\"box\">"
        body += "<form class=\"inline\" method=\"post\" action=\"\(path)/backup\">\(ConsoleHTML.csrfField(csrf))<label for=\"type\">Backup type</label><select id=\"type\" name=\"type\"><option value=\"auto\">auto</option><option value=\"full\">full</option><option value=\"incremental\">incremental</option><option value=\"delta\">delta</option></select><button type=\"submit\" name=\"start\" value=\"backup\">Start backup</button></form>"
        body += "<form class=\"inline\" method=\"post\" action=\"\(path)/plan\">\(ConsoleHTML.csrfField(csrf))<label for=\"to_time\">Restore to (UTC)</label><input id=\"to_time\" name=\"to_time\" type=\"datetime-local\" step=\"1\"><button type=\"submit\">Plan restore (dry run)</button><span class=\"muted\">empty: the latest backup</span></form>"
        body += "<form class=\"inline\" method=\"post\" action=\"\(path)/drill\">\(ConsoleHTML.csrfField(csrf))<label for=\"point\">Drill</label><select id=\"point\" name=\"point\"><option value=\"newest\">the newest backup</option><option value=\"random\">a random point</option></select><button type=\"submit\" name=\"start\" value=\"drill\">Run restore drill</button></form></div>"
        // The keyspace's restore points that name this shard (one listing of the keyspace's points; a failure only hides them).
        let points = ((try? await RestorePointRepository(storage: try requireStorage(), logger: logger).list(keyspace: shard.keyspace)) ?? [])
            .filter { $0.shards[shard.shard] != nil }
        body += "<h2>Chains</h2>" + ChainTimeline.svg(listing, window: status.window, restorePoints: points, archive: listing.archive,
                                                        gaps: listing.restorableWindow?.gaps ?? [], now: now)
        let rows = listing.backups.reversed().map { b -> [String] in
            [ConsoleHTML.escape(b.name), ConsoleHTML.escape(b.status == "complete" ? b.type : b.status),
             b.parent.map(ConsoleHTML.escape) ?? "-", ConsoleHTML.time(b.startTime), ConsoleHTML.time(b.finishTime),
             ConsoleHTML.escape(StoredSize.text(b.storedBytes)), b.restorable ? "<span class=\"ok\">yes</span>" : "<span class=\"bad\">no</span>",
             ConsoleHTML.escape(b.position ?? "-")]
        }
        body += "<h2>Backups</h2>" + (rows.isEmpty ? "<p class=\"muted\">No backups in storage.</p>"
            : ConsoleHTML.table(["Name", "Type", "Parent", "Started", "Finished", "Stored", "Restorable", "Position"], rows))
        body += "<h2>Drills</h2>" + drillsTable((try? await DrillRepository(storage: try requireStorage(), logger: logger).list(shard, limit: 10)) ?? [])
        body += "<h2>Jobs</h2>" + jobsTable(try await store.jobs(shard: shard, limit: 10))
        body += "<h2>Tablets</h2>" + tabletsTable(try await store.tablets(shard))
        return ConsoleHTML.page(title: shard.description, csrf: csrf, body)
    }

    /// The shard's newest drills (one listing of its drill directory; a failure only hides them).
    func drillsTable(_ drills: [DrillRecord]) -> String {
        guard !drills.isEmpty else { return "<p class=\"muted\">No restore drills yet.</p>" }
        let rows = drills.map { d -> [String] in
            [ConsoleHTML.escape(d.name), d.passed ? "<span class=\"ok\">passed</span>" : "<span class=\"bad\">failed</span>",
             ConsoleHTML.time(d.finishedAt), ConsoleHTML.escape(d.target), String(format: "%.1f s", d.restoreSeconds),
             "\(d.tables.count)", ConsoleHTML.escape(d.reference.rawValue.replacingOccurrences(of: "_", with: " ")),
             ConsoleHTML.escape(d.failure ?? "-")]
        }
        return ConsoleHTML.table(["Drill", "Result", "Finished", "Target", "Restore", "Tables", "Reference", "Problem"], rows)
    }

    func planPage(_ shard: KeyspaceShard, form: [String: String], csrf: String) async throws -> Response {
        var parameters = ClusterAPI.RestoreParameters()
        let text = (form["to_time"] ?? "").trimmingCharacters(in: .whitespaces)
        if !text.isEmpty {
            // A datetime-local field sends 2026-11-30T12:00 or 2026-11-30T12:00:05, read as UTC.
            let full = text.count == 16 ? text + ":00" : text
            guard let time = UTCTime.parseRFC3339(full.hasSuffix("Z") ? full : full + "Z") else {
                return ConsoleHTML.response(try await shardPage(shard, csrf: csrf, message: "\(clip(text)) is not a time; give a UTC date and time"), status: .badRequest)
            }
            parameters.toTime = time
        }
        do {
            let response = try await startRestore(ClusterAPI.RestoreRequest(keyspace: shard.keyspace, shard: shard.shard, tablet: nil,
                                                                             parameters: parameters, dryRun: true))
            let plan = response.plan
            var html = "<h2>Restore plan (dry run): \(ConsoleHTML.escape(plan?.target ?? "-"))</h2>"
            let steps = (plan?.steps ?? []).enumerated().map { i, s -> [String] in
                ["\(i + 1)", ConsoleHTML.escape(s.backup), ConsoleHTML.escape(s.type), ConsoleHTML.escape(s.fromPosition ?? "-"),
                 ConsoleHTML.escape(s.position), ConsoleHTML.time(s.startTime)]
            }
            html += ConsoleHTML.table(["Step", "Backup", "Type", "From", "To", "Started"], steps)
            if let stop = plan?.stopTime { html += "<p>Binary logs are applied up to \(ConsoleHTML.time(stop)) (exclusive).</p>" }
            if let stop = plan?.stopPosition { html += "<p>Binary logs are applied up to position \(ConsoleHTML.escape(stop)).</p>" }
            html += "<p class=\"muted\">Nothing was changed. To restore, run <code>cairn restore \(ConsoleHTML.escape(shard.description)) --tablet ALIAS\(parameters.toTime.map { " --to-time " + UTCTime.rfc3339($0, fractional: false) } ?? "")</code>.</p>"
            return ConsoleHTML.response(try await shardPage(shard, csrf: csrf, extra: "<div class=\"box\">\(html)</div>"))
        } catch let error as CairnError {
            return ConsoleHTML.response(try await shardPage(shard, csrf: csrf, message: "No restore plan: \(error.message)"), status: .conflict)
        }
    }

    func jobsPage(csrf: String) async throws -> String {
        ConsoleHTML.page(title: "Jobs", csrf: csrf, "<h1>Jobs</h1>" + jobsTable(try await store.jobs(shard: nil, limit: 50)))
    }

    func jobPage(_ id: Int64, csrf: String) async throws -> String {
        guard let job = try await store.job(id) else {
            throw CairnError(.notFound, "there is no job \(id)")
        }
        let running = job.result == nil
        var body = "<h1>Job \(job.id): \(ConsoleHTML.escape(job.kind.rawValue)) of <a href=\"\(ConsoleHTML.shardPath(job.keyspace, job.shard))\">\(ConsoleHTML.escape(job.shardID))</a></h1>"
        body += jobsTable([job])
        if running { body += "<p class=\"muted\">Running; this page reloads every 2 seconds.</p>" }
        return ConsoleHTML.page(title: "Job \(job.id)", csrf: csrf, refreshSeconds: running ? 2 : nil, body)
    }

    func tabletsPage(csrf: String) async throws -> String {
        ConsoleHTML.page(title: "Tablets", csrf: csrf, "<h1>Tablets</h1>" + tabletsTable(try await store.tablets()))
    }

    func jobsTable(_ jobs: [ClusterAPI.Job]) -> String {
        guard !jobs.isEmpty else { return "<p class=\"muted\">No jobs yet.</p>" }
        let rows = jobs.map { j -> [String] in
            let result: String
            switch j.result {
            case .completed?: result = "<span class=\"ok\">completed</span>"
            case .nothingToDo?: result = "<span class=\"ok\">nothing to do</span>"
            case .failed?: result = "<span class=\"bad\">failed</span>"
            case nil: result = "running"
            }
            return ["<a href=\"/ui/jobs/\(j.id)\">\(j.id)</a>", ConsoleHTML.escape(j.shardID), ConsoleHTML.escape(j.tablet), ConsoleHTML.escape(j.kind.rawValue),
                    j.scheduled ? "scheduler" : "client", ConsoleHTML.escape(j.phase.rawValue), result,
                    ConsoleHTML.time(j.startedAt ?? j.createdAt), ConsoleHTML.time(j.endedAt), ConsoleHTML.escape(j.backupName ?? "-"),
                    "<div class=\"wrap\">\(ConsoleHTML.escape(j.error ?? ""))</div>"]
        }
        return ConsoleHTML.table(["Job", "Shard", "Tablet", "Kind", "By", "Phase", "Result", "Started", "Ended", "Backup", "Error"], rows)
    }

    func tabletsTable(_ tablets: [ClusterAPI.Tablet]) -> String {
        guard !tablets.isEmpty else { return "<p class=\"muted\">No tablets.</p>" }
        let now = Date()
        let rows = tablets.map { t -> [String] in
            let live = t.lastHeartbeat.map { now.timeIntervalSince($0) < options.heartbeatTimeout } ?? false
            var replication = "-"
            if let r = t.replication {
                replication = r.running ? "running, lag \(r.lagSeconds.map { "\($0)s" } ?? "?")" : "off: \(r.note ?? "stopped")"
            }
            return [ConsoleHTML.escape(t.alias), ConsoleHTML.escape(t.shardID), ConsoleHTML.escape(t.type.rawValue),
                    t.healthy && live ? "<span class=\"ok\">healthy</span>" : "<span class=\"bad\">unhealthy</span>",
                    ConsoleHTML.escape(replication), ConsoleHTML.escape(t.position ?? "-"), ConsoleHTML.time(t.lastHeartbeat),
                    t.currentJob.map { "<a href=\"/ui/jobs/\($0)\">\($0)</a>" } ?? "-"]
        }
        return ConsoleHTML.table(["Alias", "Shard", "Type", "Health", "Replication", "Position", "Last heartbeat", "Job"], rows)
    }
}

/// Byte counts for people.
enum StoredSize {
    static func text(_ n: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(n)
        var unit = 0
        while value >= 1024, unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(n) B" : String(format: "%.1f", value) + " " + units[unit]
    }
}
