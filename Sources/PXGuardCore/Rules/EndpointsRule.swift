/// R8: in a guarded namespace, no hand-written `Endpoints` or `EndpointSlice` may
/// point at a node address on a protected port. Pods are held by the guard
/// policies (CNIs judge egress after the Service address is translated), but every
/// component that follows Services on a tenant's behalf (ingress controllers and
/// gateways on the host network or in exempt namespaces, meshes, monitoring) is
/// not: CVE-2021-25740.
///
/// The endpoint controllers (`AdmissionPolicy.endpointControllers`) are exempt,
/// and left to the API server by the registration's `matchConditions`. An UPDATE
/// whose addresses and ports equal the old object's is allowed, so that label and
/// finalizer changes never wedge an object from before pxguard.
struct EndpointsRule: AdmissionRule {
    let id = RuleID.endpoints
    let nodes: IPRangeSet
    let protectedPorts: [PortRange]

    init(config: Config) {
        nodes = IPRangeSet(config.nodeCIDRs.map { IPRangeSet.effective($0.range) })
        protectedPorts = config.protectedPorts
    }

    /// One offending pair: where it is, the address as written, the port hit.
    struct Hit {
        let field: String
        let address: String
        let port: String
    }

    func evaluate(_ request: AdmissionRequest, _ context: RuleContext) -> String? {
        guard request.operation == .create || request.operation == .update, request.subResource.isEmpty,
            context.config.isGuarded(namespace: request.namespace), let object = request.object
        else { return nil }
        let hit: Hit?
        let kind: String
        if request.kind == "Endpoints" && request.group.isEmpty {
            kind = "Endpoints"
            let subsets = object["subsets"]
            if request.operation == .update, Self.same(subsets, request.oldObject?["subsets"]) { return nil }
            hit = subsets.flatMap(endpointsHit)
        } else if request.kind == "EndpointSlice" && request.group == "discovery.k8s.io" {
            kind = "EndpointSlice"
            let (addressType, endpoints, ports) = object.members("addressType", "endpoints", "ports")
            // FQDN slices name hosts, not addresses: nothing a rule can judge.
            if addressType?.stringEquals("FQDN") == true { return nil }
            if request.operation == .update, let old = request.oldObject,
                Self.same(endpoints, old["endpoints"]), Self.same(ports, old["ports"])
            {
                return nil
            }
            hit = sliceHit(endpoints: endpoints, ports: ports)
        } else {
            return nil
        }
        guard let hit else { return nil }
        let subnet = context.config.nodeCIDRs.first { c in
            ExternalIPsRule.parseAddress(hit.address).map { IPRangeSet(IPRangeSet.effective(c.range)).overlaps(IPRangeSet($0)) } ?? false
        }
        return "pxguard: endpoints: \(kind) \(request.namespace)/\(request.objectName) points at \(hit.address) "
            + "(\(hit.field)) on \(hit.port), inside the node subnet \(subnet?.description ?? "of the nodes"): ingress controllers, gateways, meshes and monitoring that follow Services would reach the node's "
            + "Portworx API on this namespace's behalf (CVE-2021-25740). Remove that address, or give the Service a "
            + "selector and let the endpoint controllers write its endpoints."
    }

    /// True when both are present and token-equal, or both absent or null.
    static func same(_ a: JSONValue?, _ b: JSONValue?) -> Bool {
        switch (a.flatMap { $0.isNull ? nil : $0 }, b.flatMap { $0.isNull ? nil : $0 }) {
        case (nil, nil): return true
        case (let x?, let y?): return x.tokensEqual(y)
        default: return false
        }
    }

    /// The protected port a `(protocol, port)` pair reaches; a nil port is every port.
    func protectedHit(_ entry: JSONValue, nullMeansAll: Bool) -> String? {
        let (protoValue, portValue, _) = entry.members("protocol", "port")
        let proto: TransportProtocol
        if protoValue == nil || protoValue!.isNull || protoValue!.stringEquals("TCP") {
            proto = .tcp
        } else if protoValue!.stringEquals("UDP") {
            proto = .udp
        } else if protoValue!.stringEquals("SCTP") {
            proto = .sctp
        } else {
            return nil
        }
        guard let port = portValue.flatMap({ $0.isNull ? nil : $0 }) else {
            guard nullMeansAll, let range = protectedPorts.first(where: { $0.proto == proto }) else { return nil }
            return "every port (a null port), \(range.description) included"
        }
        guard let n = port.int, let range = protectedPorts.first(where: { $0.proto == proto && $0.lower <= n && n <= $0.upper })
        else { return nil }
        return "\(proto.rawValue)/\(n) (protected \(range.description))"
    }

    /// An address string inside a node subnet, as kube-proxy and the consumers read it.
    func isNodeAddress(_ value: JSONValue) -> Bool {
        guard let address = ExternalIPsRule.address(value) else { return false }
        return nodes.contains(address.lower, family: address.family)
    }

    /// `subsets[i]`: every address (ready or not) with every port of the subset.
    func endpointsHit(_ subsets: JSONValue) -> Hit? {
        var hit: Hit?
        subsets.forEachElement { i, subset in
            guard hit == nil, subset.kind == .object else { return }
            let (addresses, notReady, ports) = subset.members("addresses", "notReadyAddresses", "ports")
            // Ports first: one subset rarely lists many, and most reach nothing protected.
            var port: String?
            ports?.forEachElement { _, p in
                if port == nil, p.kind == .object { port = protectedHit(p, nullMeansAll: false) }
            }
            guard let port else { return }
            for (list, field) in [(addresses, "addresses"), (notReady, "notReadyAddresses")] {
                list?.forEachElement { j, address in
                    guard hit == nil, address.kind == .object, let ip = address["ip"], isNodeAddress(ip) else { return }
                    hit = Hit(field: "subsets[\(i)].\(field)[\(j)].ip", address: ip.string ?? "", port: port)
                }
            }
        }
        return hit
    }

    /// `endpoints[i].addresses[j]` with the slice's ports (a null port is every port;
    /// no ports at all is none).
    func sliceHit(endpoints: JSONValue?, ports: JSONValue?) -> Hit? {
        var port: String?
        ports?.forEachElement { _, p in
            guard port == nil else { return }
            if p.isNull {
                // A null entry reads as `{}`: TCP, every port.
                if let range = protectedPorts.first(where: { $0.proto == .tcp }) {
                    port = "every port (a null port), \(range.description) included"
                }
            } else if p.kind == .object {
                port = protectedHit(p, nullMeansAll: true)
            }
        }
        guard let port, let endpoints else { return nil }
        var hit: Hit?
        endpoints.forEachElement { i, endpoint in
            guard hit == nil, endpoint.kind == .object else { return }
            endpoint["addresses"]?.forEachElement { j, address in
                guard hit == nil, isNodeAddress(address) else { return }
                hit = Hit(field: "endpoints[\(i)].addresses[\(j)]", address: address.string ?? "", port: port)
            }
        }
        return hit
    }
}
