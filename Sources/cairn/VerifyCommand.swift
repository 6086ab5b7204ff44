import ArgumentParser
import CairnCore
import CairnEngine
import CairnStorage
import Foundation

struct VerifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Re-read stored backups and check every file's size and SHA-256.",
        aliases: ["Verify", "VerifyBackups"]
    )

    @Argument(help: .shard, transform: KeyspaceShard.init(parsing:))
    var shard: KeyspaceShard

    @Option(name: .long, help: ArgumentHelp("Verify only this backup (default: every complete one).", valueName: "name"))
    var backup: String?

    @OptionGroup var storageOptions: StorageOptions
    @OptionGroup var output: OutputOptions

    struct ReportJSON: Encodable {
        struct Problem: Encodable {
            var backup: String
            var file: String?
            var message: String
        }
        var shard: String
        var checkedBackups: [String]
        var checkedFiles: Int
        var ok: Bool
        var problems: [Problem]

        enum CodingKeys: String, CodingKey {
            case shard, ok, problems
            case checkedBackups = "checked_backups"
            case checkedFiles = "checked_files"
        }
    }

    func run() async throws {
        let configuration = try storageOptions.loadConfiguration()
        let logger = output.makeLogger()
        let progress = TransferProgress()
        let report = try await storageOptions.withStorage(configuration, logger: logger) { storage in
            let verifier = BackupVerifier(context: RestoreContext(shard: shard, storage: storage, logger: logger, progress: progress))
            return try await Output.withProgress(progress, enabled: !output.json) {
                try await verifier.verify(backup: backup)
            }
        }
        if output.json {
            try Output.json(ReportJSON(shard: shard.description, checkedBackups: report.checkedBackups,
                                       checkedFiles: report.checkedFiles, ok: report.isClean,
                                       problems: report.problems.map { .init(backup: $0.backup, file: $0.file, message: $0.message) }))
        } else {
            for p in report.problems {
                Output.line("BAD  \(p.backup)\(p.file.map { "/\($0)" } ?? ""): \(p.message)")
            }
            Output.line("Verified \(report.checkedFiles) file\(report.checkedFiles == 1 ? "" : "s") in \(report.checkedBackups.count) backup\(report.checkedBackups.count == 1 ? "" : "s") of \(shard): " +
                        (report.isClean ? "all good." : "\(report.problems.count) problem\(report.problems.count == 1 ? "" : "s")."))
        }
        if !report.isClean { throw ExitCode(1) }
    }
}
