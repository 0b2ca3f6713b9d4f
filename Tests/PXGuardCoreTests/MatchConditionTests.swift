import Testing
@testable import PXGuardCore

/// A tiny CEL evaluator for exactly the expression forms `InstallBundle` renders
/// into `matchConditions`: `!`, `&&`, `||` (CEL's commutative error absorption:
/// `true || error` is true, `false && error` is false), `==`, `in` over a list
/// literal or a list value, `has(a.b.c)`, `list.exists(x, expr)`, single-quoted
/// string literals with `\\` and `\'` escapes, list literals, parentheses, and
/// field selection on the activation. Anything else is a parse failure, so a new
/// form in the renderer fails these tests until it is understood here.
/// (scripts/check-bundle.py evaluates the same expressions with cel-python.)
struct TinyCEL {
    indirect enum Value: Equatable {
        case bool(Bool), string(String), list([Value]), map([String: Value]), error(String)

        init(_ json: JSON) {
            switch json {
            case .bool(let b): self = .bool(b)
            case .string(let s): self = .string(s)
            case .array(let items): self = .list(items.map(Value.init))
            case .object(let members):
                var m: [String: Value] = [:]
                for member in members { m[member.key] = Value(member.value) }
                self = .map(m)
            case .null, .number: self = .error("unsupported value")
            }
        }
    }

    struct ParseError: Error, CustomStringConvertible { let description: String }

    let tokens: [String]
    var position = 0

    init(_ text: String) throws {
        var out: [String] = []
        let chars = Array(text)
        var i = 0
        while i < chars.count {
            let c = chars[i]
            if c == " " { i += 1; continue }
            if c == "'" {
                var literal = "'"
                i += 1
                while i < chars.count && chars[i] != "'" {
                    if chars[i] == "\\" && i + 1 < chars.count { i += 1 }
                    literal.append(chars[i]); i += 1
                }
                guard i < chars.count else { throw ParseError(description: "unterminated string") }
                out.append(literal); i += 1
                continue
            }
            if c.isLetter || c == "_" {
                var word = ""
                while i < chars.count && (chars[i].isLetter || chars[i].isNumber || chars[i] == "_") { word.append(chars[i]); i += 1 }
                out.append(word)
                continue
            }
            let two = i + 1 < chars.count ? String(chars[i...i + 1]) : ""
            if ["&&", "||", "=="].contains(two) { out.append(two); i += 2; continue }
            guard "!().,[]".contains(c) else { throw ParseError(description: "unexpected character \(c)") }
            out.append(String(c)); i += 1
        }
        tokens = out
    }

    static func evaluate(_ expression: String, _ activation: [String: JSON]) throws -> Value {
        var parser = try TinyCEL(expression)
        var scope: [String: Value] = [:]
        for (k, v) in activation { scope[k] = Value(v) }
        let result = try parser.or(scope)
        guard parser.position == parser.tokens.count else { throw ParseError(description: "trailing tokens in \(expression)") }
        return result
    }

    var peek: String? { position < tokens.count ? tokens[position] : nil }
    mutating func take(_ t: String) throws {
        guard peek == t else { throw ParseError(description: "expected \(t), got \(peek ?? "end")") }
        position += 1
    }

    mutating func or(_ scope: [String: Value]) throws -> Value {
        var left = try and(scope)
        while peek == "||" {
            position += 1
            let right = try and(scope)
            switch (left, right) {
            case (.bool(true), _), (_, .bool(true)): left = .bool(true)
            case (.bool(false), .bool(false)): left = .bool(false)
            case (.error, _): break
            default: left = right.isError ? right : .error("|| on a non-bool")
            }
        }
        return left
    }

    mutating func and(_ scope: [String: Value]) throws -> Value {
        var left = try unary(scope)
        while peek == "&&" {
            position += 1
            let right = try unary(scope)
            switch (left, right) {
            case (.bool(false), _), (_, .bool(false)): left = .bool(false)
            case (.bool(true), .bool(true)): left = .bool(true)
            case (.error, _): break
            default: left = right.isError ? right : .error("&& on a non-bool")
            }
        }
        return left
    }

    mutating func unary(_ scope: [String: Value]) throws -> Value {
        if peek == "!" {
            position += 1
            switch try unary(scope) {
            case .bool(let b): return .bool(!b)
            case .error(let e): return .error(e)
            default: return .error("! on a non-bool")
            }
        }
        return try relation(scope)
    }

