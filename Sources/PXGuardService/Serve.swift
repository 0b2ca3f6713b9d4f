import PXGuardBytes
import PXGuardCore
public import PXGuardPlatform
public import PXGuardServer
import PXGuardYAML
import CLinux
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A failure that ends a command with a one-line message on stderr and exit code 2
/// (bad flags, bad config, bad input: the SPEC gives them all 2).
public struct CommandError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ message: String) { description = message }
}

/// Reads the configuration file, or returns the built-in default when none is given.
func loadConfig(_ path: String?) throws(CommandError) -> Config {
    guard let path else { return .default }
    let bytes: [UInt8]
    do {
        bytes = try FileIO.read(path, limit: 1 << 20)
    } catch {
        throw CommandError("\(path): cannot read the configuration: \(error)")
    }
    do {
        return try ConfigLoader(file: path).load(bytes)
    } catch {
        throw CommandError(error.description)
    }
}

/// Options of `pxguard serve`.
public struct ServeOptions: Sendable {
    public var configPath: String?
    public var certDir = "certs"
    public var listen = "0.0.0.0:8443"
    public var clientCA: String?
    public var kubeAPI: String?
    public var kubeTokenFile: String?
    public var kubeCA: String?
    /// Seconds to finish in-flight requests after SIGTERM.
    public var shutdownGrace = 20.0
    /// Seconds to keep serving after SIGTERM, reporting not ready, while the
    /// Service's endpoints drop the pod (kube-proxy and the API server's endpoint
    /// list lag the pod's deletion). `pxguard serve` defaults to 5; 0 for embedding.
    public var shutdownDelay = 0.0
    /// How often the certificate files are checked for a swap.
    var certPollSeconds = 1.0
    /// The replica's name in the Lease and in Events; nil: `POD_NAME`, else the host
    /// name and a random suffix. (Tests running several replicas in one process set it.)
    var identity: String?
    /// How long a first start waits for the self-managed certificates to be mounted.
    var certWaitSeconds = 300.0
    /// The lowest log level written (`--log-level`); nil: the config's `logLevel`.
    public var logLevel: Logger.Level?
    /// Create development certificates in `certDir` when it has none (`--dev-certs`).
    /// Off by default: in a cluster a missing secret mount must fail loudly, not
    /// serve a self-signed pair that the API server rejects.
    public var devCerts = false
    /// `HOST:PORT` of the plain-HTTP metrics listener (`--metrics-listen`); overrides
    /// `server.metricsListen`. Empty: the config decides.
    public var metricsListen = ""
    public init() {}
}

/// Where a service is in its life. One state, so that no pair of flags can disagree;
/// each transition is made under one lock (`Service.lifecycle`).
enum Lifecycle: Equatable, Sendable {
    /// Built; listeners bound, nothing served yet.
    case initial
    /// Serving; background threads running.
    case running
    /// SIGTERM seen: not ready, still serving while endpoints drop the pod.
    case draining
    /// Listeners closed, in-flight requests finishing, threads being joined.
    case shuttingDown
    /// Everything joined.
    case stopped
}

/// A running server with its background workers; `serve` builds one and waits.
public final class Service: Sendable {
    public let server: HTTPServer
    public let handler: AdmissionHandler
    public let metrics: ServiceMetrics
    public let readiness: Readiness
    let policies: PolicyBox
    let tls: TLSContextBox
    let options: ServeOptions
    let logger: Logger
    let lifecycle = Locked<Lifecycle>(.initial)
    /// Wakes the background threads (reloads, certificate polling, the shutdown delay)
    /// when the lifecycle moves, so none of them sleeps through a stop.
    let lifecycleWaker = Waker()
    let threads = Locked<[JoinableThread]>([])
    /// The configuration in force, so a reload that changes nothing says nothing.
    let currentConfig: Locked<Config>
    /// Finding lines (denials, warnings, audits) per rule per second.
    let findingLog: RateLimiter
    let certFingerprint = Locked<String>("")
    /// Set by SIGHUP, taken by the reload thread: a reload that reads a slow file or
    /// parses a large one never holds up the signal thread, so SIGTERM stays prompt.
    let reloadRequested = Locked<Bool>(false)
    /// Set when the guard backend's discovery failed and is to be tried again (the file is not read for it).
    let rediscoverRequested = Locked<Bool>(false)
    /// The files of the last pair refused for its dates, so a refusal is logged once.
    let refusedFingerprint = Locked<String>("")
    let reloadWaker = Waker()
    /// The config file as last loaded (a mounted ConfigMap changes by a symlink swap).
    let configFingerprint = Locked<String>("")
    let provisioner: ProvisionerHandle
    /// The plain-HTTP listener for `/metrics` and `/healthz`, when configured.
    public let metricsListener: PlainHTTPListener?
    /// The configuration file as last loaded; the rules judge by its `effective` form
    /// (with `nodeCIDRs: auto`, the node blocks merged in).
    let fileConfig: Locked<Config>

