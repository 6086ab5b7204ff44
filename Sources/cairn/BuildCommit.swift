import CairnCore

/// The git commit this binary was built from, for `cairn --version`.
///
/// A plain `swift build` (a fresh clone, CI) knows no commit: `gitCommit` is
/// "unknown", from the protocol extension below. `make` (scripts/build-info.sh)
/// writes `BuildCommit.generated.swift` beside this file before a release
/// build and removes it afterwards; that file (ignored by git) declares
/// `BuildCommit.gitCommit` itself, which then wins over the default. Removing
/// it after the build keeps a later plain `swift build` from claiming a commit
/// it was not built from.
protocol BuildCommitSource {
    static var gitCommit: String { get }
}

extension BuildCommitSource {
    static var gitCommit: String { "unknown" }
}

enum BuildCommit: BuildCommitSource {}

extension Cairn {
    /// What `cairn --version` prints.
    static var versionText: String {
        "cairn \(CairnVersion.current) (commit \(BuildCommit.gitCommit))"
    }
}
