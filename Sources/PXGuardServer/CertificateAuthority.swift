import COpenSSL
#if canImport(Glibc)
import Glibc
#endif

/// A PEM certificate and the PEM private key that goes with it.
public struct PEMPair: Sendable, Equatable {
    /// The certificate, PEM.
    public var certificate: [UInt8]
    /// Its private key, PEM (PKCS #8).
    public var key: [UInt8]

    /// A pair from its two PEM texts.
    public init(certificate: [UInt8], key: [UInt8]) {
        self.certificate = certificate
        self.key = key
    }
}

/// The in-memory certificate authority behind self-managed certificates: mints a CA
/// and serving pairs as PEM (nothing touches disk), and answers every question about
/// time with OpenSSL's own comparison of the certificate's dates (`X509_cmp_time`),
/// so that the renewal decision and the TLS stack never disagree about a date.
public enum CertificateAuthority {
    /// A new self-signed EC P-256 CA valid for `lifetimeSeconds` (backdated five minutes
    /// for clock skew).
    public static func newCA(lifetimeSeconds: Int, commonName: String = "pxguard-ca") throws -> PEMPair {
        let key = try CertificateFactory.newKey()
        defer { EVP_PKEY_free(key) }
        let cert = try CertificateFactory.sign(
            subjectCN: commonName, subjectKey: key, issuer: nil, issuerKey: key, days: 0, lifetimeSeconds: lifetimeSeconds,
            extensions: [(NID_basic_constraints, "critical,CA:TRUE"),
                         (NID_key_usage, "critical,keyCertSign,cRLSign,digitalSignature"),
                         (NID_subject_key_identifier, "hash")])
        defer { X509_free(cert) }
        return PEMPair(certificate: try CertificateFactory.pem(certificate: cert), key: try CertificateFactory.pem(key: key))
    }

    /// A serving pair for the Service's names signed by `ca`, valid for `lifetimeSeconds`
    /// but never past the CA's own expiry.
    public static func issueServing(by ca: PEMPair, service: String, namespace: String, lifetimeSeconds: Int) throws -> PEMPair {
        let caCert = try certificate(ca.certificate)
        defer { X509_free(caCert) }
        let caKey = try privateKey(ca.key)
        defer { EVP_PKEY_free(caKey) }
        guard X509_check_private_key(caCert, caKey) == 1 else { throw TLSError("the CA key does not match the CA certificate") }
        let key = try CertificateFactory.newKey()
        defer { EVP_PKEY_free(key) }
        let names = CertificateFactory.subjectAltNames(service: service, namespace: namespace).joined(separator: ",")
        let cert = try CertificateFactory.sign(
            subjectCN: "\(service).\(namespace).svc", subjectKey: key, issuer: caCert, issuerKey: caKey, days: 0,
            lifetimeSeconds: lifetimeSeconds,
            extensions: [(NID_basic_constraints, "critical,CA:FALSE"),
                         (NID_key_usage, "critical,digitalSignature,keyEncipherment"),
                         (NID_ext_key_usage, "serverAuth"),
                         (NID_subject_alt_name, names),
                         (NID_subject_key_identifier, "hash"),
                         (NID_authority_key_identifier, "keyid:always")])
        defer { X509_free(cert) }
        return PEMPair(certificate: try CertificateFactory.pem(certificate: cert), key: try CertificateFactory.pem(key: key))
    }

    /// The PEM blocks of a bundle, one certificate each, in order.
    public static func certificates(inBundle pem: [UInt8]) -> [[UInt8]] {
        let begin = Array("-----BEGIN CERTIFICATE-----".utf8)
        let end = Array("-----END CERTIFICATE-----".utf8)
        var out: [[UInt8]] = []
        var i = 0
        while let start = find(begin, in: pem, from: i), let stop = find(end, in: pem, from: start) {
            out.append(Array(pem[start..<(stop + end.count)]) + [0x0A])
            i = stop + end.count
        }
        return out
    }

