public import PXGuardCore
public import PXGuardPlatform

/// `nodeCIDRs: auto`: watches Nodes (list then watch, through `Informer`) and keeps,
/// per node, only the blocks of `nodePrefixLength` around its `InternalIP` and
/// `ExternalIP` addresses. When the merged set of blocks changes (a node in a new
/// block, the last node of a block gone) it reports the new set; a node joining a
/// block already guarded changes nothing and reports nothing.
public final class NodeAddresses: Sendable {
    struct State {
        var byNode: [String: [CIDR]] = [:]
        /// The list under way: nodes seen so far (swapped in whole at its end).
        var listing: [String: [CIDR]] = [:]
        /// The merged blocks last reported; nil until the first complete list.
        var merged: [CIDR]?
        var prefix: Config.NodePrefixLength
    }

    let state: Locked<State>
    let changed = Locked<(@Sendable ([CIDR]) -> Void)?>(nil)
    let logger: Logger
    /// The Node informer (`run` it on its own thread).
    public let informer: Informer<NodeProjection>

    /// A Node watch through `client`, blocks of `prefix` around each address.
    public init(client: KubeClient, prefix: Config.NodePrefixLength, settings: InformerSettings = .init(), logger: Logger) {
        let state = Locked(State(prefix: prefix))
        self.state = state
        self.logger = logger
        struct Weak { weak var nodes: NodeAddresses? }
        let box = Locked(Weak())
        informer = Informer<NodeProjection>(
            name: "nodes", client: client, path: "/api/v1/nodes", settings: settings, logger: logger,
            onList: { phase in box.withLock { $0.nodes }?.list(phase) },
            onEvent: { type, node in box.withLock { $0.nodes }?.apply(node, deleted: type == .deleted) },
            onHealth: { _, _ in })
        box.withLock { $0.nodes = self }
    }

    /// Called with the merged blocks whenever they change (after the first list).
    public func onChange(_ body: @escaping @Sendable ([CIDR]) -> Void) { changed.withLock { $0 = body } }

    /// The merged blocks, or nil before the first Node list.
    public var current: [CIDR]? { state.withLock { $0.merged } }

    /// A configuration reload may change `nodePrefixLength`: the blocks are recomputed
    /// at the next list (the informer's relist) and reported if they changed.
    public func setPrefix(_ prefix: Config.NodePrefixLength) { state.withLock { $0.prefix = prefix } }

    func list(_ phase: ListPhase<NodeProjection>) {
        switch phase {
        case .begin:
            state.withLock { $0.listing = [:] }
        case .page(let nodes):
            state.withLock { s in
                for node in nodes { if let name = node.name { s.listing[name] = NodeBlocks.around(node.addresses, prefix: s.prefix) } }
            }
        case .end:
            let report = state.withLock { s -> [CIDR]? in
                s.byNode = s.listing
                s.listing = [:]
                return publish(&s)
            }
            if let report { announce(report) }
        }
    }

    func apply(_ node: NodeProjection, deleted: Bool) {
        guard let name = node.name else { return }
        let report = state.withLock { s -> [CIDR]? in
            s.byNode[name] = deleted ? nil : NodeBlocks.around(node.addresses, prefix: s.prefix)
            // Events before the first complete list change nothing yet.
            return s.merged == nil ? nil : publish(&s)
        }
        if let report { announce(report) }
    }

    /// The merged set, when it differs from the last one reported.
    func publish(_ s: inout State) -> [CIDR]? {
        let merged = NodeBlocks.merge(s.byNode.values.flatMap { $0 })
        guard merged != s.merged else { return nil }
        s.merged = merged
        return merged
    }

    func announce(_ blocks: [CIDR]) {
        logger.info("node blocks changed (nodeCIDRs: auto)", [("blocks", blocks.map(\.description).joined(separator: ","))])
        changed.withLock { $0 }?(blocks)
    }

    /// Prometheus exposition: the blocks in force and the Node watch's events.
    public var metricsText: String {
        var out = "# HELP pxguard_node_blocks Node subnets found from the Nodes' addresses (nodeCIDRs: auto).\n"
        out += "# TYPE pxguard_node_blocks gauge\npxguard_node_blocks \(current?.count ?? 0)\n"
        out += "# HELP pxguard_nodes_listed 1 once the first list of Nodes is in.\n# TYPE pxguard_nodes_listed gauge\n"
        return out + "pxguard_nodes_listed \(current == nil ? 0 : 1)\n"
    }

    /// Lists and watches Nodes until `stop` (run it on its own thread).
    public func run() { informer.run() }
    /// Ends `run` within the informer's poll interval.
    public func stop() { informer.stop() }
}

/// What the Node informer keeps of a Node: its InternalIP and ExternalIP addresses.
public struct NodeProjection: KubeProjection {
    /// `status.addresses` (a few entries; a Node's labels, images and conditions are skipped).
    public static let fields: [[String]] = [["status", "addresses"]]
    /// The Node's name.
    public var name: String?
    var addresses: [String]

    public init(_ object: KubeObject) {
        name = object.name
        addresses = (object.fields.json(0)?.arrayValue ?? []).compactMap { entry -> String? in
            let type = entry["type"]?.stringValue
            guard type == "InternalIP" || type == "ExternalIP" else { return nil }
            return entry["address"]?.stringValue
        }
    }
}