    var certFile: String { options.certDir + "/tls.crt" }
    var keyFile: String { options.certDir + "/tls.key" }

    /// Loads configuration and certificates (creating development certificates
    /// when the directory has none and `devCerts` is set), binds the listeners, and logs the bound
    /// address as the first line. Throws `CommandError` for bad input.
    public init(options: ServeOptions, logger: Logger) throws {
        self.options = options
        self.logger = logger
        let config = try loadConfig(options.configPath)
        logger.setMinimum(options.logLevel ?? Logger.Level(rawValue: config.logLevel.rawValue) ?? .info)
        currentConfig = Locked(config)
        findingLog = RateLimiter(keys: RuleID.allCases.count, perSecond: config.logFindingsPerSecond)
        let workers = config.server.workers > 0 ? config.server.workers : CPUBudget.available()
        metrics = ServiceMetrics(workers: workers)
        provisioner = try ProvisionerHandle.make(options: options, config: config, metrics: metrics, logger: logger)
        var generated = false
        if !FileIO.exists(options.certDir + "/tls.crt") || !FileIO.exists(options.certDir + "/tls.key"),
            !options.devCerts, provisioner.managesCertificates
        {
            try provisioner.awaitCertificates(options: options)
        }
        if !FileIO.exists(options.certDir + "/tls.crt") || !FileIO.exists(options.certDir + "/tls.key") {
            guard options.devCerts else {
                throw CommandError("no tls.crt and tls.key in \(options.certDir): mount the serving certificate there "
                    + "(the Secret \(config.serviceName)-tls; see the README's Install) or pass --dev-certs to create development certificates")
            }
            do {
                try CertificateFactory.write(to: options.certDir, service: config.serviceName, namespace: config.namespace)
                generated = true
            } catch {
                throw CommandError("cannot create development certificates in \(options.certDir): \(error)")
            }
        }
        let address: SocketAddress
        do {
            address = try SocketAddress(parsing: options.listen)
        } catch {
            throw CommandError("--listen \(options.listen): \(error)")
        }
        let context: TLSContext
        do {
            context = try TLSContext.server(certificateFile: options.certDir + "/tls.crt",
                                            keyFile: options.certDir + "/tls.key", clientCAFile: options.clientCA)
        } catch {
            throw CommandError("cannot load certificates from \(options.certDir): \(error)")
        }
        tls = TLSContextBox(context)
        readiness = Readiness()
        var serverConfiguration = ServerConfiguration(address: address, limits: config.server)
        serverConfiguration.limits.workers = workers
        metrics.addSource { [provisioner] in provisioner.backends.metricsText }
        // Admission (R6) and the provisioner share one watched view of the cluster, and one guard backend.
        fileConfig = Locked(provisioner.backends.applying(to: config))
        policies = PolicyBox(AdmissionPolicy(config: provisioner.effective(provisioner.backends.applying(to: config)),
                                             view: provisioner.view))
        if config.nodeCIDRsAuto && provisioner.nodes == nil {
            logger.error("nodeCIDRs: auto needs the Kubernetes API (provisioning on) to find the nodes; until then NetworkPolicy, Service, Endpoints and EndpointSlice writes in guarded namespaces are refused with a retry message. List the node subnets explicitly to run without it")
        }
        handler = AdmissionHandler(policies: policies, readiness: readiness, metrics: metrics, logger: logger, workers: workers,
                                   findingLog: findingLog)
        metrics.addSource { [logger, findingLog] in
            "# HELP pxguard_log_lines_dropped_total Log lines dropped because the log queue was full (a slow or stalled stderr reader).\n"
                + "# TYPE pxguard_log_lines_dropped_total counter\npxguard_log_lines_dropped_total \(logger.droppedLines)\n"
                + "# HELP pxguard_log_findings_suppressed_total Finding lines not logged over logFindingsPerSecond (counted in pxguard_admission_decisions_total).\n"
                + "# TYPE pxguard_log_findings_suppressed_total counter\npxguard_log_findings_suppressed_total \(findingLog.suppressedTotal)\n"
        }
        do {
            server = try HTTPServer(configuration: serverConfiguration, tls: tls, handler: handler, logger: logger)
        } catch {
            throw CommandError("cannot listen on \(options.listen): \(error)")
        }
        let server = self.server
        handler.attach { server.statistics }
        let metricsAddress = options.metricsListen.isEmpty ? config.metricsListen : options.metricsListen
        if metricsAddress.isEmpty {
            metricsListener = nil
        } else {
            do {
                let handler = self.handler
                metricsListener = try PlainHTTPListener(address: SocketAddress(parsing: metricsAddress), logger: logger) { handler.plainAnswer(path: $0) }
            } catch {
                throw CommandError("cannot listen on \(metricsAddress) for metrics (server.metricsListen): \(error)")
            }
        }
        logger.info("listening", [("address", .text(SocketAddress.format(address.host, server.port))), ("port", .integer(server.port)),
                                  ("workers", .integer(workers))])
        if let metricsListener {
            logger.info("metrics listening (plain HTTP: /metrics and /healthz only)", [("port", .integer(metricsListener.port))])
        }
        if generated {
            logger.info("generated development certificates", [("dir", options.certDir)])
        }
        // nodeCIDRs: auto: a node in a new block (or the first list) reaches the rules
        // and the provisioner as a configuration change would.
        let (box, handle, log) = (policies, provisioner, logger)
        let file = fileConfig
        provisioner.onNodeBlocksChange {
            let effective = handle.effective(file.withLock { $0 })
            box.swap(AdmissionPolicy(config: effective, view: handle.view))
            handle.reload(effective)
            log.info("node subnets in force (nodeCIDRs: auto)", [("nodeCIDRs", effective.nodeCIDRs.map(\.description).joined(separator: ","))])
        }
        provisioner.begin()
        certFingerprint.withLock { $0 = fingerprint() }
        configFingerprint.withLock { $0 = options.configPath.flatMap(FileIO.fingerprint) ?? "" }
        noteCertificate(context)
    }

