import FuzzDriver
import PXGuardServer

// The Kubernetes API client's response reader: any bytes from a hostile or broken
// API server, in irregular slices; must never crash, loop or exceed its limits.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    FuzzHooks.httpClientResponse(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

@_cdecl("fuzz_client_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    return runLibFuzzer(argc, argv, fuzz)
}
