public import PXGuardCore
public import PXGuardPlatform
import PXGuardServer
import Synchronization

/// Self-managed certificates (SPEC "Configuration file", `certificates`): the Lease
/// holder keeps a CA and the serving pair in the Secret `<serviceName>-tls`, the one
/// every replica mounts, and renews them before they expire.
///
/// The Secret holds `tls.crt`/`tls.key` (the serving pair), `ca.crt` (the trust bundle:
/// every CA still valid, what the registrations' `caBundle` carries) and `ca.key` (the
/// key of the CA in the bundle that signs). A CA rotation overlaps old and new: the new
/// CA is first added to the bundle (as `next-ca.crt`/`next-ca.key`), and signs nothing
/// until the registrations have carried it for `rolloutSeconds`; the old CA stays in the
/// bundle until it expires. So every serving certificate a replica may present chains to
/// a CA the API server already trusts, and no handshake fails during a rotation.
///
/// A Secret that cert-manager manages (a `cert-manager.io/` annotation) is left alone.
public final class CertificateManager: Sendable {
    /// Annotation: when the registrations were first seen carrying the pending CA.
    static let trustedSinceAnnotation = "pxguard.io/next-ca-trusted-since"

    let service: String
    let namespace: String
    let settings: Locked<Config.Certificates>
    let logger: Logger
    let servingRotations = Atomic<Int>(0)
    let caRotations = Atomic<Int>(0)
    let failures = Atomic<Int>(0)
    let caNotAfter = Atomic<Int>(0)
    let servingNotAfter = Atomic<Int>(0)
    /// Why the manager stands aside (logged once per reason), or nil while it manages.
    let standingAside = Locked<String?>(nil)

    /// Events for the Secret's writes (nil: none).
    let events: EventRecorder?

    /// A manager for the Secret `<service>-tls` in `namespace`.
    public init(service: String, namespace: String, settings: Config.Certificates, logger: Logger, events: EventRecorder? = nil) {
        self.events = events
        self.service = service
        self.namespace = namespace
        self.settings = Locked(settings)
        self.logger = logger
    }

    /// The Secret's name: the one the Deployment mounts.
    public var secretName: String { "\(service)-tls" }

    var secretReference: EventRecorder.ObjectReference {
        .init(apiVersion: "v1", kind: "Secret", namespace: namespace, name: secretName)
    }

    /// New lifetimes from a configuration reload; they apply from the next round.
    public func reload(_ settings: Config.Certificates) { self.settings.withLock { $0 = settings } }

    var secretPath: String {
        get throws(KubeError) { "/api/v1/namespaces/\(try KubePath.segment(namespace))/secrets/\(try KubePath.segment(secretName))" }
    }

    /// What one round did.
    enum Outcome: Equatable {
        case unchanged
        case created
        case updated([String])
        case standingAside
        case failed(String)
    }

    /// One round on the Lease holder. `publish` puts a trust bundle into the
    /// registrations and says whether they carry it now; it runs before any decision,
    /// with the bundle as the Secret holds it, so that a CA is only promoted once the
    /// registrations are known to trust it. Returns the bundle in force afterwards.
    @discardableResult
    func round(_ connection: KubeConnection, publish: ([UInt8]) -> Bool) -> (Outcome, bundle: [UInt8]?) {
        let settings = settings.withLock { $0 }
        do {
            let path = try secretPath
            let secret: JSON
            do {
                secret = try connection.call("GET", path)
            } catch let error where error.code == 404 {
                return try create(connection, settings, publish: publish)
            }
            if let owner = secret["metadata"]?["annotations"]?.members?.first(where: { $0.key.hasPrefix("cert-manager.io/") }) {
                standAside("the Secret \(secretName) is cert-manager's (annotation \(owner.key)); it renews the pair")
                return (.standingAside, nil)
            }
            standingAside.withLock { $0 = nil }
            var state = SecretState(secret)
            let published = publish(state.bundle)
            let changes = try plan(&state, settings, published: published)
            if let signer = state.signer { caNotAfter.store(CertificateAuthority.notAfter(signer.certificate) ?? 0, ordering: .relaxed) }
            if let tls = state.serving { servingNotAfter.store(CertificateAuthority.notAfter(tls.certificate) ?? 0, ordering: .relaxed) }
            guard !changes.isEmpty else { return (.unchanged, state.bundle) }
            try connection.call("PUT", path, body: state.secret(from: secret))
            logger.info("certificates secret updated", [("secret", secretName), ("changes", changes.joined(separator: "; "))])
            events?.record(secretReference, .normal, reason: "CertificatesUpdated",
                           message: "pxguard updated its certificates: " + changes.joined(separator: "; "))
            // The new bundle reaches the registrations at once; promotion waits for it.
            _ = publish(state.bundle)
            return (.updated(changes), state.bundle)
        } catch {
            failures.add(1, ordering: .relaxed)
            if error.code == 409 { return (.failed("conflict"), nil) }
            logger.warn("certificate round failed; retrying", [("secret", secretName), ("error", error.description)])
            return (.failed(error.description), nil)
        }
    }

