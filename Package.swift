// swift-tools-version:6.1
import PackageDescription

let strict: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    // An import makes only the members of the modules a file imports visible.
    .enableUpcomingFeature("MemberImportVisibility"),
]

// Linux only: Cairn runs beside mariadbd on Linux hosts, and its system
// layer uses glibc (posix_spawn file actions, pipe2, F_SETPIPE_SZ, mallopt,
// sync_file_range). No Apple platform is claimed.
let package = Package(
    name: "Cairn",
    products: [
        .executable(name: "cairn", targets: ["cairn"]),
        .executable(name: "cairn-fleet-sim", targets: ["FleetSimulator"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-async-algorithms", from: "1.1.4"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.1"),
        // ctld's and the tablets' /metrics (docs/OBSERVABILITY.md).
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        // C libraries, through pkg-config.
        .systemLibrary(
            name: "CMariaDB",
            path: "Sources/CMariaDB",
            pkgConfig: "libmariadb",
            providers: [.apt(["libmariadb-dev"])]
        ),
        .systemLibrary(
            name: "CZstd",
            path: "Sources/CZstd",
            pkgConfig: "libzstd",
            providers: [.apt(["libzstd-dev"])]
        ),

        // GNU libc calls Swift's Glibc module does not expose.
        .target(name: "CCairnSystem", path: "Sources/CCairnSystem"),

        // Pure model: no I/O.
        .target(
            name: "CairnCore",
            // Imports are internal unless marked: the model's public API shows
            // Foundation's Date and Data, and nothing else it imports.
            swiftSettings: strict + [.enableUpcomingFeature("InternalImportsByDefault")]
        ),
        // Operating-system plumbing shared by the I/O modules: a thread pool for
        // blocking calls, child processes with streamed pipes, file helpers.
        .target(
            name: "CairnSystem",
            dependencies: [
                "CCairnSystem",
                "CairnCore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "CairnStorage",
            dependencies: [
                "CairnCore",
                "CairnSystem",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "CairnMySQL",
            dependencies: [
                "CMariaDB",
                "CairnCore",
                "CairnSystem",
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "CairnEngine",
            dependencies: [
                "CZstd",
                "CairnCore",
                "CairnSystem",
                "CairnStorage",
                "CairnMySQL",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        // etcd's v3 API through its JSON gateway (the control plane on etcd, docs/CLUSTER.md).
        .target(
            name: "CairnEtcd",
            dependencies: [
                "CairnCore",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            swiftSettings: strict
        ),
        // The cluster: control server, tablet agents, scheduler, the HTTP API and its client.
        .target(
            name: "CairnCluster",
            dependencies: [
                "CairnCore",
                "CairnEtcd",
                "CairnSystem",
                "CairnStorage",
                "CairnMySQL",
                "CairnEngine",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOFoundationEssentialsCompat", package: "swift-nio"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "cairn",
            dependencies: [
                "CairnCore",
                "CairnEtcd",
                "CairnSystem",
                "CairnStorage",
                "CairnMySQL",
                "CairnEngine",
                "CairnCluster",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),

        // `make bench-scale`: N simulated tablets against a real ctld (docs/BENCHMARKS.md).
        .executableTarget(
            name: "FleetSimulator",
            dependencies: [
                "CairnCore",
                "CairnStorage",
                "CairnEngine",
                "CairnCluster",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOFoundationEssentialsCompat", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),

        // Shared test helpers: real mariadbd instances, sysbench, SeaweedFS.
        .target(
            name: "CairnTestSupport",
            dependencies: [
                "CairnCore",
                "CairnEtcd",
                "CairnSystem",
                "CairnMySQL",
                "CairnStorage",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            path: "Tests/CairnTestSupport",
            swiftSettings: strict
        ),
        .testTarget(
            name: "CairnCoreTests",
            dependencies: [
                "CairnCore",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "CairnSystemTests",
            dependencies: [
                "CairnSystem", "CairnCore",
                .product(name: "NIOCore", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "CairnStorageTests",
            dependencies: ["CairnStorage", "CairnTestSupport"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "CairnMySQLTests",
            dependencies: ["CairnMySQL", "CairnTestSupport", "CairnSystem"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "CairnEngineTests",
            dependencies: ["CairnEngine", "CairnTestSupport", "CairnMySQL", "CairnStorage", "CairnSystem"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "CairnEtcdTests",
            dependencies: ["CairnEtcd", "CairnTestSupport", "CairnCore"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "CairnClusterTests",
            dependencies: [
                "CairnCluster", "CairnTestSupport", "CairnCore", "CairnStorage", "CairnEngine", "CairnMySQL", "CairnEtcd",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "NIOFoundationEssentialsCompat", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "CairnCLITests",
            dependencies: [
                "cairn", "CairnTestSupport", "CairnCore", "CairnStorage", "CairnMySQL", "CairnSystem", "CairnCluster", "CairnEtcd",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
    ]
)
