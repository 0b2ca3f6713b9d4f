import PXGuardBytes
public import PXGuardCore

/// Decodes the YAML configuration file into a `Config`, refusing unknown keys,
/// wrong types, bad CIDRs, bad port ranges and unknown modes with
/// `FILE:LINE:COLUMN: what was expected`. Keys that are absent keep the defaults.
public struct ConfigLoader {
    let file: String

    public init(file: String) { self.file = file }

    /// Parses and validates `bytes` (the file's content).
    public func load(_ bytes: [UInt8]) throws(YAMLError) -> Config {
        let documents: [YAMLNode]
        do {
            documents = try YAMLReader.documents(bytes, file: file)
        } catch let error as YAMLError {
            throw error
        } catch {
            throw YAMLError(file: file, line: 0, column: 0, message: "\(error)")
        }
        guard documents.count <= 1 else {
            throw fail(documents[1], "expected one YAML document, found \(documents.count)")
        }
        var config = Config.default
        guard let root = documents.first, root.scalar.map({ !$0.isEmpty }) ?? true else { return config }
        let pairs = try mapping(root, "the configuration")
        var explicitServiceAccount = false
        for (keyNode, value) in pairs {
            let key = keyNode.scalar ?? ""
            switch key {
            case "nodeCIDRs":
                // `nodeCIDRs: auto` as one word is read as the list [auto].
                let items = value.scalar == "auto" ? [value] : try list(value, key)
                config.nodeCIDRsAuto = false
                config.nodeCIDRs = []
                for node in items {
                    let text = try string(node, key)
                    if text == "auto" {
                        config.nodeCIDRsAuto = true
                        continue
                    }
                    guard let c = CIDR(text) else {
                        throw fail(node, "\(key): expected a CIDR such as 70.0.0.0/16 or fd00::/64, or auto, got \(quoted(node))")
                    }
                    config.nodeCIDRs.append(c)
                }
                config.explicitNodeCIDRs = config.nodeCIDRs
                if items.isEmpty { throw fail(value, "\(key): expected at least one node subnet, or auto") }
            case "nodePrefixLength":
                if case .mapping = value.value {
                    for (k, v) in try mapping(value, key) {
                        switch k.scalar ?? "" {
                        case "ipv4": config.nodePrefixLength.ipv4 = try int(v, "nodePrefixLength.ipv4", 8...32)
                        case "ipv6": config.nodePrefixLength.ipv6 = try int(v, "nodePrefixLength.ipv6", 32...128)
                        default: throw fail(k, "nodePrefixLength: unknown key \(quoted(k)); expected ipv4 or ipv6")
                        }
                    }
                } else {
                    // One number is the IPv4 length (the common case); IPv6 keeps /64.
                    config.nodePrefixLength.ipv4 = try int(value, key, 8...32)
                }
            case "apiServerCIDRs":
                config.apiServerCIDRs = try list(value, key).map { (node) throws(YAMLError) -> CIDR in
                    guard let c = try CIDR(string(node, key)) else {
                        throw fail(node, "\(key): expected a CIDR such as 10.0.0.10/32 or fd00::/64, got \(quoted(node))")
                    }
                    return c
                }
            case "loadBalancerIPAnnotations": config.loadBalancerIPAnnotations = try strings(value, key)
            case "loadBalancerUsesNodeIPs": config.loadBalancerUsesNodeIPs = try bool(value, key)
            case "protectedPorts":
                config.protectedPorts = try list(value, key).map { (node) throws(YAMLError) -> PortRange in
                    guard let r = PortRange(try string(node, key)) else {
                        throw fail(node, "\(key): expected a port or range in 1-65535 such as 9001-9022, UDP/9002 or SCTP/9001-9005, got \(quoted(node))")
                    }
                    return r
                }
                if config.protectedPorts.isEmpty { throw fail(value, "\(key): expected at least one port range") }
            case "apiServerPort":
                config.apiServerPort = try int(value, key, 1...65535)
            case "exemptNamespaces": config.exemptNamespaces = try strings(value, key)
            case "exemptUsers": config.exemptUsers = try strings(value, key)
            case "exemptGroups": config.exemptGroups = try strings(value, key)
            case "mode": config.mode = try mode(value, key)
            case "policyStyle": config.policyStyle = try choice(value, key)
            case "podSecurity": config.podSecurity = try choice(value, key)
            case "guardBackend": config.guardBackend = try choice(value, key)
            // AdminNetworkPolicy takes 0-1000; Calico's order shares the key.
            case "guardPriority": config.guardPriority = try int(value, key, 0...1000)
            case "rules":
                for (ruleNode, ruleValue) in try mapping(value, key) {
                    let name = ruleNode.scalar ?? ""
                    guard let rule = RuleID(rawValue: name) else {
                        throw fail(ruleNode, "rules: unknown rule \(quoted(ruleNode)); expected one of \(RuleID.allCases.map(\.rawValue).joined(separator: ", "))")
                    }
                    for (k, v) in try mapping(ruleValue, "rules.\(name)") {
                        guard k.scalar == "mode" else { throw fail(k, "rules.\(name): unknown key \(quoted(k)); expected mode") }
                        config.ruleModes[rule] = try mode(v, "rules.\(name).mode", allowed: Mode.allowed(for: rule))
                    }
                }
            case "provisioning":
                for (k, v) in try mapping(value, key) {
                    switch k.scalar ?? "" {
                    case "enabled": config.provisioning.enabled = try bool(v, "provisioning.enabled")
                    case "resyncSeconds": config.provisioning.resyncSeconds = try int(v, "provisioning.resyncSeconds", 5...86_400)
                    case "writesPerSecond": config.provisioning.writesPerSecond = try int(v, "provisioning.writesPerSecond", 1...10_000)
                    case "dryRun": config.provisioning.dryRun = try bool(v, "provisioning.dryRun")
                    default: throw fail(k, "provisioning: unknown key \(quoted(k)); expected enabled, resyncSeconds, writesPerSecond or dryRun")
                    }
                }
            case "guardPolicyNames":
                for (k, v) in try mapping(value, key) {
                    switch k.scalar ?? "" {
                    case "block": config.guardPolicyNames.block = try name(v, "guardPolicyNames.block")
                    case "allowAPI": config.guardPolicyNames.allowAPI = try name(v, "guardPolicyNames.allowAPI")
                    default: throw fail(k, "guardPolicyNames: unknown key \(quoted(k)); expected block or allowAPI")
                    }
                }
                if config.guardPolicyNames.block == config.guardPolicyNames.allowAPI {
                    throw fail(value, "guardPolicyNames: block and allowAPI must differ; give each policy its own name")
                }
            case "audit":
                for (k, v) in try mapping(value, key) {
                    switch k.scalar ?? "" {
                    case "enabled": config.audit.enabled = try bool(v, "audit.enabled")
                    case "repairBypassPolicies": config.audit.repairBypassPolicies = try bool(v, "audit.repairBypassPolicies")
                    default: throw fail(k, "audit: unknown key \(quoted(k)); expected enabled or repairBypassPolicies")
                    }
                }
            case "namespace": config.namespace = try name(value, key)
            case "serviceName": config.serviceName = try name(value, key)
            case "serviceAccount":
                config.serviceAccount = try string(value, key)
                explicitServiceAccount = true
            case "image": config.image = try string(value, key)
            case "nodeFirewallPorts":
                guard let r = PortRange(try string(value, key)) else {
                    throw fail(value, "\(key): expected a port range such as 9000-9022, got \(quoted(value))")
                }
                config.nodeFirewallPorts = r
            case "replicas": config.replicas = try int(value, key, 1...100)
            case "logLevel": config.logLevel = try choice(value, key)
            case "logFindingsPerSecond": config.logFindingsPerSecond = try int(value, key, 0...1_000_000)
            case "server":
                for (k, v) in try mapping(value, key) {
                    let field = "server.\(k.scalar ?? "")"
                    switch k.scalar ?? "" {
                    case "maxBodyBytes": config.server.maxBodyBytes = try int(v, field, 1024...(256 << 20))
                    case "maxRequestsPerConnection": config.server.maxRequestsPerConnection = try int(v, field, 0...10_000_000)
                    case "idleTimeoutSeconds": config.server.idleTimeoutSeconds = Double(try int(v, field, 1...3600))
                    case "handshakeTimeoutSeconds": config.server.handshakeTimeoutSeconds = Double(try int(v, field, 1...300))
                    case "headerTimeoutSeconds": config.server.headerTimeoutSeconds = Double(try int(v, field, 1...300))
                    case "bodyTimeoutSeconds": config.server.bodyTimeoutSeconds = Double(try int(v, field, 1...300))
                    case "workers": config.server.workers = try int(v, field, 0...256)
                    case "maxConnectionsPerWorker": config.server.maxConnectionsPerWorker = try int(v, field, 1...1_000_000)
                    case "maxBufferedBytesPerWorker": config.server.maxBufferedBytesPerWorker = try int(v, field, (1 << 20)...(64 << 30))
                    case "maxConnections": config.server.maxConnections = try int(v, field, 1...1_000_000)
                    case "maxConnectionsPerPeer": config.server.maxConnectionsPerPeer = try int(v, field, 1...1_000_000)
                    case "minRequestBytesPerSecond": config.server.minRequestBytesPerSecond = try int(v, field, 0...(1 << 30))
                    case "maxHandshakesPerWorker": config.server.maxHandshakesPerWorker = try int(v, field, 1...100_000)
                    // TLS 1.3 ClientHellos with post-quantum key shares run to a few KiB; below 4 KiB real clients break.
                    case "maxClientHelloBytes": config.server.maxClientHelloBytes = try int(v, field, 4096...(128 << 10))
                    case "metricsListen":
                        let text = try string(v, field)
                        guard text.isEmpty || Self.isHostPort(text) else {
                            throw fail(v, "\(field): expected HOST:PORT such as 0.0.0.0:9090 or [::]:9090 (or \"\" for none), got \(quoted(v))")
                        }
                        config.metricsListen = text
                    default:
                        throw fail(k, "server: unknown key \(quoted(k)); expected \(Self.alternatives(Self.serverKeys))")
                    }
                }
                if config.server.maxBufferedBytesPerWorker < 2 * config.server.maxBodyBytes {
                    // A buffer grows by doubling, so one body of the largest size may need twice its size.
                    throw fail(value, "server.maxBufferedBytesPerWorker (\(config.server.maxBufferedBytesPerWorker)) must be at least twice server.maxBodyBytes (\(config.server.maxBodyBytes)), or no request of the largest size would fit")
                }
            case "manageWebhooks": config.manageWebhooks = try bool(value, key)
            case "certificates":
                config.certificates = try certificates(value)
            default:
                throw fail(keyNode, "unknown key \(quoted(keyNode)); expected one of \(Self.knownKeys.joined(separator: ", "))")
            }
        }
        if !explicitServiceAccount {
            config.serviceAccount = "system:serviceaccount:\(config.namespace):\(config.serviceName)"
        }
        if let clash = config.protectedPorts.first(where: { $0.proto == .tcp && $0.lower <= config.apiServerPort && config.apiServerPort <= $0.upper }),
            let node = pairs.first(where: { $0.key.scalar == "apiServerPort" })?.value ?? pairs.first(where: { $0.key.scalar == "protectedPorts" })?.value
        {
            throw fail(node, "apiServerPort \(config.apiServerPort) lies inside the protected range \(clash); allow-api would open a protected port")
        }
        return config
    }

