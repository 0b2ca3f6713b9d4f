import Foundation
import Synchronization
import Testing
@testable import PXGuardCore
@testable import PXGuardServer
@testable import PXGuardService

func resource(_ path: String) -> String {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(path).path
}

func repositoryFile(_ path: String) throws -> String {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    return try String(contentsOf: root.appendingPathComponent(path), encoding: .utf8)
}

@Suite("render, certs, check, review")
struct ToolsTests {
    @Test("render output matches the golden files", arguments: [
        ("policies", nil, "policies.yaml"), ("iptables", "70.0.98.11-70.0.98.14", "iptables-seed.sh"), ("webhooks", nil, "webhooks.yaml"),
    ] as [(String, String?, String)])
    func golden(_ what: String, _ nodes: String?, _ file: String) throws {
        let expected = try String(contentsOfFile: resource("Golden/" + file), encoding: .utf8)
        #expect(try renderCommand(configPath: nil, caBundle: nil, nodes: nodes, namespace: "default", what: what) == expected)
    }

    @Test("the seed's node range expands to four ACCEPT rules, plus loopback, then DROP")
    func seedRange() throws {
        let script = try renderCommand(configPath: nil, caBundle: nil, nodes: "70.0.98.11-70.0.98.14", namespace: "default", what: "iptables")
        let accepts = script.split(separator: "\n").filter { $0.contains("-s 70.0.98.") && $0.hasSuffix("-j ACCEPT") }
        #expect(accepts.count == 4)
        #expect(script.contains("-i lo -p tcp --dport 9000:9022 -j ACCEPT"))
        #expect(script.contains("-p tcp --dport 9000:9022 -j DROP"))
    }

    @Test("deploy/ equals `pxguard render all` and `render iptables` for the default configuration")
    func deployIsRendered() throws {
        #expect(try renderCommand(configPath: nil, caBundle: nil, nodes: nil, namespace: "default", what: "all")
                == repositoryFile("deploy/base/pxguard.yaml"), "run `make deploy`")
        #expect(try renderCommand(configPath: nil, caBundle: nil, nodes: nil, namespace: "default", what: "iptables")
                == repositoryFile("deploy/node-iptables.sh"), "run `make deploy`")
    }

    @Test("--ca-bundle fills caBundle with the PEM in base64; a non-PEM file is refused")
    func caBundle() throws {
        let dir = try temporaryDirectory()
        _ = try certsCommand(out: dir, service: "pxguard", namespace: "pxguard-system", days: 30)
        let text = try renderCommand(configPath: nil, caBundle: dir + "/ca.crt", nodes: nil, namespace: "default", what: "webhooks")
        let pem = try String(contentsOfFile: dir + "/ca.crt", encoding: .utf8)
        #expect(text.contains("caBundle: \"" + Base64.encode(Array(pem.utf8)) + "\""))
        #expect(!text.contains("inject-ca-from"))
        try "nope".write(toFile: dir + "/bad.pem", atomically: true, encoding: .utf8)
        #expect(throws: CommandError.self) {
            _ = try renderCommand(configPath: nil, caBundle: dir + "/bad.pem", nodes: nil, namespace: "default", what: "webhooks")
        }
    }

    @Test("certs: keys are 0600, the serving certificate chains to the CA with the SPEC's SANs, the CA is reused")
    func certs() throws {
        let dir = try temporaryDirectory()
        let first = try certsCommand(out: dir, service: "pxguard", namespace: "pxguard-system", days: 30)
        #expect(first.contains("created a new CA"))
        for key in ["ca.key", "tls.key"] {
            let mode = try FileManager.default.attributesOfItem(atPath: dir + "/" + key)[.posixPermissions] as? Int
            #expect(mode == 0o600)
        }
        let san = try shell("openssl x509 -in \(dir)/tls.crt -noout -ext subjectAltName")
        for name in ["DNS:pxguard", "DNS:pxguard.pxguard-system", "DNS:pxguard.pxguard-system.svc",
                     "DNS:pxguard.pxguard-system.svc.cluster.local", "DNS:localhost", "IP Address:127.0.0.1"] {
            #expect(san.contains(name), "\(san)")
        }
        #expect(try shell("openssl verify -CAfile \(dir)/ca.crt \(dir)/tls.crt").contains("OK"))
        #expect(try shell("openssl x509 -in \(dir)/tls.crt -noout -text").contains("prime256v1"))
        let ca = try String(contentsOfFile: dir + "/ca.crt", encoding: .utf8)
        #expect(try certsCommand(out: dir, service: "pxguard", namespace: "pxguard-system", days: 30).contains("reused the CA"))
        #expect(try String(contentsOfFile: dir + "/ca.crt", encoding: .utf8) == ca)
        #expect(try shell("openssl verify -CAfile \(dir)/ca.crt \(dir)/tls.crt").contains("OK"))
    }

    @Test("check: mixed multi-document YAML reports each object and exits 1")
    func checkMixed() throws {
        let (report, code) = try checkCommand(configPath: nil, files: [resource("Manifests/mixed.yaml")])
        #expect(code == 1)
        let lines = report.split(separator: "\n")
        #expect(lines.count == 6)
        #expect(lines[0] == "pod/web allowed")
        #expect(lines[1].hasPrefix("daemonset.apps/node-agent denied") && lines[1].contains("pxguard: hostNetwork"))
        #expect(lines[2].hasPrefix("networkpolicy.networking.k8s.io/allow-all-egress denied") && lines[2].contains("bypassPolicies"))
        #expect(lines[3] == "networkpolicy.networking.k8s.io/dns-only allowed")
        #expect(lines[4] == "pod/node-exporter allowed")
        #expect(lines[5] == "5 objects checked: 3 allowed, 2 denied")
    }

    @Test("check: JSON List objects are expanded; all-allowed exits 0; bad input is a located error")
    func checkListAndErrors() throws {
        let (report, code) = try checkCommand(configPath: nil, files: [resource("Manifests/list.json")])
        #expect(code == 1)
        #expect(report.contains("cronjob.batch/nightly denied"))
        let dir = try temporaryDirectory()
        try "apiVersion: v1\nkind: Pod\nmetadata: {name: ok}\nspec: {containers: []}\n".write(toFile: dir + "/ok.yaml", atomically: true, encoding: .utf8)
        #expect(try checkCommand(configPath: nil, files: [dir + "/ok.yaml"]).1 == 0)
        try "kind: Pod\nmetadata: [\n".write(toFile: dir + "/broken.yaml", atomically: true, encoding: .utf8)
        do {
            _ = try checkCommand(configPath: nil, files: [dir + "/broken.yaml"])
            Issue.record("accepted broken YAML")
        } catch {
            #expect(error.description.hasPrefix(dir + "/broken.yaml:3:1:"), "\(error.description)")
        }
        try "metadata: {name: x}\n".write(toFile: dir + "/nokind.yaml", atomically: true, encoding: .utf8)
        #expect(throws: CommandError.self) { _ = try checkCommand(configPath: nil, files: [dir + "/nokind.yaml"]) }
    }

    @Test("review answers like /validate and /mutate, and refuses a broken review")
    func review() throws {
        let path = resource("../PXGuardCoreTests/Fixtures/pod-hostnetwork-e2.json")
        let out = try JSON(parsing: Array(try reviewCommand(configPath: nil, mutate: false, file: path).utf8))
        #expect(out["response"]?["allowed"] == false)
        let mutated = try JSON(parsing: Array(try reviewCommand(configPath: nil, mutate: true,
            file: resource("../PXGuardCoreTests/Fixtures/namespace-create-e8.json")).utf8))
        #expect(mutated["response"]?["patchType"] == "JSONPatch")
        let dir = try temporaryDirectory()
        try "{\"kind\":".write(toFile: dir + "/bad.json", atomically: true, encoding: .utf8)
        #expect(throws: CommandError.self) { _ = try reviewCommand(configPath: nil, mutate: false, file: dir + "/bad.json") }
    }
}