    func fingerprint() -> String {
        [certFile, keyFile, options.clientCA].compactMap { $0 }.map { FileIO.fingerprint($0) ?? "-" }.joined(separator: "|")
    }

    /// Records the certificate's expiry and what readiness makes of it.
    func noteCertificate(_ context: TLSContext) {
        guard let notAfter = context.notAfter else { return }
        metrics.certificateNotAfter.store(notAfter, ordering: .relaxed)
        let now = time(nil)
        if notAfter <= now {
            logger.error("serving certificate has expired", [("notAfter", .integer(Int(notAfter)))])
        } else if notAfter - now < 30 * 86_400 {
            logger.warn("serving certificate expires within 30 days", [("daysLeft", .integer(Int((notAfter - now) / 86_400)))])
        }
        updateReadiness()
    }

    /// Ready unless stopping or the installed certificate fails OpenSSL's date check
    /// (then every handshake would fail: better to leave the Service's endpoints).
    func updateReadiness() {
        if lifecycle.withLock({ $0 != .running && $0 != .initial }) {
            readiness.set(notReady: "shutting down")
            return
        }
        switch tls.value.validity {
        case .valid: readiness.set(notReady: nil)
        case .expired: readiness.set(notReady: "serving certificate has expired; rotate it (pxguard certs or cert-manager)")
        case .notYetValid: readiness.set(notReady: "serving certificate is not valid yet; check its notBefore and the node clock")
        case .unreadable: readiness.set(notReady: "serving certificate dates are unreadable; replace it")
        }
    }

    /// Serves until `stop` (or a signal, when `installSignalHandlers` ran).
    public func start() {
        let starting = lifecycle.withLock { state -> Bool in
            guard state == .initial else { return false }
            state = .running
            return true
        }
        guard starting else { return }
        server.start()
        metricsListener?.start()
        updateReadiness()
        let reload = startThread(name: "pxguard-reload") { [self] in runReloads() }
        let certs = startThread(name: "pxguard-certs") { [self] in
            var lastWarning = 0
            while true {
                // Woken at once by stop; otherwise a poll of the files every certPollSeconds.
                lifecycleWaker.wait(seconds: options.certPollSeconds)
                guard isRunning else { return }
                if fingerprint() != certFingerprint.withLock({ $0 }) { reloadCertificates() }
                if let path = options.configPath, (FileIO.fingerprint(path) ?? "") != configFingerprint.withLock({ $0 }) {
                    // The file changed (a ConfigMap's symlink swap): reload on the one
                    // reload thread, as SIGHUP does, so that reloads never race.
                    configFingerprint.withLock { $0 = FileIO.fingerprint(path) ?? "" }
                    requestReload()
                }
                if provisioner.backends.discoveryDue { requestRediscovery() }
                let now = time(nil)
                if now - lastWarning > 86_400 {
                    lastWarning = now
                    noteCertificate(tls.value)
                } else {
                    updateReadiness()
                }
            }
        }
        threads.withLock { $0 += [reload, certs] }
    }

