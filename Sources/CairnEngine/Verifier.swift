import CairnCore
import CairnStorage
import Foundation
import Logging

/// Re-reads stored backups and checks every file's size and SHA-256.
public struct BackupVerifier: Sendable {
    public struct Problem: Sendable, Hashable {
        public var backup: String
        /// The file, or nil when the problem is the backup as a whole.
        public var file: String?
        public var message: String
    }

    public struct Report: Sendable {
        public var checkedBackups: [String]
        public var checkedFiles: Int
        public var problems: [Problem]
        public var isClean: Bool { problems.isEmpty }
    }

    public let context: RestoreContext

    public init(context: RestoreContext) {
        self.context = context
    }

    /// Verifies the named backup, or every complete one.
    public func verify(backup name: String?) async throws -> Report {
        let stored = try await context.repository.list(context.shard)
        var selected = Array(stored)
        if let name {
            selected = stored.filter { $0.name == name }
            guard !selected.isEmpty else {
                throw CairnError(.notFound, "there is no backup named \(clip(name)) of \(context.shard) in \(context.storage.displayURL); list them with `cairn backups \(context.shard)`")
            }
        }
        var problems: [Problem] = []
        var checked: [String] = []
        var files = 0
        for backup in selected {
            switch backup.state {
            case .incomplete:
                if name != nil {
                    problems.append(Problem(backup: backup.name, file: nil, message: "the backup is incomplete (no MANIFEST)"))
                }
                continue
            case .unreadable(let why):
                problems.append(Problem(backup: backup.name, file: nil, message: why))
                continue
            case .complete(let manifest):
                checked.append(backup.name)
                for file in manifest.files {
                    files += 1
                    let key = context.repository.key(context.shard, backup.name, file.name)
                    context.progress?.setPhase("verifying \(backup.name)/\(file.name)")
                    do {
                        try await DownloadPipeline.verify(file, key: key, from: context.storage, progress: context.progress)
                    } catch let error as CairnError where error.code == .integrity || error.code == .notFound {
                        problems.append(Problem(backup: backup.name, file: file.name, message: error.message))
                    }
                }
            }
        }
        return Report(checkedBackups: checked, checkedFiles: files, problems: problems)
    }
}
