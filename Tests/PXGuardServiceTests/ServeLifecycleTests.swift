import Foundation
import Testing
import PXGuardPlatform
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

@Suite("serve: SIGTERM keeps serving, not ready, for the shutdown delay")
struct ShutdownDelayTests {
    @Test("during the delay /readyz is 503 and reviews are still answered on a new connection; then the listener closes")
    func delay() throws {
        let server = try TestServer { $0.shutdownDelay = 3 }  // room for handshakes on a slow (sanitizer) build
        let port = server.port
        let done = Locked(false)
        let stopper = Thread {
            server.service.stop()
            done.withLock { $0 = true }
        }
        stopper.start()
        var readiness = 0
        for _ in 0..<50 where readiness != 503 {
            usleep(20_000)
            readiness = try server.client().request("GET", "/readyz").status
        }
        #expect(readiness == 503)
        #expect(!done.withLock { $0 })
        let answer = try server.client().request("POST", "/validate", headers: jsonHeaders, body: fixtureBytes("pod-hostnetwork-e2"))
        #expect(answer.status == 200 && answer.bodyText.contains("\"allowed\":false"))
        while !done.withLock({ $0 }) { usleep(20_000) }
        #expect(throws: (any Error).self) { _ = try RawSocket(port: port) }
    }
}
