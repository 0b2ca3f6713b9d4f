import FuzzDriver
import PXGuardServer

// Chunked bodies: chunk lines, extensions and trailers in irregular slices; the
// totals must stay within their limits and nothing may crash or loop.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    TransportFuzzHooks.chunkedBody(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

@_cdecl("fuzz_chunked_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    return runLibFuzzer(argc, argv, fuzz)
}
