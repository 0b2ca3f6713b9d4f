import FuzzDriver
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

@_cdecl("fuzz_config_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    return runLibFuzzer(argc, argv, fuzz)
}
