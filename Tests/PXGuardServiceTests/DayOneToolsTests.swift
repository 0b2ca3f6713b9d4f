import Foundation
import Testing
@testable import PXGuardCore
@testable import PXGuardService

/// The repository's top folder.
func repositoryRoot() -> String {
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
}

/// Objects of a rendered bundle by kind.
func objects(_ yaml: String, kind: String) -> [String] {
    yaml.components(separatedBy: "\n---\n").filter { $0.contains("\nkind: \(kind)\n") || $0.hasPrefix("kind: \(kind)\n") }
}

@Suite("Safe on day one: the bundle, check and install.sh", .serialized)
struct DayOneToolsTests {
    @Test("check judges pxguard's own bundle as the cluster would: exit 0 (its namespace is left out of the exempt-name claim, as the registration leaves it out)",
          arguments: [nil, "namespace: 'guard-system'\nexemptNamespaces: [kube-system, guard-system]\n"] as [String?])
    func checkOwnBundle(_ configText: String?) throws {
        let dir = try temporaryDirectory()
        var configPath: String?
        if let configText {
            configPath = dir + "/config.yaml"
            try configText.write(toFile: configPath!, atomically: true, encoding: .utf8)
        }
        let bundle = try renderCommand(configPath: configPath, caBundle: nil, nodes: nil, namespace: "default", what: "all")
        try bundle.write(toFile: dir + "/bundle.yaml", atomically: true, encoding: .utf8)
        let result = try checkCommand(configPath: configPath, files: [dir + "/bundle.yaml"])
        #expect(result.code == 0, "\(result)")
        // Another exempt name is still not claimable.
        try "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: kube-system\n".write(toFile: dir + "/claim.yaml", atomically: true, encoding: .utf8)
        #expect(try checkCommand(configPath: configPath, files: [dir + "/claim.yaml"]).code == 1)
    }

    @Test("the PodDisruptionBudget fits the replica count: one replica may be drained, two or more keep one", arguments: [1, 2, 3])
    func pdbFitsReplicas(_ replicas: Int) throws {
        let dir = try temporaryDirectory()
        try "replicas: \(replicas)\n".write(toFile: dir + "/c.yaml", atomically: true, encoding: .utf8)
        let bundle = try renderCommand(configPath: dir + "/c.yaml", caBundle: nil, nodes: nil, namespace: "default", what: "all")
        let pdb = try #require(objects(bundle, kind: "PodDisruptionBudget").first)
        if replicas == 1 {
            #expect(pdb.contains("maxUnavailable: 1") && !pdb.contains("minAvailable"))
        } else {
            #expect(pdb.contains("minAvailable: 1") && !pdb.contains("maxUnavailable"))
        }
    }

    @Test("install.sh reads the namespace and service name with pxguard's own config loader: quoted values give clean names")
    func installReadsConfig() throws {
        let dir = try temporaryDirectory()
        try "namespace: 'guard-system'\nserviceName: \"guard\"\n".write(toFile: dir + "/c.yaml", atomically: true, encoding: .utf8)
        #expect(try renderCommand(configPath: dir + "/c.yaml", caBundle: nil, nodes: nil, namespace: "default", what: "names")
                == "guard-system guard\n")
        let binary = try pxguardBinary()
        let out = try shell("PXGUARD=\(binary) bash \(repositoryRoot())/scripts/install.sh --config \(dir)/c.yaml --certs \(dir)/certs --print 2>/dev/null")
        #expect(out.contains("name: guard-tls\n  namespace: guard-system\n"))
        // No name carries the quotes (the M1 matchCondition's CEL list holds 'guard-system' as a string literal).
        #expect(!out.contains(": 'guard-system'") && !out.contains(": \"guard\"") && !out.contains("\"guard\".guard-system"))
        let san = try shell("openssl x509 -in \(dir)/certs/tls.crt -noout -ext subjectAltName")
        #expect(san.contains("DNS:guard.guard-system.svc") && !san.contains("'"))
    }

    @Test("the README is true of render: without --ca-bundle the registrations carry no CA and no injection annotation")
    func readmeRender() throws {
        let webhooks = try renderCommand(configPath: nil, caBundle: nil, nodes: nil, namespace: "default", what: "webhooks")
        #expect(!webhooks.contains("caBundle") && !webhooks.contains("inject-ca-from"))
        let readme = try repositoryFile("README.md")
        #expect(!readme.contains("Without `--ca-bundle` the configurations carry\n  `cert-manager.io/inject-ca-from"))
        #expect(readme.contains("Without `--ca-bundle` the registrations carry no `caBundle`"))
    }
}