    mutating func relation(_ scope: [String: Value]) throws -> Value {
        let left = try primary(scope)
        switch peek {
        case "==":
            position += 1
            let right = try primary(scope)
            if case .error = left { return left }
            if case .error = right { return right }
            return .bool(left == right)
        case "in":
            position += 1
            let right = try primary(scope)
            if case .error = left { return left }
            guard case .list(let items) = right else { return right.isError ? right : .error("in on a non-list") }
            return .bool(items.contains(left))
        default:
            return left
        }
    }

    mutating func primary(_ scope: [String: Value]) throws -> Value {
        guard let t = peek else { throw ParseError(description: "unexpected end") }
        position += 1
        if t == "(" {
            let v = try or(scope)
            try take(")")
            return v
        }
        if t.hasPrefix("'") { return .string(String(t.dropFirst())) }
        if t == "[" {
            var items: [Value] = []
            while peek != "]" {
                items.append(try primary(scope))
                if peek == "," { position += 1 }
            }
            try take("]")
            return .list(items)
        }
        if t == "has" {
            try take("(")
            var path = [try word()]
            while peek == "." { position += 1; path.append(try word()) }
            try take(")")
            guard path.count >= 2 else { throw ParseError(description: "has() needs a field selection") }
            // has(a.b.c): a.b must evaluate; only the last field's presence is tested.
            switch Self.select(scope, Array(path.dropLast())) {
            case .map(let m): return .bool(m[path.last!] != nil)
            case .error(let e): return .error(e)
            default: return .error("has() on a non-map")
            }
        }
        guard t.first?.isLetter == true else { throw ParseError(description: "unexpected token \(t)") }
        var path = [t]
        while peek == "." {
            position += 1
            let field = try word()
            if field == "exists" {
                try take("(")
                let variable = try word()
                try take(",")
                let start = position
                guard case .list(let items) = Self.select(scope, path) else {
                    // Skip the body to keep parsing, then report the error.
                    _ = try or(scope)
                    try take(")")
                    return .error("exists on a non-list")
                }
                var result: Value = .bool(false)
                var end = start
                if items.isEmpty { _ = try or(scope); end = position }
                for item in items {
                    position = start
                    var inner = scope
                    inner[variable] = item
                    let v = try or(inner)
                    end = position
                    if case .bool(true) = v { result = .bool(true) } else if case .error = v, result != .bool(true) { result = v }
                }
                position = end
                try take(")")
                return result
            }
            path.append(field)
        }
        return Self.select(scope, path)
    }

    mutating func word() throws -> String {
        guard let t = peek, t.first?.isLetter == true else { throw ParseError(description: "expected a name") }
        position += 1
        return t
    }

    static func select(_ scope: [String: Value], _ path: [String]) -> Value {
        guard var value = scope[path[0]] else { return .error("undeclared \(path[0])") }
        for field in path.dropFirst() {
            guard case .map(let m) = value, let next = m[field] else { return .error("no such key: \(field)") }
            value = next
        }
        return value
    }
}

extension TinyCEL.Value {
    var isError: Bool { if case .error = self { return true } else { return false } }
}

@Suite("matchConditions evaluated: M1 without a namespaceSelector, the identities left to the API server")
struct MatchConditionTests {
    static let bundle = InstallBundle(config: .default, caBundlePEM: nil)

    static func webhook(_ name: String, _ config: Config = .default) -> JSON? {
        InstallBundle(config: config, caBundlePEM: nil).webhooks
            .flatMap { $0["webhooks"]?.arrayValue ?? [] }.first { $0["name"]?.stringValue == name }
    }

    /// Every condition of `hook` for a request: nil when one errors (the API server
    /// then skips the webhook under `failurePolicy: Ignore`).
    static func sent(_ hook: JSON, object: JSON, user: String = "alice", groups: [String] = ["system:authenticated"],
                     operation: String = "CREATE") throws -> Bool? {
        let activation: [String: JSON] = [
            "object": object,
            "request": .obj(["operation": .string(operation),
                             "userInfo": .obj(["username": .string(user), "groups": .array(groups.map { .string($0) })])]),
        ]
        var all = true
        for condition in hook["matchConditions"]?.arrayValue ?? [] {
            let expression = try #require(condition["expression"]?.stringValue)
            switch try TinyCEL.evaluate(expression, activation) {
            case .bool(let b): all = all && b
            case .error: return nil
            default: Issue.record("\(expression) is not a bool"); return nil
            }
        }
        return all
    }

    struct NamespaceCase: CustomTestStringConvertible, Sendable {
        let label: String
        let metadata: JSON
        let mutated: Bool
        var testDescription: String { label }
    }

