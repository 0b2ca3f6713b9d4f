import Foundation
import Testing
@testable import PXGuardServer

/// The transport fuzz targets' seeds, replayed on every test run so the hooks and
/// their oracles stay working between fuzzing sessions.
@Suite("Transport fuzz seeds")
struct TransportFuzzSeedTests {
    static func seeds(_ target: String) -> [[UInt8]] {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../fuzz/corpus/\(target)").standardized.path
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        return names.sorted().compactMap { FileManager.default.contents(atPath: dir + "/" + $0).map { Array($0) } }
    }

    @Test("chunked seeds: trailers and extensions within limits complete, over them are refused")
    func chunked() {
        let seeds = Self.seeds("chunked")
        #expect(seeds.count >= 4)
        let completed = seeds.map { seed in seed.withUnsafeBytes { TransportFuzzHooks.chunkedBody($0) } }
        // trailers and many complete; a 300-byte extension (limit 256) and 60 trailer lines (limit 512 bytes) do not.
        #expect(completed == [0, 0, 1, 1])
    }

    @Test("TLS record seeds: every request is answered whatever the record and segment cuts")
    func records() {
        let seeds = Self.seeds("tls-records")
        #expect(seeds.count >= 3)
        for seed in seeds {
            let answered = seed.withUnsafeBytes { TransportFuzzHooks.recordPath($0) }
            #expect(answered == 1 + Int(seed[0]) % 24)
        }
    }
}