    static func find(_ needle: [UInt8], in haystack: [UInt8], from: Int) -> Int? {
        guard haystack.count >= needle.count, from <= haystack.count - needle.count else { return nil }
        for i in from...(haystack.count - needle.count) where haystack[i] == needle[0] && Array(haystack[i..<(i + needle.count)]) == needle {
            return i
        }
        return nil
    }

    /// True when the certificate's notAfter falls within `seconds` from now (or has
    /// passed), by `X509_cmp_time`; an unreadable certificate counts as expiring.
    public static func expires(_ certificatePEM: [UInt8], within seconds: Int) -> Bool {
        guard let cert = try? certificate(certificatePEM) else { return true }
        defer { X509_free(cert) }
        guard let notAfter = X509_get0_notAfter(cert) else { return true }
        var moment = time(nil) + seconds
        // -1: notAfter is earlier than the moment; 0: OpenSSL could not compare.
        return X509_cmp_time(notAfter, &moment) <= 0
    }

    /// True when the certificate's notAfter has passed (`X509_cmp_current_time`).
    public static func isExpired(_ certificatePEM: [UInt8]) -> Bool { expires(certificatePEM, within: 0) }

    /// The certificate's validity now, as a reload judges it.
    public static func validity(_ certificatePEM: [UInt8]) -> CertificateValidity {
        guard let cert = try? certificate(certificatePEM) else { return .unreadable }
        defer { X509_free(cert) }
        return CertificateValidity.of(cert)
    }

    /// Seconds since the epoch at which the certificate expires.
    public static func notAfter(_ certificatePEM: [UInt8]) -> Int? {
        guard let cert = try? certificate(certificatePEM) else { return nil }
        defer { X509_free(cert) }
        return certificateNotAfter(cert)
    }

    /// True when `key` is the private key of `certificatePEM`.
    public static func keyMatches(certificate certificatePEM: [UInt8], key keyPEM: [UInt8]) -> Bool {
        guard let cert = try? certificate(certificatePEM) else { return false }
        defer { X509_free(cert) }
        guard let key = try? privateKey(keyPEM) else { return false }
        defer { EVP_PKEY_free(key) }
        // A mismatch leaves an error on this thread's queue; a TLS call made later on the
        // same thread would read it as its own (see `TLSSession`).
        ERR_clear_error()
        defer { ERR_clear_error() }
        return X509_check_private_key(cert, key) == 1
    }

    /// True when `leafPEM`'s signature verifies with `caPEM`'s public key.
    public static func isSigned(_ leafPEM: [UInt8], by caPEM: [UInt8]) -> Bool {
        guard let leaf = try? certificate(leafPEM) else { return false }
        defer { X509_free(leaf) }
        guard let ca = try? certificate(caPEM) else { return false }
        defer { X509_free(ca) }
        guard let key = X509_get0_pubkey(ca) else { return false }
        ERR_clear_error()
        defer { ERR_clear_error() }
        return X509_verify(leaf, key) == 1
    }

    static func certificate(_ pem: [UInt8]) throws -> OpaquePointer {
        try pem.withUnsafeBytes { raw -> OpaquePointer in
            guard let bio = BIO_new_mem_buf(raw.baseAddress, Int32(raw.count)) else { throw TLSError("BIO_new_mem_buf") }
            defer { BIO_free(bio) }
            guard let cert = PEM_read_bio_X509(bio, nil, nil, nil) else { throw TLSError("reading a PEM certificate") }
            return cert
        }
    }

    static func privateKey(_ pem: [UInt8]) throws -> OpaquePointer {
        try pem.withUnsafeBytes { raw -> OpaquePointer in
            guard let bio = BIO_new_mem_buf(raw.baseAddress, Int32(raw.count)) else { throw TLSError("BIO_new_mem_buf") }
            defer { BIO_free(bio) }
            guard let key = PEM_read_bio_PrivateKey(bio, nil, nil, nil) else { throw TLSError("reading a PEM private key") }
            return key
        }
    }
}