    static let namespaceCases: [NamespaceCase] = [
        NamespaceCase(label: "a named guarded namespace", metadata: .obj(["name": "team-a"]), mutated: true),
        // Issue 23 finding 1: the requester writes the name label; no name yet.
        NamespaceCase(label: "generateName with a spoofed kubernetes.io/metadata.name: kube-system", metadata: .obj([
            "generateName": "team-",
            "labels": .obj(["kubernetes.io/metadata.name": "kube-system", "pxguard.io/guarded": "false",
                            "pod-security.kubernetes.io/enforce": "privileged"]),
            "creationTimestamp": .null,
        ]), mutated: true),
        NamespaceCase(label: "generateName only", metadata: .obj(["generateName": "kube-system"]), mutated: true),
        NamespaceCase(label: "an empty name with generateName", metadata: .obj(["name": "", "generateName": "x-"]), mutated: true),
        NamespaceCase(label: "the exempt name portworx", metadata: .obj(["name": "portworx"]), mutated: false),
        NamespaceCase(label: "the exempt name kube-system", metadata: .obj(["name": "kube-system"]), mutated: false),
        NamespaceCase(label: "pxguard's own namespace", metadata: .obj(["name": "pxguard-system"]), mutated: false),
        NamespaceCase(label: "an exempt-looking label on a guarded name",
                      metadata: .obj(["name": "team-b", "labels": .obj(["kubernetes.io/metadata.name": "portworx"])]),
                      mutated: true),
    ]

    @Test("M1's condition never errors: named, nameless (generateName) and exempt-named namespaces", arguments: namespaceCases)
    func namespaceCondition(_ c: NamespaceCase) throws {
        let hook = try #require(Self.webhook("namespaces.mutate.pxguard.io"))
        #expect(hook["namespaceSelector"] == nil)
        let object: JSON = .obj(["apiVersion": "v1", "kind": "Namespace", "metadata": c.metadata])
        let sent = try Self.sent(hook, object: object)
        #expect(sent == c.mutated, "\(c.label): \(sent.map(String.init) ?? "error (webhook skipped)")")
    }

    @Test("the identities' conditions: exempt users and groups, cleanup DELETEs only, endpoint controllers on R8 only")
    func identities() throws {
        var config = Config.default
        config.exemptUsers = ["break-glass", "o'brien"]
        config.exemptGroups = ["platform-admins"]
        let pod: JSON = .obj(["metadata": .obj(["name": "p"])])
        let workloads = try #require(Self.webhook("workloads.pxguard.io", config))
        #expect(try Self.sent(workloads, object: pod) == true)
        #expect(try Self.sent(workloads, object: pod, user: "o'brien") == false)
        #expect(try Self.sent(workloads, object: pod, groups: ["platform-admins"]) == false)
        #expect(try Self.sent(workloads, object: pod, groups: []) == true)
        for who in AdmissionPolicy.cleanupIdentities {
            #expect(try Self.sent(workloads, object: pod, user: who, operation: "DELETE") == false, "\(who)")
            #expect(try Self.sent(workloads, object: pod, user: who, operation: "CREATE") == true, "\(who)")
        }
        let endpoints = try #require(Self.webhook("endpoints.pxguard.io", config))
        for who in AdmissionPolicy.endpointControllers {
            #expect(try Self.sent(endpoints, object: pod, user: who, operation: "UPDATE") == false, "\(who)")
            #expect(try Self.sent(workloads, object: pod, user: who, operation: "CREATE") == true, "\(who) on pods")
        }
        #expect(try Self.sent(endpoints, object: pod, operation: "UPDATE") == true)
    }

    @Test("a webhook matching Namespace CREATE selects on kubernetes.io/metadata.name only if it is validating")
    func noMutatingNameSelector() {
        var config = Config.default
        config.ruleModes[.bypassPolicies] = .repair
        let create = APIServerRequest(operation: "CREATE", resource: "namespaces", namespace: "x", clusterScoped: true)
        var checked = 0
        for registration in InstallBundle(config: config, caBundlePEM: nil).webhooks {
            let validating = registration["kind"]?.stringValue == "ValidatingWebhookConfiguration"
            for hook in registration["webhooks"]?.arrayValue ?? [] where (hook["rules"]?.arrayValue ?? []).contains(where: create.matches) {
                checked += 1
                let selectsOnName = hook["namespaceSelector"]?.serialized.contains("kubernetes.io/metadata.name") ?? false
                #expect(!selectsOnName || validating, "\(hook["name"]?.stringValue ?? "?") is mutating and selects on the name label")
            }
        }
        #expect(checked == 3)
    }
}
