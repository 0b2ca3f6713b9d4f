public import PXGuardBytes

/// How a rule's violations are handled.
public enum Mode: String, Sendable, CaseIterable {
    /// Deny the request.
    case enforce
    /// Allow it with a `warnings` entry the client sees.
    case warn
    /// Allow it and record the rule in `auditAnnotations`.
    case audit
    /// `bypassPolicies` only: `/mutate` rewrites the offending egress rules into ones
    /// that leave the protected set out; `/validate` still enforces.
    case repair

    /// The modes a rule accepts in the config file.
    public static func allowed(for rule: RuleID) -> [Mode] {
        rule == .bypassPolicies ? [.enforce, .warn, .audit, .repair] : [.enforce, .warn, .audit]
    }
}

/// How the block policies are rendered (SPEC "The guard policies").
public enum PolicyStyle: String, Sendable, CaseIterable {
    /// Exactly the seed document's policies.
    case seed
    /// Block only node subnets × protected ports; allow everything else.
    case ports
}

/// The Pod Security Admission level M1 sets on guarded namespaces.
public enum PodSecurityLevel: String, Sendable, CaseIterable, Comparable {
    /// M1 sets no Pod Security label and R5 does not watch it.
    case none
    case baseline
    case restricted

    /// Rank of a label value as Pod Security Admission orders them; `privileged`
    /// (and anything unknown, which PSA reads as privileged) ranks lowest.
    public static func rank(ofLabel value: String?) -> Int {
        switch value {
        case "restricted": 2
        case "baseline": 1
        default: 0
        }
    }

    var rank: Int { self == .none ? 0 : Self.rank(ofLabel: rawValue) }

    public static func < (a: Self, b: Self) -> Bool { a.rank < b.rank }
}

/// The validating rules, named as the SPEC and the config file name them.
public enum RuleID: String, Sendable, CaseIterable, Hashable {
    case hostNetwork
    case guardPolicies
    case bypassPolicies
    case optOut
    case unguardedNamespace
    case externalIPs
    case endpoints
}

/// The product configuration. Built-in defaults are the seed values; every field is
/// valid by construction (the YAML loader validates before building one).
public struct Config: Sendable, Equatable {
    /// The node subnets the rules and the guard policies judge by: the explicit CIDRs,
    /// plus with `auto` the blocks around the Nodes' addresses (`withNodeBlocks`).
    public var nodeCIDRs: [CIDR]
    public var protectedPorts: [PortRange]
    public var apiServerPort: Int
    public var exemptNamespaces: [String]
    public var exemptUsers: [String]
    public var exemptGroups: [String]
    public var mode: Mode
    /// Per-rule overrides of `mode`.
    public var ruleModes: [RuleID: Mode]
    /// How the block policies are rendered.
    public var policyStyle: PolicyStyle
    /// The Pod Security level M1 sets and R5 keeps.
    public var podSecurity: PodSecurityLevel
    public var provisioning: Provisioning
    /// Namespace the server runs in (Lease, install bundle, own service account).
    public var namespace: String
    /// Service and service-account name of the server.
    public var serviceName: String
    /// The server's own identity: exempt from R2, R3 and R5 (what the provisioner
    /// writes) and from nothing else.
    public var serviceAccount: String
    /// Container image used by `render all`.
    public var image: String
    public var replicas: Int
    /// Transport limits and timeouts (`server:` in the config file).
    public var server: TransportLimits
    /// `HOST:PORT` of a plain-HTTP listener serving only `/metrics` and `/healthz`
    /// (for scrapers without the webhook's CA); empty: none. `server.metricsListen`
    /// in the config file.
    public var metricsListen = ""
    /// Ports the node firewall (`render iptables`) closes to everyone but the nodes.
    public var nodeFirewallPorts: PortRange
    /// Addresses the API servers call the webhook from. When set, `render all` adds an
    /// ingress NetworkPolicy that admits only them to pxguard's pods on the webhook
    /// port. Empty (off) by default: managed control planes call from outside the
    /// node subnets, at addresses only the provider knows.
    public var apiServerCIDRs: [CIDR] = []
    /// The Lease holder keeps pxguard's own webhook registrations in step with this
    /// configuration (rules, exemptions in `matchConditions`, `caBundle`). Off for
    /// GitOps setups that own the registrations (`render webhooks` then).
    public var manageWebhooks = true
    /// Self-managed certificates: lifetimes and renewal margins.
    public var certificates = Certificates()
    /// The lowest level of log line written (`--log-level` overrides it).
    public var logLevel: LogLevel = .info
    /// Finding lines (denials, warnings, audits) logged per rule per second; the rest
    /// are counted and the count rides on the next line of that rule. 0 logs none.
    public var logFindingsPerSecond: Int = 10