    /// Creates the Secret when it does not exist; true when it exists afterwards.
    func ensureSecret(_ connection: KubeConnection) -> Bool {
        do {
            _ = try connection.call("GET", try secretPath)
            return true
        } catch let error where error.code == 404 {
            let outcome = (try? create(connection, settings.withLock { $0 }, publish: { _ in false }))?.0
            if outcome == .created { return true }
            return (try? connection.call("GET", try secretPath)) != nil
        } catch {
            logger.warn("cannot read the certificates secret", [("secret", secretName), ("error", error.description)])
            return false
        }
    }

    func standAside(_ reason: String) {
        let first = standingAside.withLock { current -> Bool in
            defer { current = reason }
            return current != reason
        }
        if first { logger.info("self-managed certificates stand aside", [("reason", reason)]) }
    }

    /// No Secret yet: a CA and a serving pair, created in one write (409 if another
    /// replica was first; the next round reads theirs).
    func create(_ connection: KubeConnection, _ settings: Config.Certificates, publish: ([UInt8]) -> Bool)
        throws(KubeError) -> (Outcome, bundle: [UInt8]?)
    {
        var state = SecretState(.obj([:]))
        let ca: PEMPair
        let serving: PEMPair
        do {
            ca = try CertificateAuthority.newCA(lifetimeSeconds: settings.caValiditySeconds)
            serving = try CertificateAuthority.issueServing(by: ca, service: service, namespace: namespace,
                                                            lifetimeSeconds: settings.validitySeconds)
        } catch {
            throw KubeError.configuration("minting certificates: \(error)")
        }
        state.bundle = ca.certificate
        state.signer = ca
        state.serving = serving
        let body = state.secret(from: .obj([
            "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": .obj(["name": .string(secretName), "namespace": .string(namespace),
                              "labels": .obj(["app.kubernetes.io/name": "pxguard", GuardNames.managedByKey: "pxguard"])]),
        ]))
        try connection.call("POST", "/api/v1/namespaces/\(try KubePath.segment(namespace))/secrets", body: body)
        caRotations.add(1, ordering: .relaxed)
        servingRotations.add(1, ordering: .relaxed)
        caNotAfter.store(CertificateAuthority.notAfter(ca.certificate) ?? 0, ordering: .relaxed)
        servingNotAfter.store(CertificateAuthority.notAfter(serving.certificate) ?? 0, ordering: .relaxed)
        logger.info("certificates secret created", [("secret", secretName)])
        events?.record(secretReference, .normal, reason: "CertificatesCreated",
                       message: "pxguard created its CA and serving pair (self-managed certificates)")
        _ = publish(state.bundle)
        return (.created, state.bundle)
    }

    /// Decides what the Secret needs now; returns the changes made to `state` (empty:
    /// nothing to write). Every date is judged by OpenSSL (`X509_cmp_time`).
    func plan(_ state: inout SecretState, _ settings: Config.Certificates, published: Bool) throws(KubeError) -> [String] {
        var changes: [String] = []
        let now = Clock.wall()
        do {
            // Expired CAs leave the bundle: nothing valid can chain to them.
            let kept = CertificateAuthority.certificates(inBundle: state.bundle).filter { !CertificateAuthority.isExpired($0) }
            if kept.count != CertificateAuthority.certificates(inBundle: state.bundle).count {
                state.bundle = kept.flatMap { $0 }
                changes.append("expired CA removed from ca.crt")
            }
            if let signer = state.signer, CertificateAuthority.isExpired(signer.certificate) { state.signer = nil }
            // A new CA is published well before the signing one expires (or at once
            // when the Secret came without a usable CA key, as `pxguard certs` makes it).
            if state.next == nil,
                state.signer.map({ CertificateAuthority.expires($0.certificate, within: settings.caRenewBeforeSeconds) }) ?? true
            {
                let ca = try CertificateAuthority.newCA(lifetimeSeconds: settings.caValiditySeconds)
                state.next = ca
                state.bundle += ca.certificate
                state.trustedSince = nil
                changes.append(state.signer == nil ? "new CA published (no usable CA key in the Secret)"
                                                   : "new CA published ahead of the current one's expiry")
            }
            if let next = state.next {
                let servingUsable = state.serving.map { CertificateAuthority.validity($0.certificate) == .valid } ?? false
                if published && state.trustedSince == nil {
                    state.trustedSince = now
                    changes.append("new CA trusted by the registrations")
                }
                let rolledOut = state.trustedSince.map { now - $0 >= Double(settings.rolloutSeconds) } ?? false
                // With no usable serving pair there is nothing to overlap with: promote now.
                if rolledOut || !servingUsable {
                    state.signer = next
                    state.next = nil
                    state.trustedSince = nil
                    caRotations.add(1, ordering: .relaxed)
                    changes.append("new CA signs from now on")
                }
            }
            if let signer = state.signer {
                let serving = state.serving
                let renew = serving.map { pair in
                    !CertificateAuthority.keyMatches(certificate: pair.certificate, key: pair.key)
                        || !CertificateAuthority.isSigned(pair.certificate, by: signer.certificate)
                        || CertificateAuthority.expires(pair.certificate, within: settings.renewBeforeSeconds)
                } ?? true
                if renew {
                    state.serving = try CertificateAuthority.issueServing(by: signer, service: service, namespace: namespace,
                                                                          lifetimeSeconds: settings.validitySeconds)
                    servingRotations.add(1, ordering: .relaxed)
                    changes.append("serving certificate renewed")
                }
            }
        } catch let error as KubeError {
            throw error
        } catch {
            throw KubeError.configuration("minting certificates: \(error)")
        }
        return changes
    }

