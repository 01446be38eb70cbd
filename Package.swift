// swift-tools-version: 6.1
import Foundation
import PackageDescription

let package = Package(
    name: "IBKE",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "TensorCore", targets: ["TensorCore"]),
        .library(name: "ModelFormats", targets: ["ModelFormats"]),
        .library(name: "Tokenizers", targets: ["Tokenizers"]),
        .library(name: "Models", targets: ["Models"]),
        .library(name: "Editing", targets: ["Editing"]),
        .library(name: "Evaluation", targets: ["Evaluation"]),
        .library(name: "Training", targets: ["Training"]),
        .library(name: "Serving", targets: ["Serving"]),
        .executable(name: "ibke", targets: ["IBKECLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-crypto", from: "4.5.2"),
        .package(url: "https://github.com/x-sheep/swift-property-based", from: "2.0.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    ],
    targets: [
        // MARK: BLAS / LAPACK (Debian libopenblas-dev)
        .systemLibrary(
            name: "COpenBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]
        ),

        // MARK: Library modules (dependency order)
        // Dot products on GGUF quantized blocks (C: per-function AVX2 targets chosen at run time).
        .target(name: "CQuantKernels"),
        .target(name: "TensorCore", dependencies: ["COpenBLAS", "CQuantKernels"]),
        .target(name: "ModelFormats", dependencies: ["TensorCore", .product(name: "Crypto", package: "swift-crypto")]),
        .target(name: "Tokenizers", dependencies: ["ModelFormats"]),
        .target(name: "Models", dependencies: ["TensorCore", "ModelFormats", "Tokenizers"]),
        .target(
            name: "Editing",
            dependencies: ["COpenBLAS", "TensorCore", "ModelFormats", "Tokenizers", "Models", .product(name: "Yams", package: "Yams")]),
        .target(name: "Evaluation", dependencies: ["TensorCore", "ModelFormats", "Models", "Editing"]),
        .target(name: "Training", dependencies: ["TensorCore", "ModelFormats", "Models", "Editing", "Evaluation"]),
        // `ibke serve`: the model host (edits serialized, journaled) and its HTTP API and playground.
        .target(
            name: "Serving",
            dependencies: [
                "ModelFormats", "Models", "Editing", .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"), .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            resources: [.copy("Playground")]),

        // MARK: Command-line tool
        .executableTarget(
            name: "IBKECLI",
            dependencies: [
                "Models", "Editing", "Evaluation", "Training", "Serving",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        // MARK: Tests
        .testTarget(name: "TensorCoreTests", dependencies: ["TensorCore"]),
        .testTarget(
            name: "ModelFormatsTests", dependencies: ["ModelFormats", .product(name: "PropertyBased", package: "swift-property-based")],
            resources: [.copy("Fixtures")]),
        .testTarget(
            name: "TokenizersTests",
            dependencies: ["Tokenizers", "ModelFormats", .product(name: "PropertyBased", package: "swift-property-based")],
            resources: [.copy("Fixtures")]),
        .testTarget(
            name: "ModelsTests", dependencies: ["Models"],
            resources: [.copy("Fixtures")]),
        // Runs the built `ibke` (found next to the test bundle) on ModelsTests' fixtures, read in
        // place through #filePath; `swift build` / `swift test` build the executable with it.
        // Edits the tiny models of ModelsTests/Fixtures, read in place through #filePath.
        .testTarget(
            name: "EditingTests",
            dependencies: ["Editing", "Models", "ModelFormats", .product(name: "PropertyBased", package: "swift-property-based")]),
        .testTarget(
            name: "EvaluationTests", dependencies: ["Evaluation", "Editing", "Models"],
            resources: [.copy("Fixtures")]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "Evaluation", "Editing", "Models"]),
        .testTarget(name: "CLITests"),
        .testTarget(
            name: "ServingTests",
            dependencies: ["Serving", "Models", "Editing", .product(name: "HummingbirdTesting", package: "hummingbird")]),
    ]
)

// Coverage-guided fuzz targets (Scripts/fuzz), built with libFuzzer and the address sanitizer
// only when asked: the fuzz entry point has no `main` of its own.
if ProcessInfo.processInfo.environment["IBKE_FUZZ"] != nil {
    package.targets.append(.executableTarget(
        name: "IBKEFuzz", dependencies: ["ModelFormats", "Tokenizers", "Models", "Editing", "Evaluation"],
        // gold fails on the sanitizer runtime's symbols; the toolchain's lld links it.
        linkerSettings: [.unsafeFlags(["-use-ld=lld"])]))
    package.products.append(.executable(name: "ibke-fuzz", targets: ["IBKEFuzz"]))
}
