/// R7: in a guarded namespace, no Service may claim a node address as an external
/// IP, as its `loadBalancerIP` or through a load balancer's annotation, nor a
/// protected port as a `nodePort` (or, where the load balancer uses node addresses,
/// as a LoadBalancer port). kube-proxy sends traffic for a Service's external
/// and load balancer IPs to its pods on every node, so such an address inside a node
/// subnet hijacks traffic meant for that node (the Portworx API included):
/// CVE-2020-8554.
///
/// An UPDATE is judged on the node addresses it adds: a Service that already held
/// them (from before pxguard) can still be updated and deleted, the way R1 and R4
/// never wedge cleanup.
struct ExternalIPsRule: AdmissionRule {
    let id = RuleID.externalIPs
    let nodes: IPRangeSet

    init(config: Config) {
        nodes = IPRangeSet(config.nodeCIDRs.map { IPRangeSet.effective($0.range) })
    }

    func evaluate(_ request: AdmissionRequest, _ context: RuleContext) -> String? {
        guard request.kind == "Service", request.group.isEmpty,
            request.operation == .create || request.operation == .update,
            context.config.isGuarded(namespace: request.namespace),
            let object = request.object, let spec = object["spec"]
        else { return nil }
        let (externalIPs, loadBalancerIP, _) = spec.members("externalIPs", "loadBalancerIP")
        if let ips = externalIPs, ips.kind == .array, let offending = offendingExternalIP(ips, request) {
            return message(request, context, "external IP \(offending.text)", offending.address,
                           fix: "Remove it from spec.externalIPs")
        }
        if let value = loadBalancerIP, let offending = offendingLoadBalancerIP(value, request) {
            return message(request, context, "load balancer IP \(offending.text) (spec.loadBalancerIP)", offending.address,
                           fix: "Remove spec.loadBalancerIP")
        }
        if let offending = offendingAnnotation(object, request, context.config.loadBalancerIPAnnotations) {
            return message(request, context, "load balancer IP \(offending.text) (annotation \(offending.annotation))",
                           offending.address, fix: "Remove it from the annotation \(offending.annotation)")
        }
        return offendingPort(spec, request, context.config)
    }

    /// A node address requested through a load balancer's annotation (MetalLB,
    /// kube-vip, Cilium LB-IPAM: comma-separated addresses), unless the old object's
    /// same annotation held it.
    func offendingAnnotation(_ object: JSONValue, _ request: AdmissionRequest, _ names: [String])
        -> (text: String, address: IPRange, annotation: String)?
    {
        guard !names.isEmpty, let annotations = object.path("metadata", "annotations"), annotations.kind == .object else {
            return nil
        }
        for name in names {
            guard let text = annotations[dynamic: name]?.string else { continue }
            for written in Self.annotationAddresses(text) {
                guard let address = Self.parseAddress(written), nodes.contains(address.lower, family: address.family)
                else { continue }
                if request.operation == .update,
                    let old = request.oldObject?.path("metadata", "annotations")?[dynamic: name]?.string,
                    Self.annotationAddresses(old).contains(where: { Self.parseAddress($0) == address })
                {
                    continue
                }
                return (String(written), address, name)
            }
        }
        return nil
    }

    /// The addresses of a load-balancer annotation as the load balancers read them:
    /// comma-separated, each trimmed as Go's `strings.TrimSpace` trims (every Unicode
    /// space: a YAML block scalar's trailing newline must not hide an address), and
    /// Calico LB IPAM's JSON-array form (`["a", "b"]`) read as the same list.
    static func annotationAddresses(_ text: String) -> [Substring] {
        var list = Substring(text).trimmingSpaces
        if list.first == "[" && list.last == "]" { list = list.dropFirst().dropLast() }
        return list.split(separator: ",").map { part in
            var item = part.trimmingSpaces
            if item.count >= 2 && item.first == "\"" && item.last == "\"" { item = item.dropFirst().dropLast().trimmingSpaces }
            return item
        }
    }

