import Foundation
import Testing
@testable import PXGuardCore
@testable import PXGuardKube
@testable import PXGuardPlatform
@testable import PXGuardServer

@Suite("Managed registrations against the in-test Kubernetes API", .serialized)
struct WebhookManagerTests {
    static func install(_ api: FakeKubeAPI, _ config: Config, caBundle: [UInt8]? = nil) {
        for registration in InstallBundle(config: config, caBundlePEM: caBundle).webhooks {
            let resource = registration["kind"] == "MutatingWebhookConfiguration" ? "mutatingwebhookconfigurations" : "validatingwebhookconfigurations"
            api.put(resource, "", config.serviceName, registration)
        }
    }

    static func validating(_ api: FakeKubeAPI) -> JSON? { api.object("validatingwebhookconfigurations", "", "pxguard") }

    static func hook(_ registration: JSON?, _ name: String) -> JSON? {
        registration?["webhooks"]?.arrayValue?.first { $0["name"]?.stringValue == name }
    }

    @Test("a ConfigMap change (exemptGroups, a rule in repair mode) reaches the registrations without a re-render; other webhooks and annotations are kept, a selector pxguard does not render is reset")
    func followsConfig() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        Self.install(api, .default)
        // What an API server adds by defaulting, and what an operator added.
        var registration = try #require(Self.validating(api))
        var hooks = registration["webhooks"]!.arrayValue!
        hooks[0] = hooks[0].setting("objectSelector", .obj(["matchLabels": .obj(["team": "a"])]))
        registration = registration.setting("webhooks", .array(hooks + [.obj(["name": "extra.example.com", "sideEffects": "None"])]))
        registration = registration.setting("metadata", registration["metadata"]!.setting("annotations", .obj(["owner": "platform"])))
        api.put("validatingwebhookconfigurations", "", "pxguard", registration)

        var config = Config.default
        config.exemptGroups = ["platform-admins"]
        config.ruleModes[.bypassPolicies] = .repair
        let recorder = try EventRecorderTests().recorder(api)
        spawnThread(name: "t-events") { recorder.run() }
        defer { recorder.stop() }
        let manager = WebhookManager(config: config, logger: .none, events: recorder)
        let connection = try CertificateManagerTests.client(api)
        #expect(manager.sync(connection, caBundle: nil))
        // Each registration it rewrote is an Event on it.
        #expect(eventually { api.events().filter { $0["reason"] == "WebhookRegistrationUpdated" }.count == 2 })
        let updated = Self.validating(api)
        let workloads = try #require(Self.hook(updated, "workloads.pxguard.io"))
        let conditions = workloads["matchConditions"]?.arrayValue?.compactMap { $0["name"]?.stringValue } ?? []
        #expect(conditions.contains("not-exempt-group"))
        // An objectSelector would let a tenant skip the webhook by labelling a pod.
        #expect(workloads["objectSelector"]?["matchLabels"] == nil)
        #expect(updated?["metadata"]?["annotations"]?["owner"] == "platform")
        #expect(Self.hook(updated, "extra.example.com") != nil)
        let mutating = api.object("mutatingwebhookconfigurations", "", "pxguard")
        #expect(Self.hook(mutating, "networkpolicies.mutate.pxguard.io") != nil)

        // In step: a second round writes nothing.
        api.clearLog()
        #expect(manager.sync(connection, caBundle: nil))
        #expect(!api.requests.contains { $0.hasPrefix("PUT") })
        usleep(200_000)
        let recorded = api.events().filter { $0["reason"] == "WebhookRegistrationUpdated" }.map { $0["count"]?.intValue ?? 1 }
        #expect(recorded.reduce(0, +) == 2, "no Event for a round that wrote nothing")