    /// Log levels, lowest first.
    public enum LogLevel: String, Sendable, CaseIterable {
        case debug, info, warn, error
    }

    /// The audit of what already exists (SPEC "Audit: what already exists").
    public var audit = Audit()

    /// `audit:` in the config file. On by default: it runs wherever the watches run
    /// (a Kubernetes API configured and provisioning on) and writes only reports
    /// and Events; repair, the one change to tenants' objects, is opt-in.
    public struct Audit: Sendable, Equatable {
        /// Every replica keeps a verdict per guarded namespace; the Lease holder
        /// writes reports and Events. Off: no audit informers, no audit RBAC.
        public var enabled = true
        /// The Lease holder rewrites existing bypass policies as R4's repair mode would.
        public var repairBypassPolicies = false
        /// The defaults: on, no repair.
        public init() {}
    }

    /// The CA and serving pair the Lease holder keeps in the Secret `<serviceName>-tls`
    /// when no one else (cert-manager) manages it. All times in seconds.
    public struct Certificates: Sendable, Equatable {
        /// Off: the Secret is someone else's (your own PKI); pxguard only reads the mount.
        public var selfManaged = true
        /// Lifetime of a CA pxguard creates (10 years).
        public var caValiditySeconds = 10 * 365 * 86_400
        /// A new CA is published this long before the current one expires (1 year).
        public var caRenewBeforeSeconds = 365 * 86_400
        /// Lifetime of a serving certificate (90 days).
        public var validitySeconds = 90 * 86_400
        /// A serving certificate is replaced this long before it expires (30 days).
        public var renewBeforeSeconds = 30 * 86_400
        /// How long a new CA stays in `caBundle` before it signs anything, so that every
        /// API server trusts it before a replica serves a certificate it signed.
        public var rolloutSeconds = 300
        public init() {}
    }

    /// How the guard is expressed (SPEC "Guard backends"); `auto` is resolved by the
    /// server through discovery.
    public var guardBackend: GuardBackend = .auto
    /// AdminNetworkPolicy `priority` and Calico Tier/policy `order` of the cluster-scoped
    /// guard (lower comes first).
    public var guardPriority: Int = 10

    /// R7: Service annotations through which load balancers take a requested address
    /// (comma-separated addresses in the value).
    public var loadBalancerIPAnnotations: [String] = Config.defaultLoadBalancerIPAnnotations
    /// R7: the load balancer hands out node addresses (k3s ServiceLB, Cilium node
    /// IPAM), so a LoadBalancer Service's ports open on the nodes themselves.
    public var loadBalancerUsesNodeIPs = false

    static let defaultLoadBalancerIPAnnotations = [
        "metallb.universe.tf/loadBalancerIPs", "metallb.io/loadBalancerIPs", "kube-vip.io/loadbalancerIPs",
        "lbipam.cilium.io/ips", "io.cilium/lb-ipam-ips",
    ]

    // MARK: day one (issue 25): names that may collide, paced and previewable provisioning

