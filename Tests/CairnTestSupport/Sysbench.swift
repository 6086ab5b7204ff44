import CairnMySQL
import CairnSystem
import Foundation

/// sysbench's OLTP workloads against a test server: real tables and real writes.
public struct Sysbench: Sendable {
    public let socketPath: String
    public var tables: Int
    public var tableSize: Int

    public init(server: TestServer, tables: Int = 4, tableSize: Int = 10_000) {
        self.init(socketPath: server.socketPath, tables: tables, tableSize: tableSize)
    }

    /// Against any server reachable as root on `socketPath` (a tablet's mysqld).
    public init(socketPath: String, tables: Int = 4, tableSize: Int = 10_000) {
        self.socketPath = socketPath
        self.tables = tables
        self.tableSize = tableSize
    }

    var commonArguments: [String] {
        ["--db-driver=mysql", "--mysql-socket=\(socketPath)", "--mysql-user=root", "--mysql-db=sbtest",
         "--tables=\(tables)", "--table-size=\(tableSize)"]
    }

    func query(_ sql: String) async throws -> MySQLResult {
        try await MySQLConnection.with(MySQLConnectionConfiguration(endpoint: .socket(socketPath)), logger: testLogger) {
            try await $0.query(sql)
        }
    }

    /// Creates database `sbtest` and fills its tables.
    public func prepare() async throws {
        try requireTools(["sysbench"])
        _ = try await query("CREATE DATABASE IF NOT EXISTS sbtest")
        try await ChildProcess.run("sysbench", ["oltp_write_only"] + commonArguments + ["--threads=2", "prepare"],
                                   doing: "sysbench prepare")
    }

    /// Starts `oltp_write_only` writing until stopped (or for `seconds`).
    public func startWriting(threads: Int = 2, rate: Int = 0, seconds: Int = 3600) throws -> SysbenchRun {
        try requireTools(["sysbench"])
        let process = try ChildProcess("sysbench", arguments: ["oltp_write_only"] + commonArguments + [
            "--threads=\(threads)", "--rate=\(rate)", "--time=\(seconds)", "--report-interval=0",
            // Deadlocks and duplicate keys under concurrency are retried, not fatal.
            "--mysql-ignore-errors=1213,1020,1062,1205",
            "run",
        ], stdout: .capture(limit: 64 * 1024), stderr: .capture(limit: 64 * 1024))
        var run = SysbenchRun(process: process)
        run.bench = self
        return run
    }

    /// Runs a fixed number of write transactions and waits for them.
    public func write(events: Int, threads: Int = 2) async throws {
        try await ChildProcess.run("sysbench", ["oltp_write_only"] + commonArguments + [
            "--threads=\(threads)", "--events=\(events)", "--time=0", "--mysql-ignore-errors=1213,1020,1062,1205", "run",
        ], doing: "sysbench run")
    }
}

/// A running sysbench load.
public struct SysbenchRun: Sendable {
    let process: ChildProcess
    var bench: Sysbench? = nil

    init(process: ChildProcess) {
        self.process = process
    }

    /// Stops the load, waits until sysbench has exited and the server has no
    /// sysbench session left, so no write is in flight afterwards.
    public func stop() async {
        process.kill(SIGKILL)
        _ = await process.wait()
        guard let bench else { return }
        for _ in 0..<100 {
            let busy = try? await bench.query("SELECT COUNT(*) FROM information_schema.processlist WHERE db = 'sbtest' AND id <> CONNECTION_ID()").scalar
            if busy == "0" { return }
            try? await Task.sleep(for: .milliseconds(100))
        }
    }
}
