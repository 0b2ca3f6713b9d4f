#if canImport(Glibc)
import Glibc
#endif
import PXGuardCore
import PXGuardPlatform

/// A minimal Event recorder for the audit (its own file, so that it merges beside
/// the general `EventRecorder` another branch builds). It behaves like client-go's
/// `EventCorrelator`:
/// - **aggregation**: an Event equal to one sent before (same object, reason and
///   message) within `aggregationSeconds` is not created again; the existing one's
///   `count` and `lastTimestamp` are patched;
/// - **rate limit** (the spam filter): a token bucket per involved object, `burst`
///   tokens refilled at one per `refillSeconds` (client-go: 25, one per 5 min), and
///   one for all objects together (`globalBurst`, `globalPerSecond`), so that a
///   cluster full of holes cannot flood the API server. Events over the limit are
///   dropped and counted (the report object and the metrics still say everything).
///
/// Used from the Lease holder's audit writer thread only.
final class AuditEvents {
    struct Settings {
        var burst = 25.0
        var refillSeconds = 300.0
        var globalBurst = 100.0
        var globalPerSecond = 10.0
        var aggregationSeconds = 600.0
        /// Objects whose buckets and aggregates are remembered at most.
        var maxTracked = 20_000
    }

    struct Bucket {
        var tokens: Double
        var at: Double
    }

    struct Sent {
        var name: String
        var namespace: String
        var count: Int
        var at: Double
    }

    let settings: Settings
    let component = "pxguard"
    var buckets: [String: Bucket] = [:]
    var global: Bucket
    var sent: [String: Sent] = [:]
    /// Events created, aggregated into an existing one, dropped by the rate limit, failed.
    var created = 0, aggregated = 0, dropped = 0, failed = 0

    init(settings: Settings = Settings()) {
        self.settings = settings
        global = Bucket(tokens: settings.globalBurst, at: Clock.monotonic().seconds)
    }

    static func take(_ b: inout Bucket, burst: Double, perSecond: Double, now: Double) -> Bool {
        b.tokens = min(burst, b.tokens + max(0, now - b.at) * perSecond)
        b.at = now
        guard b.tokens >= 1 else { return false }
        b.tokens -= 1
        return true
    }

    /// Sends (or aggregates) a Warning Event about `object`; false when the rate limit
    /// dropped it or the API refused it.
    @discardableResult
    func warn(_ object: AuditObject, reason: String, message: String, connection: KubeConnection, now: Double = Clock.monotonic().seconds)
        -> Bool
    {
        let objectKey = "\(object.kind.rawValue)/\(object.namespace)/\(object.name)/\(object.uid)"
        let key = objectKey + "\u{0}" + reason + "\u{0}" + message
        if buckets.count > settings.maxTracked { buckets.removeAll() }
        if sent.count > settings.maxTracked { sent = sent.filter { now - $0.value.at < settings.aggregationSeconds } }
        var bucket = buckets[objectKey] ?? Bucket(tokens: settings.burst, at: now)
        let allowed = Self.take(&bucket, burst: settings.burst, perSecond: 1 / settings.refillSeconds, now: now)
            && Self.take(&global, burst: settings.globalBurst, perSecond: settings.globalPerSecond, now: now)
        buckets[objectKey] = bucket
        guard allowed else {
            dropped += 1
            return false
        }
        let wall = Clock.rfc3339(Clock.wall(), fractionDigits: 0)
        do {
            let collection = "/api/v1/namespaces/\(try KubePath.segment(object.namespace))/events"
            if var previous = sent[key], now - previous.at < settings.aggregationSeconds {
                previous.count += 1
                previous.at = now
                let patch: JSON = .obj(["count": .int(previous.count), "lastTimestamp": .string(wall)])
                try connection.call("PATCH", collection + "/" + KubePath.percentEncoded(previous.name), body: patch,
                                    contentType: "application/merge-patch+json")
                sent[key] = previous
                aggregated += 1
                return true
            }
            var suffix = FNVHash()
            suffix.add(key)
            suffix.add(String(now))
            let name = String(object.name.prefix(200)) + "." + String(suffix.value, radix: 16)
            let event: JSON = .obj([
                "apiVersion": "v1", "kind": "Event",
                "metadata": .obj(["name": .string(name), "namespace": .string(object.namespace)]),
                "involvedObject": .obj([
                    "apiVersion": .string(object.kind.apiVersion), "kind": .string(object.kind.rawValue),
                    "namespace": .string(object.namespace), "name": .string(object.name),
                    "uid": object.uid.isEmpty ? nil : .string(object.uid),
                ]),
                "reason": .string(reason), "message": .string(String(message.prefix(1024))), "type": "Warning",
                "source": .obj(["component": .string(component)]),
                "reportingComponent": .string(component), "reportingInstance": .string(component),
                "firstTimestamp": .string(wall), "lastTimestamp": .string(wall), "count": 1,
            ])
            try connection.call("POST", collection, body: event)
            sent[key] = Sent(name: name, namespace: object.namespace, count: 1, at: now)
            created += 1
            return true
        } catch {
            failed += 1
            return false
        }
    }
}

/// FNV-1a over strings (Event name suffixes).
struct FNVHash {
    var value: UInt64 = 0xcbf2_9ce4_8422_2325
    mutating func add(_ text: String) {
        for b in text.utf8 { value = (value ^ UInt64(b)) &* 0x0000_0100_0000_01b3 }
        value = (value ^ 0xFF) &* 0x0000_0100_0000_01b3
    }
}
