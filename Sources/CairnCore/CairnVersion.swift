/// Cairn's release version, sent by tablets when they register so ctld can
/// warn about a fleet running mixed versions. Bumped by hand at a release
/// (docs/INSTALL.md, "Versions"); the git commit a binary was built from is
/// the CLI's business (`cairn --version`), not the model's.
public enum CairnVersion {
    public static let current = "0.3.0"
}
