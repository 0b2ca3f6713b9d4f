import Foundation
import Testing
import PXGuardCore
@testable import PXGuardService

/// `pxguard audit` over what `kubectl get namespaces,networkpolicies,pods,services,endpoints,endpointslices -A -o json`
/// prints. `Manifests/audit/cluster.json`: kube-system (exempt) and team-a hold a hole of
/// every kind (a bypass policy, a running host-network Pod, a Service on a node address,
/// hand-written Endpoints and EndpointSlice on node addresses); team-a also holds a
/// finished host-network Pod; team-b is protected, with a tenant egress policy the guard
/// widens; team-c lacks allow-api and its labels; default is protected.
@Suite("pxguard audit")
struct AuditCommandTests {
    let cluster = resource("Manifests/audit/cluster.json")

    @Test("the table: exposed namespaces with one line per finding, exempt ones absent, exit 1")
    func table() throws {
        let result = try auditCommand(configPath: nil, file: cluster)
        #expect(result.code == 1)
        #expect(result.errors.isEmpty)
        let lines = result.report.split(separator: "\n").map(String.init)
        #expect(lines.first?.hasPrefix("NAMESPACE") == true)
        let rows = lines.filter { !$0.hasPrefix(" ") }.dropFirst().dropLast().map { $0.split(separator: " ").prefix(2).joined(separator: " ") }
        #expect(rows == ["default protected", "team-a exposed", "team-b protected", "team-c exposed"])
        #expect(!result.report.contains("kube-system"))
        #expect(result.report.contains("  - hostNetwork pod/node-agent: pxguard: hostNetwork: creating Pod team-a/node-agent"))
        #expect(result.report.contains("  - bypassPolicies networkpolicy/open-portworx: pxguard: bypassPolicies: NetworkPolicy team-a/open-portworx"))
        #expect(result.report.contains("  - externalIPs service/hijack: pxguard: externalIPs: Service team-a/hijack lists external IP 70.0.0.10"))
        #expect(result.report.contains("  - note guardWidens networkpolicy/db-egress:"))
        #expect(result.report.contains("namespace team-c has no NetworkPolicy allow-api"))
        #expect(!result.report.contains("pod/finished"))
        #expect(lines.last == "4 guarded namespaces: 2 protected, 2 exposed")
    }

