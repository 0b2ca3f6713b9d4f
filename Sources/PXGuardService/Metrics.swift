import PXGuardCore
import PXGuardPlatform
import PXGuardServer
public import Synchronization

/// One relaxed atomic counter (arrays cannot hold `Atomic` directly).
final class Counter: Sendable {
    let value = Atomic<Int>(0)
    @inline(__always) func add(_ n: Int) { value.add(n, ordering: .relaxed) }
    var load: Int { value.load(ordering: .relaxed) }
}

/// Counters of one event loop. Each loop writes only its own shard, so the hot
/// path does uncontended relaxed atomic adds; `/metrics` sums the shards.
final class MetricsShard: Sendable {
    static let paths = ["validate", "mutate", "healthz", "readyz", "metrics", "other"]
    static let codes = [200, 400, 404, 405, 413, 415, 503]
    static let rules = RuleID.allCases.map(\.rawValue) + ["none"]
    static let decisions = Decision.allCases
    /// Upper bounds of the latency histogram, in seconds.
    static let buckets: [Double] = [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1]

    let requests: [Counter]
    let decisions: [Counter]
    let latency: [Counter]
    let latencySumNanos = Counter()
    let latencyCount = Counter()

    init() {
        requests = (0..<(Self.paths.count * (Self.codes.count + 1))).map { _ in Counter() }
        decisions = (0..<(2 * Self.rules.count * Self.decisions.count)).map { _ in Counter() }
        latency = (0..<Self.buckets.count).map { _ in Counter() }
    }

    func countRequest(path: Int, status: Int) {
        let code = Self.codes.firstIndex(of: status) ?? Self.codes.count
        requests[path * (Self.codes.count + 1) + code].add(1)
    }

    func countDecision(mutating: Bool, rule: RuleID?, decision: Decision) {
        let r = rule.map { RuleID.allCases.firstIndex(of: $0)! } ?? RuleID.allCases.count
        let d = Self.decisions.firstIndex(of: decision)!
        decisions[((mutating ? 1 : 0) * Self.rules.count + r) * Self.decisions.count + d].add(1)
    }

    func observe(nanos: Int) {
        latencySumNanos.add(nanos)
        latencyCount.add(1)
        let seconds = Double(nanos) / 1e9
        if let i = Self.buckets.firstIndex(where: { seconds <= $0 }) { latency[i].add(1) }
    }
}

/// Process-wide gauges and counters that are not on the request path.
public final class ServiceMetrics: Sendable {
    let shards: [MetricsShard]
    public let certificateNotAfter = Atomic<Int>(0)
    let reloads = Atomic<Int>(0)
    let reloadFailures = Atomic<Int>(0)
    /// Extra exposition text from other components (the provisioner), rendered on demand.
    let extra = Locked<[@Sendable () -> String]>([])

    public init(workers: Int) {
        shards = (0..<max(1, workers)).map { _ in MetricsShard() }
    }

    func addSource(_ render: @escaping @Sendable () -> String) { extra.withLock { $0.append(render) } }

    func shard(_ worker: Int) -> MetricsShard { shards[worker % shards.count] }