    /// A `nodePort` inside a protected range of its protocol (whatever the cluster's
    /// node-port range: where it covers the port, kube-proxy takes it on every node),
    /// and with `loadBalancerUsesNodeIPs`, a LoadBalancer Service's `port` in one
    /// (the load balancer opens it on the nodes' own addresses). What the old object
    /// already held is allowed.
    func offendingPort(_ spec: JSONValue, _ request: AdmissionRequest, _ config: Config) -> String? {
        let (typeValue, ports, healthCheck) = spec.members("type", "ports", "healthCheckNodePort")
        // kube-proxy serves the health check over TCP on every node.
        if let n = healthCheck?.int, let range = config.protectedPorts.first(where: { $0.proto == .tcp && $0.lower <= n && n <= $0.upper }),
            !(request.operation == .update && request.oldObject?.path("spec", "healthCheckNodePort")?.int == n)
        {
            return "pxguard: externalIPs: Service \(request.namespace)/\(request.objectName) asks for healthCheckNodePort "
                + "\(n) (spec.healthCheckNodePort), inside the protected range \(range.description): kube-proxy binds that "
                + "port on every node, where the Portworx API listens. Remove spec.healthCheckNodePort (the API server "
                + "picks a free one) or choose a port outside \(range.description)."
        }
        guard let ports, ports.kind == .array else { return nil }
        let onNodes = config.loadBalancerUsesNodeIPs && typeValue?.stringEquals("LoadBalancer") == true
        // Candidates first; the old object is read only when there is one.
        var found: [(index: Int, key: Int, field: String)] = []
        ports.forEachElement { index, entry in
            guard entry.kind == .object else { return }
            let (protoValue, nodePort, port) = entry.members("protocol", "nodePort", "port")
            guard let proto = Self.transportProtocol(protoValue) else { return }
            if let n = nodePort?.int, let key = protectedKey(proto, n, config) { found.append((index, key, "nodePort")) }
            if onNodes, let n = port?.int, let key = protectedKey(proto, n, config) { found.append((index, key, "port")) }
        }
        guard !found.isEmpty else { return nil }
        var heldNodePorts = Set<Int>(), heldPorts = Set<Int>()
        if request.operation == .update, let old = request.oldObject?["spec"] {
            let (oldType, oldPorts, _) = old.members("type", "ports")
            let wasOnNodes = oldType?.stringEquals("LoadBalancer") == true
            oldPorts?.forEachElement { _, entry in
                guard entry.kind == .object else { return }
                let (protoValue, nodePort, port) = entry.members("protocol", "nodePort", "port")
                guard let proto = Self.transportProtocol(protoValue) else { return }
                if let n = nodePort?.int { heldNodePorts.insert(Self.key(proto, n)) }
                if wasOnNodes, let n = port?.int { heldPorts.insert(Self.key(proto, n)) }
            }
        }
        guard let hit = found.first(where: { !($0.field == "nodePort" ? heldNodePorts : heldPorts).contains($0.key) }) else {
            return nil
        }
        let proto = TransportProtocol.allCases[hit.key >> 16], port = hit.key & 0xFFFF
        let range = config.protectedPorts.first { $0.proto == proto && $0.lower <= port && port <= $0.upper }!
        let subject = "Service \(request.namespace)/\(request.objectName)"
        if hit.field == "nodePort" {
            return "pxguard: externalIPs: \(subject) asks for nodePort \(proto.rawValue)/\(port) (spec.ports[\(hit.index)]."
                + "nodePort), inside the protected range \(range.description): where the cluster's node-port range covers "
                + "it, kube-proxy takes that port on every node and the Portworx API with it. Remove spec.ports["
                + "\(hit.index)].nodePort (the API server picks a free one) or choose a port outside \(range.description)."
        }
        return "pxguard: externalIPs: \(subject) is a LoadBalancer with port \(proto.rawValue)/\(port) (spec.ports["
            + "\(hit.index)].port), inside the protected range \(range.description), and this cluster's load balancer "
            + "uses the nodes' own addresses (loadBalancerUsesNodeIPs): it would take that port on the nodes, the "
            + "Portworx API's. Use a port outside \(range.description), or type ClusterIP or NodePort."
    }

    /// `(protocol, port)` as one integer when the port is protected.
    func protectedKey(_ proto: TransportProtocol, _ port: Int, _ config: Config) -> Int? {
        config.protectedPorts.contains { $0.proto == proto && $0.lower <= port && port <= $0.upper } ? Self.key(proto, port) : nil
    }