        // Back out of repair mode: the repair webhook goes, because the config says so.
        config.ruleModes[.bypassPolicies] = nil
        manager.reload(config)
        #expect(manager.sync(connection, caBundle: nil))
        #expect(Self.hook(api.object("mutatingwebhookconfigurations", "", "pxguard"), "networkpolicies.mutate.pxguard.io") == nil)
        #expect(manager.metricsText.contains("pxguard_webhook_updates_total 3"))
    }

    @Test("caBundle: set on every pxguard webhook when given, kept when not (cert-manager's injector owns it)")
    func keepsCABundle() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        let bundle = Array("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".utf8)
        Self.install(api, .default, caBundle: Array("old".utf8))
        let manager = WebhookManager(config: .default, logger: .none)
        let connection = try CertificateManagerTests.client(api)
        #expect(manager.sync(connection, caBundle: bundle))
        for hook in Self.validating(api)?["webhooks"]?.arrayValue ?? [] {
            #expect(hook["clientConfig"]?["caBundle"]?.stringValue == Base64.encode(bundle))
        }
        #expect(manager.sync(connection, caBundle: nil))
        #expect(Self.hook(Self.validating(api), "workloads.pxguard.io")?["clientConfig"]?["caBundle"]?.stringValue == Base64.encode(bundle))
    }

    @Test("registrations that do not exist are reported, never created (RBAC: update by resourceNames only)")
    func neverCreates() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        let manager = WebhookManager(config: .default, logger: .none)
        #expect(!manager.sync(try CertificateManagerTests.client(api), caBundle: nil))
        #expect(!api.requests.contains { $0.hasPrefix("POST") || $0.hasPrefix("PUT") })
        #expect(manager.metricsText.contains("pxguard_webhook_registrations_missing 2"))
    }

    @Test("never widens what a registration skips without the config saying so", arguments: [
        ("a namespace the config does not exempt", "namespace"),
        ("fail-closed turned fail-open", "failurePolicy"),
        ("a webhook the config still renders dropped", "drop"),
        ("a user the config does not exempt in matchConditions", "user"),
        ("a group the config does not exempt in matchConditions", "group"),
    ])
    func refusesWidening(_ what: String, _ change: String) throws {
        let config = Config.default
        let current = InstallBundle(config: config, caBundlePEM: nil).webhooks[0]
        var hooks = current["webhooks"]!.arrayValue!
        switch change {
        case "namespace":
            hooks[0] = hooks[0].setting("namespaceSelector", .obj(["matchExpressions": [.obj([
                "key": "kubernetes.io/metadata.name", "operator": "NotIn",
                "values": .array((config.exemptNamespaces + ["team-a"]).map { .string($0) }),
            ])]]))
        case "failurePolicy": hooks[0] = hooks[0].setting("failurePolicy", "Ignore")
        case "user", "group":
            var exempting = config
            if change == "user" { exempting.exemptUsers = ["mallory", "it's\\me"] } else { exempting.exemptGroups = ["system:authenticated"] }
            let rendered = InstallBundle(config: exempting, caBundlePEM: nil).webhooks[0]["webhooks"]!.arrayValue!
            hooks[0] = hooks[0].setting("matchConditions", rendered[0]["matchConditions"]!)
            // The config that rendered it says so: allowed.
            #expect(WebhookManager.widenings(current: current, proposed: current.setting("webhooks", .array(hooks)), config: exempting).isEmpty)
        default: hooks.removeFirst()
        }
        let proposed = current.setting("webhooks", .array(hooks))
        #expect(!WebhookManager.widenings(current: current, proposed: proposed, config: config).isEmpty, "\(what)")
        // The same change when the config asks for it (an exempt namespace) is allowed.
        if change == "namespace" {
            var exempting = config
            exempting.exemptNamespaces.append("team-a")
            #expect(WebhookManager.widenings(current: current, proposed: proposed, config: exempting).isEmpty)
        }
    }

    @Test("a refused update is not written and is counted")
    func refusedUpdateIsNotWritten() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        // The registration in the cluster holds a webhook the config renders; the
        // proposal cannot drop it, and a fail-closed hook cannot be made fail-open:
        // simulate a registration whose workloads hook an operator made stricter
        // (Fail) where pxguard renders Ignore (the namespace mutation hook).
        Self.install(api, .default)
        var mutating = try #require(api.object("mutatingwebhookconfigurations", "", "pxguard"))
        var hooks = mutating["webhooks"]!.arrayValue!
        hooks[0] = hooks[0].setting("failurePolicy", "Fail")
        mutating = mutating.setting("webhooks", .array(hooks))
        api.put("mutatingwebhookconfigurations", "", "pxguard", mutating)
        let manager = WebhookManager(config: .default, logger: .none)
        api.clearLog()
        #expect(!manager.sync(try CertificateManagerTests.client(api), caBundle: nil))
        #expect(!api.requests.contains { $0.hasPrefix("PUT") && $0.contains("mutating") })
        #expect(manager.metricsText.contains("pxguard_webhook_updates_refused_total 1"))
    }

    @Test("manageWebhooks: false by a reload stops the updates at once")
    func reloadTurnsOff() throws {
        let api = try FakeKubeAPI()
        defer { api.shutdown() }
        api.addNamespace("pxguard-system")
        Self.install(api, .default)
        var config = Config.default
        config.certificates.selfManaged = false
        let client = try KubeClient(endpoint: KubeEndpoint(url: api.url, tokenFile: api.tokenFile, caFile: api.caFile))
        let elector = LeaderElector(client: client, namespace: "pxguard-system", identity: "a", timing: .init(), logger: .none)
        let connection = client.connection()
        #expect(elector.tryAcquireOrRenew(connection))
        let upkeep = try #require(ClusterUpkeep(client: client, elector: elector, config: config, logger: .none))
        config.exemptGroups = ["ops"]
        config.manageWebhooks = false
        upkeep.reload(config)
        api.clearLog()
        upkeep.round(connection)
        #expect(!api.requests.contains { $0.contains("webhookconfigurations") })
        config.manageWebhooks = true
        upkeep.reload(config)
        upkeep.round(connection)
        #expect(api.requests.contains { $0.hasPrefix("PUT") && $0.contains("validatingwebhookconfigurations") })
    }
}
