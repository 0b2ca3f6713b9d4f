// swift-tools-version:6.0
import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
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
        .target(name: "PXGuardCore", dependencies: ["CSIMD"], swiftSettings: strict),
        .target(name: "PXGuardYAML", dependencies: ["PXGuardCore", "CYAML"], swiftSettings: strict),
        .target(name: "PXGuardServer", dependencies: ["COpenSSL", "CLinux"], swiftSettings: strict),
        .target(name: "PXGuardKube", dependencies: ["PXGuardCore", "PXGuardServer"], swiftSettings: strict),
        .target(
            name: "PXGuardService",
            dependencies: ["PXGuardCore", "PXGuardYAML", "PXGuardServer", "PXGuardKube"],
            swiftSettings: strict),
        .executableTarget(
            name: "pxguard",
            dependencies: ["PXGuardService", "PXGuardServer"],
            swiftSettings: strict),
        .testTarget(name: "PXGuardCoreTests", dependencies: ["PXGuardCore"],
                    resources: [.copy("Fixtures")], swiftSettings: strict),
        .testTarget(name: "PXGuardYAMLTests", dependencies: ["PXGuardYAML"],
                    resources: [.copy("Configs")], swiftSettings: strict),
        .testTarget(name: "PXGuardServerTests", dependencies: ["PXGuardServer"], swiftSettings: strict),
        .testTarget(name: "PXGuardKubeTests", dependencies: ["PXGuardKube", "PXGuardServer"], swiftSettings: strict),
        // Goldens and manifests are read by path (check reports name the file), not bundled.
        .testTarget(name: "PXGuardServiceTests", dependencies: ["PXGuardService", "PXGuardServer"],
                    exclude: ["Golden", "Manifests"], swiftSettings: strict),
    ]
)
