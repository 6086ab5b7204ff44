import CairnCore
import CairnEngine
import Foundation
import Hummingbird
import HTTPTypes
import NIOCore

/// The console's HTML, rendered on the server from plain string templates.
/// Every value that comes from outside (names, errors, positions) goes
/// through ``ConsoleHTML/escape(_:)``; no page runs JavaScript or loads
/// anything from another origin.
enum ConsoleHTML {
    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for c in text {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(c)
            }
        }
        return out
    }

    /// A path segment, percent-encoded (shards such as `-80` and `80-` stay as they are).
    static func segment(_ text: String) -> String {
        text.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? ""
    }

    static func shardPath(_ keyspace: String, _ shard: String) -> String {
        "/ui/shards/\(segment(keyspace))/\(segment(shard))"
    }

    static func time(_ date: Date?) -> String {
        guard let date else { return "-" }
        return escape(UTCTime.rfc3339(date, fractional: false))
    }

    static let style = """
        *{box-sizing:border-box}body{font:15px/1.4 system-ui,sans-serif;margin:0;color:#1d232a;background:#f6f7f9}
        header{background:#243447;color:#fff;padding:.6em 1em;display:flex;flex-wrap:wrap;gap:.4em 1.2em;align-items:center}
        header a{color:#fff;text-decoration:none}header strong{margin-right:1em}header form{margin-left:auto}
        main{padding:1em;max-width:1100px;margin:auto}h1{font-size:1.3em;margin:.2em 0 .6em}h2{font-size:1.1em;margin:1.4em 0 .5em}
        .scroll{overflow-x:auto;max-width:100%}table{border-collapse:collapse;background:#fff;min-width:100%}
        th,td{padding:.35em .6em;border-bottom:1px solid #e3e6ea;text-align:left;vertical-align:top;white-space:nowrap}
        td.wrap{white-space:normal;min-width:14em}th{background:#eef1f4;font-weight:600}
        .ok{color:#17692f;font-weight:600}.bad{color:#b3261e;font-weight:600}.muted{color:#66707a}
        .box{background:#fff;border:1px solid #e3e6ea;border-radius:6px;padding:.8em 1em;margin:.6em 0}
        .problems li{color:#b3261e}.error{background:#fde8e7;border:1px solid #f3b8b4;padding:.6em 1em;border-radius:6px}
        form.inline{display:flex;flex-wrap:wrap;gap:.5em;align-items:center;margin:.4em 0}
        input,select,button{font:inherit;padding:.35em .6em;max-width:100%}button{cursor:pointer}
        svg{max-width:100%;height:auto;background:#fff;border:1px solid #e3e6ea;border-radius:6px}
        .legend span{display:inline-block;margin-right:1em}.sw{display:inline-block;width:.9em;height:.9em;vertical-align:middle;margin-right:.3em}
        """

    /// A whole page. `csrf` nil: the login page (no navigation).
    static func page(title: String, csrf: String?, refreshSeconds: Int? = nil, _ body: String) -> String {
        var head = "<meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        if let refreshSeconds { head += "<meta http-equiv=\"refresh\" content=\"\(refreshSeconds)\">" }
        var nav = "<header><strong>Cairn</strong>"
        if let csrf {
            nav += "<a href=\"/\">Keyspaces</a><a href=\"/ui/jobs\">Jobs</a><a href=\"/ui/tablets\">Tablets</a>"
            nav += "<form method=\"post\" action=\"/logout\">\(csrfField(csrf))<button type=\"submit\">Log out</button></form>"
        }
        nav += "</header>"
        return "<!doctype html><html lang=\"en\"><head>\(head)<title>\(escape(title)) · Cairn</title><style>\(style)</style></head><body>\(nav)<main>\(body)</main></body></html>"
    }

    static func csrfField(_ csrf: String) -> String {
        "<input type=\"hidden\" name=\"csrf\" value=\"\(escape(csrf))\">"
    }

    static func table(_ header: [String], _ rows: [[String]], raw: Bool = false) -> String {
        var html = "<div class=\"scroll\"><table><thead><tr>"
        html += header.map { "<th>\(escape($0))</th>" }.joined()
        html += "</tr></thead><tbody>"
        for row in rows { html += "<tr>" + row.map { "<td>\($0)</td>" }.joined() + "</tr>" }
        return html + "</tbody></table></div>"
    }

    static func response(_ html: String, status: HTTPResponse.Status = .ok, headers extra: HTTPFields = [:]) -> Response {
        var headers: HTTPFields = [
            .contentType: "text/html; charset=utf-8",
            .cacheControl: "no-store",
            .contentSecurityPolicy: "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
            .xContentTypeOptions: "nosniff",
            HTTPField.Name("Referrer-Policy")!: "no-referrer",
        ]
        headers.append(contentsOf: extra)
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: html)))
    }

    static func redirect(_ location: String, headers extra: HTTPFields = [:]) -> Response {
        var headers: HTTPFields = [.location: location, .cacheControl: "no-store"]
        headers.append(contentsOf: extra)
        return Response(status: .seeOther, headers: headers)
    }

    static func loginPage(error: String?) -> String {
        var body = "<h1>Log in</h1>"
        if let error { body += "<p class=\"error\">\(escape(error))</p>" }
        body += """
            <div class="box"><form method="post" action="/login">
            <p><label for="token">ctld's auth token</label><br><input id="token" name="token" type="password" autocomplete="current-password" size="40" required autofocus></p>
            <p><button type="submit">Log in</button></p></form>
            <p class="muted">The token is in auth-token in ctld's data directory (with <code>cairn up</code>: cairn-local/ctld/auth-token).</p></div>
            """
        return page(title: "Log in", csrf: nil, body)
    }

    static func protectedCell(_ protected: Bool?) -> String {
        switch protected {
        case true?: "<span class=\"ok\">yes</span>"
        case false?: "<span class=\"bad\">no</span>"
        case nil: "<span class=\"muted\">not listed yet</span>"
        }
    }

    static func age(_ seconds: Double?) -> String {
        seconds.map { escape(FleetStatusBuilder.ageText($0)) } ?? "-"
    }

    static func windowText(_ window: ShardProtection.RestorableWindow?) -> String {
        guard let window else { return "-" }
        return "\(time(window.start)) → \(time(window.end))"
    }

    static func drillText(_ drill: ClusterAPI.DrillStatus?) -> String {
        guard let drill else { return "<span class=\"muted\">none</span>" }
        return (drill.passed ? "<span class=\"ok\">passed</span> " : "<span class=\"bad\">failed</span> ") + time(drill.finishedAt)
    }

    static func problemsList(_ problems: [String]) -> String {
        problems.isEmpty ? "<span class=\"ok\">none</span>" : "<ul class=\"problems\">" + problems.map { "<li>\(escape($0))</li>" }.joined() + "</ul>"
    }
}