    /// `/metrics` text: rotations, failures and the dates this replica last saw.
    public var metricsText: String {
        var out = "# HELP pxguard_certificate_rotations_total Certificates pxguard issued into its Secret, by kind (serving pair or CA).\n"
        out += "# TYPE pxguard_certificate_rotations_total counter\n"
        out += "pxguard_certificate_rotations_total{kind=\"serving\"} \(servingRotations.load(ordering: .relaxed))\n"
        out += "pxguard_certificate_rotations_total{kind=\"ca\"} \(caRotations.load(ordering: .relaxed))\n"
        out += "# HELP pxguard_certificate_manager_failures_total Certificate rounds that could not read or write the Secret.\n"
        out += "# TYPE pxguard_certificate_manager_failures_total counter\n"
        out += "pxguard_certificate_manager_failures_total \(failures.load(ordering: .relaxed))\n"
        out += "# HELP pxguard_ca_expiry_timestamp_seconds Expiry of the CA that signs the serving pair (Unix time; 0 until this replica has led a round).\n"
        out += "# TYPE pxguard_ca_expiry_timestamp_seconds gauge\n"
        out += "pxguard_ca_expiry_timestamp_seconds \(caNotAfter.load(ordering: .relaxed))\n"
        return out
    }
}

/// The certificate material of the Secret, decoded once; `secret(from:)` writes it back
/// into the object it came from, keeping every other field and data key.
struct SecretState {
    var bundle: [UInt8]
    var signer: PEMPair?
    var next: PEMPair?
    var serving: PEMPair?
    var trustedSince: Double?

    init(_ secret: JSON) {
        func data(_ key: String) -> [UInt8]? {
            secret["data"]?[key]?.stringValue.flatMap(Base64.decode).flatMap { $0.isEmpty ? nil : $0 }
        }
        bundle = data("ca.crt") ?? []
        if let key = data("ca.key") {
            // The signing CA is the one in the bundle whose key the Secret holds.
            signer = CertificateAuthority.certificates(inBundle: bundle)
                .first { CertificateAuthority.keyMatches(certificate: $0, key: key) }
                .map { PEMPair(certificate: $0, key: key) }
        }
        if let cert = data("next-ca.crt"), let key = data("next-ca.key"), CertificateAuthority.keyMatches(certificate: cert, key: key) {
            next = PEMPair(certificate: cert, key: key)
            if CertificateAuthority.certificates(inBundle: bundle).contains(cert) == false { bundle += cert }
        }
        if let cert = data("tls.crt"), let key = data("tls.key") { serving = PEMPair(certificate: cert, key: key) }
        trustedSince = secret["metadata"]?["annotations"]?[CertificateManager.trustedSinceAnnotation]?.stringValue
            .flatMap(Clock.parseRFC3339)
    }

    func secret(from object: JSON) -> JSON {
        var data = object["data"]?.members ?? []
        func set(_ key: String, _ value: [UInt8]?) {
            data.removeAll { $0.key == key }
            if let value { data.append(JSON.Member(key, .string(Base64.encode(value)))) }
        }
        set("tls.crt", serving?.certificate)
        set("tls.key", serving?.key)
        set("ca.crt", bundle)
        set("ca.key", signer?.key)
        set("next-ca.crt", next?.certificate)
        set("next-ca.key", next?.key)
        var metadata = object["metadata"] ?? .obj([:])
        var annotations = (metadata["annotations"]?.members ?? []).filter { $0.key != CertificateManager.trustedSinceAnnotation }
        if let trustedSince { annotations.append(JSON.Member(CertificateManager.trustedSinceAnnotation, .string(Clock.rfc3339(trustedSince)))) }
        metadata = metadata.setting("annotations", .object(annotations))
        return object.setting("metadata", metadata).setting("data", .object(data))
    }
}
