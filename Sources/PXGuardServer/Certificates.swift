import COpenSSL
import PXGuardPlatform
#if canImport(Glibc)
import Glibc
#endif

/// Makes the webhook's certificates in process with libssl: an EC P-256 CA and a
/// serving certificate signed by it, with the SANs the API server checks.
public enum CertificateFactory {
    /// The DNS and IP names the serving certificate carries.
    public static func subjectAltNames(service: String, namespace: String) -> [String] {
        ["DNS:\(service)", "DNS:\(service).\(namespace)", "DNS:\(service).\(namespace).svc",
         "DNS:\(service).\(namespace).svc.cluster.local", "DNS:localhost", "IP:127.0.0.1"]
    }

    /// Writes `ca.crt`, `ca.key`, `tls.crt` and `tls.key` into `directory`. An
    /// existing CA there is reused, so re-running rotates only the serving pair and
    /// the `caBundle` registered with the API server stays valid. Keys are 0600.
    /// The serving certificate is valid from `validFrom` seconds from now (backdated
    /// five minutes by default, for clock skew) for `days` days.
    @discardableResult
    public static func write(to directory: String, service: String, namespace: String,
                             days: Int = 365, caDays: Int = 3650, validFrom: Int = -300) throws -> (caReused: Bool, notAfter: Int?) {
        try FileIO.makeDirectory(directory)
        let caCertPath = directory + "/ca.crt"
        let caKeyPath = directory + "/ca.key"
        var caReused = false
        let caKey: OpaquePointer
        let caCert: OpaquePointer
        if FileIO.exists(caCertPath), FileIO.exists(caKeyPath) {
            caKey = try readKey(caKeyPath)
            caCert = try readCertificate(caCertPath)
            caReused = true
        } else {
            caKey = try newKey()
            caCert = try sign(subjectCN: "pxguard-ca", subjectKey: caKey, issuer: nil, issuerKey: caKey, days: caDays,
                              extensions: [(NID_basic_constraints, "critical,CA:TRUE"),
                                           (NID_key_usage, "critical,keyCertSign,cRLSign,digitalSignature"),
                                           (NID_subject_key_identifier, "hash")])
            try FileIO.writeAtomically(caKeyPath, try pem(key: caKey), mode: 0o600)
            try FileIO.writeAtomically(caCertPath, try pem(certificate: caCert), mode: 0o644)
        }
        defer {
            EVP_PKEY_free(caKey)
            X509_free(caCert)
        }
        let key = try newKey()
        defer { EVP_PKEY_free(key) }
        let names = subjectAltNames(service: service, namespace: namespace).joined(separator: ",")
        let cert = try sign(subjectCN: "\(service).\(namespace).svc", subjectKey: key, issuer: caCert, issuerKey: caKey,
                            days: days, validFrom: validFrom,
                            extensions: [(NID_basic_constraints, "critical,CA:FALSE"),
                                         (NID_key_usage, "critical,digitalSignature,keyEncipherment"),
                                         (NID_ext_key_usage, "serverAuth"),
                                         (NID_subject_alt_name, names),
                                         (NID_subject_key_identifier, "hash"),
                                         (NID_authority_key_identifier, "keyid:always")])
        defer { X509_free(cert) }
        // Key first, then certificate: a watcher that sees the new certificate
        // always finds its key already in place.
        try FileIO.writeAtomically(directory + "/tls.key", try pem(key: key), mode: 0o600)
        try FileIO.writeAtomically(directory + "/tls.crt", try pem(certificate: cert), mode: 0o644)
        return (caReused, certificateNotAfter(cert))
    }

    static func newKey() throws -> OpaquePointer {
        ERR_clear_error()
        guard let key = pxg_EVP_EC_gen_p256() else { throw TLSError("generating a P-256 key") }
        return key
    }

