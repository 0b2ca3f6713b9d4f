import Foundation
import Testing
@testable import PXGuardCore
@testable import PXGuardService

@Suite("render all: optional parts of the install bundle")
struct InstallOptionsTests {
    @Test("apiServerCIDRs adds an ingress NetworkPolicy admitting only them on 8443 to pxguard's pods; off by default")
    func apiServerIngress() throws {
        let dir = try temporaryDirectory()
        try "apiServerCIDRs: [\"10.0.0.10/32\", \"fd00::10/128\"]\n".write(toFile: dir + "/c.yaml", atomically: true, encoding: .utf8)
        let text = try renderCommand(configPath: dir + "/c.yaml", caBundle: nil, nodes: nil, namespace: "default", what: "all")
        let config = try loadConfig(dir + "/c.yaml")
        #expect(config.apiServerCIDRs.map(\.description) == ["10.0.0.10/32", "fd00::10/128"])
        let bundle = InstallBundle(config: config, caBundlePEM: nil).all(namespace: "default", configYAML: "", firewallScript: "")
        let policy = try #require(bundle.first { $0["metadata"]?["name"]?.stringValue == "pxguard-webhook-ingress" })
        #expect(policy["metadata"]?["namespace"]?.stringValue == "pxguard-system")
        #expect(policy["spec"]?["podSelector"]?.serialized == #"{"matchLabels":{"app.kubernetes.io/name":"pxguard"}}"#)
        #expect(policy["spec"]?["ingress"]?.serialized
                == #"[{"from":[{"ipBlock":{"cidr":"10.0.0.10/32"}},{"ipBlock":{"cidr":"fd00::10/128"}}],"ports":[{"protocol":"TCP","port":8443}]}]"#)
        // The provisioner's watch selects guard policies by the managed-by label: not this one.
        #expect(policy["metadata"]?["labels"]?[GuardNames.managedByKey] == nil)
        #expect(text.contains("name: pxguard-webhook-ingress"))
        // The ConfigMap carries the key, so the deployed config reads back the same.
        #expect(text.contains("apiServerCIDRs:"))
        let plain = try renderCommand(configPath: nil, caBundle: nil, nodes: nil, namespace: "default", what: "all")
        #expect(!plain.contains("webhook-ingress") && !plain.contains("apiServerCIDRs"))
        try "apiServerCIDRs: [\"10.0.0.300/32\"]\n".write(toFile: dir + "/bad.yaml", atomically: true, encoding: .utf8)
        #expect(throws: CommandError.self) { _ = try loadConfig(dir + "/bad.yaml") }
    }
}