    @Test("-o json: every guarded namespace with its verdict, findings and notes")
    func json() throws {
        let result = try auditCommand(configPath: nil, file: cluster, output: .json)
        #expect(result.code == 1)
        let doc = try JSON(parsing: Array(result.report.utf8))
        let namespaces = try #require(doc["namespaces"]?.arrayValue)
        let teamA = try #require(namespaces.first { $0["namespace"]?.stringValue == "team-a" })
        #expect(teamA["verdict"]?.stringValue == "exposed")
        #expect(teamA["findings"]?.arrayValue?.map { $0["rule"]!.stringValue! }
                == ["hostNetwork", "bypassPolicies", "externalIPs", "endpoints", "endpoints"])
        #expect(teamA["findings"]?.arrayValue?.map { $0["name"]!.stringValue! }
                == ["node-agent", "open-portworx", "hijack", "handmade", "handmade-slice"])
        let teamB = try #require(namespaces.first { $0["namespace"]?.stringValue == "team-b" })
        #expect(teamB["verdict"]?.stringValue == "protected")
        #expect(teamB["notes"]?.arrayValue?.first?["rule"]?.stringValue == "guardWidens")
        #expect(doc["summary"]?["exposed"]?.intValue == 2 && doc["summary"]?["protected"]?.intValue == 2)
    }

    @Test("a stream of objects where every guarded namespace is protected: exit 0")
    func protected() throws {
        let result = try auditCommand(configPath: nil, file: resource("Manifests/audit/protected.json"))
        #expect(result.code == 0, "\(result.report)")
        #expect(result.report.contains("team-b"))
    }

    @Test("the same verdicts from one JSON list (read in place), from YAML, and from typed lists")
    func inputForms() throws {
        let dir = try temporaryDirectory()
        let cluster = try JSON(parsing: Array(try Data(contentsOf: URL(fileURLWithPath: self.cluster))))
        let items = try #require(cluster["items"]?.arrayValue)
        // Typed lists: items without kind or apiVersion, as a client's NetworkPolicyList holds them.
        func typed(_ kind: String, _ apiVersion: String) -> JSON {
            .obj(["apiVersion": .string(apiVersion), "kind": .string(kind + "List"),
                  "items": .array(items.filter { $0["kind"]?.stringValue == kind }.map { item in
                      .object(item.members!.filter { $0.key != "kind" && $0.key != "apiVersion" })
                  })])
        }
        let lists: [JSON] = [typed("Namespace", "v1"), typed("NetworkPolicy", "networking.k8s.io/v1"), typed("Pod", "v1"),
                             typed("Service", "v1"), typed("Endpoints", "v1"), typed("EndpointSlice", "discovery.k8s.io/v1")]
        try JSON.array(lists).serialized.write(toFile: dir + "/typed.json", atomically: true, encoding: .utf8)
        // A YAML stream (JSON is YAML's flow style): read by the YAML reader, not in place.
        try lists.map { "--- " + $0.serialized + "\n" }.joined()
            .write(toFile: dir + "/typed.yaml", atomically: true, encoding: .utf8)
        let expected = try auditCommand(configPath: nil, file: self.cluster, output: .json).report
        for file in ["typed.json", "typed.yaml"] {
            let result = try auditCommand(configPath: nil, file: dir + "/" + file, output: .json)
            #expect(result.report == expected, "\(file)")
        }
    }

    @Test("the configuration decides what is exempt and what is a node address")
    func config() throws {
        let dir = try temporaryDirectory()
        try "exemptNamespaces: [kube-system, team-a, team-c, default]\nnodeCIDRs: [\"192.168.0.0/16\"]\n"
            .write(toFile: dir + "/c.yaml", atomically: true, encoding: .utf8)
        // team-b's guard policies are not canonical for these node subnets.
        let result = try auditCommand(configPath: dir + "/c.yaml", file: cluster)
        #expect(result.code == 1)
        #expect(!result.report.contains("team-a"))
        #expect(result.report.contains("NetworkPolicy team-b/block-9001-for-non-system-users differs from the canonical spec"))
    }

    @Test("nodeCIDRs: auto offline: --nodes gives the blocks; without node addresses it stops rather than judge R4, R7, R8 blind")
    func nodesAuto() throws {
        let dir = try temporaryDirectory()
        try "nodeCIDRs: auto\n".write(toFile: dir + "/c.yaml", atomically: true, encoding: .utf8)
        #expect(throws: CommandError.self) { _ = try auditCommand(configPath: dir + "/c.yaml", file: cluster) }
        let withNodes = try auditCommand(configPath: dir + "/c.yaml", file: cluster, nodes: "70.0.0.11,70.0.1.12")
        // The blocks around the nodes (/24 by default), as the server would find them.
        try "nodeCIDRs: [70.0.0.0/24, 70.0.1.0/24]\n".write(toFile: dir + "/e.yaml", atomically: true, encoding: .utf8)
        let explicit = try auditCommand(configPath: dir + "/e.yaml", file: cluster)
        #expect(withNodes.code == 1)
        #expect(withNodes.report == explicit.report)
        #expect(withNodes.report.contains("externalIPs service/hijack"))
    }

    @Test("bad input exits 2 and says what is wrong", arguments: [
        ("{\"kind\": ", "never ends"),
        ("", "no objects found"),
        (#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"hostNetwork":true}}"#, "has no metadata.namespace"),
    ])
    func badInput(_ text: String, _ expected: String) throws {
        let dir = try temporaryDirectory()
        try text.write(toFile: dir + "/in.json", atomically: true, encoding: .utf8)
        let result = try auditCommand(configPath: nil, file: dir + "/in.json")
        #expect(result.code == 2)
        #expect(result.errors.contains { $0.contains(expected) }, "\(result.errors)")
        #expect(throws: CommandError.self) { _ = try auditCommand(configPath: nil, file: dir + "/missing.json") }
    }

    @Test("objects without their Namespace: the namespace's labels cannot be judged, so it is exposed")
    func namespaceMissing() throws {
        let dir = try temporaryDirectory()
        let policies = GuardPolicies(config: .default)
        let objects = GuardPolicies.names(in: "team-d").map { policies.policy(name: $0, namespace: "team-d")!.serialized }
        try objects.joined(separator: "\n").write(toFile: dir + "/in.json", atomically: true, encoding: .utf8)
        let result = try auditCommand(configPath: nil, file: dir + "/in.json")
        #expect(result.code == 1)
        #expect(result.report.contains("unjudged namespace: pxguard: audit: the Namespace team-d was not seen"))
    }

    @Test("the binary: exit 1 exposed, 0 protected from standard input, 2 with one line for a bad flag")
    func binary() throws {
        func run(_ args: [String], stdin: String? = nil) throws -> (Int32, String, String) {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: try pxguardBinary())
            process.arguments = args
            let out = Pipe(), err = Pipe()
            process.standardOutput = out
            process.standardError = err
            if let stdin { process.standardInput = FileHandle(forReadingAtPath: stdin) }
            try process.run()
            let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return (process.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
        }
        #expect(try run(["audit", "-f", cluster]).0 == 1)
        #expect(try run(["audit", "-f", "-"], stdin: resource("Manifests/audit/protected.json")).0 == 0)
        for args in [["audit"], ["audit", "-f", cluster, "-o", "yaml"], ["audit", "--bogus"]] {
            let (code, _, err) = try run(args)
            #expect(code == 2, "\(args)")
            #expect(err.split(separator: "\n").count == 1, "\(args): \(err)")
        }
    }
}