    /// The top-level keys, in the order `Config.document` writes them: one list, so a
    /// key the renderer writes is always one the loader names in its errors.
    static let knownKeys: [String] = {
        guard case .object(let members) = Config.default.document else { return [] }
        var keys = members.map(\.key)
        for optional in ["rules", "image", "replicas", "apiServerCIDRs", "loadBalancerIPAnnotations", "loadBalancerUsesNodeIPs"] where !keys.contains(optional) { keys.append(optional) }
        return keys
    }()

    func fail(_ node: YAMLNode, _ message: String) -> YAMLError {
        YAMLError(file: file, line: node.line, column: node.column, message: message)
    }

    func quoted(_ node: YAMLNode) -> String { node.scalar.map { "\"\($0)\"" } ?? node.typeName }

    func mapping(_ node: YAMLNode, _ what: String) throws(YAMLError) -> [(key: YAMLNode, value: YAMLNode)] {
        guard case .mapping(let pairs) = node.value else { throw fail(node, "\(what): expected a mapping, got \(node.typeName)") }
        return pairs
    }

    func list(_ node: YAMLNode, _ key: String) throws(YAMLError) -> [YAMLNode] {
        guard case .sequence(let items) = node.value else { throw fail(node, "\(key): expected a list, got \(node.typeName)") }
        return items
    }

