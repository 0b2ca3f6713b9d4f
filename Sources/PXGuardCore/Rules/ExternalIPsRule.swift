/// R7: in a guarded namespace, no Service may claim a node address as an external
/// IP. kube-proxy sends traffic for a Service's external IPs to its pods on every
/// node, so an external IP inside a node subnet hijacks traffic meant for that node
/// (the Portworx API included): CVE-2020-8554.
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
            let ips = request.object?.path("spec", "externalIPs"), ips.kind == .array
        else { return nil }
        // The node addresses the old object already held: one sort, then a binary
        // search per new address (linear-time reviews, whatever the list length).
        var held = IPRangeSet()
        if request.operation == .update, let before = request.oldObject?.path("spec", "externalIPs") {
            var addresses: [IPRange] = []
            before.forEachElement { _, old in if let a = nodeAddress(old) { addresses.append(a) } }
            held = IPRangeSet(addresses)
        }
        var offending: (text: String, address: IPRange)?
        ips.forEachElement { _, ip in
            guard offending == nil, let address = nodeAddress(ip),
                !held.contains(address.lower, family: address.family)
            else { return }
            offending = (ip.string ?? "", address)
        }
        guard let offending else { return nil }
        let subnet = context.config.nodeCIDRs.first { IPRangeSet(IPRangeSet.effective($0.range)).overlaps(IPRangeSet(offending.address)) }
        let ports = context.config.protectedPorts.map(\.description).joined(separator: ", ")
        return "pxguard: externalIPs: Service \(request.namespace)/\(request.objectName) lists external IP "
            + "\(offending.text), inside the node subnet \(subnet?.description ?? "of the nodes"): kube-proxy would send "
            + "traffic meant for that node (the Portworx API on \(ports) included) to this Service's pods "
            + "(CVE-2020-8554). Remove it from spec.externalIPs or use an address outside the node subnets."
    }

    /// The address of an `externalIPs` entry when it lies in a node subnet.
    func nodeAddress(_ value: JSONValue) -> IPRange? {
        guard let text = value.string, let address = Self.parseAddress(text) else { return nil }
        return nodes.contains(address.lower, family: address.family) ? address : nil
    }

    /// An external IP as kube-proxy reads it: IPv4 with leading zeros read as
    /// decimal (older API servers accept `070.000.000.005` and Go's sloppy parser
    /// reads 70.0.0.5), IPv6, and IPv4-mapped IPv6 as IPv4.
    static func parseAddress(_ text: String) -> IPRange? {
        if !text.contains(":") {
            let octets = text.split(separator: ".", omittingEmptySubsequences: false)
            guard octets.count == 4 else { return nil }
            var value: UInt128 = 0
            for octet in octets {
                guard !octet.isEmpty, octet.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
                    let n = Int(octet.drop { $0 == "0" }.isEmpty ? "0" : String(octet.drop { $0 == "0" })), n <= 255
                else { return nil }
                value = value << 8 | UInt128(n)
            }
            return IPRange(family: .v4, lower: value, upper: value)
        }
        guard !text.contains("/"), let c = CIDR(text) else { return nil }
        return IPRangeSet.effective(c.range)
    }
}
