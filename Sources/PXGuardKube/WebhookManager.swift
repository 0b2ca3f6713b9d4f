#if canImport(Glibc)
import Glibc
#endif
public import PXGuardCore
public import PXGuardPlatform
import Synchronization

/// Managed registrations (`manageWebhooks: true`): the Lease holder keeps pxguard's own
/// ValidatingWebhookConfiguration and MutatingWebhookConfiguration in step with the
/// configuration (rules and modes, exemptions in `matchConditions`, `caBundle`), so that
/// a ConfigMap change needs no re-render. It only updates the two objects named after
/// the service (RBAC: `get`/`update` by `resourceNames`); it never creates them (a create
/// cannot be limited by name). It keeps other webhooks and metadata, and resets the
/// selectors pxguard does not render to "everything" (an objectSelector would let a tenant
/// skip a webhook by labelling an object).
///
/// It never widens what a registration skips unless the configuration says so: an
/// update that would exclude a namespace the config does not exempt, let a user or group
/// it does not exempt skip a webhook through `matchConditions`, turn a fail-closed
/// webhook fail-open, or drop a webhook the config still asks for, is refused, logged
/// and counted (`pxguard_webhook_updates_refused_total`).
public final class WebhookManager: Sendable {
    let config: Locked<Config>
    let logger: Logger
    let updates = Atomic<Int>(0)
    let failures = Atomic<Int>(0)
    let refused = Atomic<Int>(0)
    /// Registrations found missing, so that each is reported once.
    let missing = Locked<Set<String>>([])
    /// The last refusal logged, so that a standing refusal is logged once, not every round.
    let lastRefusal = Locked<String>("")

    /// Events for the registrations' updates (nil: none).
    let events: EventRecorder?

    /// A manager for the registrations `config.serviceName`.
    public init(config: Config, logger: Logger, events: EventRecorder? = nil) {
        self.events = events
        self.config = Locked(config)
        self.logger = logger
    }

    /// A configuration reload: the next round brings the registrations to it.
    public func reload(_ config: Config) { self.config.withLock { $0 = config } }

    static func path(kind: String, name: String) throws(KubeError) -> String {
        let resource = kind == "MutatingWebhookConfiguration" ? "mutatingwebhookconfigurations" : "validatingwebhookconfigurations"
        return "/apis/admissionregistration.k8s.io/v1/\(resource)/\(try KubePath.segment(name))"
    }

    /// One round: both registrations brought in step with the config and, when given,
    /// `caBundle` (nil keeps theirs: cert-manager's injector or the operator owns it).
    /// Returns true when both exist and carry `caBundle` afterwards.
    @discardableResult
    func sync(_ connection: KubeConnection, caBundle: [UInt8]?) -> Bool {
        let config = config.withLock { $0 }
        let desired = InstallBundle(config: config, caBundlePEM: caBundle).webhooks
        var carried = true
        for registration in desired {
            let kind = registration["kind"]?.stringValue ?? ""
            let name = registration["metadata"]?["name"]?.stringValue ?? ""
            do {
                let path = try Self.path(kind: kind, name: name)
                let current: JSON
                do {
                    current = try connection.call("GET", path)
                } catch let error where error.code == 404 {
                    let first = missing.withLock { $0.insert(kind).inserted }
                    if first {
                        logger.warn("webhook registration missing; pxguard updates it but never creates it: apply `pxguard render webhooks`",
                                    [("kind", kind), ("name", name)])
                    }
                    carried = false
                    continue
                }
                _ = missing.withLock { $0.remove(kind) }
                let proposed = Self.merge(current: current, desired: registration)
                let widened = Self.widenings(current: current, proposed: proposed, config: config)
                guard widened.isEmpty else {
                    let reason = "\(kind): " + widened.joined(separator: "; ")
                    let first = lastRefusal.withLock { last -> Bool in
                        defer { last = reason }
                        return last != reason
                    }
                    carried = false
                    guard first else { continue }
                    refused.add(1, ordering: .relaxed)
                    logger.error("webhook registration update refused: it would skip more than the configuration says",
                                 [("kind", kind), ("name", name), ("widenings", widened.joined(separator: "; "))])
                    continue
                }
                if !Self.sameContent(proposed, current) {
                    try connection.call("PUT", path, body: proposed)
                    updates.add(1, ordering: .relaxed)
                    logger.info("webhook registration updated", [("kind", kind), ("name", name)])
                    events?.record(.init(apiVersion: "admissionregistration.k8s.io/v1", kind: kind, name: name), .normal,
                                   reason: "WebhookRegistrationUpdated",
                                   message: "pxguard brought its registration to the running configuration (caBundle, exemptions)")
                }
                if let caBundle {
                    let encoded = Base64.encode(caBundle)
                    for hook in proposed["webhooks"]?.arrayValue ?? [] where hook["name"]?.stringValue?.hasSuffix(".pxguard.io") == true {
                        if hook["clientConfig"]?["caBundle"]?.stringValue != encoded { carried = false }
                    }
                }
            } catch {
                failures.add(1, ordering: .relaxed)
                if error.code != 409 {
                    logger.warn("webhook registration update failed; retrying", [("kind", kind), ("error", error.description)])
                }
                carried = false
            }
        }
        return carried
    }

