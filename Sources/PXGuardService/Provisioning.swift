#if canImport(Glibc)
import Glibc
#endif
import PXGuardCore
import PXGuardKube
import PXGuardPlatform

/// The provisioner as the service sees it: on when a Kubernetes API is configured
/// (flags or in-cluster) and provisioning is enabled, otherwise off, said once.
/// When on, its watched view is what admission's R6 consults.
final class ProvisionerHandle: Sendable {
    let provisioner: Provisioner?
    let elector: LeaderElector?
    /// Self-managed certificates and managed registrations, when the config turns them on.
    let upkeep: ClusterUpkeep?
    /// Events for what the provisioner changes (reused by the audit for its findings).
    let events: EventRecorder?
    /// `nodeCIDRs: auto`: the Node watch (nil otherwise, or without an API).
    let nodes: NodeAddresses?
    let offReason: String?
    let logger: Logger
    /// The cluster-scoped guard's keeper (nil without an API).
    let clusterGuard: ClusterGuard?
    /// Discovery of `auto` and of the network plugin (see ClusterGuard.swift).
    let backends: GuardBackendSelection
    /// The audit's verdicts (every replica) and its writer (Lease holder), when on.
    let audit: ClusterAudit?
    let auditWriter: AuditWriter?

    init(provisioner: Provisioner?, elector: LeaderElector?, upkeep: ClusterUpkeep? = nil, offReason: String?, logger: Logger,
         clusterGuard: ClusterGuard? = nil, backends: GuardBackendSelection, events: EventRecorder? = nil,
         nodes: NodeAddresses? = nil, audit: ClusterAudit? = nil, auditWriter: AuditWriter? = nil) {
        self.events = events
        self.nodes = nodes
        self.audit = audit
        self.auditWriter = auditWriter
        self.provisioner = provisioner
        self.elector = elector
        self.upkeep = upkeep
        self.offReason = offReason
        self.logger = logger
        self.clusterGuard = clusterGuard
        self.backends = backends
    }

    /// The watched view for R6, or nil when provisioning is off.
    var view: (any GuardView)? { provisioner?.view }

