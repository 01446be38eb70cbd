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
            dependencies: ["COpenBLAS", "TensorCore", "ModelFormats", "Tokenizers", "Models", .product(name: "Yams", package: "Yams")],
            // Compiled into the binary, so that a copied `ibke` still has it (CorpusSample).
            resources: [.embedInCode("Resources/corpus-sample.txt")]),
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
            // Compiled into the binary, so that a copied `ibke` still serves them.
            resources: ["index.html", "app.js", "style.css"].map { .embedInCode("Playground/\($0)") }),

        // MARK: Command-line tool
        .executableTarget(
            name: "IBKECLI",
            dependencies: [
                "Models", "Editing", "Evaluation", "Training", "Serving",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            // The Swift runtime and Foundation linked in, with packed relative relocations: 8 MB
            // less resident memory than the shared libraries' relocated pages (Docs/quantized.md,
            // "Beside llama.cpp"). SwiftPM compiles against the shared Foundation, so the static
            // archives it would autolink are named here.
            linkerSettings: [
                .unsafeFlags(["-static-stdlib", "-use-ld=lld", "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs"]),
                .linkedLibrary("CoreFoundation"), .linkedLibrary("_FoundationICU"),
                .linkedLibrary("_FoundationCollections"), .linkedLibrary("_FoundationCShims"),
            ]
        ),

        // MARK: Tests
        // What every test target shares: the cache and fixture locations, temporary directories.
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "TensorCoreTests", dependencies: ["TensorCore"]),
        .testTarget(
            name: "ModelFormatsTests",
            dependencies: ["ModelFormats", "TestSupport", .product(name: "PropertyBased", package: "swift-property-based")],
            resources: [.copy("Fixtures")]),
        .testTarget(
            name: "TokenizersTests",
            dependencies: ["Tokenizers", "ModelFormats", .product(name: "PropertyBased", package: "swift-property-based")],
            resources: [.copy("Fixtures")]),
        .testTarget(name: "ModelsTests", dependencies: ["Models", "TestSupport"], resources: [.copy("Fixtures")]),
        // Edits the tiny models of ModelsTests/Fixtures, read in place (TestSupport.ModelFixtures).
        .testTarget(
            name: "EditingTests",
            dependencies: [
                "Editing", "Models", "ModelFormats", "TestSupport", .product(name: "PropertyBased", package: "swift-property-based"),
            ]),
        .testTarget(
            name: "EvaluationTests", dependencies: ["Evaluation", "Editing", "Models", "TestSupport"], resources: [.copy("Fixtures")]),
        .testTarget(name: "TrainingTests", dependencies: ["Training", "Evaluation", "Editing", "Models", "TestSupport"]),
        // Runs the built `ibke` (found next to the test bundle; `swift build` / `swift test` build
        // it) on ModelsTests' fixtures, read in place.
        .testTarget(name: "CLITests", dependencies: ["TestSupport"]),
        .testTarget(
            name: "ServingTests",
            dependencies: ["Serving", "Models", "Editing", "TestSupport", .product(name: "HummingbirdTesting", package: "hummingbird")]),
    ]
)

// Coverage-guided fuzz targets (Scripts/fuzz), built with libFuzzer and the address sanitizer
// only when asked: the fuzz entry point has no `main` of its own.
if ProcessInfo.processInfo.environment["IBKE_FUZZ"] != nil {
    package.targets.append(
        .executableTarget(
            name: "IBKEFuzz", dependencies: ["ModelFormats", "Tokenizers", "Models", "Editing", "Evaluation"],
            // gold fails on the sanitizer runtime's symbols; the toolchain's lld links it.
            linkerSettings: [.unsafeFlags(["-use-ld=lld"])]))
    package.products.append(.executable(name: "ibke-fuzz", targets: ["IBKEFuzz"]))
}
