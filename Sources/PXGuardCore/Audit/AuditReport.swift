/// The report object for one exposed namespace, in the formats the ecosystem's
/// report readers (Kyverno's, Policy Reporter) read. Pure renderers: the caller
/// gives the time; the Lease holder writes the object and deletes it once the
/// namespace is protected again.
public enum AuditReportFormat: String, Sendable, CaseIterable {
    /// `wgpolicyk8s.io/v1alpha2` `PolicyReport`.
    case policyReport = "wgpolicyk8s.io/v1alpha2"
    /// `openreports.io/v1alpha1` `Report`.
    case openReports = "openreports.io/v1alpha1"

    /// The object's `kind`.
    public var kind: String { self == .policyReport ? "PolicyReport" : "Report" }
    /// The API group, for discovery and RBAC.
    public var group: String { self == .policyReport ? "wgpolicyk8s.io" : "openreports.io" }
    /// The resource (plural) in the group, for the URL path and RBAC.
    public var resource: String { self == .policyReport ? "policyreports" : "reports" }

    /// The format to write, given what the cluster serves: PolicyReport when served
    /// (what Kyverno writes by default and every report reader reads), else Report,
    /// else nil (no report CRD: a log line, the metrics still work). Never both: a
    /// reader that reads both would count every finding twice. Why, in docs/DESIGN.md.
    public static func preferred(served: Set<AuditReportFormat>) -> AuditReportFormat? {
        served.contains(.policyReport) ? .policyReport : served.contains(.openReports) ? .openReports : nil
    }
}

extension AuditVerdict {
    /// The report object's name in each exposed namespace (one per namespace).
    public static let reportName = "pxguard-audit"

    /// The report object for this verdict in `format`, found at `timestamp` (Unix
    /// seconds). Exposing findings are `fail` results (`error` for an object that
    /// could not be judged), informational ones `warn`.
    public func report(format: AuditReportFormat, timestamp: Int) -> JSON {
        var results: [JSON] = []
        var fail = 0, warn = 0, error = 0
        for finding in findings + notes {
            let result: String
            switch finding.check {
            case .guardWidens: result = "warn"; warn += 1
            case .unjudged: result = "error"; error += 1
            default: result = "fail"; fail += 1
            }
            let resource: JSON = finding.object.map { o in
                .obj(["apiVersion": .string(o.kind.apiVersion), "kind": .string(o.kind.rawValue),
                      "namespace": .string(o.namespace), "name": .string(o.name), "uid": o.uid.isEmpty ? nil : .string(o.uid)])
            } ?? .obj(["apiVersion": "v1", "kind": "Namespace", "name": .string(namespace)])
            results.append(.obj([
                "source": "pxguard",
                "policy": "pxguard-portworx-api-guard",
                "rule": .string(finding.check.rawValue),
                "category": "Portworx API guard",
                "severity": .string(finding.check.exposes ? "high" : "info"),
                "result": .string(result),
                "scored": .bool(finding.check.exposes),
                "message": .string(finding.message),
                "resources": [resource],
                "timestamp": .obj(["seconds": .int(timestamp), "nanos": 0]),
            ]))
        }
        return .obj([
            "apiVersion": .string(format.rawValue),
            "kind": .string(format.kind),
            "metadata": .obj([
                "name": .string(Self.reportName),
                "namespace": .string(namespace),
                "labels": .obj([
                    GuardNames.managedByKey: .string(GuardNames.managedByValue),
                    // Policy Reporter and Kyverno's tooling group reports by this label.
                    "app.kubernetes.io/name": "pxguard",
                ]),
            ]),
            "source": format == .openReports ? "pxguard" : nil,
            "scope": .obj(["apiVersion": "v1", "kind": "Namespace", "name": .string(namespace)]),
            "summary": .obj(["pass": 0, "fail": .int(fail), "warn": .int(warn), "error": .int(error), "skip": 0]),
            "results": .array(results),
        ])
    }
}
