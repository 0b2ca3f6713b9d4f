/// The AdmissionReview versions pxguard speaks; answers use the request's version.
public enum ReviewVersion: String, Sendable {
    case v1 = "admission.k8s.io/v1"
    case v1beta1 = "admission.k8s.io/v1beta1"
}

/// Admission operations.
public enum Operation: String, Sendable {
    case create = "CREATE"
    case update = "UPDATE"
    case delete = "DELETE"
    case connect = "CONNECT"
}

/// Why a body is not a usable AdmissionReview (answered with HTTP 400).
public struct AdmissionDecodeError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The fields of `request` the rules use, read without copying the objects:
/// `object` and `oldObject` stay views into the request body.
public struct AdmissionRequest {
    public var version: ReviewVersion
    public var uid: String
    public var group: String
    public var kind: String
    var subResource: String
    public var name: String
    public var namespace: String
    public var operation: Operation
    /// `request.userInfo`. Who asked only matters for a finding (exemptions, the
    /// audit line), so the name and groups are decoded on use, not for every review.
    let userInfo: JSONValue?
    public var username: String { userInfo?["username"]?.string ?? "" }
    var groups: [String] { userInfo?["groups"]?.stringElements ?? [] }
    /// The new object; nil when absent or null (DELETE).
    public var object: JSONValue?
    /// The existing object; nil when absent or null (CREATE).
    public var oldObject: JSONValue?
    public var dryRun: Bool

    /// Decodes the AdmissionReview at `root`.
    public init(review root: JSONValue) throws(AdmissionDecodeError) {
        guard root.kind == .object else { throw AdmissionDecodeError("body is not a JSON object") }
        var apiVersion: JSONValue?
        var kindValue: JSONValue?
        var requestValue: JSONValue?
        root.forEachMember { key, value in
            switch key.bytes.count {
            case 12 where key.stringEquals("apiVersion"): apiVersion = value
            case 6 where key.stringEquals("kind"): kindValue = value
            case 9 where key.stringEquals("request"): requestValue = value
            default: break
            }
        }
        if let kindValue, !kindValue.stringEquals("AdmissionReview") {
            throw AdmissionDecodeError("kind must be AdmissionReview")
        }
        guard let apiVersion else { throw AdmissionDecodeError("apiVersion is missing") }
        if apiVersion.stringEquals("admission.k8s.io/v1") {
            version = .v1
        } else if apiVersion.stringEquals("admission.k8s.io/v1beta1") {
            version = .v1beta1
        } else {
            throw AdmissionDecodeError(
                "unsupported apiVersion \(apiVersion.string.map { "\"\($0)\"" } ?? "(not a string)"); expected admission.k8s.io/v1 or admission.k8s.io/v1beta1")
        }
        guard let request = requestValue, request.kind == .object else {
            throw AdmissionDecodeError("AdmissionReview has no request object")
        }

        var uidValue: JSONValue?, kindGVK: JSONValue?, subResourceValue: JSONValue?
        var nameValue: JSONValue?, namespaceValue: JSONValue?, operationValue: JSONValue?
        var userInfoValue: JSONValue?, objectValue: JSONValue?, oldObjectValue: JSONValue?, dryRunValue: JSONValue?
        request.forEachMember { key, value in
            // Dispatch on length first: most members are skipped after one compare.
            switch key.bytes.count {
            case 5 where key.stringEquals("uid"): uidValue = value
            case 6 where key.stringEquals("kind"): kindGVK = value
            case 6 where key.stringEquals("name"): nameValue = value
            case 8 where key.stringEquals("object"): objectValue = value
            case 8 where key.stringEquals("dryRun"): dryRunValue = value
            case 10 where key.stringEquals("userInfo"): userInfoValue = value
            case 11 where key.stringEquals("namespace"): namespaceValue = value
            case 11 where key.stringEquals("operation"): operationValue = value
            case 11 where key.stringEquals("oldObject"): oldObjectValue = value
            case 13 where key.stringEquals("subResource"): subResourceValue = value
            default:
                if key.bytes.contains(UInt8(ascii: "\\")), let k = key.string {
                    // Escaped member names are legal JSON; decode and dispatch again.
                    switch k {
                    case "uid": uidValue = value
                    case "kind": kindGVK = value
                    case "name": nameValue = value
                    case "object": objectValue = value
                    case "dryRun": dryRunValue = value
                    case "userInfo": userInfoValue = value
                    case "namespace": namespaceValue = value
                    case "operation": operationValue = value
                    case "oldObject": oldObjectValue = value
                    case "subResource": subResourceValue = value
                    default: break
                    }
                }
            }
        }
        guard let uid = uidValue?.string, !uid.isEmpty else {
            throw AdmissionDecodeError("request.uid is missing or not a string")
        }
        self.uid = uid
        guard let op = operationValue?.string.flatMap(Operation.init(rawValue:)) else {
            throw AdmissionDecodeError("request.operation must be one of CREATE, UPDATE, DELETE, CONNECT")
        }
        operation = op
        guard let gvk = kindGVK, gvk.kind == .object, let k = gvk["kind"]?.string else {
            throw AdmissionDecodeError("request.kind must be an object with a kind")
        }
        kind = k
        group = gvk["group"]?.string ?? ""
        subResource = subResourceValue?.string ?? ""
        name = nameValue?.string ?? ""
        namespace = namespaceValue?.string ?? ""
        userInfo = userInfoValue.flatMap { $0.kind == .object ? $0 : nil }
        object = objectValue.flatMap { $0.kind == .object ? $0 : nil }
        oldObject = oldObjectValue.flatMap { $0.kind == .object ? $0 : nil }
        dryRun = dryRunValue?.bool ?? false
        if objectValue.map({ $0.kind != .object && $0.kind != .null }) ?? false {
            throw AdmissionDecodeError("request.object must be an object or null")
        }
        if oldObjectValue.map({ $0.kind != .object && $0.kind != .null }) ?? false {
            throw AdmissionDecodeError("request.oldObject must be an object or null")
        }
    }

    /// Decodes an AdmissionReview from raw bytes and calls `body` with the request.
    /// The request's object views are only valid inside `body`: it runs inside
    /// the parse, while the document's structural tape is alive.
    public static func withDecoded<R>(
        _ bytes: UnsafeRawBufferPointer, _ body: (AdmissionRequest) throws -> R
    ) throws -> R {
        var inBody = false
        do {
            return try JSONDocument.parse(bytes) { root in
                let request = try AdmissionRequest(review: root)
                inBody = true
                return try body(request)
            }
        } catch let error as JSONSyntaxError where !inBody {
            throw AdmissionDecodeError("malformed JSON: \(error.description)")
        }
    }
}
