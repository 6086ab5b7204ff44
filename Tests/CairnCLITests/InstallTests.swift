import CairnCluster
import CairnCore
import CairnSystem
import CairnTestSupport
import Foundation
import Testing

/// Issue 19: installed like a real tool. `cairn --version`, completions, `make
/// install`/`uninstall`, the systemd units under `systemd-analyze verify`, and
/// the .deb, each with the real tools and the debug binary this test run built
/// (never a release build: too slow for CI).
@Suite("InstallTests")
struct InstallTests {
    /// The repository root (where the Makefile is).
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    struct Run: CustomStringConvertible {
        var exitCode: Int32
        var stdout: String
        var stderr: String
        var description: String { "exit \(exitCode)\nstdout: \(stdout.suffix(3000))\nstderr: \(stderr.suffix(3000))" }
    }

    /// Runs a program to completion (in the repository root unless told otherwise).
    static func run(_ executable: String, _ arguments: [String], environment: [String: String] = [:],
                    in directory: String = root) async throws -> Run {
        let child = try ChildProcess(executable, arguments: arguments, environment: environment, workingDirectory: directory,
                                     stdout: .capture(limit: 4 * 1024 * 1024), stderr: .capture(limit: 4 * 1024 * 1024))
        let exit = await child.wait()
        return Run(exitCode: exit.code ?? (128 + (exit.signal ?? 0)), stdout: await child.capturedOutput(),
                   stderr: await child.capturedError())
    }

    /// Fails naming the install step when a tool is missing.
    static func require(_ tool: String, from package: String) throws {
        guard ChildProcess.isAvailable(tool) else {
            throw TestSupportError("\(tool) is not installed; run scripts/install.sh (it installs the \(package) package)")
        }
    }

    /// `PATH` with the Swift toolchain, for the scripts that build swift-argument-parser's generate-manual.
    static var environment: [String: String] {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return ["PATH": ChildProcess.isAvailable("swift") ? path : "/opt/swift/usr/bin:\(path)"]
    }

    /// The verbs in the binary's own command tree (`--experimental-dump-help`).
    static func verbs() async throws -> [String] {
        let dump = try await CLI.run(["--experimental-dump-help"])
        #expect(dump.exitCode == 0, "\(dump)")
        let object = try JSONSerialization.jsonObject(with: Data(dump.stdout.utf8)) as? [String: Any]
        let command = object?["command"] as? [String: Any]
        let subcommands = command?["subcommands"] as? [[String: Any]] ?? []
        return subcommands.compactMap { $0["commandName"] as? String }
    }

    /// Every file `make install` puts under PREFIX, relative to it.
    static func installedFiles(verbs: [String]) -> [String] {
        ["bin/cairn",
         "share/bash-completion/completions/cairn", "share/zsh/site-functions/_cairn", "share/fish/vendor_completions.d/cairn.fish",
         "share/man/man1/cairn.1",
         "lib/systemd/system/cairn-ctld.service", "lib/systemd/system/cairn-tablet@.service", "lib/sysusers.d/cairn.conf",
         "share/doc/cairn/examples/cairn.json", "share/doc/cairn/examples/ctld.env", "share/doc/cairn/examples/tablet.env"]
            + verbs.map { "share/man/man1/cairn.\($0).1" }
    }