    /// Prometheus text exposition format 0.0.4.
    func render(transport: ServerStatistics?, ready: Bool) -> String {
        var out = ""
        func sum(_ pick: (MetricsShard) -> Counter) -> Int { shards.reduce(0) { $0 + pick($1).load } }

        out += "# HELP pxguard_http_requests_total HTTP requests by endpoint and status code.\n"
        out += "# TYPE pxguard_http_requests_total counter\n"
        for (p, path) in MetricsShard.paths.enumerated() {
            for c in 0...MetricsShard.codes.count {
                let n = sum { $0.requests[p * (MetricsShard.codes.count + 1) + c] }
                guard n > 0 else { continue }
                let code = c < MetricsShard.codes.count ? String(MetricsShard.codes[c]) : "other"
                out += "pxguard_http_requests_total{path=\"/\(path)\",code=\"\(code)\"} \(n)\n"
            }
        }
        out += "# HELP pxguard_admission_decisions_total Admission answers by endpoint, rule and decision.\n"
        out += "# TYPE pxguard_admission_decisions_total counter\n"
        for (e, endpoint) in ["validate", "mutate"].enumerated() {
            for (r, rule) in MetricsShard.rules.enumerated() {
                for (d, decision) in MetricsShard.decisions.enumerated() {
                    let n = sum { $0.decisions[(e * MetricsShard.rules.count + r) * MetricsShard.decisions.count + d] }
                    let always = rule == "none" && decision == .allow
                    guard n > 0 || always || (endpoint == "validate" && rule != "none" && decision == .deny) else { continue }
                    out += "pxguard_admission_decisions_total{endpoint=\"\(endpoint)\",rule=\"\(rule)\",decision=\"\(decision.rawValue)\"} \(n)\n"
                }
            }
        }
        out += "# HELP pxguard_admission_duration_seconds Time to decode, decide and encode one review.\n"
        out += "# TYPE pxguard_admission_duration_seconds histogram\n"
        var cumulative = 0
        for (i, bound) in MetricsShard.buckets.enumerated() {
            cumulative += sum { $0.latency[i] }
            out += "pxguard_admission_duration_seconds_bucket{le=\"\(bound)\"} \(cumulative)\n"
        }
        let count = sum { $0.latencyCount }
        out += "pxguard_admission_duration_seconds_bucket{le=\"+Inf\"} \(count)\n"
        out += "pxguard_admission_duration_seconds_sum \(Double(sum { $0.latencySumNanos }) / 1e9)\n"
        out += "pxguard_admission_duration_seconds_count \(count)\n"
        if let t = transport {
            out += gauge("pxguard_open_connections", "Open client connections.", t.openConnections)
            out += counter("pxguard_connections_accepted_total", "Accepted TCP connections.", t.acceptedConnections)
            out += counter("pxguard_tls_handshake_failures_total", "TLS handshakes that failed or were abandoned.", t.handshakeFailures)
            out += counter("pxguard_connection_timeouts_total", "Connections cut by a handshake, header, body or write timeout, or a request slower than server.minRequestBytesPerSecond.", t.timeouts)
            out += counter("pxguard_http_protocol_errors_total", "Requests refused before the handler: parser errors (400, 413, 414, 431, 501, 505) and 503 when request buffers are full.", t.protocolErrors)
            out += counter("pxguard_connections_rejected_total", "Connections refused over the per-worker limit or while draining.", t.rejectedConnections)
            out += counter("pxguard_connections_shed_total", "Connections closed to make room under server.maxConnections, a peer's share or the handshake cap (idle first, then slow requests; from the address holding the most).", t.shedConnections)
            out += gauge("pxguard_tls_handshakes_in_progress", "Connections holding TLS state in an unfinished handshake (capped per loop by server.maxHandshakesPerWorker).", t.handshakesInProgress)
            out += gauge("pxguard_request_buffer_bytes", "Memory held in request buffers, all loops (bounded per loop by server.maxBufferedBytesPerWorker).", t.bufferedBytes)
        }
        out += gauge("pxguard_ready", "1 while the server reports ready.", ready ? 1 : 0)
        out += gauge("pxguard_certificate_expiry_timestamp_seconds", "Expiry of the serving certificate (Unix time).",
                     certificateNotAfter.load(ordering: .relaxed))
        out += counter("pxguard_reloads_total", "Successful configuration or certificate reloads.", reloads.load(ordering: .relaxed))
        out += counter("pxguard_reload_failures_total", "Reloads refused because the new files were invalid.", reloadFailures.load(ordering: .relaxed))
        out += ProcessMetrics.render()
        for render in extra.withLock({ $0 }) { out += render() }
        return out
    }

    func gauge(_ name: String, _ help: String, _ value: Int) -> String {
        "# HELP \(name) \(help)\n# TYPE \(name) gauge\n\(name) \(value)\n"
    }

    func counter(_ name: String, _ help: String, _ value: Int) -> String {
        "# HELP \(name) \(help)\n# TYPE \(name) counter\n\(name) \(value)\n"
    }
}
