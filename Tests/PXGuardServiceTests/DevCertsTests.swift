import Foundation
import Testing
@testable import PXGuardServer
@testable import PXGuardService

@Suite("serve: certificates are mounted, not invented")
struct DevCertsTests {
    @Test("without --dev-certs a missing tls.crt/tls.key is a one-line error naming the fix, and nothing is written")
    func refusesToInvent() throws {
        let dir = try temporaryDirectory()
        var options = ServeOptions()
        options.certDir = dir + "/certs"
        options.listen = "127.0.0.1:0"
        #expect {
            _ = try Service(options: options, logger: .none)
        } throws: { error in
            let text = (error as? CommandError)?.description ?? ""
            return text.contains("no tls.crt and tls.key in \(dir)/certs") && text.contains("--dev-certs") && !text.contains("\n")
        }
        #expect(!FileManager.default.fileExists(atPath: dir + "/certs/tls.crt"))
        let output = try shell("'\(try pxguardBinary())' serve --listen 127.0.0.1:0 --cert-dir '\(dir)/certs' 2>&1; echo \"exit $?\"")
        #expect(output.hasSuffix("exit 2\n") && output.contains("--dev-certs"), "\(output)")
    }

    @Test("with --dev-certs the pair is created and served")
    func devCerts() throws {
        let dir = try temporaryDirectory()
        var options = ServeOptions()
        options.certDir = dir + "/certs"
        options.listen = "127.0.0.1:0"
        options.devCerts = true
        let service = try Service(options: options, logger: .none)
        #expect(FileManager.default.fileExists(atPath: dir + "/certs/tls.crt"))
        #expect(FileManager.default.fileExists(atPath: dir + "/certs/tls.key"))
        service.start()
        service.stop()
    }
}
