import ArgumentParser

struct Cairn: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cairn",
        abstract: "Backup and point-in-time recovery for sharded MariaDB.",
        discussion: """
            Direct mode (--local) works on a mysqld on this host. Verbs without --local talk to the control \
            server (cairn ctld) given by --server or CAIRN_SERVER. Vitess's names (Backup, ListBackups, \
            RestoreFromBackup, ...) are accepted as aliases.
            """,
        version: versionText,
        subcommands: [
            BackupCommand.self,
            BackupsCommand.self,
            RestoreCommand.self,
            VerifyCommand.self,
            TabletsCommand.self,
            JobsCommand.self,
            CtldCommand.self,
            TabletCommand.self,
            UpCommand.self,
            PruneCommand.self,
            RemoveBackupCommand.self,
            RestorePointCommand.self,
            RestorePointsCommand.self,
            StatusCommand.self,
            ArchiveCommand.self,
            DrillCommand.self,
            RotateKeyCommand.self,
        ]
    )
}