    /// `current` with every webhook pxguard renders set to what the config renders:
    /// each field pxguard writes replaced, fields it does not write (API-server
    /// defaults, an operator's additions) kept; pxguard webhooks the config no longer
    /// renders removed; webhooks that are not pxguard's kept as they are.
    static func merge(current: JSON, desired: JSON) -> JSON {
        let wanted = desired["webhooks"]?.arrayValue ?? []
        let existing = current["webhooks"]?.arrayValue ?? []
        var hooks: [JSON] = []
        for hook in wanted {
            let name = hook["name"]?.stringValue ?? ""
            var merged = existing.first { $0["name"]?.stringValue == name } ?? .obj([:])
            for member in hook.members ?? [] {
                var value = member.value
                if member.key == "clientConfig", value["caBundle"] == nil,
                    let kept = merged["clientConfig"]?["caBundle"]
                {
                    value = value.setting("caBundle", kept)
                }
                merged = merged.setting(member.key, value)
            }
            // A selector pxguard does not render means "every namespace/object".
            for selector in ["namespaceSelector", "objectSelector"] where hook[selector] == nil {
                merged = merged.setting(selector, .obj([:]))
            }
            hooks.append(merged)
        }
        for hook in existing where !(hook["name"]?.stringValue?.hasSuffix(".pxguard.io") ?? false) { hooks.append(hook) }
        return current.setting("webhooks", .array(hooks))
    }

    /// Ways `proposed` would skip requests that `current` sends to pxguard without the
    /// config saying so; empty when the update is safe.
    static func widenings(current: JSON, proposed: JSON, config: Config) -> [String] {
        var out: [String] = []
        let exempt = Set(config.exemptNamespaces + [GuardNames.kubeSystem, config.namespace])
        let before = current["webhooks"]?.arrayValue ?? []
        let after = proposed["webhooks"]?.arrayValue ?? []
        let rendered = Set(InstallBundle(config: config, caBundlePEM: nil).webhooks
            .flatMap { $0["webhooks"]?.arrayValue ?? [] }.compactMap { $0["name"]?.stringValue })
        for old in before {
            let name = old["name"]?.stringValue ?? ""
            guard let new = after.first(where: { $0["name"]?.stringValue == name }) else {
                if rendered.contains(name) || !name.hasSuffix(".pxguard.io") { out.append("\(name) removed") }
                continue
            }
            if old["failurePolicy"]?.stringValue == "Fail" && new["failurePolicy"]?.stringValue == "Ignore" {
                out.append("\(name) turned fail-open")
            }
            // Exemptions in matchConditions: every identity a condition lets skip the webhook
            // must be one the config exempts (or a cleanup identity, for its DELETEs).
            let allowed: [String: Set<String>] = [
                "not-exempt-user": Set(config.exemptUsers), "not-exempt-group": Set(config.exemptGroups),
                "not-namespace-cleanup": Set(InstallBundle.cleanupIdentities),
            ]
            for condition in new["matchConditions"]?.arrayValue ?? [] {
                guard let conditionName = condition["name"]?.stringValue, let permitted = allowed[conditionName] else { continue }
                for identity in celStrings(condition["expression"]?.stringValue ?? "")
                where !permitted.contains(identity) && identity != "DELETE" {
                    out.append("\(name) would let \(identity.debugDescription) skip it (\(conditionName)), which the config does not exempt")
                }
            }
            let excludedBefore = Set(excluded(old["namespaceSelector"]))
            for namespace in excluded(new["namespaceSelector"]) where !excludedBefore.contains(namespace) && !exempt.contains(namespace) {
                out.append("\(name) would skip namespace \(namespace), which the config does not exempt")
            }
        }
        return out
    }

