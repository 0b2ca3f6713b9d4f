import FuzzDriver
import PXGuardServer

// The TLS record path of the real event loop: requests cut into records and
// segments where the input says (split records, pipelined records, many records
// in one segment); every request must be answered, in order.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    TransportFuzzHooks.recordPath(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

@_cdecl("fuzz_tls_records_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    return runLibFuzzer(argc, argv, fuzz)
}