    static func key(_ proto: TransportProtocol, _ port: Int) -> Int {
        TransportProtocol.allCases.firstIndex(of: proto)! << 16 | (port & 0xFFFF)
    }

    /// A Service port's protocol (absent or null is TCP); nil for one no rule knows.
    static func transportProtocol(_ value: JSONValue?) -> TransportProtocol? {
        guard let value, !value.isNull else { return .tcp }
        if value.stringEquals("TCP") { return .tcp }
        if value.stringEquals("UDP") { return .udp }
        if value.stringEquals("SCTP") { return .sctp }
        return nil
    }

    /// `spec.loadBalancerIP` inside a node subnet, unless the old object held the
    /// same address: the other half of CVE-2020-8554 (load balancers that honour it
    /// publish it in `status`, and kube-proxy captures it as it does an external IP).
    func offendingLoadBalancerIP(_ value: JSONValue, _ request: AdmissionRequest) -> (text: String, address: IPRange)? {
        guard let address = nodeAddress(value) else { return nil }
        if request.operation == .update, let old = request.oldObject?.path("spec", "loadBalancerIP"),
            nodeAddress(old) == address
        {
            return nil
        }
        return (value.string ?? "", address)
    }

    /// The denial for a node address a Service claims.
    func message(_ request: AdmissionRequest, _ context: RuleContext, _ what: String, _ address: IPRange, fix: String) -> String {
        let subnet = context.config.nodeCIDRs.first { IPRangeSet(IPRangeSet.effective($0.range)).overlaps(IPRangeSet(address)) }
        let ports = context.config.protectedPorts.map(\.description).joined(separator: ", ")
        return "pxguard: externalIPs: Service \(request.namespace)/\(request.objectName) lists \(what), "
            + "inside the node subnet \(subnet?.description ?? "of the nodes"): kube-proxy would send "
            + "traffic meant for that node (the Portworx API on \(ports) included) to this Service's pods "
            + "(CVE-2020-8554). \(fix) or use an address outside the node subnets."
    }

    /// The first `externalIPs` entry inside a node subnet that the old object did
    /// not already hold.
    func offendingExternalIP(_ ips: JSONValue, _ request: AdmissionRequest) -> (text: String, address: IPRange)? {
        // The node addresses the old object already held, against the ones the new
        // object lists: both sorted, then swept (a binary search per address costs
        // a cache miss per step on a 3 MiB list). IPv4 addresses are sorted as
        // packed keys, address and position, so the sweep can name the entry.
        var held4: [UInt64] = [], held6: [UInt128] = []
        if request.operation == .update, let before = request.oldObject?.path("spec", "externalIPs") {
            before.forEachElement { _, old in
                guard let a = nodeAddress(old) else { return }
                if a.family == .v4 { held4.append(UInt64(truncatingIfNeeded: a.lower)) } else { held6.append(a.lower) }
            }
            RadixSort.sort(&held4)
            held6.sort()
        }
        var listed4: [UInt64] = []
        var offendingIndex: Int?
        ips.forEachElement { index, ip in
            guard offendingIndex == nil, let address = nodeAddress(ip) else { return }
            if address.family == .v4 {
                listed4.append(UInt64(truncatingIfNeeded: address.lower) << 32 | UInt64(index))
            } else if !Self.sortedContains(held6, address.lower) {
                offendingIndex = index
            }
        }
        if offendingIndex == nil {
            RadixSort.sort(&listed4, lowBit: 32)
            var j = 0
            for key in listed4 {
                let address = key >> 32
                while j < held4.count && held4[j] < address { j += 1 }
                if j == held4.count || held4[j] != address {
                    offendingIndex = Int(key & 0xFFFF_FFFF)
                    break
                }
            }
        }
        guard let offendingIndex else { return nil }
        var offending: (text: String, address: IPRange)?
        ips.forEachElement { index, ip in
            if index == offendingIndex, let address = nodeAddress(ip) { offending = (ip.string ?? "", address) }
        }
        return offending
    }