    /// The single-quoted string literals of a CEL expression, unescaped (`\\`, `\'`, `\uXXXX`).
    static func celStrings(_ expression: String) -> [String] {
        var out: [String] = []
        var current: String? = nil
        var iterator = expression.unicodeScalars.makeIterator()
        while let c = iterator.next() {
            guard var literal = current else {
                if c == "'" { current = "" }
                continue
            }
            switch c {
            case "'":
                out.append(literal)
                current = nil
                continue
            case "\\":
                guard let next = iterator.next() else { break }
                if next == "u" {
                    var hex = ""
                    for _ in 0..<4 { if let h = iterator.next() { hex.unicodeScalars.append(h) } }
                    if let v = UInt32(hex, radix: 16), let scalar = Unicode.Scalar(v) { literal.unicodeScalars.append(scalar) }
                } else {
                    literal.unicodeScalars.append(next)
                }
            default:
                literal.unicodeScalars.append(c)
            }
            current = literal
        }
        return out
    }

    /// Namespace names a selector leaves out (`kubernetes.io/metadata.name NotIn`).
    static func excluded(_ selector: JSON?) -> [String] {
        (selector?["matchExpressions"]?.arrayValue ?? []).flatMap { expression -> [String] in
            guard expression["key"]?.stringValue == "kubernetes.io/metadata.name", expression["operator"]?.stringValue == "NotIn" else { return [] }
            return (expression["values"]?.arrayValue ?? []).compactMap(\.stringValue)
        }
    }

    /// Equal up to what the API server treats as the same (absent, null, `{}` and `[]`),
    /// so that defaulting never makes a round rewrite an object that is in step.
    static func sameContent(_ a: JSON, _ b: JSON) -> Bool { canonical(a) == canonical(b) }

    static func canonical(_ value: JSON) -> JSON {
        switch value {
        case .array(let items): return .array(items.map(canonical))
        case .object(let members):
            let kept = members.compactMap { m -> JSON.Member? in
                guard m.key != "resourceVersion", m.key != "managedFields", m.key != "generation" else { return nil }
                let v = canonical(m.value)
                switch v {
                case .null: return nil
                case .array(let a) where a.isEmpty: return nil
                case .object(let o) where o.isEmpty: return nil
                default: return JSON.Member(m.key, v)
                }
            }
            return .object(kept.sorted { $0.key < $1.key })
        default: return value
        }
    }

    /// `/metrics` text for the registrations.
    public var metricsText: String {
        var out = "# HELP pxguard_webhook_updates_total Updates pxguard made to its own webhook registrations.\n"
        out += "# TYPE pxguard_webhook_updates_total counter\npxguard_webhook_updates_total \(updates.load(ordering: .relaxed))\n"
        out += "# HELP pxguard_webhook_update_failures_total Registration rounds that could not read or write a registration.\n"
        out += "# TYPE pxguard_webhook_update_failures_total counter\npxguard_webhook_update_failures_total \(failures.load(ordering: .relaxed))\n"
        out += "# HELP pxguard_webhook_updates_refused_total Registration updates refused because they would skip more than the config says.\n"
        out += "# TYPE pxguard_webhook_updates_refused_total counter\npxguard_webhook_updates_refused_total \(refused.load(ordering: .relaxed))\n"
        out += "# HELP pxguard_webhook_registrations_missing Registrations pxguard should manage that do not exist.\n"
        out += "# TYPE pxguard_webhook_registrations_missing gauge\npxguard_webhook_registrations_missing \(missing.withLock { $0.count })\n"
        return out
    }
}