    static var versionPattern: Regex<(Substring, Substring, Substring, Substring?)> { #/^cairn (\d+\.\d+\.\d+) \(commit ([0-9a-f]{7,40}(-dirty)?|unknown)\)$/# }

    @Test("cairn --version names the version and the commit it was built from (or unknown)")
    func version() async throws {
        let result = try await CLI.run(["--version"])
        #expect(result.exitCode == 0, "\(result)")
        let line = result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let match = try #require(line.wholeMatch(of: Self.versionPattern), "unexpected --version output: \(line)")
        #expect(String(match.1) == CairnVersion.current)
    }

    @Test("completion scripts are generated for bash, zsh and fish, and name the verbs")
    func completions() async throws {
        let verbs = try await Self.verbs()
        #expect(verbs.contains("backup") && verbs.contains("restore") && verbs.contains("ctld"), "\(verbs)")
        let markers = ["bash": "complete -o filenames -F", "zsh": "#compdef cairn", "fish": "complete -c 'cairn'"]
        let directory = try TemporaryDirectory(prefix: "cairn-completions")
        defer { directory.remove() }
        for (shell, marker) in markers {
            let result = try await CLI.run(["--generate-completion-script", shell])
            #expect(result.exitCode == 0, "\(shell): \(result)")
            #expect(result.stdout.contains(marker), "\(shell) script lacks \(marker)")
            for verb in verbs {
                #expect(result.stdout.contains(verb), "\(shell) script does not complete \(verb)")
            }
            // Whatever shells are here must accept the script.
            if ChildProcess.isAvailable(shell) {
                let file = directory.file("cairn.\(shell)")
                try result.stdout.write(toFile: file, atomically: true, encoding: .utf8)
                let check = try await Self.run(shell, ["-n", file])
                #expect(check.exitCode == 0, "\(shell) -n refuses the script: \(check)")
            }
        }
    }

    @Test("make install DESTDIR=... PREFIX=/usr puts every file in place; make uninstall removes them")
    func makeInstallAndUninstall() async throws {
        try Self.require("make", from: "make")
        let destdir = try TemporaryDirectory(prefix: "cairn-destdir")
        defer { destdir.remove() }
        let arguments = ["DESTDIR=\(destdir.path)", "PREFIX=/usr", "CAIRN_BINARY=\(CLI.binaryPath)"]
        let install = try await Self.run("make", ["-s", "install"] + arguments, environment: Self.environment)
        try #require(install.exitCode == 0, "\(install)")

        let verbs = try await Self.verbs()
        let files = Self.installedFiles(verbs: verbs).map { "\(destdir.path)/usr/\($0)" }
        for file in files {
            #expect(FileManager.default.fileExists(atPath: file), "make install did not install \(file)")
        }
        // The installed binary runs, and its man page is a man page of it.
        let installed = try await Self.run("\(destdir.path)/usr/bin/cairn", ["--version"])
        #expect(installed.exitCode == 0 && installed.stdout.hasPrefix("cairn \(CairnVersion.current) "), "\(installed)")
        let page = try String(contentsOfFile: "\(destdir.path)/usr/share/man/man1/cairn.backup.1", encoding: .utf8)
        #expect(page.contains(".Dt CAIRN.BACKUP 1") && page.contains("Fl -storage"), "\(page.prefix(500))")
        if ChildProcess.isAvailable("man") {
            let rendered = try await Self.run("man", ["-l", "\(destdir.path)/usr/share/man/man1/cairn.1"],
                                              environment: ["MANPAGER": "cat", "MANWIDTH": "100"])
            #expect(rendered.exitCode == 0 && rendered.stdout.contains("restore"), "\(rendered)")
        }
        // Units installed under PREFIX=/usr run /usr/bin/cairn.
        let unit = try String(contentsOfFile: "\(destdir.path)/usr/lib/systemd/system/cairn-ctld.service", encoding: .utf8)
        #expect(unit.contains("ExecStart=/usr/bin/cairn ctld"))

        let uninstall = try await Self.run("make", ["-s", "uninstall"] + arguments)
        try #require(uninstall.exitCode == 0, "\(uninstall)")
        for file in files {
            #expect(!FileManager.default.fileExists(atPath: file), "make uninstall left \(file)")
        }
        let left = (FileManager.default.enumerator(atPath: destdir.path)?.compactMap { $0 as? String } ?? []).filter { path in
            var isDirectory: ObjCBool = false
            return FileManager.default.fileExists(atPath: "\(destdir.path)/\(path)", isDirectory: &isDirectory) && !isDirectory.boolValue
        }
        #expect(left.isEmpty, "make uninstall left files: \(left)")
    }

    @Test("systemd-analyze verify passes on both units as installed, hardened and stopping gracefully")
    func systemdUnits() async throws {
        try Self.require("make", from: "make")
        try Self.require("systemd-analyze", from: "systemd")
        // Installed without DESTDIR under a scratch prefix, so ExecStart names an executable that exists.
        let prefix = try TemporaryDirectory(prefix: "cairn-prefix")
        defer { prefix.remove() }
        let install = try await Self.run("make", ["-s", "install", "PREFIX=\(prefix.path)", "CAIRN_BINARY=\(CLI.binaryPath)"],
                                         environment: Self.environment)
        try #require(install.exitCode == 0, "\(install)")
        let units = ["cairn-ctld.service", "cairn-tablet@.service"].map { "\(prefix.path)/lib/systemd/system/\($0)" }
        // MANPATH: verify also checks that the units' Documentation= man pages exist.
        let verify = try await Self.run("systemd-analyze", ["verify"] + units,
                                        environment: ["MANPATH": "\(prefix.path)/share/man", "SYSTEMD_LOG_COLOR": "0"])
        #expect(verify.exitCode == 0 && !verify.stderr.contains("cairn"), "\(verify)")

        for path in units {
            let settings = try Self.unitSettings(path)
            let name = (path as NSString).lastPathComponent
            #expect(settings["ExecStart"]?.first?.hasPrefix("\(prefix.path)/bin/cairn ") == true, "\(name): \(settings["ExecStart"] ?? [])")
            #expect(settings["User"] == ["cairn"], "\(name) must run as the cairn user")
            #expect(settings["ProtectSystem"] == ["strict"], "\(name)")
            #expect(settings["NoNewPrivileges"] == ["yes"], "\(name)")
            #expect(settings["StateDirectory"]?.isEmpty == false, "\(name) sets no StateDirectory")
            #expect(settings["ReadWritePaths"]?.isEmpty == false, "\(name) sets no ReadWritePaths")
            #expect(settings["PrivateTmp"] == ["yes"] && settings["ProtectHome"] == ["yes"], "\(name)")
            // SIGTERM to cairn alone (it drains and stops its children), with time to do it.
            #expect(settings["KillMode"] == ["mixed"] && settings["KillSignal"] == ["SIGTERM"], "\(name)")
            let timeout = try #require(settings["TimeoutStopSec"]?.last.flatMap(Self.seconds), "\(name) sets no TimeoutStopSec")
            #expect(timeout >= 60, "\(name): TimeoutStopSec \(timeout)s is under a minute")
        }
        let tablet = try Self.unitSettings(units[1])
        #expect(tablet["EnvironmentFile"] == ["/etc/cairn/tablet-%i.env"], "\(tablet["EnvironmentFile"] ?? [])")
        #expect(tablet["ExecStart"]?.first?.contains("--alias %i") == true)
    }

    @Test("make deb's package extracts into a scratch root, where cairn --version runs")
    func debianPackage() async throws {
        try Self.require("make", from: "make")
        try Self.require("dpkg-deb", from: "dpkg")
        let scratch = try TemporaryDirectory(prefix: "cairn-deb")
        defer { scratch.remove() }
        // Uncompressed: xz or gzip spend half a minute or more on the 140 MB debug binary.
        let build = try await Self.run("make", ["-s", "deb", "CAIRN_BINARY=\(CLI.binaryPath)", "DEB_OUT=\(scratch.file("out"))",
                                                "DEB_COMPRESSION=none"],
                                       environment: Self.environment)
        try #require(build.exitCode == 0, "\(build)")
        let deb = try #require(build.stdout.split(separator: "\n").last.map(String.init), "\(build)")
        #expect(deb.hasSuffix(".deb") && FileManager.default.fileExists(atPath: deb), "\(build)")

        let control = try await Self.run("dpkg-deb", ["--field", deb, "Package", "Version", "Depends"])
        #expect(control.exitCode == 0, "\(control)")
        #expect(control.stdout.contains("Package: cairn"), "\(control)")
        #expect(control.stdout.contains("Version: \(CairnVersion.current)"), "\(control)")
        for dependency in ["mariadb-backup", "mariadb-client", "libmariadb3", "libzstd1"] {
            #expect(control.stdout.contains(dependency), "the package does not depend on \(dependency): \(control)")
        }

        let root = scratch.file("root")
        let extract = try await Self.run("dpkg", ["-x", deb, root])
        try #require(extract.exitCode == 0, "\(extract)")
        let version = try await Self.run("\(root)/usr/bin/cairn", ["--version"])
        #expect(version.exitCode == 0, "\(version)")
        let line = version.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(line.wholeMatch(of: Self.versionPattern) != nil, "\(version)")

        let verbs = try await Self.verbs()
        for file in Self.installedFiles(verbs: verbs) {
            #expect(FileManager.default.fileExists(atPath: "\(root)/usr/\(file)"), "the package lacks /usr/\(file)")
        }
        // The example configuration is a configuration Cairn accepts.
        let configuration = try CairnConfiguration.load(file: "\(root)/etc/cairn/cairn.json")
        #expect(configuration.bucket == "file:///var/backups/cairn")
        let info = try await Self.run("dpkg-deb", ["--info", deb])
        #expect(info.exitCode == 0 && info.stdout.contains("conffiles") && info.stdout.contains("postinst"), "\(info)")
    }

    @Test("ctld logs a warning when a tablet registers with another Cairn version")
    func versionWarning() async throws {
        let cluster = try ClusterFixture()
        do {
            try cluster.startControlServer()
            try await Self.registerAndCheckWarnings(cluster)
        } catch {
            await cluster.stop()
            throw error
        }
        await cluster.stop()
    }

    static func registerAndCheckWarnings(_ cluster: ClusterFixture) async throws {
        let client = ClusterClient(address: cluster.server, token: cluster.tabletToken)
        func registration(_ alias: String, version: String?) -> ClusterAPI.TabletRegistration {
            ClusterAPI.TabletRegistration(alias: alias, keyspace: "commerce", shard: "0", type: .replica,
                                          agentURL: "http://127.0.0.1:1", mysqlHost: nil, mysqlPort: nil,
                                          hostname: "test", version: version)
        }
        try await cluster.waitUntil("ctld accepts a registration") {
            try await client.register(registration("zone1-901", version: CairnVersion.current))
            return true
        }
        try await client.register(registration("zone1-902", version: "0.2.9"))
        try await client.register(registration("zone1-903", version: nil))
        try await cluster.waitUntil("ctld logged the version warnings") {
            cluster.logs().components(separatedBy: "different Cairn version").count - 1 >= 2
        }
        let warnings = cluster.logs().split(separator: "\n").filter { $0.contains("different Cairn version") }
        #expect(warnings.contains { $0.contains("zone1-902") && $0.contains("0.2.9") && $0.contains(CairnVersion.current) }, "\(warnings)")
        #expect(warnings.contains { $0.contains("zone1-903") }, "\(warnings)")
        #expect(!warnings.contains { $0.contains("zone1-901") }, "\(warnings)")
        // ctld keeps each tablet's version; `cairn tablets --json` shows it.
        let versions = Dictionary(try await cluster.tabletStates().map { ($0["alias"] as? String ?? "", $0["version"] as? String) },
                                  uniquingKeysWith: { first, _ in first })
        #expect(versions["zone1-901"] == CairnVersion.current && versions["zone1-902"] == "0.2.9", "\(versions)")
    }

    /// `Key=value` lines of a unit file, values in order (continuation lines joined).
    static func unitSettings(_ path: String) throws -> [String: [String]] {
        let text = try String(contentsOfFile: path, encoding: .utf8).replacingOccurrences(of: "\\\n", with: " ")
        var settings: [String: [String]] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") && !line.hasPrefix("[") {
            guard let equals = line.firstIndex(of: "=") else { continue }
            let value = line[line.index(after: equals)...].split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
            settings[String(line[..<equals]), default: []].append(value)
        }
        return settings
    }

    /// A systemd time span such as `90s`, `15min` or `300`, in seconds.
    static func seconds(_ span: String) -> Double? {
        let units: [(String, Double)] = [("min", 60), ("ms", 0.001), ("s", 1), ("h", 3600)]
        for (suffix, factor) in units where span.hasSuffix(suffix) {
            return Double(span.dropLast(suffix.count)).map { $0 * factor }
        }
        return Double(span)
    }
}