    /// True until SIGTERM (or `stop`): background work continues while it holds.
    var isRunning: Bool { lifecycle.withLock { $0 == .running || $0 == .draining } }

    /// Asks the reload thread to re-read configuration and certificates; returns at
    /// once. Requests that arrive during a reload are served by one more reload.
    func requestReload() {
        reloadRequested.withLock { $0 = true }
        reloadWaker.signal()
    }

    /// Asks the reload thread to ask the API for the guard backend again (a discovery
    /// failed); the configuration file is not read for it.
    func requestRediscovery() {
        rediscoverRequested.withLock { $0 = true }
        reloadWaker.signal()
    }

    /// The reload thread: sleeps until a reload is asked for or the service stops.
    func runReloads() {
        while true {
            reloadWaker.wait(seconds: 3600)
            let requested = reloadRequested.withLock { r -> Bool in
                defer { r = false }
                return r
            }
            let rediscover = rediscoverRequested.withLock { r -> Bool in
                defer { r = false }
                return r
            }
            guard isRunning else { return }
            if rediscover && !requested { rediscoverBackend() }  // a reload discovers anyway
            guard requested else { continue }
            reloadConfig()
            // A SIGHUP reloads the pair only when its files changed: no line, no count otherwise.
            if fingerprint() != certFingerprint.withLock({ $0 }) { reloadCertificates() }
        }
    }

    /// Loads the certificate pair again; a pair that fails to load, or is expired or
    /// not yet valid, is refused (logged, counted) and the old pair stays in use.
    func reloadCertificates() {
        let seen = fingerprint()
        do {
            let context = try TLSContext.server(certificateFile: certFile, keyFile: keyFile, clientCAFile: options.clientCA)
            let validity = context.validity
            guard validity == .valid else {
                refuse(validity, fingerprint: seen)
                return
            }
            tls.swap(context)
            certFingerprint.withLock { $0 = seen }
            metrics.reloads.add(1, ordering: .relaxed)
            logger.info("certificates reloaded", [("dir", options.certDir)])
            noteCertificate(context)
        } catch {
            // Often a half-finished swap: the next poll tries again.
            metrics.reloadFailures.add(1, ordering: .relaxed)
            logger.warn("certificate reload failed; keeping the previous pair", [("error", "\(error)")])
            certFingerprint.withLock { $0 = seen }
        }
    }

    /// A pair outside its validity period: never installed. An expired one stays
    /// refused until the files change; a not-yet-valid one is tried again at each
    /// poll (it becomes valid with time) but logged and counted once.
    func refuse(_ validity: CertificateValidity, fingerprint seen: String) {
        let firstTime = refusedFingerprint.withLock { last -> Bool in
            defer { last = seen }
            return last != seen
        }
        if validity != .notYetValid { certFingerprint.withLock { $0 = seen } }
        guard firstTime else { return }
        metrics.reloadFailures.add(1, ordering: .relaxed)
        let what = validity == .notYetValid ? "is not valid yet" : validity == .expired ? "has expired" : "has unreadable dates"
        logger.error("certificate reload refused: the new certificate \(what); keeping the previous pair",
                     [("dir", options.certDir)])
    }

    /// Re-reads the configuration file; on failure the old configuration stays.
    /// A new configuration reaches the rules and the provisioner at once.
    func reloadConfig() {
        configFingerprint.withLock { $0 = options.configPath.flatMap(FileIO.fingerprint) ?? "" }
        do {
            let loaded = try loadConfig(options.configPath)
            let previous = currentConfig.withLock { current -> Config in
                defer { current = loaded }
                return current
            }
            guard loaded != previous else {
                logger.debug("configuration unchanged; nothing reloaded", [("file", options.configPath ?? "(built-in default)")])
                return
            }
            if options.logLevel == nil { logger.setMinimum(Logger.Level(rawValue: loaded.logLevel.rawValue) ?? .info) }
            findingLog.setRate(loaded.logFindingsPerSecond)
            // guardBackend auto: discovery again, so a CNI installed since is picked up.
            apply(provisioner.backends.resolve(loaded))
            metrics.reloads.add(1, ordering: .relaxed)
            logger.info("configuration reloaded", [("file", options.configPath ?? "(built-in default)")])
        } catch {
            metrics.reloadFailures.add(1, ordering: .relaxed)
            logger.error("configuration reload failed; keeping the previous configuration", [("error", error.description)])
        }
    }

