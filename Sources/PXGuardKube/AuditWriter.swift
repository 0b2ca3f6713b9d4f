#if canImport(Glibc)
import Glibc
#endif
import PXGuardCore
public import PXGuardPlatform
public import Synchronization

/// The Lease holder's side of the audit: turns verdict changes into a report object
/// per exposed namespace (deleted once it is protected again), a rate-limited
/// Warning Event per finding on the offending object, and, with
/// `audit.repairBypassPolicies`, R4's repair of existing bypass policies. Nothing
/// else is ever changed, deleted or evicted. Followers only keep the verdicts.
public final class AuditWriter: Sendable {
    let client: KubeClient
    let audit: ClusterAudit
    let elector: LeaderElector?
    let logger: Logger
    /// The service's Event recorder (shared with the provisioner: one correlation cache,
    /// one spam filter per object).
    let recorder: EventRecorder?
    /// The audit's own bucket over all objects (burst, then per second): a cluster full of
    /// findings must neither flood the API server nor fill the recorder's queue that the
    /// provisioner's Events share.
    let eventBudget: (burst: Int, perSecond: Double)
    let eventTokens: Locked<EventRecorder.Bucket>
    /// Audit Events the bucket refused.
    public let eventsDropped = Atomic<Int>(0)
    let stopped = Atomic<Bool>(false)
    /// Report objects written and deleted, Events, repairs (metrics, tests).
    public let reportsWritten = Atomic<Int>(0)
    /// Report objects deleted (namespace protected again, or stale).
    public let reportsDeleted = Atomic<Int>(0)
    /// Warning Events handed to the recorder (not refused by its rate limit).
    public let events = Atomic<Int>(0)
    /// Bypass policies rewritten.
    public let repairs = Atomic<Int>(0)
    /// The report format found served (nil: none, or not looked yet).
    let format = Locked<AuditReportFormat?>(nil)
    /// How often the served report CRDs are looked up again while none is served.
    let discoverySeconds: Double

    /// Event reasons.
    static let exposedReason = "PortworxAPIExposed"
    static let repairedReason = "PortworxAPIBypassRepaired"

    /// - Parameters:
    ///   - elector: the provisioner's Lease; nil writes unconditionally (tests, single replica).
    ///   - events: where Warning Events go; nil sends none.
    ///   - discoverySeconds: how often served report CRDs are looked up again while none is.
    ///   - eventBudget: audit Events across all objects: a burst, then so many a second.
    public init(client: KubeClient, audit: ClusterAudit, elector: LeaderElector?, logger: Logger, events: EventRecorder?,
                eventBudget: (burst: Int, perSecond: Double) = (100, 10), discoverySeconds: Double = 300) {
        self.eventBudget = eventBudget
        eventTokens = Locked(EventRecorder.Bucket(tokens: Double(eventBudget.burst), at: Clock.monotonic().seconds))
        self.client = client
        self.audit = audit
        self.elector = elector
        self.logger = logger
        self.recorder = events
        self.discoverySeconds = discoverySeconds
    }

    var isLeader: Bool { elector?.isLeader ?? true }
    var isStopped: Bool { stopped.load(ordering: .relaxed) }

    /// Ends `run` within about a quarter second.
    public func stop() {
        stopped.store(true, ordering: .relaxed)
        audit.changedSignal.signal()
    }

    /// What the writer remembers while it holds the Lease.
    struct Memory {
        /// Namespaces with a report object pxguard wrote.
        var reported: Set<String> = []
        /// Findings already sent as Events, per namespace ("kind/name/check").
        var evented: [String: Set<String>] = [:]
        /// Bypass policies already repaired or found too large, by "ns/name/digest message".
        var repaired: Set<String> = []
        var format: AuditReportFormat?
        var nextDiscovery = 0.0
        var saidNoCRD = false
    }

    /// The writer loop, on the calling thread, until `stop`.
    public func run() {
        let connection = client.connection()
        defer { connection.close() }
        var memory: Memory?
        var attempts = 0
        while !isStopped {
            guard isLeader, audit.isSynced else {
                memory = nil
                audit.changedSignal.wait(seconds: 0.25)
                continue
            }
            let now = Clock.monotonic().seconds
            var fresh = false
            if memory == nil {
                memory = Memory()
                fresh = true
            }
            var walkAll = fresh
            if memory!.nextDiscovery <= now {
                let before = memory!.format
                discover(&memory!, connection)
                memory!.nextDiscovery = now + (memory!.format == nil ? discoverySeconds : 3600)
                // A report CRD found (at start, or installed since): every exposed namespace
                // gets its report now, not at its next change.
                if let format = memory!.format, fresh || format != before {
                    cleanStale(&memory!, connection)
                    walkAll = true
                }
            }
            let changed = audit.takeChanged(all: walkAll)
            let config = audit.config
            var failed: [String] = []
            for (namespace, verdict) in changed where !isStopped {
                if !write(namespace, verdict, &memory!, connection) { failed.append(namespace) }
                if config.audit.repairBypassPolicies, let verdict { repair(verdict, &memory!, connection) }
            }
            if !failed.isEmpty {
                // Retried after a pause (the API is failing: do not spin on it).
                attempts += 1
                audit.markChanged(failed)
                sleepUnlessStopped(Retry.backoff(attempt: attempts, base: 0.5, cap: 30))
            } else {
                attempts = 0
            }
            if changed.isEmpty { audit.changedSignal.wait(seconds: 0.25) }
        }
    }