    static func make(options: ServeOptions, config: Config, metrics: ServiceMetrics, logger: Logger)
        throws(CommandError) -> ProvisionerHandle
    {
        guard config.provisioning.enabled else {
            return ProvisionerHandle(provisioner: nil, elector: nil, offReason: "disabled in the configuration", logger: logger,
                                     backends: GuardBackendSelection(client: nil, logger: logger))
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
                                     offReason: "no Kubernetes API configured (--kube-api, or run in a cluster)", logger: logger,
                                     backends: GuardBackendSelection(client: nil, logger: logger))
        }
        let client: KubeClient
        do {
            client = try KubeClient(endpoint: endpoint)
        } catch {
            throw CommandError(error.description)
        }
        let identity = options.identity ?? Environment.variable("POD_NAME")
            ?? "\(Environment.hostName())-\(UInt32.random(in: 0...UInt32.max))"
        let elector = LeaderElector(client: client, namespace: config.namespace, identity: identity,
                                    timing: LeaderElector.Timing(), logger: logger)
        var settings = Provisioner.Settings()
        settings.resyncSeconds = Double(config.provisioning.resyncSeconds)
        let backends = GuardBackendSelection(client: client, logger: logger)
        let config = backends.resolve(config)
        let nodes = config.nodeCIDRsAuto ? NodeAddresses(client: client, prefix: config.nodePrefixLength, logger: logger) : nil
        if let nodes { metrics.addSource { nodes.metricsText } }
        let view = ClusterView(config: config, logger: logger)
        let events = EventRecorder(client: client, instance: identity, logger: logger)
        let audit = config.audit.enabled ? ClusterAudit(client: client, config: config, logger: logger) : nil
        let auditWriter = audit.map { AuditWriter(client: client, audit: $0, elector: elector, logger: logger, events: events) }
        let provisioner = Provisioner(client: client, view: view, elector: elector, settings: settings, logger: logger,
                                      events: events, audit: audit)
        if let audit, let auditWriter { metrics.addSource { audit.metricsText + auditWriter.metricsText } }
        let upkeep = ClusterUpkeep(client: client, elector: elector, config: config, logger: logger, events: events)
        if let upkeep { metrics.addSource { upkeep.metricsText } }
        let clusterGuard = ClusterGuard(client: client, config: config, elector: elector, settings: ClusterGuard.Settings(),
                                        logger: logger, view: view, events: events)
        metrics.addSource { provisioner.metricsText + clusterGuard.metricsText }
        return ProvisionerHandle(provisioner: provisioner, elector: elector, upkeep: upkeep, offReason: nil, logger: logger,
                                 clusterGuard: clusterGuard, backends: backends, events: events, nodes: nodes,
                                 audit: audit, auditWriter: auditWriter)
    }

    /// True when the Lease holder keeps the certificates Secret (self-managed, API configured).
    var managesCertificates: Bool { upkeep?.certificates != nil }

    /// Self-managed certificates on a bundle applied without a Secret (`kubectl apply -k
    /// deploy`): the Secret is created (any replica may: a create is atomic) and the
    /// server waits for the kubelet to project it into `--cert-dir` (the volume is
    /// optional), up to `certWaitSeconds`; the pod's probes fail meanwhile, so no
    /// request is routed to it.
    func awaitCertificates(options: ServeOptions) throws(CommandError) {
        guard let upkeep else { return }
        let deadline = Clock.monotonic().seconds + options.certWaitSeconds
        var said = false
        while Clock.monotonic().seconds < deadline {
            if upkeep.ensureCertificateSecret() && !said {
                logger.info("waiting for the kubelet to mount the certificates secret", [("dir", options.certDir)])
                said = true
            }
            if FileIO.exists(options.certDir + "/tls.crt") && FileIO.exists(options.certDir + "/tls.key") { return }
            usleep(UInt32(min(1.0, max(0.05, options.certPollSeconds)) * 1_000_000))
        }
        throw CommandError("no tls.crt and tls.key in \(options.certDir) after \(Int(options.certWaitSeconds)) s: the certificates "
            + "secret was \(said ? "created but not mounted; check the Deployment's certs volume" : "not reachable; check the API and RBAC on secrets"))")
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
            logger.warn("provisioning.dryRun: the provisioner reports what it would write and writes nothing; R6 stands aside")
        }
        spawnThread(name: "pxguard-provision") { provisioner.run() }
        if let upkeep { spawnThread(name: "pxguard-upkeep") { upkeep.run() } }
        if let clusterGuard { spawnThread(name: "pxguard-guard") { clusterGuard.run() } }
        if let audit, let auditWriter {
            logger.info("audit on: verdicts kept from watches; the Lease holder writes reports and Events",
                        [("repairBypassPolicies", audit.config.audit.repairBypassPolicies ? "true" : "false")])
            audit.start()
            spawnThread(name: "pxguard-audit") { auditWriter.run() }
        } else {
            logger.info("audit off (audit.enabled: false)")
        }
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
        // The view first: the cluster guard judges "NetworkPolicies in place" by it.
        provisioner?.reload(config)
        clusterGuard?.reload(config)
        upkeep?.reload(config)
        if let audit {
            // Records keep no object to judge again: the audited kinds are listed anew.
            if !config.audit.enabled { logger.info("audit.enabled changed; takes effect at the next restart") }
            let before = audit.config
            audit.reload(config)
            var a = before, b = config
            a.audit.repairBypassPolicies = false
            b.audit.repairBypassPolicies = false
            if a != b {
                provisioner?.relistPolicies()
                audit.relistOwnOnly()
            }
        }
    }

    /// Releases the lease on a thread of its own (a slow API must not hold up the
    /// shutdown sequence); `wait` returns once it is done or `seconds` passed.
    func releaseLease() -> (_ seconds: Double) -> Void {
        guard let provisioner else { return { _ in } }
        let done = Locked<Bool>(false)
        let waker = Waker()
        spawnThread(name: "pxguard-lease-release") {
            provisioner.releaseLease()
            done.withLock { $0 = true }
            waker.signal()
        }
        return { seconds in
            let deadline = Clock.monotonic().seconds + seconds
            while !done.withLock({ $0 }), case let left = deadline - Clock.monotonic().seconds, left > 0 { waker.wait(seconds: left) }
        }
    }

    func stop() {
        nodes?.stop()
        auditWriter?.stop()
        audit?.stop()
        upkeep?.stop()
        clusterGuard?.stop()
        provisioner?.stop()
        events?.stop()
    }
}

