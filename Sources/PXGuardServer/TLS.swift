import PXGuardPlatform
import COpenSSL
import CLinux
#if canImport(Glibc)
import Glibc
#endif

/// A TLS configuration failure (bad files, bad keys), with OpenSSL's reason.
struct TLSError: Error, CustomStringConvertible, Sendable {
    let description: String
    init(_ what: String) { description = "\(what): \(TLSError.drainQueue())" }

    /// Reads and clears this thread's OpenSSL error queue.
    static func drainQueue() -> String {
        var reasons: [String] = []
        while true {
            let code = ERR_get_error()
            if code == 0 { break }
            var buf = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buf, buf.count)
            reasons.append(String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return reasons.isEmpty ? "unknown error" : reasons.joined(separator: "; ")
    }
}

/// An OpenSSL `SSL_CTX`: configured once, then shared by every connection made
/// from it (OpenSSL reference-counts it, so connections outlive a swap).
public final class TLSContext: @unchecked Sendable {
    let ctx: OpaquePointer
    /// Expiry of the serving certificate (seconds since the epoch), when known.
    public let notAfter: Int?

    private init(ctx: OpaquePointer, notAfter: Int?) {
        self.ctx = ctx
        self.notAfter = notAfter
    }

    deinit { SSL_CTX_free(ctx) }

    /// Cap on a peer's certificate chain in the handshake.
    static let maxCertificateListBytes = 32 * 1024

    static let serverCiphers12 =
        "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
        + "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

    /// A server context: TLS 1.2 minimum, AEAD ciphers only, ALPN `http/1.1`, and
    /// client-certificate verification against `clientCAFile` when given.
    public static func server(certificateFile: String, keyFile: String, clientCAFile: String? = nil) throws -> TLSContext {
        ERR_clear_error()
        guard let ctx = SSL_CTX_new(TLS_server_method()) else { throw TLSError("SSL_CTX_new") }
        var ok = false
        defer { if !ok { SSL_CTX_free(ctx) } }
        _ = pxg_SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)
        _ = SSL_CTX_set_options(ctx, pxg_SSL_OP_NO_RENEGOTIATION | pxg_SSL_OP_NO_COMPRESSION
            | pxg_SSL_OP_CIPHER_SERVER_PREFERENCE | pxg_SSL_OP_IGNORE_UNEXPECTED_EOF)
        _ = pxg_SSL_CTX_set_mode(ctx, pxg_SSL_MODE_ENABLE_PARTIAL_WRITE | pxg_SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER
            | pxg_SSL_MODE_RELEASE_BUFFERS)
        // Read whole records (and what follows) in one read(2) instead of a 5-byte
        // header read and then the body: half the read syscalls per request. The
        // loop asks SSL_has_pending before it waits on epoll, so nothing is stranded.
        pxg_SSL_CTX_set_read_ahead(ctx, 1)
        // A client certificate chain may not make OpenSSL buffer more than this
        // (its default is 100 KiB per connection in the handshake).
        _ = SSL_CTX_ctrl(ctx, SSL_CTRL_SET_MAX_CERT_LIST, TLSContext.maxCertificateListBytes, nil)
        // No server-side session cache: it keeps every session (up to 20,480) after
        // its connection is gone. Stateless tickets still let clients resume.
        _ = pxg_SSL_CTX_set_session_cache_mode(ctx, 0)
        guard SSL_CTX_set_cipher_list(ctx, serverCiphers12) == 1 else { throw TLSError("cipher list") }
        guard SSL_CTX_use_certificate_chain_file(ctx, certificateFile) == 1 else {
            throw TLSError("loading certificate \(certificateFile)")
        }
        guard SSL_CTX_use_PrivateKey_file(ctx, keyFile, SSL_FILETYPE_PEM) == 1 else {
            throw TLSError("loading private key \(keyFile)")
        }
        guard SSL_CTX_check_private_key(ctx) == 1 else {
            throw TLSError("private key \(keyFile) does not match certificate \(certificateFile)")
        }
        if let clientCAFile {
            guard SSL_CTX_load_verify_locations(ctx, clientCAFile, nil) == 1 else {
                throw TLSError("loading client CA \(clientCAFile)")
            }
            SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nil)
        }
        SSL_CTX_set_alpn_select_cb(ctx, { _, out, outLength, inProtocols, inLength, _ in
            // Select http/1.1 when the client offers it, pointing into the client's
            // own list (which outlives the handshake); otherwise proceed without ALPN.
            guard let list = inProtocols else { return SSL_TLSEXT_ERR_NOACK }
            let wanted: [UInt8] = Array("http/1.1".utf8)
            var i = 0
            while i < Int(inLength) {
                let length = Int(list[i])
                if i + 1 + length > Int(inLength) { break }
                if length == wanted.count && (0..<length).allSatisfy({ list[i + 1 + $0] == wanted[$0] }) {
                    out?.pointee = list + i + 1
                    outLength?.pointee = UInt8(length)
                    return SSL_TLSEXT_ERR_OK
                }
                i += 1 + length
            }
            return SSL_TLSEXT_ERR_NOACK
        }, nil)
        let notAfter = SSL_CTX_get0_certificate(ctx).flatMap(certificateNotAfter)
        ok = true
        return TLSContext(ctx: ctx, notAfter: notAfter)
    }

    /// A client context that verifies the server against `caFile` (or the system
    /// roots), optionally presenting a client certificate.
    public static func client(caFile: String?, certificateFile: String? = nil, keyFile: String? = nil) throws -> TLSContext {
        ERR_clear_error()
        guard let ctx = SSL_CTX_new(TLS_client_method()) else { throw TLSError("SSL_CTX_new") }
        var ok = false
        defer { if !ok { SSL_CTX_free(ctx) } }
        _ = pxg_SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)
        _ = pxg_SSL_CTX_set_mode(ctx, pxg_SSL_MODE_ENABLE_PARTIAL_WRITE | pxg_SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER)
        if let caFile {
            guard SSL_CTX_load_verify_locations(ctx, caFile, nil) == 1 else { throw TLSError("loading CA \(caFile)") }
        } else {
            _ = SSL_CTX_set_default_verify_paths(ctx)
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)
        if let certificateFile, let keyFile {
            guard SSL_CTX_use_certificate_chain_file(ctx, certificateFile) == 1,
                SSL_CTX_use_PrivateKey_file(ctx, keyFile, SSL_FILETYPE_PEM) == 1
            else { throw TLSError("loading client certificate \(certificateFile)") }
        }
        let alpn: [UInt8] = [8] + Array("http/1.1".utf8)
        _ = SSL_CTX_set_alpn_protos(ctx, alpn, UInt32(alpn.count))
        ok = true
        return TLSContext(ctx: ctx, notAfter: nil)
    }
}

