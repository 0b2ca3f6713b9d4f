import Foundation
@testable import PXGuardService
import PXGuardPlatform
import PXGuardServer

/// The real service (TLS listener, provisioner, audit) against the in-test API: `config`
/// written to `dir/config.yaml`, development certificates in `dir/certs`, a free
/// loopback port, and a TLS client that trusts the service's CA.
func startService(_ api: FakeKubeAPI, config: String, dir: String) throws -> (service: Service, client: HTTPClientConnection) {
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    try config.write(toFile: dir + "/config.yaml", atomically: true, encoding: .utf8)
    var options = ServeOptions()
    options.configPath = dir + "/config.yaml"
    options.certDir = dir + "/certs"
    options.listen = "127.0.0.1:0"
    options.kubeAPI = api.url
    options.kubeTokenFile = api.tokenFile
    options.kubeCA = api.caFile
    options.certPollSeconds = 0.2
    options.shutdownGrace = 1
    options.devCerts = true
    let service = try Service(options: options, logger: .none)
    service.start()
    let client = HTTPClientConnection(try TLSClientConnection(
        address: SocketAddress(parsing: "127.0.0.1:\(service.server.port)"),
        context: TLSContext.client(caFile: dir + "/certs/ca.crt"), serverName: "127.0.0.1", timeout: 5))
    return (service, client)
}