/// `guardBackend: auto` made concrete: the first cluster-scoped backend the API serves
/// (discovery at start and on every reload), else `networkpolicy`; without an API,
/// `networkpolicy`. Also judges the network plugin (the seed's limitation 4). The
/// choice is logged when it changes and exported as metrics.
///
/// A discovery that fails keeps the backend in effect (`networkpolicy` before the first
/// answer) and is tried again every `retrySeconds` (`discoveryDue`) until one answers:
/// one API hiccup at a pod's start must not leave it on the wrong guard until a reload.
final class GuardBackendSelection: Sendable {
    let client: KubeClient?
    let logger: Logger
    let current = Locked<(backend: GuardBackend, cni: CNIAssessment?)>((.networkpolicy, nil))
    /// When discovery is to be tried again (monotonic seconds); nil while none failed.
    let retryAt = Locked<Double?>(nil)
    let retrySeconds = 5.0
    /// True once the backend in effect was logged (then only changes are).
    let announced = Locked<Bool>(false)

    init(client: KubeClient?, logger: Logger) {
        self.client = client
        self.logger = logger
    }

    /// `config` with `auto` replaced by the backend last resolved (no new discovery).
    func applying(to config: Config) -> Config {
        var c = config
        if c.guardBackend == .auto { c.guardBackend = current.withLock { $0.backend } }
        let changed = current.withLock { s -> Bool in
            defer { s.backend = c.guardBackend }
            return s.backend != c.guardBackend
        }
        if changed { logger.info("guard backend", [("backend", c.guardBackend.rawValue), ("configured", config.guardBackend.rawValue)]) }
        return c
    }

    /// `config` with `guardBackend` resolved (never `auto`).
    func resolve(_ config: Config) -> Config {
        var resolved = config
        var cni: CNIAssessment?
        if let client {
            switch ClusterDiscovery.resolve(client) {
            case .success(let found):
                cni = found.cni
                if config.guardBackend == .auto { resolved.guardBackend = found.backend }
                retryAt.withLock { $0 = nil }
            case .failure(let error):
                let kept = current.withLock { $0.backend }
                if config.guardBackend == .auto { resolved.guardBackend = kept }
                let first = retryAt.withLock { at -> Bool in
                    defer { at = Clock.monotonic().seconds + retrySeconds }
                    return at == nil
                }
                let fields = [("error", error.description), ("backend", resolved.guardBackend.rawValue),
                              ("retrySeconds", String(Int(retrySeconds)))]
                if first {
                    logger.warn("API discovery failed; the guard backend in effect stays until discovery answers", fields)
                } else {
                    logger.debug("API discovery failed again", fields)
                }
            }
        } else if config.guardBackend == .auto {
            resolved.guardBackend = .networkpolicy
        }
        let previous = current.withLock { c -> (GuardBackend, CNIAssessment?) in
            defer { c = (resolved.guardBackend, cni ?? c.cni) }
            return (c.backend, c.cni)
        }
        let first = announced.withLock { a in defer { a = true }; return !a }
        if previous.0 != resolved.guardBackend || first {
            logger.info("guard backend", [("backend", resolved.guardBackend.rawValue), ("configured", config.guardBackend.rawValue)])
        }
        if let cni, cni != previous.1 {
            if cni.verdict == .notEnforcing { logger.error(cni.message) } else { logger.info(cni.message) }
        }
        return resolved
    }

    /// True when a discovery failed and its retry is due.
    var discoveryDue: Bool { retryAt.withLock { $0 } .map { Clock.monotonic().seconds >= $0 } ?? false }

    /// `pxguard_guard_backend{backend}` and `pxguard_cni_enforcement{verdict}`.
    var metricsText: String {
        let (backend, cni) = current.withLock { $0 }
        var out = "# HELP pxguard_guard_backend The guard backend in effect (1 for the one in use).\n# TYPE pxguard_guard_backend gauge\n"
        for b in GuardBackend.allCases where b != .auto {
            out += "pxguard_guard_backend{backend=\"\(b.rawValue)\"} \(b == backend ? 1 : 0)\n"
        }
        out += "# HELP pxguard_cni_enforcement Whether a network plugin that enforces policies was found (1 for the verdict).\n"
        out += "# TYPE pxguard_cni_enforcement gauge\n"
        let verdict = cni?.verdict ?? .unknown
        for v in [CNIAssessment.Verdict.enforcing, .notEnforcing, .unknown] {
            out += "pxguard_cni_enforcement{verdict=\"\(v.rawValue)\"} \(v == verdict ? 1 : 0)\n"
        }
        return out
    }
}
