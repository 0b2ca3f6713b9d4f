// swift-tools-version:6.0
// In-process micro-benchmark of decoding and deciding AdmissionReviews, kept out
// of the main build. Run with `make bench` (or bench/run.sh).
import PackageDescription

let package = Package(
    name: "pxguard-micro",
    platforms: [.macOS(.v15)],
    dependencies: [.package(name: "pxguard", path: "../..")],
    targets: [
        .executableTarget(
            name: "pxguard-micro",
            dependencies: [.product(name: "PXGuardCore", package: "pxguard")]),
    ]
)
