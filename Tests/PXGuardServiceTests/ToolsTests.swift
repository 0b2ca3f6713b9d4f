import Foundation
import Synchronization
import Testing
@testable import PXGuardCore
@testable import PXGuardPlatform
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
        ("iptables", "70.0.98.11-70.0.98.14", "iptables-seed.sh"), ("webhooks", nil, "webhooks.yaml"),
    ] as [(String, String?, String)])
    func golden(_ what: String, _ nodes: String?, _ file: String) throws {
        let expected = try String(contentsOfFile: resource("Golden/" + file), encoding: .utf8)
        #expect(try renderCommand(configPath: nil, caBundle: nil, nodes: nodes, namespace: "default", what: what) == expected)
    }

    @Test("policyStyle: seed renders byte-identical to the seed-style golden (ports is the default now)")
    func goldenSeed() throws {
        let expected = try String(contentsOfFile: resource("Golden/policies-seed.yaml"), encoding: .utf8)
        #expect(try renderCommand(configPath: resource("Golden/seed-config.yaml"), caBundle: nil, nodes: nil,
                                  namespace: "default", what: "policies") == expected)
        let defaults = try renderCommand(configPath: nil, caBundle: nil, nodes: "70.0.98.11", namespace: "default", what: "policies")
        #expect(defaults != expected, "the default is ports")
        #expect(defaults.contains("endPort: 9000") && !defaults.contains("port: 8099"))
    }

    @Test("render policies in ports style matches its golden file (dual-stack nodes, TCP and UDP protected)")
    func goldenPorts() throws {
        let expected = try String(contentsOfFile: resource("Golden/policies-ports.yaml"), encoding: .utf8)
        #expect(try renderCommand(configPath: resource("Golden/ports-config.yaml"), caBundle: nil, nodes: nil,
                                  namespace: "default", what: "policies") == expected)
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
        let (report, code) = try check(configPath: nil, files: [resource("Manifests/mixed.yaml")])
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

    @Test("check: YAML is read as kubectl reads it: explicit tags, merge keys, escaped JSON member names",
          arguments: [
            ("check-r1-yaml-explicit-bool-tag.yaml", "pod/p denied", "pxguard: hostNetwork"),
            ("check-r1-yaml-merge-key.yaml", "pod/p denied", "pxguard: hostNetwork"),
            ("check-r4-yaml-int-tag-endport.yaml", "networkpolicy.networking.k8s.io/p denied", "on TCP/9001-9022"),
            ("check-r1-escaped-key.json", "pod/p denied", "pxguard: hostNetwork"),
            // `host\u004etwork` is "hostNtwork": a field the API server drops.
            ("check-r1-escaped-key-misspelt.json", "pod/p allowed", ""),
          ])
    func checkReadsAsKubectl(_ name: String, _ prefix: String, _ message: String) throws {
        let (report, code) = try check(configPath: nil, files: [resource("Manifests/redteam/" + name)])
        let line = String(report.split(separator: "\n").first ?? "")
        #expect(line.hasPrefix(prefix) && (message.isEmpty || line.contains(message)), "\(report)")
        #expect(code == (prefix.hasSuffix("denied") ? 1 : 0))
    }

    @Test("check: merge keys from anchors and lists: earlier mappings and explicit keys win")
    func checkMergeAnchors() throws {
        let (report, code) = try check(configPath: nil, files: [resource("Manifests/redteam/check-r1-yaml-merge-anchors.yaml")])
        let lines = report.split(separator: "\n").map(String.init)
        #expect(lines.count == 5, "\(report)")
        #expect(lines.first == "pod/base allowed")
        #expect(lines.dropFirst().first?.hasPrefix("pod/merged-list denied") == true, "\(report)")
        #expect(lines.dropFirst(2).first?.hasPrefix("pod/earlier-wins denied") == true, "\(report)")
        #expect(lines.dropFirst(3).first == "pod/explicit-wins allowed", "\(report)")
        #expect(code == 1)
    }

    @Test("check: JSON List objects are expanded; all-allowed exits 0")
    func checkList() throws {
        let (report, code) = try check(configPath: nil, files: [resource("Manifests/list.json")])
        #expect(code == 1)
        #expect(report.contains("cronjob.batch/nightly denied (\(resource("Manifests/list.json")):3)"), "\(report)")
        let dir = try temporaryDirectory()
        try "apiVersion: v1\nkind: Pod\nmetadata: {name: ok}\nspec: {containers: []}\n".write(toFile: dir + "/ok.yaml", atomically: true, encoding: .utf8)
        #expect(try checkCommand(configPath: nil, files: [dir + "/ok.yaml"]).code == 0)
    }

    @Test("check: a stream of concatenated JSON objects (kubectl's multi-resource-json fixture), each at its own line")
    func checkJSONStream() throws {
        let file = resource("Manifests/kubectl/multi-resource-json.json")
        let (report, code) = try check(configPath: nil, files: [file], output: .json)
        #expect(code == 0, "\(report)")
        let results = try #require(try JSON(parsing: Array(report.utf8))["results"]?.arrayValue)
        #expect(results.map { $0["kind"]?.stringValue } == ["Service", "ReplicationController"])
        #expect(results.map { $0["line"]?.intValue } == [1, 21])
    }

    @Test("check: a typed list (PodList) gives its items their kind; the host-network pod is denied at its own line")
    func checkTypedList() throws {
        let file = resource("Manifests/podlist.json")
        let (report, code) = try check(configPath: nil, files: [file])
        #expect(code == 1, "\(report)")
        let lines = report.split(separator: "\n")
        #expect(lines.first == "pod/web-7d4b9c allowed")
        #expect(lines.dropFirst().first?.hasPrefix("pod/agent-x2k9p denied (\(file):10): pxguard: hostNetwork:") == true, "\(report)")
    }

    @Test("check: directories are read like kubectl (sorted, manifest extensions only; subdirectories with -R)")
    func checkDirectories() throws {
        let dir = resource("Manifests/kube-prometheus")
        let (flat, flatCode) = try check(configPath: nil, files: [dir])
        #expect(flatCode == 1)
        #expect(flat.split(separator: "\n").map { $0.prefix(while: { $0 != " " }) }
                == ["namespace/monitoring", "networkpolicy.networking.k8s.io/grafana", "2"], "\(flat)")
        let (deep, _) = try check(configPath: nil, files: [dir], recursive: true)
        #expect(deep.contains("networkpolicy.networking.k8s.io/alertmanager-main denied (\(dir)/nested/alertmanager-networkPolicy.yaml:2)"),
                "\(deep)")
        #expect(deep.hasSuffix("3 objects checked: 1 allowed, 2 denied\n"), "\(deep)")
        // kube-prometheus ships allow-all egress ([{}]): denied in a guarded namespace, with a fix that fits.
        #expect(deep.contains("egress rule 0 allows"), "\(deep)")
    }

    @Test("check in repair mode judges what the cluster would store: kube-prometheus's policies are repaired, not denied")
    func checkRepairMode() throws {
        let dir = try temporaryDirectory()
        try "rules:\n  bypassPolicies: {mode: repair}\n".write(toFile: dir + "/config.yaml", atomically: true, encoding: .utf8)
        let (report, code) = try check(configPath: dir + "/config.yaml", files: [resource("Manifests/kube-prometheus")], recursive: true)
        #expect(code == 0, "\(report)")
        #expect(report.contains("networkpolicy.networking.k8s.io/grafana allowed with warning: pxguard: bypassPolicies: repaired "
                                + "NetworkPolicy monitoring/grafana: egress rule 0"), "\(report)")
        #expect(report.hasSuffix("3 objects checked: 3 allowed (2 with warnings), 0 denied\n"), "\(report)")
        let (json, _) = try check(configPath: dir + "/config.yaml", files: [resource("Manifests/kube-prometheus")], output: .json)
        #expect(try JSON(parsing: Array(json.utf8))["results"]?.arrayValue?.last?["decision"] == "repair")
    }

    @Test("check: an unreadable or broken input is reported, the others are still checked, and the exit is 2")
    func checkBadInputs() throws {
        let dir = try temporaryDirectory()
        try "kind: Pod\nmetadata: [\n".write(toFile: dir + "/broken.yaml", atomically: true, encoding: .utf8)
        try "metadata: {name: x}\n".write(toFile: dir + "/nokind.yaml", atomically: true, encoding: .utf8)
        try "{\"apiVersion\": \"v1\", \"kind\": \"Pod\", \"metadata\": {\"name\": \"a\"}}\n{\"kind\": \"Pod\",\n \"x\": tru}\n"
            .write(toFile: dir + "/stream.json", atomically: true, encoding: .utf8)
        try "apiVersion: v1\nkind: List\nitems:\n- metadata: {name: lost}\n- {apiVersion: v1, kind: Pod, metadata: {name: kept}}\n"
            .write(toFile: dir + "/list.yaml", atomically: true, encoding: .utf8)
        let files = [dir + "/missing.yaml", dir + "/broken.yaml", dir + "/nokind.yaml", dir + "/stream.json",
                     dir + "/list.yaml", resource("Manifests/mixed.yaml")]
        let result = try checkCommand(configPath: nil, files: files)
        let report = result.report
        #expect(result.code == 2)
        #expect(result.errors.count == 5)
        let errors = result.errors.joined(separator: "\n")
        #expect(errors.contains("check: \(dir)/missing.yaml: "), "\(errors)")
        #expect(errors.contains("check: \(dir)/broken.yaml:3:1: "), "\(errors)")
        #expect(errors.contains("check: \(dir)/nokind.yaml:1:1: object has no kind"), "\(errors)")
        #expect(errors.contains("check: \(dir)/stream.json:3:"), "\(errors)")
        #expect(errors.contains("check: \(dir)/list.yaml:4:3: object has no kind"), "\(errors)")
        #expect(report.contains("pod/a allowed") && report.contains("pod/kept allowed"), "\(report)")
        #expect(report.hasSuffix("7 objects checked: 5 allowed, 2 denied; 5 input errors\n"), "\(report)")
        let (json, jsonCode) = try check(configPath: nil, files: files, output: .json)
        #expect(jsonCode == 2)
        let document = try JSON(parsing: Array(json.utf8))
        #expect(document["summary"]?["errors"] == .int(5))
        #expect(document["results"]?.arrayValue?.count == 7)
        #expect(document["results"]?.arrayValue?.first { $0["allowed"] == .bool(false) }?["rule"] == "hostNetwork")
    }

    @Test("check: inputs that hold no object at all are bad input (kubectl: no objects passed to apply)")
    func checkNothing() throws {
        let dir = try temporaryDirectory()
        try FileManager.default.createDirectory(atPath: dir + "/sub", withIntermediateDirectories: true)
        try "apiVersion: v1\nkind: Pod\nmetadata: {name: deep}\n".write(toFile: dir + "/sub/pod.yaml", atomically: true, encoding: .utf8)
        let flat = try checkCommand(configPath: nil, files: [dir])
        #expect(flat.code == 2)
        #expect(flat.errors == ["check: no objects found in \(dir) (subdirectories are read with -R)"])
        #expect(try checkCommand(configPath: nil, files: [dir], recursive: true).code == 0)
    }

    @Test("check: -f - reads standard input; -R and -o json are flags of the binary")
    func checkBinary() throws {
        let binary = try pxguardBinary()
        let out = try shell("\(binary) check -f - < \(resource("Manifests/podlist.json")); echo exit=$?")
        let bad = try shell("\(binary) check -f /nonexistent.yaml -f \(resource("Manifests/podlist.json")) 2>&1 >/dev/null; echo exit=$?")
        #expect(bad == "pxguard: check: /nonexistent.yaml: cannot read: No such file or directory\nexit=2\n", "\(bad)")
        #expect(out.contains("pod/agent-x2k9p denied (standard input:10)"), "\(out)")
        #expect(out.hasSuffix("exit=1\n"), "\(out)")
        let json = try shell("\(binary) check -R -o json -f \(resource("Manifests/kube-prometheus")); echo exit=$?")
        #expect(json.contains("\"denied\":2") && json.hasSuffix("exit=1\n"), "\(json)")
        #expect(try shell("\(binary) check -o yaml -f x; echo exit=$?").hasSuffix("exit=2\n"))
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
/// `check`'s report and exit code.
func check(configPath: String?, files: [String], recursive: Bool = false, output: CheckOutput = .text) throws -> (String, Int32) {
    let result = try checkCommand(configPath: configPath, files: files, recursive: recursive, output: output)
    return (result.report, result.code)
}

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
    func call(_ handler: AdmissionHandler, _ body: [UInt8]) -> Int { respond(handler, body).status }

    func respond(_ handler: AdmissionHandler, _ body: [UInt8]) -> HTTPResponse {
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
        return response
    }

    @Test("/mutate answers the patch only; a dry run gets the same patch (M1 changes no server state)")
    func mutateAnswersOnly() throws {
        let handler = AdmissionHandler(policies: PolicyBox(AdmissionPolicy(config: .default)), readiness: Readiness(),
                                       metrics: ServiceMetrics(workers: 1), logger: .none, workers: 1)
        var review = try JSON(parsing: fixtureBytes("namespace-create-e8"))
        let real = respond(handler, Array(review.serialized.utf8)).body
        review = review.setting("request", review["request"]!.setting("dryRun", true))
        let response = respond(handler, Array(review.serialized.utf8))
        #expect(response.status == 200)
        #expect(String(decoding: response.body, as: UTF8.self).contains("\"patch\""))
        #expect(response.body == real)
    }
}

