import FuzzDriver
import PXGuardCore

// AdmissionReview decoding and every rule and the mutation on whatever decodes;
// the encoded answer must itself be valid JSON with the request's uid.
let policy = AdmissionPolicy(config: .default)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    _ = try? AdmissionRequest.withDecoded(bytes) { request in
        for verdict in [policy.validate(request), policy.mutate(request).verdict] {
            var out: [UInt8] = []
            ReviewEncoder.encode(verdict, uid: request.uid, version: request.version, into: &out)
            guard let answer = try? JSON(parsing: out) else { fatalError("answer is not JSON") }
            precondition(answer["response"]?["uid"]?.stringValue == request.uid)
            if let patch = verdict.patch {
                precondition((try? JSON(parsing: patch))?.arrayValue != nil, "patch is not a JSON array")
            }
        }
    }
    return 0
}

@_cdecl("fuzz_review_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    _ = policy  // built before the first input, so its one-time allocations are not taken for leaks
    return runLibFuzzer(argc, argv, fuzz)
}
