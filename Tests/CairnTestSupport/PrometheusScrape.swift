import CairnCore
import CairnSystem
import Foundation

/// Scrapes a `/metrics` endpoint as Prometheus would (a GET with an
/// optional bearer token) and parses the answer with Prometheus's own
/// Python text parser (`prometheus_client.parser`, installed into the
/// repository's `.venv` by scripts/install.sh).
public enum PrometheusScrape {
    public struct Sample: Sendable, Hashable {
        public var name: String
        public var labels: [String: String]
        public var value: Double
    }

    public struct Family: Sendable, Hashable {
        public var name: String
        public var type: String
        public var help: String
    }

    public struct Result: Sendable {
        public var status: Int
        public var body: String
        public var families: [Family]
        public var samples: [Sample]

        /// The one sample named `name` whose labels include `labels`; nil when there is none.
        public func value(_ name: String, _ labels: [String: String] = [:]) -> Double? {
            let matching = samples.filter { s in s.name == name && labels.allSatisfy { s.labels[$0.key] == $0.value } }
            return matching.count == 1 ? matching[0].value : nil
        }

        public func family(_ name: String) -> Family? { families.first { $0.name == name } }
    }

    public static var python: String {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.appendingPathComponent(".venv/bin/python3").path
    }

    static let script = #"""
import json, sys, urllib.request, urllib.error
url, token = sys.argv[1], sys.argv[2]
request = urllib.request.Request(url)
if token:
    request.add_header("Authorization", "Bearer " + token)
try:
    with urllib.request.urlopen(request, timeout=120) as response:
        status, body = response.status, response.read().decode("utf-8")
except urllib.error.HTTPError as error:
    status, body = error.code, error.read().decode("utf-8")
out = {"status": status, "body": body, "families": [], "samples": []}
if status == 200:
    from prometheus_client.parser import text_string_to_metric_families
    for family in text_string_to_metric_families(body):
        out["families"].append({"name": family.name, "type": family.type, "help": family.documentation})
        for s in family.samples:
            out["samples"].append({"name": s.name, "labels": s.labels, "value": s.value})
print(json.dumps(out))
"""#

    /// GETs `url` with `token` (none when nil) and parses a 200 answer; the parser refusing the text throws.
    public static func scrape(_ url: String, token: String?) async throws -> Result {
        guard FileManager.default.isExecutableFile(atPath: python) else {
            throw TestSupportError("there is no Python at \(python); run scripts/install.sh, which creates the repository's .venv with prometheus-client")
        }
        let check = try? await ChildProcess.run(python, ["-c", "import prometheus_client"], doing: "importing prometheus_client")
        guard check != nil else {
            throw TestSupportError("prometheus_client is not installed in \(python); run scripts/install.sh, which installs prometheus-client into the repository's .venv")
        }
        let output = try await ChildProcess.run(python, ["-c", script, url, token ?? ""], doing: "scraping and parsing \(url) with prometheus_client")
        struct Wire: Decodable {
            struct WireFamily: Decodable { var name: String; var type: String; var help: String }
            struct WireSample: Decodable { var name: String; var labels: [String: String]; var value: Double }
            var status: Int
            var body: String
            var families: [WireFamily]
            var samples: [WireSample]
        }
        let wire = try JSONDecoder().decode(Wire.self, from: Data(output.utf8))
        return Result(status: wire.status, body: wire.body,
                      families: wire.families.map { Family(name: $0.name, type: $0.type, help: $0.help) },
                      samples: wire.samples.map { Sample(name: $0.name, labels: $0.labels, value: $0.value) })
    }
}