    /// Signs a certificate valid from `validFrom` seconds from now for `days` days, or for
    /// `lifetimeSeconds` from now when given; never past the issuer's own notAfter.
    static func sign(subjectCN: String, subjectKey: OpaquePointer, issuer: OpaquePointer?, issuerKey: OpaquePointer,
                     days: Int, validFrom: Int = -300, lifetimeSeconds: Int? = nil,
                     extensions: [(Int32, String)]) throws -> OpaquePointer {
        guard let cert = X509_new() else { throw TLSError("X509_new") }
        var ok = false
        defer { if !ok { X509_free(cert) } }
        X509_set_version(cert, 2)
        // A random 128-bit serial number.
        guard let serial = BN_new() else { throw TLSError("BN_new") }
        defer { BN_free(serial) }
        BN_rand(serial, 127, -1, 0)
        BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(cert))
        X509_gmtime_adj(X509_getm_notBefore(cert), validFrom)
        X509_gmtime_adj(X509_getm_notAfter(cert), lifetimeSeconds ?? (validFrom + 300 + days * 86_400))
        if let issuer, let cap = X509_get0_notAfter(issuer), ASN1_TIME_compare(X509_get0_notAfter(cert), cap) > 0 {
            // A certificate that outlives its issuer fails verification once the issuer expires.
            X509_set1_notAfter(cert, cap)
        }
        let name = X509_get_subject_name(cert)
        X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, subjectCN, -1, -1, 0)
        X509_set_issuer_name(cert, issuer.map { X509_get_subject_name($0) } ?? name)
        X509_set_pubkey(cert, subjectKey)
        var ctx = X509V3_CTX()
        pxg_X509V3_set_ctx_nodb(&ctx)
        X509V3_set_ctx(&ctx, issuer ?? cert, cert, nil, nil, 0)
        for (nid, value) in extensions {
            guard let ext = X509V3_EXT_conf_nid(nil, &ctx, nid, value) else { throw TLSError("extension \(value)") }
            X509_add_ext(cert, ext, -1)
            X509_EXTENSION_free(ext)
        }
        guard X509_sign(cert, issuerKey, EVP_sha256()) > 0 else { throw TLSError("signing the certificate") }
        ok = true
        return cert
    }

    static func pem(certificate: OpaquePointer) throws -> [UInt8] {
        try withMemoryBIO { PEM_write_bio_X509($0, certificate) }
    }

    static func pem(key: OpaquePointer) throws -> [UInt8] {
        try withMemoryBIO { PEM_write_bio_PrivateKey($0, key, nil, nil, 0, nil, nil) }
    }

    static func withMemoryBIO(_ write: (OpaquePointer) -> Int32) throws -> [UInt8] {
        guard let bio = BIO_new(BIO_s_mem()) else { throw TLSError("BIO_new") }
        defer { BIO_free(bio) }
        guard write(bio) == 1 else { throw TLSError("PEM encoding") }
        var data: UnsafeMutablePointer<CChar>?
        let length = pxg_BIO_get_mem_data(bio, &data)
        guard let data, length > 0 else { return [] }
        return Array(UnsafeRawBufferPointer(start: data, count: length).bindMemory(to: UInt8.self))
    }

    static func readCertificate(_ path: String) throws -> OpaquePointer {
        guard let bio = BIO_new_file(path, "r") else { throw TLSError("opening \(path)") }
        defer { BIO_free(bio) }
        guard let cert = PEM_read_bio_X509(bio, nil, nil, nil) else { throw TLSError("reading certificate \(path)") }
        return cert
    }

    static func readKey(_ path: String) throws -> OpaquePointer {
        guard let bio = BIO_new_file(path, "r") else { throw TLSError("opening \(path)") }
        defer { BIO_free(bio) }
        guard let key = PEM_read_bio_PrivateKey(bio, nil, nil, nil) else { throw TLSError("reading key \(path)") }
        return key
    }
}

/// Where a certificate stands against the current time, by OpenSSL's own comparison
/// of its dates (`X509_cmp_current_time`).
public enum CertificateValidity: Sendable, Equatable {
    case valid
    case notYetValid
    case expired
    /// No certificate, or dates OpenSSL cannot read.
    case unreadable

    /// The validity of `cert` at this moment.
    static func of(_ cert: OpaquePointer) -> CertificateValidity {
        guard let notBefore = X509_get0_notBefore(cert), let notAfter = X509_get0_notAfter(cert) else { return .unreadable }
        // X509_cmp_current_time: -1 when the time is in the past, 1 in the future, 0 on error.
        switch (X509_cmp_current_time(notBefore), X509_cmp_current_time(notAfter)) {
        case (0, _), (_, 0): return .unreadable
        case (1, _): return .notYetValid
        case (_, -1): return .expired
        default: return .valid
        }
    }
}

extension TLSContext {
    /// The serving certificate's validity now: a reload installs only a `.valid` pair,
    /// and readiness follows the installed one.
    public var validity: CertificateValidity {
        guard let cert = SSL_CTX_get0_certificate(ctx) else { return .unreadable }
        return CertificateValidity.of(cert)
    }
}