    func string(_ node: YAMLNode, _ key: String) throws(YAMLError) -> String {
        guard let s = node.scalar else { throw fail(node, "\(key): expected a string, got \(node.typeName)") }
        return s
    }

    func strings(_ node: YAMLNode, _ key: String) throws(YAMLError) -> [String] {
        try list(node, key).map { (n) throws(YAMLError) in try string(n, key) }
    }

    func name(_ node: YAMLNode, _ key: String) throws(YAMLError) -> String {
        let s = try string(node, key)
        let valid = !s.isEmpty && s.count <= 63 && s.allSatisfy { ($0.isASCII && ($0.isLowercase || $0.isNumber)) || $0 == "-" }
            && s.first != "-" && s.last != "-"
        guard valid else { throw fail(node, "\(key): expected a DNS label (lowercase letters, digits, '-'), got \(quoted(node))") }
        return s
    }

    func int(_ node: YAMLNode, _ key: String, _ range: ClosedRange<Int>) throws(YAMLError) -> Int {
        guard case .scalar(let text, true) = node.value, let v = Int(text) else {
            throw fail(node, "\(key): expected an integer in \(range.lowerBound)-\(range.upperBound), got \(quoted(node))")
        }
        guard range.contains(v) else {
            throw fail(node, "\(key): \(v) is out of range; expected \(range.lowerBound)-\(range.upperBound)")
        }
        return v
    }

