// swift-tools-version:6.0
// libFuzzer targets, built outside the main product with
//   swift build -c release -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library
// (fuzz/run.sh does that and runs each target for N seconds over fuzz/corpus/).
import PackageDescription

let package = Package(
    name: "pxguard-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [.package(name: "pxguard", path: "..")],
    targets: [
        .target(name: "FuzzDriver"),
        .executableTarget(name: "fuzz-http", dependencies: ["FuzzDriver", .product(name: "PXGuardServer", package: "pxguard")]),
        .executableTarget(name: "fuzz-client", dependencies: ["FuzzDriver", .product(name: "PXGuardServer", package: "pxguard")]),
        .executableTarget(name: "fuzz-chunked", dependencies: ["FuzzDriver", .product(name: "PXGuardServer", package: "pxguard")]),
        .executableTarget(name: "fuzz-tls-records", dependencies: ["FuzzDriver", .product(name: "PXGuardServer", package: "pxguard")]),
        .executableTarget(name: "fuzz-watch", dependencies: ["FuzzDriver", .product(name: "PXGuardServer", package: "pxguard"),
                                                             .product(name: "PXGuardCore", package: "pxguard")]),
        .executableTarget(name: "fuzz-json", dependencies: ["FuzzDriver", .product(name: "PXGuardCore", package: "pxguard")]),
        .executableTarget(name: "fuzz-review", dependencies: ["FuzzDriver", .product(name: "PXGuardCore", package: "pxguard")]),
        .executableTarget(name: "fuzz-config", dependencies: ["FuzzDriver", .product(name: "PXGuardYAML", package: "pxguard"),
                                                              .product(name: "PXGuardCore", package: "pxguard")]),
    ]
)