/// Runs a shell command and returns its standard output (tests use openssl's CLI
/// as an independent checker of what libssl produced in process).
func shell(_ command: String) throws -> String {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/sh")
    process.arguments = ["-c", command + " 2>&1"]
    let pipe = Pipe()
    process.standardOutput = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return String(decoding: data, as: UTF8.self)
}

@Suite("M1 wiring")
struct MutationWiringTests {
    func call(_ handler: AdmissionHandler, _ body: [UInt8]) -> Int {
        var response = HTTPResponse()
        let target = Array("/mutate".utf8)
        let type = Array("application/json".utf8)
        target.withUnsafeBufferPointer { t in
            type.withUnsafeBufferPointer { c in
                body.withUnsafeBytes { b in
                    handler.handle(HTTPRequest(method: .post, target: t, contentTypeBytes: c, headBytes: t, body: b, worker: 0), &response)
                }
            }
        }
        return response.status
    }

    @Test("/mutate enqueues a created namespace for provisioning, but not a dry run")
    func enqueues() throws {
        let queued = Locked<[String]>([])
        let handler = AdmissionHandler(policies: PolicyBox(AdmissionPolicy(config: .default)), readiness: Readiness(),
                                       metrics: ServiceMetrics(workers: 1), logger: .none, workers: 1,
                                       provision: { ns in queued.withLock { $0.append(ns) } })
        var review = try JSON(parsing: fixtureBytes("namespace-create-e8"))
        #expect(call(handler, Array(review.serialized.utf8)) == 200)
        #expect(queued.withLock { $0 } == ["team-a"])
        review = review.setting("request", review["request"]!.setting("dryRun", true))
        #expect(call(handler, Array(review.serialized.utf8)) == 200)
        #expect(queued.withLock { $0 } == ["team-a"])
    }
}
