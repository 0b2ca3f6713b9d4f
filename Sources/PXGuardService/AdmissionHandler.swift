public import PXGuardCore
public import PXGuardPlatform
public import PXGuardServer
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The current admission policy, swapped on SIGHUP.
public typealias PolicyBox = ReloadBox<AdmissionPolicy>

/// Why the server is or is not ready; `/readyz` reports it.
public final class Readiness: Sendable {
    private let reason = Locked<String?>("starting")

    public init() {}
    public func set(notReady why: String?) { reason.withLock { $0 = why } }
    var notReadyReason: String? { reason.withLock { $0 } }
}

/// The webhook's HTTP surface: `/validate`, `/mutate`, `/healthz`, `/readyz`,
/// `/metrics`, with the SPEC's error statuses.
public final class AdmissionHandler: HTTPHandler, @unchecked Sendable {
    /// Per-loop policy cache; touched only by the loop that owns the slot.
    final class Slot {
        var generation = -1
        var policy: AdmissionPolicy?
    }

    let policies: PolicyBox
    let readiness: Readiness
    let metrics: ServiceMetrics
    let logger: Logger
    /// Findings logged per rule per second (the rest counted on the next line).
    let findingLog: RateLimiter
    let slots: [Slot]
    /// Set once the server exists, for transport counters in `/metrics`.
    let transport = Locked<(@Sendable () -> ServerStatistics)?>(nil)

    public init(policies: PolicyBox, readiness: Readiness, metrics: ServiceMetrics, logger: Logger,
                workers: Int, findingLog: RateLimiter = RateLimiter(keys: RuleID.allCases.count, perSecond: 10)) {
        self.findingLog = findingLog
        self.policies = policies
        self.readiness = readiness
        self.metrics = metrics
        self.logger = logger
        slots = (0..<max(1, workers)).map { _ in Slot() }
    }

    func attach(statistics: @escaping @Sendable () -> ServerStatistics) {
        transport.withLock { $0 = statistics }
    }

    func policy(for worker: Int) -> AdmissionPolicy {
        let slot = slots[worker % slots.count]
        let generation = policies.generation.load(ordering: .acquiring)
        if slot.generation != generation || slot.policy == nil {
            slot.policy = policies.value
            slot.generation = generation
        }
        return slot.policy!
    }

    enum Route: Int {
        case validate = 0, mutate, healthz, readyz, metrics, other
    }

    static func route(_ request: HTTPRequest) -> Route {
        // The API server may join a configured path with or without a trailing slash.
        if request.pathIs("/validate") || request.pathIs("/validate/") { return .validate }
        if request.pathIs("/mutate") || request.pathIs("/mutate/") { return .mutate }
        if request.pathIs("/healthz") { return .healthz }
        if request.pathIs("/readyz") { return .readyz }
        if request.pathIs("/metrics") { return .metrics }
        return .other
    }

    public func handle(_ request: HTTPRequest, _ response: inout HTTPResponse) {
        let route = Self.route(request)
        switch route {
        case .validate, .mutate:
            admission(request, &response, mutating: route == .mutate)
        case .healthz, .readyz, .metrics:
            guard request.method == .get || request.method == .head else {
                response.error(405, "method not allowed: \(route == .metrics ? "/metrics" : "probes") accept GET")
                response.extraHeaders = "Allow: GET, HEAD\r\n"
                break
            }
            response.contentType = "text/plain; charset=utf-8"
            if route == .healthz {
                response.body.append(contentsOf: "ok".utf8)
            } else if route == .readyz {
                if let why = readiness.notReadyReason {
                    response.status = 503
                    response.body.append(contentsOf: "not ready: \(why)".utf8)
                } else {
                    response.body.append(contentsOf: "ok".utf8)
                }
            } else {
                response.contentType = "text/plain; version=0.0.4; charset=utf-8"
                let stats = transport.withLock { $0 }?()
                response.body.append(contentsOf: metrics.render(transport: stats, ready: readiness.notReadyReason == nil).utf8)
            }
        case .other:
            response.error(404, "no such endpoint: \(request.path); pxguard serves /validate, /mutate, /healthz, /readyz and /metrics")
        }
        metrics.shard(request.worker).countRequest(path: route.rawValue, status: response.status)
    }

    /// The plain-HTTP metrics listener's answers (`server.metricsListen`): `/metrics`
    /// and `/healthz` only; admission and readiness stay on the TLS port.
    func plainAnswer(path: String) -> PlainHTTPListener.Answer {
        switch path {
        case "/metrics":
            let stats = transport.withLock { $0 }?()
            return (200, "text/plain; version=0.0.4; charset=utf-8",
                    Array(metrics.render(transport: stats, ready: readiness.notReadyReason == nil).utf8))
        case "/healthz":
            return (200, "text/plain; charset=utf-8", Array("ok".utf8))
        default:
            return (404, "application/json", Array("{\"message\":\"no such endpoint: this listener serves /metrics and /healthz only; admission is on the TLS port\"}\n".utf8))
        }
    }

    func admission(_ request: HTTPRequest, _ response: inout HTTPResponse, mutating: Bool) {
        guard request.method == .post else {
            response.error(405, "method not allowed: admission endpoints accept POST")
            response.extraHeaders = "Allow: POST\r\n"
            return
        }
        guard request.isJSON else {
            response.error(415, "unsupported Content-Type \(request.contentType.map { "\"\($0)\"" } ?? "(none)"); send application/json")
            return
        }
        let started = Clock.monotonic()
        let policy = policy(for: request.worker)
        let shard = metrics.shard(request.worker)
        do {
            try AdmissionRequest.withDecoded(request.body) { review in
                let verdict: Verdict
                if mutating {
                    // M1 answers the patch only: the provisioner's watch sees the namespace.
                    verdict = policy.mutate(review).verdict
                } else {
                    verdict = policy.validate(review)
                }
                ReviewEncoder.encode(verdict, uid: review.uid, version: review.version, into: &response.body)
                shard.countDecision(mutating: mutating, rule: verdict.rule, decision: verdict.decision)
                if let rule = verdict.rule { audit(verdict, review, rule: rule, now: started.nanoseconds) }
            }
        } catch let error as AdmissionDecodeError {
            response.error(400, "invalid AdmissionReview: \(error.message)")
            return
        } catch {
            response.error(400, "invalid AdmissionReview: \(error)")
            return
        }
        shard.observe(nanos: Int(Clock.monotonic().nanoseconds - started.nanoseconds))
    }

    /// One log line per finding (denials, warnings, audits and break-glass use), at most
    /// `logFindingsPerSecond` per rule: a tenant sending denied requests chooses how
    /// often it is denied, not how much is logged. The line after a suppressed run says
    /// how many were left out.
    func audit(_ verdict: Verdict, _ review: AdmissionRequest, rule: RuleID, now: UInt64) {
        guard logger.enabled(.info) else { return }
        guard case .log(let suppressed) = findingLog.admit(RuleID.allCases.firstIndex(of: rule) ?? 0, now: now) else { return }
        var fields: [(String, LogValue)] = [
            ("uid", .text(review.uid)), ("rule", .text(rule.rawValue)), ("decision", .text(verdict.decision.rawValue)),
            ("operation", .text(review.operation.rawValue)), ("kind", .text(review.kind)), ("namespace", .text(review.namespace)),
            ("name", .text(review.name)), ("user", .text(review.username)),
        ]
        if suppressed > 0 { fields.append(("suppressed", .integer(suppressed))) }
        logger.info("admission finding", fields)
    }
}
