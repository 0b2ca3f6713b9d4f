import PXGuardCore
import PXGuardKube
import PXGuardPlatform

/// The provisioner as the service sees it: on when a Kubernetes API is configured
/// (flags or in-cluster) and provisioning is enabled, otherwise off, said once.
/// When on, its watched view is what admission's R6 consults.
final class ProvisionerHandle: Sendable {
    let provisioner: Provisioner?
    let elector: LeaderElector?
    /// Events for what the provisioner changes (reused by the audit for its findings).
    let events: EventRecorder?
    /// `nodeCIDRs: auto`: the Node watch (nil otherwise, or without an API).
    let nodes: NodeAddresses?
    let offReason: String?
    let logger: Logger

    init(provisioner: Provisioner?, elector: LeaderElector?, offReason: String?, logger: Logger, events: EventRecorder? = nil,
         nodes: NodeAddresses? = nil) {
        self.events = events
        self.nodes = nodes
        self.provisioner = provisioner
        self.elector = elector
        self.offReason = offReason
        self.logger = logger
    }

    /// The watched view for R6, or nil when provisioning is off.
    var view: (any GuardView)? { provisioner?.view }

    static func make(options: ServeOptions, config: Config, metrics: ServiceMetrics, logger: Logger)
        throws(CommandError) -> ProvisionerHandle
    {
        guard config.provisioning.enabled else {
            return ProvisionerHandle(provisioner: nil, elector: nil, offReason: "disabled in the configuration", logger: logger)
        }
        let endpoint: KubeEndpoint
        if let url = options.kubeAPI {
            do {
                endpoint = try KubeEndpoint(url: url, tokenFile: options.kubeTokenFile, caFile: options.kubeCA)
            } catch {
                throw CommandError(error.description)
            }
        } else if let inCluster = KubeEndpoint.inCluster() {
            endpoint = inCluster
        } else {
            return ProvisionerHandle(provisioner: nil, elector: nil,
                                     offReason: "no Kubernetes API configured (--kube-api, or run in a cluster)", logger: logger)
        }
        let client: KubeClient
        do {
            client = try KubeClient(endpoint: endpoint)
        } catch {
            throw CommandError(error.description)
        }
        let identity = Environment.variable("POD_NAME") ?? "\(Environment.hostName())-\(UInt32.random(in: 0...UInt32.max))"
        let elector = LeaderElector(client: client, namespace: config.namespace, identity: identity,
                                    timing: LeaderElector.Timing(), logger: logger)
        var settings = Provisioner.Settings()
        settings.resyncSeconds = Double(config.provisioning.resyncSeconds)
        let nodes = config.nodeCIDRsAuto ? NodeAddresses(client: client, prefix: config.nodePrefixLength, logger: logger) : nil
        if let nodes { metrics.addSource { nodes.metricsText } }
        let view = ClusterView(config: config, logger: logger)
        let events = EventRecorder(client: client, instance: identity, logger: logger)
        let provisioner = Provisioner(client: client, view: view, elector: elector, settings: settings, logger: logger,
                                      events: events)
        metrics.addSource { provisioner.metricsText }
        return ProvisionerHandle(provisioner: provisioner, elector: elector, offReason: nil, logger: logger, events: events,
                                 nodes: nodes)
    }

    /// Starts the watches, workers and lease (after the first log line) or says
    /// why not, once.
    func begin() {
        guard let provisioner, let elector else {
            logger.info("provisioning off; R6 unguardedNamespace does not apply", [("reason", offReason ?? "")])
            return
        }
        logger.info("provisioning on; R6 unguardedNamespace applies once the watched view is in sync",
                    [("identity", elector.identity)])
        spawnThread(name: "pxguard-lease") { elector.run() }
        if let nodes { spawnThread(name: "pxguard-watch") { nodes.run() } }
        if let events { spawnThread(name: "pxguard-events") { events.run() } }
        if provisioner.view.config.provisioning.dryRun {
            logger.warn("provisioning.dryRun: the provisioner reports what it would write and writes nothing; R6 still applies")
        }
        spawnThread(name: "pxguard-provision") { provisioner.run() }
    }

    /// What the rules and the provisioner judge by for a configuration file's
    /// content: with `nodeCIDRs: auto`, the explicit CIDRs merged with the blocks
    /// around the Nodes' addresses, or before the first Node list with the blocks
    /// found in the existing guard policies (none: `nodeAddressesPending`).
    func effective(_ file: Config) -> Config {
        guard file.nodeCIDRsAuto else { return file }
        return file.withNodeBlocks(nodes?.current ?? provisioner?.view.nodeBlocksFromPolicies ?? [])
    }

    /// Calls `body` when what `effective` answers may have changed: the node blocks
    /// changed, or the first guard policy list gave blocks before any Node list.
    func onNodeBlocksChange(_ body: @escaping @Sendable () -> Void) {
        nodes?.onChange { _ in body() }
        provisioner?.view.onPolicyNodeBlocks { [nodes] _ in if nodes?.current == nil { body() } }
    }

    /// A configuration reload reaches the provisioner: new canonical specs, and
    /// existing guard policies rewritten to them.
    func reload(_ config: Config) {
        nodes?.setPrefix(config.nodePrefixLength)
        provisioner?.reload(config)
    }

    func stop() {
        nodes?.stop()
        provisioner?.stop()
        events?.stop()
    }
}