    /// The names the guard policies are created under (SPEC "Labels, annotations, names");
    /// configurable for clusters whose own policies already use them.
    public var guardPolicyNames = GuardPolicyNames()

    /// `nodeCIDRs` holds the word `auto`: the server watches Nodes (see `NodeBlocks`).
    public var nodeCIDRsAuto = false
    /// The CIDRs the file lists beside `auto` (all of `nodeCIDRs` without it).
    public var explicitNodeCIDRs: [CIDR] = [CIDR("70.0.0.0/16")!]
    /// The block guarded around each node address with `auto`.
    public var nodePrefixLength = NodePrefixLength()

    /// Names of the two guard policies.
    public struct GuardPolicyNames: Sendable, Equatable {
        /// The block policy, in kube-system and in every guarded namespace.
        public var block: String = GuardNames.blockPolicy
        /// The allow-api policy, in every guarded namespace.
        public var allowAPI: String = GuardNames.allowAPIPolicy
        /// The value of the `pxguard.io/policies` annotation: both names, comma-separated.
        public var annotation: String { "\(block),\(allowAPI)" }
        /// The SPEC's names.
        public init() {}
    }

    /// What the provisioner does and how fast.
    public struct Provisioning: Sendable, Equatable {
        public var enabled: Bool
        public var resyncSeconds: Int
        /// Rewrites per second at most when a configuration change (or a node in a new
        /// block) changes the canonical specs; repairs and new namespaces are not paced.
        public var writesPerSecond: Int = 50
        /// Report every write the provisioner would make (log lines, metrics) without
        /// sending it: a preview for an existing cluster.
        public var dryRun: Bool = false
        public init(enabled: Bool = true, resyncSeconds: Int = 300) {
            self.enabled = enabled
            self.resyncSeconds = resyncSeconds
        }
    }

    static let defaultExemptNamespaces = [
        "kube-system", "kube-public", "kube-node-lease", "pxguard-system", "portworx",
    ]

    /// The built-in configuration: the seed's values.
    public static let `default` = Config(
        nodeCIDRs: [CIDR("70.0.0.0/16")!],
        protectedPorts: [PortRange("9001-9022")!],
        apiServerPort: 6443,
        exemptNamespaces: defaultExemptNamespaces,
        exemptUsers: [],
        exemptGroups: [],
        mode: .enforce,
        ruleModes: [:],
        policyStyle: .ports,
        podSecurity: .baseline,
        provisioning: Provisioning(),
        namespace: "pxguard-system",
        serviceName: "pxguard",
        serviceAccount: "system:serviceaccount:pxguard-system:pxguard",
        image: BuildInfo.image,
        replicas: 2,
        server: TransportLimits(),
        nodeFirewallPorts: PortRange("9000-9022")!
    )

    /// The mode that applies to `rule`.
    public func mode(for rule: RuleID) -> Mode { ruleModes[rule] ?? mode }

    /// True unless the namespace is listed in `exemptNamespaces`.
    public func isGuarded(namespace: String) -> Bool { !exemptNamespaces.contains(namespace) }
}

