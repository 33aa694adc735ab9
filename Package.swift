// swift-tools-version: 6.0
import PackageDescription

/// F16C turns `Float(Float16)` into `vcvtph2ps` (see shared/specs/swift.md §2(iii)); without it every
/// half-precision conversion is a libgcc call at 0.5 GB/s. AVX2 and FMA double the width of the SIMD
/// kernels (statistics, conversion, dequantization); every machine of this project's kind has them.
let fastMath: [SwiftSetting] = [.unsafeFlags(["-Xcc", "-mf16c", "-Xcc", "-mavx2", "-Xcc", "-mfma"])]

/// The Swift runtime and FoundationEssentials (which swift-argument-parser uses) linked statically: a dynamic
/// start of a Swift tool costs ~10 ms here, most of it loading and relocating shared objects; a header-only
/// `qinspect` listing is mostly start-up.
let staticRuntime: [LinkerSetting] = [
    .unsafeFlags(["-static-stdlib", "-Xlinker", "-l_FoundationCollections", "-Xlinker", "-l_FoundationCShims", "-Xlinker", "-lswiftSynchronization"]),
]

let package = Package(
    name: "qkit",
    products: [
        .library(name: "Common", targets: ["Common"]),
        .executable(name: "qinspect", targets: ["qinspect"]),
        .executable(name: "qcalib", targets: ["qcalib"]),
        .executable(name: "qquant", targets: ["qquant"]),
        .executable(name: "qpack", targets: ["qpack"]),
        .executable(name: "qeval", targets: ["qeval"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CJSONC", pkgConfig: "json-c", providers: [.apt(["libjson-c-dev"])]),
        // Common links no C library yet: a tool that does not need BLAS should not pay OpenBLAS's thread-pool
        // start-up (~4 ms of a 11 ms qinspect listing). The forward pass (issue 3) adds COpenBLAS where it is used.
        // Streaming-store conversions for buffers larger than the caches (Swift cannot emit non-temporal stores):
        // C compiled from source with Common, not a system library, so it costs no start-up.
        .target(name: "CKernels", cSettings: [.unsafeFlags(["-mavx2", "-mfma", "-mf16c", "-O3"])]),
        .target(
            name: "Common",
            dependencies: ["CKernels", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: fastMath),
        .executableTarget(name: "qinspect", dependencies: ["Common"], linkerSettings: staticRuntime),
        .executableTarget(name: "qcalib", dependencies: ["Common"], linkerSettings: staticRuntime),
        .executableTarget(name: "qquant", dependencies: ["Common"], linkerSettings: staticRuntime),
        .executableTarget(name: "qpack", dependencies: ["Common"], linkerSettings: staticRuntime),
        .executableTarget(name: "qeval", dependencies: ["Common"], linkerSettings: staticRuntime),
        // Development targets, not user tools: benchmarks against the peers, synthetic checkpoints.
        .executableTarget(name: "qbench", dependencies: ["Common", "CJSONC", "COpenBLAS"], swiftSettings: fastMath),
        .executableTarget(name: "qsynth", dependencies: ["Common"]),
        .testTarget(name: "CommonTests", dependencies: ["Common", "CKernels", "CZlib"], exclude: ["Fixtures"], swiftSettings: fastMath),
        .testTarget(name: "ToolTests", dependencies: ["Common"], exclude: ["Fixtures"]),
    ],
    swiftLanguageModes: [.v6]
)