    func sleepUnlessStopped(_ seconds: Double) {
        var left = seconds
        while left > 0 && !isStopped {
            usleep(UInt32(min(left, 0.05) * 1_000_000))
            left -= 0.05
        }
    }

    /// Which report CRD the cluster serves (PolicyReport wins: see docs/DESIGN.md).
    func discover(_ memory: inout Memory, _ connection: KubeConnection) {
        var served: Set<AuditReportFormat> = []
        for format in AuditReportFormat.allCases {
            guard let answer = try? connection.call("GET", "/apis/" + format.rawValue) else { continue }
            if answer["resources"]?.arrayValue?.contains(where: { $0["name"]?.stringValue == format.resource }) == true {
                served.insert(format)
            }
        }
        let before = memory.format
        memory.format = AuditReportFormat.preferred(served: served)
        format.withLock { $0 = memory.format }
        if let chosen = memory.format, chosen != before {
            logger.info("audit: writing report objects", [("apiVersion", .text(chosen.rawValue)), ("kind", .text(chosen.kind))])
        } else if memory.format == nil && !memory.saidNoCRD {
            memory.saidNoCRD = true
            logger.info("audit: no report CRD served (wgpolicyk8s.io/v1alpha2 PolicyReport or openreports.io/v1alpha1 Report); "
                + "verdicts go to /metrics and Events only. Install one of them (README, Operations: Audit) to get reports.")
        }
    }

    func reportPath(_ format: AuditReportFormat, _ namespace: String) throws(KubeError) -> String {
        "/apis/\(format.rawValue)/namespaces/\(try KubePath.segment(namespace))/\(format.resource)"
    }

    /// On taking the Lease: the reports a previous holder left in namespaces that are
    /// protected now are deleted; the others are known as written.
    func cleanStale(_ memory: inout Memory, _ connection: KubeConnection) {
        guard let format = memory.format else { return }
        let path = KubePath.query("/apis/\(format.rawValue)/\(format.resource)",
                                  [("labelSelector", "\(GuardNames.managedByKey)=\(GuardNames.managedByValue)")])
        guard let list = try? connection.call("GET", path) else { return }
        for item in list["items"]?.arrayValue ?? [] {
            guard item["metadata"]?["name"]?.stringValue == AuditVerdict.reportName,
                let namespace = item["metadata"]?["namespace"]?.stringValue
            else { continue }
            memory.reported.insert(namespace)
        }
    }

    /// One namespace's verdict: its report object and its Events. False when the
    /// report could not be written (retried).
    @discardableResult
    func write(_ namespace: String, _ verdict: AuditVerdict?, _ memory: inout Memory, _ connection: KubeConnection) -> Bool {
        var ok = true
        let exposed = verdict?.exposed == true
        if let format = memory.format {
            do {
                let collection = try reportPath(format, namespace)
                let path = collection + "/" + AuditVerdict.reportName
                if exposed, let verdict {
                    let report = verdict.report(format: format, timestamp: Int(Clock.wall()))
                    do {
                        let current = try connection.call("GET", path)
                        let rv = current["metadata"]?["resourceVersion"] ?? .null
                        let meta = (report["metadata"] ?? .object([])).setting("resourceVersion", rv)
                        try connection.call("PUT", path, body: report.setting("metadata", meta))
                    } catch where error.code == 404 {
                        try connection.call("POST", collection, body: report)
                    }
                    memory.reported.insert(namespace)
                    reportsWritten.add(1, ordering: .relaxed)
                } else if memory.reported.contains(namespace) {
                    do {
                        try connection.call("DELETE", path)
                    } catch where error.code == 404 {}
                    memory.reported.remove(namespace)
                    reportsDeleted.add(1, ordering: .relaxed)
                }
            } catch {
                ok = false
                if error.code != 404 && error.code != 403 {
                    logger.warn("audit: writing the report failed; retrying with backoff",
                                [("namespace", .text(namespace)), ("error", .text(error.description))])
                } else {
                    // A namespace gone meanwhile (404), or RBAC without the report resource (403): not retried.
                    ok = true
                    logger.warn("audit: the report could not be written; check the namespace and the RBAC on "
                        + "\(memory.format?.resource ?? "reports")", [("namespace", .text(namespace)), ("error", .text(error.description))])
                }
            }
        }
        // One Event per exposing finding on its object, when it first appears
        // (informational notes go to the report only).
        var now: Set<String> = []
        for finding in verdict?.findings ?? [] {
            guard let object = finding.object else { continue }
            let key = "\(object.kind.rawValue)/\(object.name)/\(finding.check.rawValue)"
            now.insert(key)
            if memory.evented[namespace]?.contains(key) == true { continue }
            warn(object, reason: Self.exposedReason, message: finding.message)
        }
        memory.evented[namespace] = now.isEmpty ? nil : now
        return ok
    }