@Suite("check reads numbers as kubectl sends them (issue 23, finding 6)")
struct CheckNumberFormTests {
    static let policyJSON = #"{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"n","namespace":"team-a"},"spec":{"podSelector":{},"policyTypes":["Egress"],"egress":[{"to":[{"ipBlock":{"cidr":"70.0.0.0/16"}}],"ports":[{"protocol":"TCP","port":PORT,"endPort":END}]}]}}"#

    @Test("a JSON manifest with 9001.0, 9.001e3 or 9022.0 toward the node subnet is denied, as the cluster would store 9001",
          arguments: [("9001.0", "9001"), ("9.001e3", "9001"), ("9001", "9022.0"), ("900100e-2", "9.022e3")])
    func json(_ port: String, _ end: String) throws {
        let dir = try temporaryDirectory()
        let text = Self.policyJSON.replacingOccurrences(of: "PORT", with: port).replacingOccurrences(of: "END", with: end)
        try text.write(toFile: dir + "/p.json", atomically: true, encoding: .utf8)
        let (report, code) = try check(configPath: nil, files: [dir + "/p.json"])
        #expect(code == 1, "\(report)")
        #expect(report.contains("bypassPolicies"), "\(report)")
    }

    @Test("YAML ports in go-yaml v2's forms (octal 021451, hex, 0o, binary, underscores, integral floats) are denied",
          arguments: ["021451", "0x2329", "0o21451", "0b10001100101001", "9_001", "9001.0", "+9001", "09001"])
    func yaml(_ port: String) throws {
        let dir = try temporaryDirectory()
        let text = """
            apiVersion: networking.k8s.io/v1
            kind: NetworkPolicy
            metadata: {name: n, namespace: team-a}
            spec:
              podSelector: {}
              policyTypes: [Egress]
              egress:
              - to: [{ipBlock: {cidr: 70.0.0.0/16}}]
                ports: [{protocol: TCP, port: \(port)}]

            """
        try text.write(toFile: dir + "/p.yaml", atomically: true, encoding: .utf8)
        let (report, code) = try check(configPath: nil, files: [dir + "/p.yaml"])
        #expect(code == 1, "port: \(port): \(report)")
        // 21451 in decimal would be allowed: the octal reading is what decides.
        let decimal = text.replacingOccurrences(of: "port: \(port)", with: "port: 21451")
        try decimal.write(toFile: dir + "/d.yaml", atomically: true, encoding: .utf8)
        #expect(try check(configPath: nil, files: [dir + "/d.yaml"]).1 == 0)
    }
}
