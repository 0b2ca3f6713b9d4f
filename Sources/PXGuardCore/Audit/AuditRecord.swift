/// The kinds of object the audit reads (SPEC "Audit: what already exists"): what the
/// offline `pxguard audit` reads from `kubectl get ... -o json` and what the server's
/// audit informers watch.
public enum AuditKind: String, Sendable, Hashable, CaseIterable {
    case networkPolicy = "NetworkPolicy"
    case pod = "Pod"
    case service = "Service"
    case endpoints = "Endpoints"
    case endpointSlice = "EndpointSlice"

    /// The kind for an object's `apiVersion` and `kind`, or nil for kinds the audit
    /// does not judge (Namespaces are namespace state, not records).
    public init?(apiVersion: String, kind: String) {
        let group = apiVersion.contains("/") ? String(apiVersion.split(separator: "/")[0]) : ""
        switch (group, kind) {
        case ("networking.k8s.io", "NetworkPolicy"), ("extensions", "NetworkPolicy"): self = .networkPolicy
        case ("", "Pod"): self = .pod
        case ("", "Service"): self = .service
        case ("", "Endpoints"): self = .endpoints
        case ("discovery.k8s.io", "EndpointSlice"): self = .endpointSlice
        default: return nil
        }
    }

    /// API group, as an admission request names it.
    public var group: String {
        switch self {
        case .networkPolicy: "networking.k8s.io"
        case .endpointSlice: "discovery.k8s.io"
        case .pod, .service, .endpoints: ""
        }
    }

    /// `apiVersion` for object references (reports, Events).
    public var apiVersion: String {
        switch self {
        case .networkPolicy: "networking.k8s.io/v1"
        case .endpointSlice: "discovery.k8s.io/v1"
        case .pod, .service, .endpoints: "v1"
        }
    }
}

/// What a finding is about: the rule whose message it carries, or one of the
/// audit's own checks. The raw values are the `rule` label of the metrics and the
/// `rule` of report results.
public enum AuditCheck: String, Sendable, Hashable, CaseIterable, Comparable {
    /// R1: a running Pod on the host network.
    case hostNetwork
    /// A guard policy missing, drifted from its canonical spec, or without its label.
    case guardPolicies
    /// R4: a NetworkPolicy that allows egress to the protected set.
    case bypassPolicies
    /// R5's state: the namespace's `pxguard.io/guarded` label or Pod Security level.
    case optOut
    /// R7: a Service that claims a node address.
    case externalIPs
    /// R8: endpoints on a node address and protected port.
    case endpoints
    /// An object (or namespace) that could not be judged: a finding, never skipped.
    case unjudged
    /// Informational (networkpolicy backend): the guard's block policy widens a
    /// tenant's egress policy. Never makes a namespace exposed.
    case guardWidens

    /// False only for informational findings.
    public var exposes: Bool { self != .guardWidens }

    public static func < (a: Self, b: Self) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }
}

/// One finding about one object: the check and the message (for rule findings, the
/// rule's own denial message).
public struct AuditFinding: Sendable, Hashable {
    public var check: AuditCheck
    public var message: String

    public init(check: AuditCheck, message: String) {
        self.check = check
        self.message = message
    }
}

/// Where a NetworkPolicy that carries a guard policy's name stands.
public enum GuardPolicyState: Sendable, Hashable {
    /// Labelled `app.kubernetes.io/managed-by: pxguard` and canonical for the config.
    case canonical
    /// Its spec differs from the canonical spec.
    case drifted
    /// Canonical spec, but without the managed-by label.
    case unlabelled
}

/// What an informer keeps of one object: its identity, a digest of the fields the
/// judgment read, and the findings it was judged to have on arrival. Never the
/// object itself: a policy's spec can be 1.5 MiB, its annotations hundreds of KiB.
///
/// A record is valid for the configuration it was judged under: after a config
/// change the objects are judged again (the informers relist).
public struct AuditRecord: Sendable, Hashable {
    public var kind: AuditKind
    public var namespace: String
    public var name: String
    /// `metadata.uid` (empty when absent): reports and Events reference it.
    public var uid: String
    /// FNV-1a (64 bit) over the fields the judgment read: an update whose digest is
    /// unchanged cannot change the findings, so it need not be judged again.
    public var digest: UInt64
    /// For a NetworkPolicy that carries a guard policy's name where that policy
    /// belongs; nil for every other object.
    public var guardPolicy: GuardPolicyState?
    /// The object's findings, at most one per check, in check order.
    public var findings: [AuditFinding]