extension Config {
    /// The configuration as a JSON tree in the config file's own keys; `render`
    /// writes it as YAML into the install bundle's ConfigMap.
    public var document: JSON {
        var rules: [JSON.Member] = []
        for rule in RuleID.allCases { if let m = ruleModes[rule] { rules.append(.init(rule.rawValue, .obj(["mode": .string(m.rawValue)]))) } }
        return .obj([
            // The file's form: `auto` and the explicit CIDRs, never the discovered blocks.
            "nodeCIDRs": .array((nodeCIDRsAuto ? [.string("auto")] : []) + explicitNodeCIDRs.map { .string($0.description) }),
            "nodePrefixLength": .obj(["ipv4": .int(nodePrefixLength.ipv4), "ipv6": .int(nodePrefixLength.ipv6)]),
            "protectedPorts": .array(protectedPorts.map { .string($0.configNotation) }),
            "apiServerPort": .int(apiServerPort),
            "exemptNamespaces": .array(exemptNamespaces.map { .string($0) }),
            "exemptUsers": .array(exemptUsers.map { .string($0) }),
            "exemptGroups": .array(exemptGroups.map { .string($0) }),
            "mode": .string(mode.rawValue),
            "rules": rules.isEmpty ? nil : .object(rules),
            "policyStyle": .string(policyStyle.rawValue),
            "podSecurity": .string(podSecurity.rawValue),
            "guardBackend": .string(guardBackend.rawValue),
            "guardPriority": .int(guardPriority),
            "provisioning": .obj(["enabled": .bool(provisioning.enabled), "resyncSeconds": .int(provisioning.resyncSeconds),
                                  "writesPerSecond": .int(provisioning.writesPerSecond), "dryRun": .bool(provisioning.dryRun)]),
            "guardPolicyNames": .obj(["block": .string(guardPolicyNames.block), "allowAPI": .string(guardPolicyNames.allowAPI)]),
            "namespace": .string(namespace),
            "serviceName": .string(serviceName),
            "serviceAccount": .string(serviceAccount),
            "nodeFirewallPorts": .string(nodeFirewallPorts.configNotation),
            "apiServerCIDRs": apiServerCIDRs.isEmpty ? nil : .array(apiServerCIDRs.map { .string($0.description) }),
            "manageWebhooks": .bool(manageWebhooks),
            "audit": .obj(["enabled": .bool(audit.enabled), "repairBypassPolicies": .bool(audit.repairBypassPolicies)]),
            "certificates": .obj([
                "selfManaged": .bool(certificates.selfManaged),
                "caValiditySeconds": .int(certificates.caValiditySeconds),
                "caRenewBeforeSeconds": .int(certificates.caRenewBeforeSeconds),
                "validitySeconds": .int(certificates.validitySeconds),
                "renewBeforeSeconds": .int(certificates.renewBeforeSeconds),
                "rolloutSeconds": .int(certificates.rolloutSeconds),
            ]),
            "loadBalancerIPAnnotations": loadBalancerIPAnnotations == Self.defaultLoadBalancerIPAnnotations
                ? nil : .array(loadBalancerIPAnnotations.map { .string($0) }),
            "loadBalancerUsesNodeIPs": loadBalancerUsesNodeIPs ? .bool(true) : nil,
            // Every server setting, so that `render all --config` carries an operator's
            // limits into the ConfigMap instead of quietly resetting them.
            "server": .obj([
                "maxBodyBytes": .int(server.maxBodyBytes),
                "maxRequestsPerConnection": .int(server.maxRequestsPerConnection),
                "idleTimeoutSeconds": .int(Int(server.idleTimeoutSeconds)),
                "handshakeTimeoutSeconds": .int(Int(server.handshakeTimeoutSeconds)),
                "headerTimeoutSeconds": .int(Int(server.headerTimeoutSeconds)),
                "bodyTimeoutSeconds": .int(Int(server.bodyTimeoutSeconds)),
                "workers": .int(server.workers),
                "maxConnectionsPerWorker": .int(server.maxConnectionsPerWorker),
                "maxConnections": .int(server.maxConnections),
                "maxHandshakesPerWorker": .int(server.maxHandshakesPerWorker),
                "maxClientHelloBytes": .int(server.maxClientHelloBytes),
                "maxBufferedBytesPerWorker": .int(server.maxBufferedBytesPerWorker),
                "metricsListen": metricsListen.isEmpty ? nil : .string(metricsListen),
                "maxConnectionsPerPeer": .int(server.maxConnectionsPerPeer),
                "minRequestBytesPerSecond": .int(server.minRequestBytesPerSecond),
            ]),
            "logLevel": .string(logLevel.rawValue),
            "logFindingsPerSecond": .int(logFindingsPerSecond),
        ])
    }
}
