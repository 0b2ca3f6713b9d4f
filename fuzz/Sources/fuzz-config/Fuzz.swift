import PXGuardCore
import PXGuardYAML

// YAML reader and config decoder: errors must be located, and accepted configs
// must build a policy and render without crashing.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    do {
        let config = try ConfigLoader(file: "fuzz.yaml").load(bytes)
        _ = AdmissionPolicy(config: config)
        _ = YAMLEmitter.documents(InstallBundle(config: config, caBundlePEM: nil).webhooks)
    } catch {
        precondition(error.description.hasPrefix("fuzz.yaml:"), "unlocated error: \(error)")
    }
    _ = try? YAMLReader.documents(bytes, file: "fuzz.yaml").map(\.json)
    return 0
}

// SwiftPM links executables with main defined as <module>_main; hand control to
// libFuzzer's driver from there.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
    _ callback: @convention(c) (UnsafePointer<UInt8>, Int) -> CInt) -> CInt

@_cdecl("fuzz_config_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var count = argc
    var vector = argv
    return LLVMFuzzerRunDriver(&count, &vector, fuzz)
}
