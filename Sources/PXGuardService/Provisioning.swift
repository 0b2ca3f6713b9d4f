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
    let offReason: String?
    let logger: Logger
    /// The audit's verdicts (every replica) and its writer (Lease holder), when on.
    let audit: ClusterAudit?
    let auditWriter: AuditWriter?

    init(provisioner: Provisioner?, elector: LeaderElector?, upkeep: ClusterUpkeep? = nil, offReason: String?, logger: Logger,
         audit: ClusterAudit? = nil, auditWriter: AuditWriter? = nil) {
        self.audit = audit
        self.auditWriter = auditWriter
        self.provisioner = provisioner
        self.elector = elector
        self.upkeep = upkeep
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
        let view = ClusterView(config: config, logger: logger)
        let audit = config.audit.enabled ? ClusterAudit(client: client, config: config, logger: logger) : nil
        let auditWriter = audit.map { AuditWriter(client: client, audit: $0, elector: elector, logger: logger) }
        let provisioner = Provisioner(client: client, view: view, elector: elector, settings: settings, logger: logger, audit: audit)
        metrics.addSource { provisioner.metricsText }
        if let audit, let auditWriter { metrics.addSource { audit.metricsText + auditWriter.metricsText } }
        let upkeep = ClusterUpkeep(client: client, elector: elector, config: config, logger: logger)
        if let upkeep { metrics.addSource { upkeep.metricsText } }
        return ProvisionerHandle(provisioner: provisioner, elector: elector, upkeep: upkeep, offReason: nil, logger: logger,
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
        spawnThread(name: "pxguard-provision") { provisioner.run() }
        if let upkeep { spawnThread(name: "pxguard-upkeep") { upkeep.run() } }
        if let audit, let auditWriter {
            logger.info("audit on: verdicts kept from watches; the Lease holder writes reports and Events",
                        [("repairBypassPolicies", audit.config.audit.repairBypassPolicies ? "true" : "false")])
            audit.start()
            spawnThread(name: "pxguard-audit") { auditWriter.run() }
        } else {
            logger.info("audit off (audit.enabled: false)")
        }
    }

    /// A configuration reload reaches the provisioner: new canonical specs, and
    /// existing guard policies rewritten to them.
    func reload(_ config: Config) {
        provisioner?.reload(config)
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
        auditWriter?.stop()
        audit?.stop()
        upkeep?.stop()
        provisioner?.stop()
    }
}