@Suite("nodeCIDRs: auto offline: render and check", .serialized)
struct NodeAutoToolsTests {
    @Test("render without --config is the install bundle: its ConfigMap sets auto, RBAC may watch Nodes, and without --nodes the policies and firewall are left out, said on stderr")
    func renderAuto() throws {
        var notes: [String] = []
        let all = try renderCommand(configPath: nil, caBundle: nil, nodes: nil, namespace: "default", what: "all", note: { notes.append($0) })
        #expect(notes.count == 1 && notes[0].contains("--nodes"))
        #expect(all.contains("nodeCIDRs:\n      - auto") || all.contains("nodeCIDRs: [auto]") || all.contains("- auto\n"), "the ConfigMap sets auto")
        #expect(!all.contains("70.0.0.0/16"), "no baked-in node subnet")
        #expect(objects(all, kind: "NetworkPolicy").isEmpty && !all.contains("pxguard-node-firewall"))
        #expect(all.contains("- nodes\n"), "list/watch Nodes in the ClusterRole")
        notes.removeAll()
        #expect(try renderCommand(configPath: nil, caBundle: nil, nodes: nil, namespace: "default", what: "policies",
                                  note: { notes.append($0) }).isEmpty)
        #expect(notes.count == 1)
        let script = try renderCommand(configPath: nil, caBundle: nil, nodes: nil, namespace: "default", what: "iptables")
        #expect(script.contains("exit 1") && !script.contains("ACCEPT"), "a script that changes nothing and says why")
        // --nodes: the blocks around the addresses, as the server computes them.
        let policies = try renderCommand(configPath: nil, caBundle: nil, nodes: "10.4.0.11-10.4.0.14,10.7.1.2", namespace: "default", what: "policies")
        #expect(policies.contains("10.4.0.0/24") && policies.contains("10.7.1.0/24") && !policies.contains("10.4.0.11"))
        #expect(objects(policies, kind: "NetworkPolicy").count == 3)
        // Explicit CIDRs beside auto render without --nodes.
        let dir = try temporaryDirectory()
        try "nodeCIDRs: [auto, 192.168.10.0/24]\n".write(toFile: dir + "/c.yaml", atomically: true, encoding: .utf8)
        notes.removeAll()
        let explicit = try renderCommand(configPath: dir + "/c.yaml", caBundle: nil, nodes: nil, namespace: "default", what: "policies",
                                         note: { notes.append($0) })
        #expect(notes.isEmpty && explicit.contains("192.168.10.0/24"))
        // A file that leaves nodeCIDRs out gets the built-in default, the seed's example subnet: said on stderr.
        try "provisioning: {dryRun: true}\n".write(toFile: dir + "/dry.yaml", atomically: true, encoding: .utf8)
        notes.removeAll()
        let partial = try renderCommand(configPath: dir + "/dry.yaml", caBundle: nil, nodes: nil, namespace: "default", what: "all",
                                        note: { notes.append($0) })
        #expect(partial.contains("dryRun: true") && partial.contains("70.0.0.0/16"))
        #expect(notes.count == 1 && notes[0].contains("seed's example 70.0.0.0/16"), "\(notes)")
    }

    @Test("check with auto: --nodes gives the node blocks; without node addresses it refuses (exit 2) rather than guess")
    func checkAuto() throws {
        let dir = try temporaryDirectory()
        try "nodeCIDRs: [auto]\n".write(toFile: dir + "/c.yaml", atomically: true, encoding: .utf8)
        let bypass = """
            apiVersion: networking.k8s.io/v1
            kind: NetworkPolicy
            metadata: {name: open, namespace: team}
            spec:
              podSelector: {}
              policyTypes: [Egress]
              egress: [{to: [{ipBlock: {cidr: 10.4.0.9/32}}], ports: [{port: 9001}]}]

            """
        try bypass.write(toFile: dir + "/p.yaml", atomically: true, encoding: .utf8)
        #expect(throws: CommandError.self) { _ = try checkCommand(configPath: dir + "/c.yaml", files: [dir + "/p.yaml"]) }
        #expect(try checkCommand(configPath: dir + "/c.yaml", files: [dir + "/p.yaml"], nodes: "10.4.0.11").code == 1)
        #expect(try checkCommand(configPath: dir + "/c.yaml", files: [dir + "/p.yaml"], nodes: "10.5.0.11").code == 0)
        // --nodes where the configuration lists the subnets is not used, and stderr says so (the exit code is the rules').
        try "nodeCIDRs: [192.168.0.0/16]\n".write(toFile: dir + "/explicit.yaml", atomically: true, encoding: .utf8)
        var notes: [String] = []
        #expect(try checkCommand(configPath: dir + "/explicit.yaml", files: [dir + "/p.yaml"], nodes: "10.4.0.11",
                                 note: { notes.append($0) }).code == 0)
        #expect(notes.count == 1 && notes[0].contains("--nodes is not used") && notes[0].contains("leave out 10.4.0.11"), "\(notes)")
        notes.removeAll()
        // A bad list is a bad flag whether it is used or not (exit 2).
        #expect(throws: CommandError.self) { _ = try checkCommand(configPath: dir + "/explicit.yaml", files: [dir + "/p.yaml"], nodes: "garbage") }
        #expect(throws: CommandError.self) { _ = try auditCommand(configPath: nil, file: dir + "/p.yaml", nodes: "999.1.1.1") }
        // Without a file: the seed's example, said as such.
        _ = try checkCommand(configPath: nil, files: [dir + "/p.yaml"], nodes: "10.4.0.11", note: { notes.append($0) })
        #expect(notes.count == 1 && notes[0].contains("seed's example 70.0.0.0/16"), "\(notes)")
        notes.removeAll()
        // render uses --nodes with explicit subnets (the iptables sources), and names the nodes they leave out.
        _ = try renderCommand(configPath: dir + "/explicit.yaml", caBundle: nil, nodes: "10.4.0.11,192.168.3.4", namespace: "default",
                              what: "policies", note: { notes.append($0) })
        #expect(notes.count == 1 && notes[0].contains("leave out 10.4.0.11") && !notes[0].contains("192.168.3.4"), "\(notes)")
        notes.removeAll()
        _ = try renderCommand(configPath: dir + "/explicit.yaml", caBundle: nil, nodes: "192.168.3.4-192.168.3.9", namespace: "default",
                              what: "policies", note: { notes.append($0) })
        #expect(notes.isEmpty, "\(notes)")
        _ = try auditCommand(configPath: dir + "/explicit.yaml", file: dir + "/p.yaml", nodes: "10.4.0.11", note: { notes.append($0) })
        #expect(notes.count == 1 && notes[0].hasPrefix("audit: --nodes is not used"), "\(notes)")
    }
}