    /// The address of an `externalIPs` entry when it lies in a node subnet. Read in
    /// place; an entry with escapes is decoded first, as the API server decodes it.
    func nodeAddress(_ value: JSONValue) -> IPRange? {
        guard let address = Self.address(value) else { return nil }
        return nodes.contains(address.lower, family: address.family) ? address : nil
    }

    /// A JSON string read as an address in place (see `parseAddress`); nil for
    /// anything else.
    static func address(_ value: JSONValue) -> IPRange? {
        guard value.kind == .string else { return nil }
        let raw = UnsafeBufferPointer(start: value.base + value.start + 1, count: value.end - value.start - 2)
        // One pass for the usual IPv4 form; the escape scan only when that fails.
        return parseAddress(raw) ?? (raw.contains(UInt8(ascii: "\\")) ? value.string.flatMap(parseAddress) : nil)
    }

    static func sortedContains<T: Comparable>(_ sorted: [T], _ value: T) -> Bool {
        var lo = 0, hi = sorted.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if sorted[mid] < value { lo = mid + 1 } else { hi = mid }
        }
        return lo < sorted.count && sorted[lo] == value
    }

    static func parseAddress(_ text: Substring) -> IPRange? { parseAddress(String(text)) }

    static func parseAddress(_ text: String) -> IPRange? {
        var text = text
        return text.withUTF8 { parseAddress($0) }
    }

    /// An external IP as kube-proxy reads it: IPv4 with leading zeros read as
    /// decimal (older API servers accept `070.000.000.005` and Go's sloppy parser
    /// reads 70.0.0.5), IPv6, and IPv4-mapped IPv6 as IPv4.
    static func parseAddress(_ b: UnsafeBufferPointer<UInt8>) -> IPRange? {
        var value: UInt32 = 0, octet: UInt32 = 0, digits = 0, dots = 0
        for c in b {
            let d = c &- UInt8(ascii: "0")
            if d < 10 {
                octet = octet &* 10 &+ UInt32(d)
                digits &+= 1
                guard octet <= 255 else { return nil }
            } else if c == UInt8(ascii: ".") && digits > 0 && dots < 3 {
                value = value << 8 | octet
                octet = 0; digits = 0; dots &+= 1
            } else {
                // Not dotted decimal: IPv6 (hex digits, colons), or nothing.
                guard b.contains(UInt8(ascii: ":")), !b.contains(UInt8(ascii: "/")) else { return nil }
                let sloppy = withoutLeadingZerosInEmbeddedIPv4(b)
                guard let parsed = sloppy.withUnsafeBufferPointer({ CIDR.parseV6(rawBytes: $0) }), let c = parsed
                else { return nil }
                return IPRangeSet.effective(c.range)
            }
        }
        guard dots == 3, digits > 0 else { return nil }
        let address = UInt128(value << 8 | octet)
        return IPRange(family: .v4, lower: address, upper: address)
    }
}

extension ExternalIPsRule {
    /// IPv6 text with the leading zeros of an embedded dotted quad removed, as
    /// Kubernetes' `ParseIPSloppy` does before parsing (`::ffff:070.0.1.2` is
    /// `::ffff:70.0.1.2` to kube-proxy, as `070.0.1.2` is 70.0.1.2).
    static func withoutLeadingZerosInEmbeddedIPv4(_ b: UnsafeBufferPointer<UInt8>) -> [UInt8] {
        guard let colon = b.lastIndex(of: UInt8(ascii: ":")), b[colon...].contains(UInt8(ascii: ".")) else { return Array(b) }
        var out = Array(b[...colon])
        for (i, octet) in b[(colon + 1)...].split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false).enumerated() {
            if i > 0 { out.append(UInt8(ascii: ".")) }
            var digits = octet[...]
            while digits.count > 1 && digits.first == UInt8(ascii: "0") { digits = digits.dropFirst() }
            out += digits
        }
        return out
    }
}

extension Substring {
    /// Without leading and trailing white space as Go's `strings.TrimSpace` sees it
    /// (Unicode White_Space: tab, newline, VT, FF, CR, space, NEL, NBSP and the rest).
    var trimmingSpaces: Substring {
        var s = self
        while let c = s.first, c.isWhitespace { s = s.dropFirst() }
        while let c = s.last, c.isWhitespace { s = s.dropLast() }
        return s
    }
}
