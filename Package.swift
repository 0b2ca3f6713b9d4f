// swift-tools-version:6.0
import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    // Imports are internal unless a public signature needs the module (`public import`).
    .enableUpcomingFeature("InternalImportsByDefault"),
]

let package = Package(
    name: "pxguard",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "pxguard", targets: ["pxguard"]),
        // For the out-of-tree micro-benchmark (bench/micro) and fuzz targets.
        .library(name: "PXGuardCore", targets: ["PXGuardCore"]),
        .library(name: "PXGuardYAML", targets: ["PXGuardYAML"]),
        .library(name: "PXGuardServer", targets: ["PXGuardServer"]),
    ],
    // No package dependencies: sockets + OpenSSL, libyaml, and a small argument
    // parser of our own (a general one pulled Foundation into the binary).
    targets: [
        .systemLibrary(
            name: "COpenSSL", pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CLinux"),
        .systemLibrary(name: "CSIMD"),
        .systemLibrary(
            name: "CYAML", pkgConfig: "yaml-0.1",
            providers: [.apt(["libyaml-dev"])]),
        // Byte-run compare and JSON string escaping: pure, shared by the core and the logger.
        .target(name: "PXGuardBytes", swiftSettings: strict),
        .target(name: "PXGuardCore", dependencies: ["CSIMD", "PXGuardBytes"], swiftSettings: strict),
        // Syscalls, clocks, files, threads, locks, logging: below both the transport and the API client.
        .target(name: "PXGuardPlatform", dependencies: ["CLinux", "PXGuardBytes"], swiftSettings: strict),
        .target(name: "PXGuardYAML", dependencies: ["PXGuardCore", "CYAML"], swiftSettings: strict),
        .target(name: "PXGuardServer", dependencies: ["COpenSSL", "CLinux", "PXGuardBytes", "PXGuardPlatform"], swiftSettings: strict),
        .target(name: "PXGuardKube", dependencies: ["PXGuardCore", "PXGuardPlatform", "PXGuardServer"], swiftSettings: strict),
        .target(
            name: "PXGuardService",
            dependencies: ["PXGuardCore", "PXGuardYAML", "PXGuardPlatform", "PXGuardServer", "PXGuardKube"],
            swiftSettings: strict),
        .executableTarget(
            name: "pxguard",
            dependencies: ["PXGuardService", "PXGuardPlatform"],
            swiftSettings: strict),
        .testTarget(name: "PXGuardCoreTests", dependencies: ["PXGuardCore", "PXGuardBytes", "PXGuardYAML"],
                    resources: [.copy("Fixtures")], swiftSettings: strict),
        // CRDs: the projects' own CustomResourceDefinitions, read by path (CRDSchemaTests).
        .testTarget(name: "PXGuardYAMLTests", dependencies: ["PXGuardYAML"],
                    exclude: ["CRDs"], resources: [.copy("Configs")], swiftSettings: strict),
        .testTarget(name: "PXGuardPlatformTests", dependencies: ["PXGuardPlatform"], swiftSettings: strict),
        .testTarget(name: "PXGuardServerTests", dependencies: ["PXGuardServer", "PXGuardPlatform"], swiftSettings: strict),
        // PXGuardService too: the end-to-end test runs the real service against the in-test API.
        .testTarget(name: "PXGuardKubeTests", dependencies: ["PXGuardKube", "PXGuardPlatform", "PXGuardServer", "PXGuardService"],
                    swiftSettings: strict),
        // Goldens and manifests are read by path (check reports name the file), not bundled.
        .testTarget(name: "PXGuardServiceTests", dependencies: ["PXGuardService", "PXGuardPlatform", "PXGuardServer"],
                    exclude: ["Golden", "Manifests"], swiftSettings: strict),
    ]
)