    /// A Warning Event on `object` (correlated and rate-limited by the recorder).
    func warn(_ object: AuditObject, reason: String, message: String) {
        let reference = EventRecorder.ObjectReference(apiVersion: object.kind.apiVersion, kind: object.kind.rawValue,
                                                      namespace: object.namespace, name: object.name, uid: object.uid)
        guard let recorder else { return }
        let now = Clock.monotonic().seconds
        guard eventTokens.withLock({ $0.take(burst: eventBudget.burst, perSecond: eventBudget.perSecond, now: now) }) else {
            eventsDropped.add(1, ordering: .relaxed)
            return
        }
        if recorder.record(reference, .warning, reason: reason, message: message) { events.add(1, ordering: .relaxed) }
    }

    /// `audit.repairBypassPolicies`: each bypass policy the verdict names is read
    /// and rewritten as R4's repair mode would, guarded by a `test` of its
    /// resourceVersion (a concurrent change wins; the watch brings it back here).
    func repair(_ verdict: AuditVerdict, _ memory: inout Memory, _ connection: KubeConnection) {
        let judge = AuditJudge(config: audit.config)
        for finding in verdict.findings where finding.check == .bypassPolicies {
            guard let object = finding.object, object.kind == .networkPolicy, object.name != ".", object.name != ".." else { continue }
            do {
                let path = try KubePath.networkPolicies(in: object.namespace) + "/" + KubePath.percentEncoded(object.name)
                let current = try connection.call("GET", path)
                let bytes = Array(current.serialized.utf8)
                let rv = current["metadata"]?["resourceVersion"]?.stringValue ?? ""
                let key = "\(object.namespace)/\(object.name)@\(rv)"
                guard !memory.repaired.contains(key) else { continue }
                memory.repaired.insert(key)
                let outcome = try JSONDocument.parse(bytes) { view in judge.repairBypass(view) }
                switch outcome {
                case nil:
                    continue
                case .tooLarge(let event):
                    warn(object, reason: Self.repairedReason, message: event)
                case .patch(let jsonPatch, let event):
                    guard case .array(let ops)? = try? JSON(parsing: jsonPatch) else { continue }
                    let test: JSON = .obj(["op": "test", "path": "/metadata/resourceVersion", "value": .string(rv)])
                    try connection.call("PATCH", path, body: .array([test] + ops), contentType: "application/json-patch+json")
                    repairs.add(1, ordering: .relaxed)
                    logger.info("audit: bypass policy repaired", [("namespace", .text(object.namespace)), ("name", .text(object.name))])
                    warn(object, reason: Self.repairedReason, message: event)
                }
            } catch {
                logger.warn("audit: repairing a bypass policy failed; retried when it changes",
                            [("namespace", .text(object.namespace)), ("name", .text(object.name)), ("error", .text("\(error)"))])
            }
        }
    }

    /// The writer's counters.
    public var metricsText: String {
        var out = "# HELP pxguard_audit_writes_total Audit writes by the Lease holder, by what was written (event: Warning Events handed to the Event recorder, which correlates and sends them; see pxguard_events_total).\n"
        out += "# TYPE pxguard_audit_writes_total counter\n"
        out += "pxguard_audit_writes_total{what=\"report\"} \(reportsWritten.load(ordering: .relaxed))\n"
        out += "pxguard_audit_writes_total{what=\"reportDeleted\"} \(reportsDeleted.load(ordering: .relaxed))\n"
        out += "pxguard_audit_writes_total{what=\"event\"} \(events.load(ordering: .relaxed))\n"
        out += "pxguard_audit_writes_total{what=\"repair\"} \(repairs.load(ordering: .relaxed))\n"
        out += "# HELP pxguard_audit_events_dropped_total Audit Events refused by the audit's bucket over all objects (100, then 10 a second).\n"
        out += "# TYPE pxguard_audit_events_dropped_total counter\n"
        out += "pxguard_audit_events_dropped_total \(eventsDropped.load(ordering: .relaxed))\n"
        let served = format.withLock { $0 }
        out += "# HELP pxguard_audit_report_crd 1 when a report CRD is served and used (label: its apiVersion).\n"
        out += "# TYPE pxguard_audit_report_crd gauge\n"
        for f in AuditReportFormat.allCases { out += "pxguard_audit_report_crd{apiVersion=\"\(f.rawValue)\"} \(served == f ? 1 : 0)\n" }
        return out
    }
}
