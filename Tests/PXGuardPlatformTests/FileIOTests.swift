import Foundation
import Testing
@testable import PXGuardPlatform

@Suite("Files over the syscall wrapper")
struct FileIOTests {
    func scratch() -> String { NSTemporaryDirectory() + "pxguard-fileio-" + UUID().uuidString }

    @Test("makeDirectory makes every level; writeAtomically and read round-trip with the mode asked for")
    func roundTrip() throws {
        let dir = scratch() + "/a/b/c"
        defer { try? FileManager.default.removeItem(atPath: String(dir.dropLast(6))) }
        try FileIO.makeDirectory(dir)
        try FileIO.makeDirectory(dir)  // already there: fine
        let bytes = (0..<200_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        try FileIO.writeAtomically(dir + "/f", bytes, mode: 0o600)
        #expect(try FileIO.read(dir + "/f") == bytes)
        let mode = try FileManager.default.attributesOfItem(atPath: dir + "/f")[.posixPermissions] as? Int
        #expect(mode == 0o600)
        #expect(!FileManager.default.fileExists(atPath: dir + "/f.tmp-\(getpid())"))
    }

    @Test("errors: a missing file is the kernel's ENOENT; a file over the limit is FileTooLargeError, not an invented errno")
    func errors() throws {
        let dir = scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            _ = try FileIO.read(dir + "/missing")
            Issue.record("read a missing file")
        } catch let error as IOError {
            #expect(error.errnoCode == ENOENT)
        }
        try FileIO.makeDirectory(dir)
        try FileIO.writeAtomically(dir + "/big", [UInt8](repeating: 1, count: 5000), mode: 0o644)
        #expect(throws: FileTooLargeError.self) { try FileIO.read(dir + "/big", limit: 4096) }
        // A path component that is a file cannot become a directory.
        #expect(throws: IOError.self) { try FileIO.makeDirectory(dir + "/big/sub") }
    }
}
