import FuzzDriver
import PXGuardCore
import PXGuardServer

// The watch path end to end, as an informer reads it: the API client's one response
// reader streams the body (chunked, Content-Length or close-delimited) into the JSON
// stream reader, which takes events out one value at a time keeping a few fields
// within a per-object budget. Any bytes from a hostile API server: never a crash, a
// hang, or a kept field over its budget.
let eventPaths = JSONPaths([
    ["type"], ["object", "code"], ["object", "reason"], ["object", "message"],
    ["object", "metadata", "name"], ["object", "metadata", "namespace"], ["object", "metadata", "resourceVersion"],
    ["object", "metadata", "labels", "pxguard.io/guarded"], ["object", "metadata", "annotations", "pxguard.io/policies"],
    ["object", "spec"],
])
let budget = 512

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard let (_, next) = FuzzHooks.httpClientStream(UnsafeRawBufferPointer(start: data, count: size)) else { return 0 }
    var reader = JSONStreamReader(source: next)
    reader.maxDepth = 64
    var events = 0
    do {
        while try !reader.atEnd() {
            let event = try reader.next(eventPaths, budget: budget)
            let kept = event.raw.reduce(0) { $0 + ($1?.count ?? 0) }
            precondition(kept <= budget, "kept \(kept) bytes over the \(budget)-byte budget")
            for i in event.raw.indices where event.overBudget[i] { precondition(event.raw[i] == nil, "an over-budget field kept") }
            _ = event.json(9)
            events += 1
            precondition(events <= size, "more events than input bytes")
        }
    } catch {}
    return 0
}

@_cdecl("fuzz_watch_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    return runLibFuzzer(argc, argv, fuzz)
}