/// Seconds since the epoch at which `cert` expires.
func certificateNotAfter(_ cert: OpaquePointer) -> Int? {
    guard let time = X509_get0_notAfter(cert) else { return nil }
    var tm = tm()
    guard ASN1_TIME_to_tm(time, &tm) == 1 else { return nil }
    return timegm(&tm)
}

/// What one TLS operation came to, mapped once from `SSL_get_error`.
enum TLSResult {
    case done(Int)
    case wantRead
    case wantWrite
    /// The peer closed the connection (cleanly or not).
    case closed
    case failed(String)
}

/// Owns a server connection's `SSL*` and frees it in `deinit`; the operations are
/// those of the `TLSSession` it wraps.
struct TLSStream: ~Copyable {
    let session: TLSSession

    init(context: TLSContext, fd: Int32) throws { session = try TLSSession(context: context, fd: fd) }

    deinit { session.free() }
}

/// One TLS session over a non-blocking socket.
struct TLSSession {
    let ssl: OpaquePointer

    init(context: TLSContext, fd: Int32, serverName: String? = nil) throws {
        // SSL_get_error needs this thread's error queue empty before each operation. On
        // the event loops it is emptied here, once per session, and when a handshake
        // completes; every failing operation drains it (`result`); so the server's reads
        // and writes do not clear it first (in OpenSSL 3 a thread-local lookup of about
        // 250 instructions, three times a request). The client's calls still clear first
        // (`TLSClientConnection`): their threads also parse certificates.
        ERR_clear_error()
        guard let ssl = SSL_new(context.ctx) else { throw TLSError("SSL_new") }
        self.ssl = ssl
        SSL_set_fd(ssl, fd)
        if let serverName {
            _ = pxg_SSL_set_tlsext_host_name(ssl, serverName)
            // Host name (or IP address) verification of the server's certificate.
            _ = SSL_set1_host(ssl, serverName)
        }
    }

    func free() { SSL_free(ssl) }

    /// What an operation came to. A failure drains the error queue, so that the next
    /// operation on this thread starts with it empty (see `init`).
    private func result(_ r: Int32) -> TLSResult {
        if r > 0 { return .done(Int(r)) }
        let code = SSL_get_error(ssl, r)
        switch code {
        case SSL_ERROR_WANT_READ: return .wantRead
        case SSL_ERROR_WANT_WRITE: return .wantWrite
        case SSL_ERROR_ZERO_RETURN: return .closed
        case SSL_ERROR_SYSCALL:
            let reason = TLSError.drainQueue()
            return reason == "unknown error" ? .closed : .failed(reason)
        default:
            return .failed(TLSError.drainQueue())
        }
    }

    func accept() -> TLSResult {
        let outcome = result(SSL_accept(ssl))
        if case .done = outcome { ERR_clear_error() }
        return outcome
    }

    func connect() -> TLSResult {
        ERR_clear_error()
        return result(SSL_connect(ssl))
    }

    func read(into pointer: UnsafeMutablePointer<UInt8>, count: Int) -> TLSResult {
        return result(SSL_read(ssl, pointer, Int32(min(count, Int(Int32.max)))))
    }

    func write(from pointer: UnsafePointer<UInt8>, count: Int) -> TLSResult {
        return result(SSL_write(ssl, pointer, Int32(min(count, Int(Int32.max)))))
    }

    /// True when OpenSSL holds bytes (decrypted or not) that a read would return
    /// without touching the socket.
    var hasPending: Bool { SSL_has_pending(ssl) == 1 }

    /// OpenSSL's name for where the handshake stands (diagnostics).
    var stateDescription: String { String(cString: SSL_state_string_long(ssl)) }

    /// Sends close_notify without waiting for the peer's.
    func shutdown() {
        ERR_clear_error()
        _ = SSL_shutdown(ssl)
        ERR_clear_error()
    }

    /// The negotiated ALPN protocol, if any.
    var alpn: String? {
        var data: UnsafePointer<UInt8>?
        var length: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &data, &length)
        guard let data, length > 0 else { return nil }
        return String(decoding: UnsafeBufferPointer(start: data, count: Int(length)), as: UTF8.self)
    }

    var protocolVersion: String { String(cString: SSL_get_version(ssl)) }
}