    func bool(_ node: YAMLNode, _ key: String) throws(YAMLError) -> Bool {
        guard case .scalar(_, true) = node.value, case .bool(let b) = node.json else {
            throw fail(node, "\(key): expected true or false, got \(quoted(node))")
        }
        return b
    }

    func mode(_ node: YAMLNode, _ key: String, allowed: [Mode] = [.enforce, .warn, .audit]) throws(YAMLError) -> Mode {
        guard let m = node.scalar.flatMap(Mode.init(rawValue:)), allowed.contains(m) else {
            throw fail(node, "\(key): unknown mode \(quoted(node)); expected \(Self.alternatives(allowed.map(\.rawValue)))")
        }
        return m
    }

    /// One of an enum's raw values, such as `policyStyle: ports`.
    func choice<Choice: RawRepresentable & CaseIterable>(_ node: YAMLNode, _ key: String) throws(YAMLError) -> Choice
    where Choice.RawValue == String {
        guard let c = node.scalar.flatMap(Choice.init(rawValue:)) else {
            throw fail(node, "\(key): unknown value \(quoted(node)); expected \(Self.alternatives(Choice.allCases.map(\.rawValue)))")
        }
        return c
    }

    /// The keys under `server:`, in the order `Config.document` writes them.
    static let serverKeys: [String] = {
        guard case .object(let members)? = Config.default.document["server"] else { return [] }
        return members.map(\.key) + ["metricsListen"]
    }()

    /// The keys under `certificates:`, in the order `Config.document` writes them.
    static let certificateKeys: [String] = {
        guard case .object(let members)? = Config.default.document["certificates"] else { return [] }
        return members.map(\.key)
    }()

    /// `certificates:`: lifetimes in seconds (so that tests and drills can use minutes),
    /// checked against each other so that a renewal always happens before an expiry.
    func certificates(_ node: YAMLNode) throws(YAMLError) -> Config.Certificates {
        var c = Config.Certificates()
        let year = 365 * 86_400
        for (k, v) in try mapping(node, "certificates") {
            let field = "certificates.\(k.scalar ?? "")"
            switch k.scalar ?? "" {
            case "selfManaged": c.selfManaged = try bool(v, field)
            case "caValiditySeconds": c.caValiditySeconds = try int(v, field, 20...(100 * year))
            case "caRenewBeforeSeconds": c.caRenewBeforeSeconds = try int(v, field, 5...(100 * year))
            case "validitySeconds": c.validitySeconds = try int(v, field, 8...(10 * year))
            case "renewBeforeSeconds": c.renewBeforeSeconds = try int(v, field, 2...(10 * year))
            case "rolloutSeconds": c.rolloutSeconds = try int(v, field, 1...86_400)
            default: throw fail(k, "certificates: unknown key \(quoted(k)); expected \(Self.alternatives(Self.certificateKeys))")
            }
        }
        guard c.renewBeforeSeconds * 2 <= c.validitySeconds else {
            throw fail(node, "certificates.renewBeforeSeconds (\(c.renewBeforeSeconds)) must be at most half of validitySeconds (\(c.validitySeconds)), or every check would renew")
        }
        guard c.caRenewBeforeSeconds * 2 <= c.caValiditySeconds else {
            throw fail(node, "certificates.caRenewBeforeSeconds (\(c.caRenewBeforeSeconds)) must be at most half of caValiditySeconds (\(c.caValiditySeconds))")
        }
        // The new CA must be trusted (rollout) and serving certificates it signs must
        // reach every replica before the old CA expires.
        guard c.caRenewBeforeSeconds >= 2 * c.rolloutSeconds + c.renewBeforeSeconds else {
            throw fail(node, "certificates.caRenewBeforeSeconds (\(c.caRenewBeforeSeconds)) must be at least 2 × rolloutSeconds + renewBeforeSeconds (\(2 * c.rolloutSeconds + c.renewBeforeSeconds)), so that a new CA is trusted and in use before the old one expires")
        }
        return c
    }

    /// `HOST:PORT` with a port in 0-65535 (IPv6 in brackets).
    static func isHostPort(_ text: String) -> Bool {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else { return false }
        let host = text[..<colon]
        if host.hasPrefix("[") { return host.hasSuffix("]") && host.count > 2 }
        return !host.isEmpty && !host.contains(":")
    }

    /// "a, b or c".
    static func alternatives(_ words: [String]) -> String {
        words.count < 2 ? words.joined() : words.dropLast().joined(separator: ", ") + " or " + words.last!
    }
}
