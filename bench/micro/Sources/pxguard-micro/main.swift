// Decode + decide + encode one AdmissionReview in a loop, no sockets. Prints the
// median and p99 time per review and, with the malloc counter preloaded
// (bench/run.sh builds it), allocations per review.
import PXGuardCore
#if canImport(Glibc)
import Glibc
#endif

func now() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

func readFile(_ path: String) -> [UInt8] {
    guard let f = fopen(path, "rb") else { fatalError("cannot open \(path)") }
    defer { fclose(f) }
    var out: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = fread(&buf, 1, buf.count, f)
        if n <= 0 { break }
        out += buf[0..<n]
    }
    return out
}

typealias Counter = @convention(c) () -> UInt64
let mallocCount: Counter? = {
    guard let sym = dlsym(dlopen(nil, RTLD_NOW), "pxguard_malloc_count") else { return nil }
    return unsafeBitCast(sym, to: Counter.self)
}()

/// PXGUARD_MICRO_MUTATE: R4 in repair mode, and the review answered as `/mutate`
/// answers it (the repair patch included), as `review --mutate` does.
let mutating = getenv("PXGUARD_MICRO_MUTATE") != nil
let policy: AdmissionPolicy = {
    var config = Config.default
    if mutating { config.ruleModes[.bypassPolicies] = .repair }
    return AdmissionPolicy(config: config)
}()
var out: [UInt8] = []
out.reserveCapacity(4096)

@MainActor func decide(_ body: [UInt8]) -> Bool {
    out.removeAll(keepingCapacity: true)
    return body.withUnsafeBytes { raw in
        (try? AdmissionRequest.withDecoded(raw) { request -> Bool in
            let verdict = mutating ? policy.mutate(request).verdict : policy.validate(request)
            ReviewEncoder.encode(verdict, uid: request.uid, version: request.version, into: &out)
            return verdict.allowed
        }) ?? false
    }
}

@MainActor func measure(_ name: String, _ body: [UInt8], iterations: Int) {
    for _ in 0..<min(1000, iterations) { _ = decide(body) }
    var samples: [UInt64] = []
    samples.reserveCapacity(iterations)
    let allocsBefore = mallocCount?() ?? 0
    for _ in 0..<iterations {
        let t0 = now()
        _ = decide(body)
        samples.append(now() - t0)
    }
    let allocs = (mallocCount?() ?? 0) - allocsBefore
    samples.sort()
    let median = Double(samples[samples.count / 2]) / 1000
    let p99 = Double(samples[samples.count * 99 / 100]) / 1000
    let perReview = mallocCount == nil ? "n/a" : String(Double(allocs) / Double(iterations))
    print("\(name + String(repeating: " ", count: max(1, 24 - name.count))) bytes=\(body.count)  median=\(median)us  p99=\(p99)us  allocs/review=\(perReview)  allowed=\(decide(body))")
}

let arguments = CommandLine.arguments.dropFirst()
guard arguments.count >= 1 else {
    print("usage: pxguard-micro REVIEW.json [REVIEW.json...]")
    exit(2)
}
for path in arguments {
    let name = String(path.split(separator: "/").last ?? "")
    measure(name, readFile(path), iterations: getenv("PXGUARD_MICRO_ITERATIONS").flatMap { Int(String(cString: $0)) } ?? 50_000)
}

// Breakdown for the first file: validation only, and decode only.
if CommandLine.arguments.count > 1, CommandLine.environment("PXGUARD_MICRO_BREAKDOWN") {
    let body = readFile(CommandLine.arguments[1])
    var t0 = now()
    for _ in 0..<20_000 { body.withUnsafeBytes { raw in _ = try? JSONDocument.parse(raw) { _ in 0 } } }
    print("validate only: \(Double(now() - t0) / 20_000 / 1000)us")
    t0 = now()
    for _ in 0..<20_000 { body.withUnsafeBytes { raw in _ = try? AdmissionRequest.withDecoded(raw) { $0.uid.count } } }
    print("decode only:   \(Double(now() - t0) / 20_000 / 1000)us")
}

extension CommandLine {
    static func environment(_ name: String) -> Bool { getenv(name) != nil }
}
