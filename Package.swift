// swift-tools-version:6.1
import PackageDescription

// MoEKit: import, profile, slim, evaluate, serve and export Mixture-of-Experts models.
// C libraries enter through the two system-library targets (CLMDB, CBLAS) and the
// CKernels target of hot numeric kernels; nothing else links C.
let package = Package(
    name: "MoEKit",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "moekit", targets: ["moekit"]),
        .library(name: "MoE", targets: ["MoE"]),
        .library(name: "Routing", targets: ["Routing"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", exact: "1.8.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", exact: "2.28.1"),
        // Hummingbird's own lifecycle package, named to stop in-process servers gracefully.
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", exact: "2.13.0"),
        // The Prometheus exposition of /metrics (counters, gauges, histograms).
        .package(url: "https://github.com/swift-server/swift-prometheus", exact: "2.4.1"),
    ],
    targets: [
        .systemLibrary(name: "CLMDB", pkgConfig: "lmdb", providers: [.apt(["liblmdb-dev"])]),
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .target(name: "CKernels"),
        .target(name: "Routing"),
        .target(name: "MoE", dependencies: ["Routing", "CBLAS", "CKernels"]),
        .target(name: "ExpertStore", dependencies: ["MoE", "Routing", "CLMDB", "CBLAS", "CKernels"]),
        .target(name: "Compression", dependencies: ["MoE", "Routing", "ExpertStore", "CBLAS", "CKernels"]),
        // A Jinja interpreter for the subset Hugging Face chat templates use (no Swift Jinja
        // package is available to this project); Foundation only.
        .target(name: "ChatTemplates"),
        .target(name: "MoEServer", dependencies: ["ChatTemplates", "MoE", "Routing", "ExpertStore", "Compression", "CKernels", .product(name: "Hummingbird", package: "hummingbird"),
                                              .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                                              .product(name: "Prometheus", package: "swift-prometheus")]),
        .executableTarget(
            name: "moekit",
            dependencies: ["MoE", "Routing", "ExpertStore", "Compression", "MoEServer", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(name: "moekit-bench", dependencies: ["MoE", "Routing", "CBLAS", "CKernels"], path: "Benchmarks/moekit-bench"),
        .executableTarget(name: "profile-bench", dependencies: ["MoE", "Routing", "ExpertStore"], path: "Benchmarks/profile-bench"),
        .executableTarget(name: "store-bench", dependencies: ["MoE", "ExpertStore"], path: "Benchmarks/store-bench"),
        .executableTarget(name: "serve-bench", dependencies: ["MoEServer", "Compression", "ExpertStore", "MoE", "Routing", "CBLAS"], path: "Benchmarks/serve-bench"),
        .executableTarget(name: "make-checkpoint", path: "Benchmarks/make-checkpoint"),
        // Raw-socket HTTP client for the framing tests and the fuzz run (no HTTP library: it
        // sends what no well-behaved client would).
        .target(name: "HTTPProbe"),
        .executableTarget(name: "http-fuzz", dependencies: ["HTTPProbe", "MoE"], path: "Benchmarks/http-fuzz"),
        .executableTarget(name: "quant-bench", dependencies: ["Compression", "MoE", "CBLAS", "CKernels"], path: "Benchmarks/quant-bench"),
        .testTarget(name: "RoutingTests", dependencies: ["Routing"]),
        .testTarget(name: "MoETests", dependencies: ["MoE", "Routing"]),
        .testTarget(name: "ExpertStoreTests", dependencies: ["ExpertStore", "MoE", "CLMDB"]),
        .testTarget(name: "ChatTemplatesTests", dependencies: ["ChatTemplates"]),
        .testTarget(name: "MoEServerTests", dependencies: ["MoEServer", "Compression", "ExpertStore", "MoE", "Routing", "HTTPProbe"]),
        .testTarget(name: "CompressionTests", dependencies: ["Compression", "MoE", "Routing", "ExpertStore", "CKernels"]),
    ]
)
