import PXGuardBytes

/// What was decided for one rule finding, as recorded in metrics and audit.
public enum Decision: String, Sendable, CaseIterable {
    case allow
    case deny
    case warn
    case audit
    /// Allowed because the requester is exempt (break-glass, own service account,
    /// namespace controller and garbage collector deletes).
    case exempt
    /// Allowed with a patch that removed the violation (`bypassPolicies: {mode: repair}`).
    case repair
}

/// The answer to one AdmissionReview.
public struct Verdict: Sendable, Equatable {
    public var allowed: Bool
    /// Denial message; starts with `pxguard:` and names the rule.
    public var message: String?
    public var warnings: [String] = []
    /// Keys without `/` (the API server prefixes the webhook name).
    var auditAnnotations: [(key: String, value: String)] = []
    /// RFC 6902 patch (JSON text); only mutating answers carry one.
    public var patch: [UInt8]?
    /// The rule that produced a finding, if any.
    public var rule: RuleID?
    public var decision: Decision

    public init(allowed: Bool, message: String? = nil, rule: RuleID? = nil, decision: Decision) {
        self.allowed = allowed
        self.message = message
        self.rule = rule
        self.decision = decision
    }

    public static let allow = Verdict(allowed: true, decision: .allow)

    public static func == (a: Verdict, b: Verdict) -> Bool {
        a.allowed == b.allowed && a.message == b.message && a.warnings == b.warnings
            && a.auditAnnotations.map(\.key) == b.auditAnnotations.map(\.key)
            && a.auditAnnotations.map(\.value) == b.auditAnnotations.map(\.value)
            && a.patch == b.patch && a.rule == b.rule && a.decision == b.decision
    }
}

/// Writes AdmissionReview responses straight into a reusable byte buffer.
public enum ReviewEncoder {
    /// Appends the response for `uid` in `version` to `out`.
    public static func encode(_ verdict: Verdict, uid: String, version: ReviewVersion, into out: inout [UInt8]) {
        out.append(contentsOf: #"{"apiVersion":""#.utf8)
        out.append(contentsOf: version.rawValue.utf8)
        out.append(contentsOf: #"","kind":"AdmissionReview","response":{"uid":"#.utf8)
        JSONWriter.appendString(uid, to: &out)
        out.append(contentsOf: (verdict.allowed ? #","allowed":true"# : #","allowed":false"#).utf8)
        if !verdict.allowed {
            out.append(contentsOf: #","status":{"code":403,"status":"Failure","reason":"Forbidden","message":"#.utf8)
            JSONWriter.appendString(verdict.message ?? "pxguard: denied", to: &out)
            out.append(UInt8(ascii: "}"))
        }
        if !verdict.warnings.isEmpty {
            out.append(contentsOf: #","warnings":["#.utf8)
            for (i, w) in verdict.warnings.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                JSONWriter.appendString(w, to: &out)
            }
            out.append(UInt8(ascii: "]"))
        }
        if !verdict.auditAnnotations.isEmpty {
            out.append(contentsOf: #","auditAnnotations":{"#.utf8)
            for (i, a) in verdict.auditAnnotations.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                JSONWriter.appendString(a.key, to: &out)
                out.append(UInt8(ascii: ":"))
                JSONWriter.appendString(a.value, to: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
        if let patch = verdict.patch {
            out.append(contentsOf: #","patchType":"JSONPatch","patch":""#.utf8)
            Base64.encode(patch, into: &out)
            out.append(UInt8(ascii: "\""))
        }
        out.append(contentsOf: "}}".utf8)
    }
}

/// Standard base64 (RFC 4648 §4) with padding, as Go's `[]byte` JSON decoding expects
/// (public for Secret data and `caBundle`, which the API carries the same way).
public enum Base64 {
    static let alphabet: [UInt8] = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    static func encode(_ bytes: [UInt8], into out: inout [UInt8]) {
        var i = 0
        while i + 3 <= bytes.count {
            let v = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
            out.append(alphabet[Int(v >> 18 & 63)])
            out.append(alphabet[Int(v >> 12 & 63)])
            out.append(alphabet[Int(v >> 6 & 63)])
            out.append(alphabet[Int(v & 63)])
            i += 3
        }
        let rest = bytes.count - i
        if rest > 0 {
            let v = UInt32(bytes[i]) << 16 | (rest == 2 ? UInt32(bytes[i + 1]) << 8 : 0)
            out.append(alphabet[Int(v >> 18 & 63)])
            out.append(alphabet[Int(v >> 12 & 63)])
            out.append(rest == 2 ? alphabet[Int(v >> 6 & 63)] : UInt8(ascii: "="))
            out.append(UInt8(ascii: "="))
        }
    }

    /// `bytes` as padded base64 text.
    public static func encode(_ bytes: [UInt8]) -> String {
        var out: [UInt8] = []
        encode(bytes, into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// Decodes standard base64 with optional padding; nil on any invalid character.
    public static func decode(_ text: String) -> [UInt8]? {
        var out: [UInt8] = []
        var acc: UInt32 = 0
        var bits = 0
        for c in text.utf8 {
            if c == UInt8(ascii: "=") { break }
            if c == 0x0A || c == 0x0D || c == 0x20 { continue }
            guard let v = alphabet.firstIndex(of: c) else { return nil }
            acc = acc << 6 | UInt32(v)
            bits += 6
            if bits >= 8 {
                bits -= 8
                out.append(UInt8(truncatingIfNeeded: acc >> UInt32(bits)))
            }
        }
        return out
    }
}
