import PXGuardCore

// JSON reader: validation must agree with a full traversal of every accepted
// document, and re-serialising an accepted document must parse again.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    guard let tree = try? JSONDocument.parse(bytes, { JSON($0) }) else { return 0 }
    let again = Array(tree.serialized.utf8)
    guard let reparsed = try? JSON(parsing: again) else { fatalError("serialised form does not parse: \(tree.serialized)") }
    precondition(reparsed == tree, "round trip changed the value")
    return 0
}

// SwiftPM links executables with main defined as <module>_main; hand control to
// libFuzzer's driver from there.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt) -> CInt

@_cdecl("fuzz_json_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var count = argc
    var vector = argv
    return LLVMFuzzerRunDriver(&count, &vector, fuzz)
}
