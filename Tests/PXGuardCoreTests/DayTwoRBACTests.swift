import Testing
@testable import PXGuardCore

/// SPEC "Admission rules", RBAC: each feature renders its permissions only when the
/// config turns it on; managed registrations get update on pxguard's own
/// registrations by resourceNames only.
@Suite("RBAC for managed registrations and self-managed certificates")
struct DayTwoRBACTests {
    static func rules(_ config: Config, kind: String) -> [JSON] {
        let objects = InstallBundle(config: config, caBundlePEM: nil).all(namespace: "default", configYAML: "", firewallScript: "")
        return objects.first { $0["kind"]?.stringValue == kind }?["rules"]?.arrayValue ?? []
    }

    static func grants(_ rules: [JSON], _ resource: String) -> [JSON] {
        rules.filter { ($0["resources"]?.arrayValue ?? []).contains(.string(resource)) }
    }

    @Test("managed registrations: get and update on the two registrations named after the service, nothing else; none when off")
    func registrations() {
        var config = Config.default
        config.serviceName = "guard"
        for resource in ["validatingwebhookconfigurations", "mutatingwebhookconfigurations"] {
            let granted = Self.grants(Self.rules(config, kind: "ClusterRole"), resource)
            #expect(granted.count == 1)
            #expect(granted.first?["resourceNames"] == ["guard"])
            #expect(granted.first?["verbs"] == ["get", "update"])
        }
        config.manageWebhooks = false
        #expect(Self.grants(Self.rules(config, kind: "ClusterRole"), "validatingwebhookconfigurations").isEmpty)
        #expect(Self.grants(Self.rules(config, kind: "ClusterRole"), "mutatingwebhookconfigurations").isEmpty)
    }

    @Test("self-managed certificates: the Secret <service>-tls by name in pxguard's own namespace (a Role), create once; none when off")
    func certificates() {
        var config = Config.default
        let secrets = Self.grants(Self.rules(config, kind: "Role"), "secrets")
        #expect(secrets.contains { $0["resourceNames"] == ["pxguard-tls"] && $0["verbs"] == ["get", "update"] })
        #expect(secrets.contains { $0["resourceNames"] == nil && $0["verbs"] == ["create"] })
        #expect(Self.grants(Self.rules(config, kind: "ClusterRole"), "secrets").isEmpty)
        config.certificates.selfManaged = false
        #expect(Self.grants(Self.rules(config, kind: "Role"), "secrets").isEmpty)
    }

    @Test("audit: list and watch of pods, services, endpoints, endpointslices; create/patch events; report objects; patch on networkpolicies only with repair; nothing when off")
    func audit() {
        var config = Config.default
        let rules = Self.rules(config, kind: "ClusterRole")
        for resource in ["pods", "services", "endpoints", "endpointslices"] {
            #expect(Self.grants(rules, resource).map { $0["verbs"] } == [["list", "watch"]], "\(resource)")
        }
        #expect(Self.grants(rules, "events").map { $0["verbs"] } == [["create", "patch"]])
        #expect(Self.grants(rules, "policyreports").first?["apiGroups"] == ["wgpolicyk8s.io"])
        #expect(Self.grants(rules, "reports").first?["apiGroups"] == ["openreports.io"])
        // Without repair, patch on NetworkPolicies stays limited to the two guard names.
        #expect(Self.grants(rules, "networkpolicies").allSatisfy {
            $0["resourceNames"] != nil || !($0["verbs"]?.arrayValue ?? []).contains("patch")
        })
        config.audit.repairBypassPolicies = true
        #expect(Self.grants(Self.rules(config, kind: "ClusterRole"), "networkpolicies").contains {
            $0["resourceNames"] == nil && $0["verbs"] == ["patch"]
        })
        config.audit.enabled = false
        let off = Self.rules(config, kind: "ClusterRole")
        for resource in ["services", "endpoints", "endpointslices", "policyreports", "reports"] {
            #expect(Self.grants(off, resource).isEmpty, "\(resource)")
        }
        // What the provisioner needs without the audit: its own Events, and a list of a
        // namespace's Pods before raising its Pod Security level (none with podSecurity: none).
        #expect(Self.grants(off, "events").map { $0["verbs"] } == [["create", "patch"]])
        #expect(Self.grants(off, "pods").map { $0["verbs"] } == [["list"]])
        config.podSecurity = .none
        #expect(Self.grants(Self.rules(config, kind: "ClusterRole"), "pods").isEmpty)
    }
}
