import FuzzDriver
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

@_cdecl("fuzz_json_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    return runLibFuzzer(argc, argv, fuzz)
}
