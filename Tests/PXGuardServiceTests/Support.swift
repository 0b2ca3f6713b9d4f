import Foundation
import Synchronization
import Testing
import PXGuardCore
@testable import PXGuardPlatform
@testable import PXGuardServer
@testable import PXGuardService

/// Collects log lines in memory.
final class LogCapture: Sendable {
    let lines = Locked<[String]>([])
    var logger: Logger { Logger { [self] line in lines.withLock { $0.append(line) } } }
    func contains(_ text: String) -> Bool { lines.withLock { $0.contains { $0.contains(text) } } }
    /// Waits (bounded) for a line the server writes after the effect a test waited for.
    func eventuallyContains(_ text: String, seconds: Double = 10) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline && !contains(text) { usleep(20_000) }
        return contains(text)
    }
}

func temporaryDirectory() throws -> String {
    let path = NSTemporaryDirectory() + "pxguard-test-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// The real service on 127.0.0.1:0 with its own certificates and short timeouts.
final class TestServer: @unchecked Sendable {
    let dir: String
    let service: Service
    let logs = LogCapture()
    var port: Int { service.server.port }
    var caFile: String { dir + "/certs/ca.crt" }

    /// `server` entries override the short test timeouts below; `config` adds other top-level keys.
    init(config: String = "", server: [String: String] = [:], logger: Logger? = nil,
         options configure: (inout ServeOptions) -> Void = { _ in }) throws {
        dir = try temporaryDirectory()
        let configPath = dir + "/config.yaml"
        let settings = ["handshakeTimeoutSeconds": "1", "headerTimeoutSeconds": "1", "bodyTimeoutSeconds": "1",
                        "idleTimeoutSeconds": "5", "workers": "2"].merging(server) { $1 }
        let serverBlock = settings.sorted { $0.key < $1.key }.map { "  \($0.key): \($0.value)\n" }.joined()
        let base = "server:\n" + serverBlock + (config.contains("provisioning:") ? "" : "provisioning: {enabled: false}\n")
        try (base + config).write(toFile: configPath, atomically: true, encoding: .utf8)
        var options = ServeOptions()
        options.configPath = configPath
        options.certDir = dir + "/certs"
        options.devCerts = true
        options.listen = "127.0.0.1:0"
        options.shutdownGrace = 5
        options.certPollSeconds = 0.2
        configure(&options)
        service = try Service(options: options, logger: logger ?? logs.logger)
        service.start()
    }

    deinit {
        service.stop()
        try? FileManager.default.removeItem(atPath: dir)
    }

    func tls(ca: String? = nil) throws -> TLSClientConnection {
        try TLSClientConnection(address: SocketAddress(parsing: "127.0.0.1:\(port)"),
                                context: TLSContext.client(caFile: ca ?? caFile), serverName: "127.0.0.1", timeout: 5)
    }

    func client(ca: String? = nil) throws -> HTTPClientConnection { HTTPClientConnection(try tls(ca: ca)) }
}

/// A plain TCP socket for sending things that are not TLS.
final class RawSocket {
    let fd: Int32

    init(port: Int, timeout: Double = 5) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var tv = timeval(tv_sec: Int(timeout), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = UInt16(port).bigEndian
        sa.sin_addr.s_addr = inet_addr("127.0.0.1")
        let r = withUnsafePointer(to: &sa) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard r == 0 else { throw IOError(errnoCode: errno, reason: "connect") }
    }

    deinit { close(fd) }

    func send(_ bytes: [UInt8]) { _ = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } }

    /// Reads until the peer closes; returns what arrived, and whether it closed.
    func readUntilClosed() -> (bytes: [UInt8], closed: Bool) {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n > 0 { out += buf[0..<n]; continue }
            return (out, n == 0 || errno == ECONNRESET)
        }
    }
}

func fixtureBytes(_ name: String) throws -> [UInt8] {
    let here = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    return Array(try Data(contentsOf: here.appendingPathComponent("../PXGuardCoreTests/Fixtures/\(name).json")))
}

let jsonHeaders = [("Content-Type", "application/json")]

func elapsed(_ body: () throws -> Void) rethrows -> Double {
    let start = Date()
    try body()
    return Date().timeIntervalSince(start)
}

/// Starts `executable arguments` (the pxguard binary, directly or under a wrapper)
/// and returns it with its first log line, which names the bound port.
func launch(_ executable: String, _ arguments: [String]) throws -> (Process, JSON) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let stderr = Pipe()
    process.standardError = stderr
    try process.run()
    var line = [UInt8]()
    while let byte = try stderr.fileHandleForReading.read(upToCount: 1)?.first, byte != 0x0A { line.append(byte) }
    return (process, try JSON(parsing: line))
}

/// The pxguard binary built next to the test bundle.
func pxguardBinary() throws -> String {
    let candidates = [
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("pxguard").path,
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("pxguard").path,
        FileManager.default.currentDirectoryPath + "/.build/debug/pxguard",
    ]
    return try #require(candidates.first { FileManager.default.isExecutableFile(atPath: $0) }, "pxguard binary not found near \(CommandLine.arguments[0])")
}
