import Foundation
import Testing
@testable import PXGuardCore
@testable import PXGuardPlatform
@testable import PXGuardServer
@testable import PXGuardService

/// `server.metricsListen`: a plain-HTTP listener for scrapers without the webhook's CA,
/// serving `/metrics` and `/healthz` and nothing else; the TLS port keeps `/metrics`.
@Suite("Plain-HTTP metrics listener")
struct MetricsListenerTests {
    static func get(_ port: Int, _ request: String) throws -> String {
        let socket = try RawSocket(port: port)
        socket.send(Array(request.utf8))
        let (bytes, closed) = socket.readUntilClosed()
        #expect(closed, "one request per connection")
        return String(decoding: bytes, as: UTF8.self)
    }

    @Test("server.metricsListen serves /metrics and /healthz over plain HTTP; admission, /readyz and other methods are refused")
    func servesOnlyMetricsAndHealth() throws {
        let server = try TestServer(server: ["metricsListen": "\"127.0.0.1:0\""])
        let port = try #require(server.service.metricsListener?.port)
        #expect(port != server.port)
        let metrics = try Self.get(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(metrics.hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(metrics.contains("Content-Type: text/plain; version=0.0.4"))
        #expect(metrics.contains("\npxguard_ready 1\n"))
        #expect(metrics.contains("pxguard_build_info"))
        let health = try Self.get(port, "GET /healthz?verbose=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        #expect(health.hasPrefix("HTTP/1.1 200 OK\r\n") && health.hasSuffix("\r\n\r\nok"))
        for path in ["/validate", "/mutate", "/readyz", "/"] {
            #expect(try Self.get(port, "GET \(path) HTTP/1.1\r\n\r\n").hasPrefix("HTTP/1.1 404 "), "\(path)")
        }
        #expect(try Self.get(port, "POST /validate HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}").hasPrefix("HTTP/1.1 405 "))
        #expect(try Self.get(port, "garbage\r\n\r\n").hasPrefix("HTTP/1.1 400 "))
        // The TLS port keeps /metrics.
        let tls = try server.client().request("GET", "/metrics")
        #expect(tls.status == 200 && tls.bodyText.contains("pxguard_ready 1"))
    }

    @Test("a client that never finishes its request is cut at the deadline and the next scrape is served")
    func slowClientIsCut() throws {
        let server = try TestServer(server: ["metricsListen": "\"127.0.0.1:0\""])
        let port = try #require(server.service.metricsListener?.port)
        let stalled = try RawSocket(port: port, timeout: 10)
        stalled.send(Array("GET /metr".utf8))
        let (_, closed) = stalled.readUntilClosed()
        #expect(closed)
        #expect(try Self.get(port, "GET /healthz HTTP/1.1\r\n\r\n").hasPrefix("HTTP/1.1 200 "))
    }

    @Test("no metricsListen: no plain listener")
    func offByDefault() throws {
        let server = try TestServer()
        #expect(server.service.metricsListener == nil)
    }
}