    /// A retried discovery of the guard backend (`guardBackend: auto`), over the
    /// configuration in force: applied as a reload would when it changed the backend.
    func rediscoverBackend() {
        let file = provisioner.backends.resolve(currentConfig.withLock { $0 })
        guard file != fileConfig.withLock({ $0 }) else { return }
        apply(file)
    }

    /// `file` (with the backend resolved) reaches the rules and the provisioner.
    func apply(_ file: Config) {
        fileConfig.withLock { $0 = file }
        let config = provisioner.effective(file)
        policies.swap(AdmissionPolicy(config: config, view: provisioner.view))
        provisioner.reload(config)
    }

    /// Graceful stop: not ready, stop accepting, finish in-flight requests, close
    /// idle connections, then return once everything is closed or the grace ends.
    public func stop() {
        let wasRunning = lifecycle.withLock { state -> Bool in
            guard state == .running || state == .initial else { return false }
            state = .draining
            return true
        }
        guard wasRunning else { return }
        updateReadiness()
        // The lease goes first (client-go's ReleaseOnCancel): another replica takes
        // the provisioner over while this one still answers reviews.
        let released = provisioner.releaseLease()
        if options.shutdownDelay > 0 {
            // Reviews keep arriving until every API server has seen the endpoint go:
            // answer them, so that a rolling update drops none.
            logger.info("not ready; serving while endpoints drop this pod", [("delaySeconds", String(options.shutdownDelay))])
            let end = Clock.monotonic().nanoseconds + UInt64(min(options.shutdownDelay, 3600) * 1e9)
            var now = Clock.monotonic().nanoseconds
            while now < end {
                Waker().wait(seconds: Double(end - now) / 1e9)
                now = Clock.monotonic().nanoseconds
            }
        }
        released(2)
        lifecycle.withLock { $0 = .shuttingDown }
        logger.info("shutting down", [("graceSeconds", String(options.shutdownGrace))])
        provisioner.stop()
        lifecycleWaker.signal()
        reloadWaker.signal()
        server.shutdown(grace: options.shutdownGrace)
        server.wait()
        metricsListener?.stop()
        // A reload stuck reading a file (a FIFO nobody writes) must not hold the exit:
        // it is left behind after a moment, the loops are already joined.
        for thread in threads.withLock({ $0 }) where !thread.join(seconds: 2) {
            logger.warn("a background thread did not stop within 2 s (a reload stuck reading a file?); exiting without it")
        }
        lifecycle.withLock { $0 = .stopped }
        logger.info("stopped")
        logger.flush(seconds: 2)
    }
}

/// Blocks SIGTERM, SIGINT and SIGHUP in every thread (call before starting any),
/// so that signals are taken by `waitForSignals` alone. (SIGPIPE is ignored once,
/// by the first socket made: `Syscall.ignoreBrokenPipe`.)
public func blockServiceSignals() {
    var set = sigset_t()
    sigemptyset(&set)
    sigaddset(&set, SIGTERM)
    sigaddset(&set, SIGINT)
    sigaddset(&set, SIGHUP)
    pthread_sigmask(SIG_BLOCK, &set, nil)
}

/// Waits for signals on the calling thread: SIGHUP asks for a reload of
/// configuration and certificates (done on the reload thread), SIGTERM or SIGINT
/// stops the service gracefully and returns, whatever a reload is doing.
public func waitForSignals(_ service: Service) {
    var set = sigset_t()
    sigemptyset(&set)
    sigaddset(&set, SIGTERM)
    sigaddset(&set, SIGINT)
    sigaddset(&set, SIGHUP)
    while true {
        var signal: Int32 = 0
        guard sigwait(&set, &signal) == 0 else { continue }
        if signal == SIGHUP {
            service.logger.info("SIGHUP: reloading configuration and certificates")
            service.requestReload()
            continue
        }
        service.stop()
        return
    }
}