/// The shard's backups drawn on a time axis: one row per chain (a full
/// backup and the incrementals continuing it), a bar per backup from its
/// start to its finish, links from each incremental to its parent, and the
/// restorable window as a band underneath. Plain SVG, drawn on the server.
enum ChainTimeline {
    static let width = 960.0
    static let rowHeight = 26.0
    static let left = 8.0
    static let right = 8.0

    static let colors = ["full": "#2f6fb3", "delta": "#c07a12", "incremental": "#2e9d57", "incomplete": "#b0b7bf", "unreadable": "#b3261e"]
    static let archiveColor = "#e0902f"

    static func svg(_ listing: BackupListing, window: ShardProtection.RestorableWindow?, restorePoints: [RestorePoint] = [],
                    archive: BackupListing.Archive? = nil, gaps: [ArchiveGap] = [], now: Date) -> String {
        let backups = listing.backups.filter { $0.startTime != nil }
        guard let first = backups.compactMap(\.startTime).min() else {
            return "<p class=\"muted\">No backups to draw.</p>"
        }
        // Chains: each backup's row is its full backup's row.
        var rowOf: [String: Int] = [:]
        var rows = 0
        let byName = Dictionary(backups.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        func row(_ entry: BackupListing.Entry, depth: Int = 0) -> Int {
            if let r = rowOf[entry.name] { return r }
            let r: Int
            if entry.status == "complete", entry.type == "incremental" || entry.type == "delta", let parent = entry.parent.flatMap({ byName[$0] }), depth < 10_000 {
                r = row(parent, depth: depth + 1)
            } else {
                r = rows
                rows += 1
            }
            rowOf[entry.name] = r
            return r
        }
        for b in backups.sorted(by: { ($0.startTime!, $0.name) < ($1.startTime!, $1.name) }) { _ = row(b) }
        let end = max(now, backups.compactMap { $0.finishTime ?? $0.startTime }.max() ?? now)
        let span = max(1, end.timeIntervalSince(first))
        let plot = width - left - right
        func x(_ d: Date) -> Double { left + plot * d.timeIntervalSince(first) / span }
        // The binary log archive gets a row of its own under the chains: one
        // band from the oldest to the newest archived transaction (a fleet
        // archives thousands of segments), with each gap cut out in red.
        let archiveRow: Int? = archive.flatMap { $0.firstEventTime != nil && $0.lastEventTime != nil ? rows : nil }
        if archiveRow != nil { rows += 1 }
        let axisY = Double(rows) * rowHeight + 10
        let windowY = axisY + 24
        let height = windowY + 40
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" width=\"\(Int(width))\" role=\"img\" aria-label=\"Backups of \(ConsoleHTML.escape(listing.shard)) on a timeline\">"
        for r in 0..<rows where r % 2 == 1 {
            svg += "<rect x=\"0\" y=\"\(Double(r) * rowHeight + 4)\" width=\"\(width)\" height=\"\(rowHeight)\" fill=\"#f3f5f7\"/>"
        }
        // Links first, under the bars.
        for b in backups where b.type == "incremental" || b.type == "delta" {
            guard let parent = b.parent.flatMap({ byName[$0] }), let pf = parent.finishTime ?? parent.startTime, let bs = b.startTime else { continue }
            let y1 = Double(rowOf[parent.name] ?? 0) * rowHeight + 4 + rowHeight / 2
            let y2 = Double(rowOf[b.name] ?? 0) * rowHeight + 4 + rowHeight / 2
            svg += "<line x1=\"\(fmt(x(pf)))\" y1=\"\(fmt(y1))\" x2=\"\(fmt(x(bs)))\" y2=\"\(fmt(y2))\" stroke=\"#8a949e\" stroke-width=\"1\"/>"
        }
        for b in backups {
            guard let start = b.startTime else { continue }
            let kind = b.status == "complete" ? b.type : b.status
            let color = colors[kind] ?? "#b0b7bf"
            let x1 = x(start)
            let w = max(4, x(b.finishTime ?? start) - x1)
            let y = Double(rowOf[b.name] ?? 0) * rowHeight + 8
            let title = "\(b.name): \(kind)\(b.restorable ? "" : ", not restorable"), \(UTCTime.rfc3339(start, fractional: false)) to \(b.finishTime.map { UTCTime.rfc3339($0, fractional: false) } ?? "unfinished")"
            svg += "<rect x=\"\(fmt(x1))\" y=\"\(fmt(y))\" width=\"\(fmt(w))\" height=\"\(fmt(rowHeight - 8))\" rx=\"2\" fill=\"\(color)\""
            if b.status == "complete" && !b.restorable { svg += " stroke=\"#b3261e\" stroke-width=\"2\"" }
            svg += "><title>\(ConsoleHTML.escape(title))</title></rect>"
        }
        if let archiveRow, let archive, let from = archive.firstEventTime, let to = archive.lastEventTime {
            let y = Double(archiveRow) * rowHeight + 8
            let x1 = x(max(from, first))
            let title = "archived binary log: \(archive.segments) segment\(archive.segments == 1 ? "" : "s"), transactions from \(UTCTime.rfc3339(from, fractional: false)) to \(UTCTime.rfc3339(to, fractional: false))"
            svg += "<rect x=\"\(fmt(x1))\" y=\"\(fmt(y))\" width=\"\(fmt(max(3, x(to) - x1)))\" height=\"\(fmt(rowHeight - 8))\" rx=\"2\" fill=\"\(archiveColor)\"><title>\(ConsoleHTML.escape(title))</title></rect>"
            for gap in gaps {
                let gx = x(max(gap.afterTime, first))
                let gw = max(3, x(gap.beforeTime) - gx)
                svg += "<rect x=\"\(fmt(gx))\" y=\"\(fmt(y - 2))\" width=\"\(fmt(gw))\" height=\"\(fmt(rowHeight - 4))\" fill=\"#b3261e\"><title>\(ConsoleHTML.escape("gap: " + gap.description))</title></rect>"
            }
        }
        // Restore points of the keyspace: a dashed line across the chains at each point's time.
        for point in restorePoints where point.createdAt >= first {
            let px = fmt(x(point.createdAt))
            svg += "<line x1=\"\(px)\" y1=\"2\" x2=\"\(px)\" y2=\"\(fmt(axisY))\" stroke=\"#8e44ad\" stroke-width=\"1.5\" stroke-dasharray=\"4 3\"><title>restore point \(ConsoleHTML.escape(point.name)) at \(ConsoleHTML.escape(UTCTime.rfc3339(point.createdAt, fractional: false)))</title></line>"
        }
        // The axis: the first backup, now.
        svg += "<line x1=\"\(left)\" y1=\"\(fmt(axisY))\" x2=\"\(fmt(width - right))\" y2=\"\(fmt(axisY))\" stroke=\"#66707a\"/>"
        svg += "<text x=\"\(left)\" y=\"\(fmt(axisY + 16))\" font-size=\"12\" fill=\"#66707a\">\(ConsoleHTML.time(first))</text>"
        svg += "<text x=\"\(fmt(width - right))\" y=\"\(fmt(axisY + 16))\" font-size=\"12\" fill=\"#66707a\" text-anchor=\"end\">\(ConsoleHTML.time(end))</text>"
        // The restorable window, and the gap from its end to now.
        if let window {
            let wx = x(window.start), wEnd = max(x(window.end), wx + 3)
            svg += "<rect x=\"\(fmt(wx))\" y=\"\(fmt(windowY))\" width=\"\(fmt(wEnd - wx))\" height=\"14\" fill=\"#9fd8b1\"><title>restorable: \(ConsoleHTML.escape(UTCTime.rfc3339(window.start, fractional: false))) to \(ConsoleHTML.escape(UTCTime.rfc3339(window.end, fractional: false)))</title></rect>"
            svg += "<rect x=\"\(fmt(wEnd))\" y=\"\(fmt(windowY))\" width=\"\(fmt(max(0, x(end) - wEnd)))\" height=\"14\" fill=\"#f3c2bf\"><title>not restorable yet: commits after the newest backup</title></rect>"
            svg += "<text x=\"\(fmt(wx))\" y=\"\(fmt(windowY + 30))\" font-size=\"12\" fill=\"#17692f\">restorable window</text>"
        } else {
            svg += "<text x=\"\(left)\" y=\"\(fmt(windowY + 12))\" font-size=\"12\" fill=\"#b3261e\">nothing restorable</text>"
        }
        svg += "</svg>"
        let legend = "<p class=\"legend\"><span><i class=\"sw\" style=\"background:#2f6fb3\"></i>full</span><span><i class=\"sw\" style=\"background:#c07a12\"></i>delta</span><span><i class=\"sw\" style=\"background:#2e9d57\"></i>incremental</span><span><i class=\"sw\" style=\"background:#b0b7bf\"></i>incomplete</span><span><i class=\"sw\" style=\"background:#e0902f\"></i>archived binary log</span><span><i class=\"sw\" style=\"background:#9fd8b1\"></i>restorable</span><span><i class=\"sw\" style=\"background:#f3c2bf\"></i>gap to now</span><span><i class=\"sw\" style=\"background:#8e44ad\"></i>restore point</span></p>"
        return "<div class=\"scroll\">\(svg)</div>\(legend)"
    }

    static func fmt(_ v: Double) -> String { String(format: "%.1f", v) }
}