    public init(kind: AuditKind, namespace: String, name: String, uid: String = "", digest: UInt64 = 0,
                guardPolicy: GuardPolicyState? = nil, findings: [AuditFinding] = []) {
        self.kind = kind
        self.namespace = namespace
        self.name = name
        self.uid = uid
        self.digest = digest
        self.guardPolicy = guardPolicy
        self.findings = findings
    }

    /// A record for an object that could not be judged (unreadable, over a size
    /// limit, without a spec): the namespace counts as exposed until it is fixed.
    public static func unjudged(kind: AuditKind, namespace: String, name: String, uid: String = "", reason: String)
        -> AuditRecord
    {
        let message = "pxguard: audit: \(kind.rawValue) \(namespace)/\(name) could not be judged: \(reason). "
            + "Fix or remove the object; until then its namespace counts as exposed."
        return AuditRecord(kind: kind, namespace: namespace, name: name, uid: uid,
                           findings: [AuditFinding(check: .unjudged, message: message)])
    }

    /// The object this record is about, for findings, reports and Events.
    public var object: AuditObject { AuditObject(kind: kind, namespace: namespace, name: name, uid: uid) }
}

/// A reference to one judged object.
public struct AuditObject: Sendable, Hashable {
    public var kind: AuditKind
    public var namespace: String
    public var name: String
    public var uid: String

    public init(kind: AuditKind, namespace: String, name: String, uid: String = "") {
        self.kind = kind
        self.namespace = namespace
        self.name = name
        self.uid = uid
    }
}

/// What the verdict reads of a Namespace: its name, its `pxguard.io/guarded` label
/// and its Pod Security enforce level (what the namespace informer keeps).
public struct AuditNamespace: Sendable, Hashable {
    public var name: String
    /// Value of `pxguard.io/guarded`; nil when absent (or not a string).
    public var guardedLabel: String?
    /// Value of `pod-security.kubernetes.io/enforce`; nil when absent.
    public var podSecurityEnforce: String?

    public init(name: String, guardedLabel: String?, podSecurityEnforce: String?) {
        self.name = name
        self.guardedLabel = guardedLabel
        self.podSecurityEnforce = podSecurityEnforce
    }

    /// The state of a Namespace object as the API returns it; nil when it has no name.
    public init?(object: JSONValue) {
        guard object.kind == .object, let metadata = object["metadata"], let name = metadata["name"]?.string, !name.isEmpty
        else { return nil }
        let labels = metadata["labels"]
        self.name = name
        guardedLabel = labels?[dynamic: GuardNames.guardedLabel]?.string
        podSecurityEnforce = labels?[dynamic: NamespaceMutation.podSecurityLabel]?.string
    }
}

/// FNV-1a, 64 bit: the record digest. Not a defence against collisions a tenant
/// crafts; a collision only skips re-judging one update, and the periodic relist
/// judges every object again.
struct FNV1a {
    private(set) var value: UInt64 = 0xcbf2_9ce4_8422_2325

    mutating func add(_ bytes: UnsafeBufferPointer<UInt8>) {
        var h = value
        for b in bytes {
            h ^= UInt64(b)
            h = h &* 0x0000_0100_0000_01b3
        }
        value = h
    }

    /// Adds a member's bytes (or a marker for absent), then a separator, so that
    /// moving bytes from one member to the next changes the digest.
    mutating func add(_ member: JSONValue?) {
        if let member { add(member.bytes) } else { add(byte: 0xFE) }
        add(byte: 0xFF)
    }

    mutating func add(byte: UInt8) {
        value = (value ^ UInt64(byte)) &* 0x0000_0100_0000_01b3
    }
}