@Suite("The cert-manager overlay under a namespace override")
struct OverlayNamespaceTests {
    @Test("an overlay with `namespace:` over deploy/overlays/cert-manager renders (no guard policy of kube-system and default left to collide)",
          .enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/kubectl") || FileManager.default.isExecutableFile(atPath: "/usr/local/bin/kubectl")))
    func namespaceOverride() throws {
        let dir = try temporaryDirectory()
        try FileManager.default.createDirectory(atPath: dir + "/mine", withIntermediateDirectories: true)
        try """
            apiVersion: kustomize.config.k8s.io/v1beta1
            kind: Kustomization
            namespace: guard-system
            resources:
              - ../deploy/overlays/cert-manager

            """.write(toFile: dir + "/mine/kustomization.yaml", atomically: true, encoding: .utf8)
        // kustomize takes directory resources by relative path only: the overlay beside a copy of deploy/.
        _ = try shell("cp -r \(repositoryRoot())/deploy \(dir)/deploy")
        let out = try shell("kubectl kustomize \(dir)/mine 2>&1; echo rc=$?")
        #expect(out.hasSuffix("rc=0\n"), "\(out.suffix(400))")
        #expect(!out.contains("ID conflict"))
        #expect(out.contains("kind: Namespace\nmetadata:\n  labels:") || out.contains("name: guard-system"))
        #expect(objects(out, kind: "NetworkPolicy").isEmpty, "the provisioner writes the guard policies, in the namespaces where they belong")
    }
}
