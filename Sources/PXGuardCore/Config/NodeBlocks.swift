/// `nodeCIDRs: auto` (SPEC "Configuration file"): the node subnets are the blocks of
/// `nodePrefixLength` around the addresses Nodes report, merged with the explicit
/// CIDRs. A node inside a block already guarded changes nothing; one in a new block
/// adds that block. Pure: the Node informer (PXGuardKube) and `render`/`check`
/// `--nodes` both ask here, so the server and the offline tools agree.
public enum NodeBlocks {
    /// The block of `prefix` around one address (`10.0.3.7` -> `10.0.3.0/24`). A CIDR
    /// wider than the block is kept whole; nil for text that is neither.
    public static func block(around text: String, prefix: Config.NodePrefixLength) -> CIDR? {
        if let cidr = CIDR(text) {
            let bits = cidr.family == .v4 ? prefix.ipv4 : prefix.ipv6
            return cidr.prefix <= bits ? cidr : CIDR("\(IPAddressParser.format(cidr.network, cidr.family))/\(bits)")
        }
        guard let address = IPAddressParser.parse(Substring(text)) else { return nil }
        let bits = address.family == .v4 ? prefix.ipv4 : prefix.ipv6
        return CIDR("\(text)/\(bits)")
    }

    /// The entries of a `--nodes` list (addresses, CIDRs, `a-b` ranges) that lie outside
    /// every one of `subnets`, as written: nodes the guard would not cover.
    public static func outside(_ nodes: [String], _ subnets: [CIDR]) -> [String] {
        var exact = Config.NodePrefixLength()
        exact.ipv4 = 32
        exact.ipv6 = 128
        return nodes.filter { entry in
            let ends = entry.split(separator: "-", maxSplits: 1).map(String.init)
            let blocks = ends.compactMap { block(around: $0, prefix: exact) }
            // A range is inside when one subnet holds both of its ends.
            return blocks.count != ends.count || !subnets.contains { s in
                blocks.allSatisfy { b in b.family == s.family && s.range.lower <= b.range.lower && b.range.upper <= s.range.upper }
            }
        }
    }

    /// The blocks around every address that parses (others are skipped: a Node's
    /// `Hostname` address, say), merged.
    public static func around(_ addresses: [String], prefix: Config.NodePrefixLength) -> [CIDR] {
        merge(addresses.compactMap { block(around: $0, prefix: prefix) })
    }

    /// Sorted by family and address, duplicates and blocks inside another one dropped:
    /// the same set of blocks always renders the same policies.
    public static func merge(_ cidrs: [CIDR]) -> [CIDR] {
        let sorted = cidrs.sorted { a, b in
            if a.family != b.family { return a.family == .v4 }
            if a.network != b.network { return a.network < b.network }
            return a.prefix < b.prefix
        }
        var out: [CIDR] = []
        for c in sorted {
            if let last = out.last, last.family == c.family, last.range.lower <= c.range.lower, c.range.upper <= last.range.upper {
                continue
            }
            out.append(c)
        }
        return out
    }

    /// The node subnets an existing guard policy was written for: the `ipBlock`
    /// CIDRs of an `allow-api` spec (its only peers). Before the first Node list,
    /// the server judges with these rather than with nothing.
    public static func fromAllowAPI(spec: JSON) -> [CIDR] {
        var out: [CIDR] = []
        for rule in spec["egress"]?.arrayValue ?? [] {
            for peer in rule["to"]?.arrayValue ?? [] {
                if let text = peer["ipBlock"]?["cidr"]?.stringValue, let c = CIDR(text) { out.append(c) }
            }
        }
        return merge(out)
    }
}

extension Config {
    /// `nodePrefixLength`: the block guarded around each node address, per family.
    public struct NodePrefixLength: Sendable, Equatable {
        /// Prefix length of an IPv4 node block (8-32).
        public var ipv4 = 24
        /// Prefix length of an IPv6 node block (32-128).
        public var ipv6 = 64
        /// /24 and /64.
        public init() {}
    }

    /// With `auto`: the configuration the rules judge by once `blocks` are the
    /// discovered node blocks, merged with the explicit CIDRs. Without `auto`: itself.
    public func withNodeBlocks(_ blocks: [CIDR]) -> Config {
        guard nodeCIDRsAuto else { return self }
        var c = self
        c.nodeCIDRs = NodeBlocks.merge(explicitNodeCIDRs + blocks)
        return c
    }

    /// `auto` with no node address known yet (no Node listed, no guard policy to take
    /// them from, none explicit): rules that need node addresses deny with a retry,
    /// and the provisioner writes no guard policy (one without node subnets would
    /// block nothing).
    public var nodeAddressesPending: Bool { nodeCIDRsAuto && nodeCIDRs.isEmpty }

    /// True when the node subnets are exactly the seed's example (`70.0.0.0/16`, the
    /// built-in default), which no real cluster is likely to use.
    public var isSeedExampleSubnet: Bool { !nodeCIDRsAuto && nodeCIDRs == Config.default.nodeCIDRs }

    /// The install bundle's configuration (`render` without `--config`): the
    /// built-in defaults with `nodeCIDRs: [auto]`.
    public static var install: Config {
        var c = Config.default
        c.nodeCIDRsAuto = true
        c.explicitNodeCIDRs = []
        c.nodeCIDRs = []
        return c
    }
}