/// The Lease holder's upkeep beside provisioning: the certificate round and the
/// registration round, every `period` seconds, on one thread (`pxguard-upkeep`).
public final class ClusterUpkeep: Sendable {
    let client: KubeClient
    let elector: LeaderElector
    /// Nil when certificates are not self-managed.
    public let certificates: CertificateManager?
    /// Nil when `manageWebhooks` is off.
    public let webhooks: WebhookManager?
    let period: Locked<Double>
    /// What the current configuration turns on: a reload can turn either feature off at
    /// once; turning one on that was off at start takes a restart (and its RBAC).
    let enabled: Locked<(certificates: Bool, webhooks: Bool)>
    let stopped = Atomic<Bool>(false)
    let logger: Logger

    /// Upkeep for `config`; nil when it turns on neither feature.
    public init?(client: KubeClient, elector: LeaderElector, config: Config, logger: Logger, events: EventRecorder? = nil) {
        guard config.certificates.selfManaged || config.manageWebhooks else { return nil }
        self.client = client
        self.elector = elector
        certificates = config.certificates.selfManaged
            ? CertificateManager(service: config.serviceName, namespace: config.namespace, settings: config.certificates, logger: logger,
                                 events: events) : nil
        webhooks = config.manageWebhooks ? WebhookManager(config: config, logger: logger, events: events) : nil
        period = Locked(Self.period(for: config))
        enabled = Locked((config.certificates.selfManaged, config.manageWebhooks))
        self.logger = logger
    }

    /// Often enough that a renewal or a rollout step is never late by more than a
    /// quarter of its margin; at most every 30 s, at least every 0.25 s.
    static func period(for config: Config) -> Double {
        let c = config.certificates
        let margin = Double(min(c.rolloutSeconds, c.renewBeforeSeconds, c.caRenewBeforeSeconds))
        return min(30, max(0.25, margin / 4))
    }

    /// A configuration reload reaches both managers.
    public func reload(_ config: Config) {
        certificates?.reload(config.certificates)
        webhooks?.reload(config)
        period.withLock { $0 = Self.period(for: config) }
        enabled.withLock { $0 = (config.certificates.selfManaged, config.manageWebhooks) }
        if config.certificates.selfManaged && certificates == nil || config.manageWebhooks && webhooks == nil {
            logger.warn("certificates.selfManaged or manageWebhooks turned on by a reload: it takes effect at the next start, "
                + "after re-applying the bundle for its RBAC")
        }
    }

    /// First start of a bundle applied without a Secret: makes sure the Secret exists
    /// (created by whichever replica comes first: a create is atomic), so that the kubelet
    /// can project it into the certificate directory. True when it exists now.
    public func ensureCertificateSecret() -> Bool {
        guard let certificates else { return false }
        let connection = client.connection()
        defer { connection.close() }
        return certificates.ensureSecret(connection)
    }

    /// One round, when this replica holds the Lease.
    func round(_ connection: KubeConnection) {
        guard elector.isLeader else { return }
        let (certificatesOn, webhooksOn) = enabled.withLock { $0 }
        let webhooks = webhooksOn ? self.webhooks : nil
        if certificatesOn, let certificates {
            let (_, bundle) = certificates.round(connection) { bundle in
                webhooks?.sync(connection, caBundle: bundle) ?? true
            }
            // A cert-manager Secret or a failed read: the registrations still follow the config.
            if bundle == nil { webhooks?.sync(connection, caBundle: nil) }
        } else {
            webhooks?.sync(connection, caBundle: nil)
        }
    }

    /// Runs rounds until `stop`: at once when this replica becomes the Lease holder,
    /// then every `period` while it holds it.
    public func run() {
        let connection = client.connection()
        defer { connection.close() }
        var wasLeader = false
        var last = -Double.infinity
        while !stopped.load(ordering: .relaxed) {
            let leader = elector.isLeader
            let now = Clock.monotonic().seconds
            if leader && (!wasLeader || now - last >= period.withLock({ $0 })) {
                round(connection)
                last = now
            }
            wasLeader = leader
            usleep(50_000)
        }
    }

    /// Ends `run` within 50 ms.
    public func stop() { stopped.store(true, ordering: .relaxed) }

    /// `/metrics` text of both managers.
    public var metricsText: String { (certificates?.metricsText ?? "") + (webhooks?.metricsText ?? "") }
}
