import FuzzDriver
import PXGuardServer

// HTTP/1.1 request parser: any bytes, in irregular slices; must never crash or loop.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    FuzzHooks.httpParser(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}

@_cdecl("fuzz_http_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    return runLibFuzzer(argc, argv, fuzz)
}
