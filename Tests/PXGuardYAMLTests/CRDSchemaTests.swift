import Foundation
import Testing
@testable import PXGuardCore
@testable import PXGuardYAML

/// A structural OpenAPI v3 schema check, as the API server applies a CRD's
/// `openAPIV3Schema` to what it stores: types (with `x-kubernetes-int-or-string`),
/// `properties` (a field the schema does not name is pruned, and counts as an error
/// here: it would silently vanish), `additionalProperties`, `required`, `enum`,
/// numeric, length, item and property bounds, `pattern`, and `oneOf`/`anyOf`/`allOf`
/// as value validations. CEL rules (`x-kubernetes-validations`) are not evaluated.
struct StructuralSchema {
    let root: JSON

    /// `value` as the API server stores it: each absent property that has a `default`
    /// in the schema filled in (structural defaulting), recursively.
    func defaulted(_ value: JSON) -> JSON { Self.defaulted(value, root) }

    static func defaulted(_ value: JSON, _ schema: JSON) -> JSON {
        switch value {
        case .object(var members):
            if let properties = schema["properties"]?.members {
                for property in properties {
                    if let i = members.firstIndex(where: { $0.key == property.key }) {
                        members[i].value = defaulted(members[i].value, property.value)
                    } else if let fallback = property.value["default"] {
                        members.append(JSON.Member(property.key, defaulted(fallback, property.value)))
                    }
                }
            }
            if let additional = schema["additionalProperties"], case .object = additional {
                let known = Set(schema["properties"]?.members?.map(\.key) ?? [])
                for i in members.indices where !known.contains(members[i].key) { members[i].value = defaulted(members[i].value, additional) }
            }
            return .object(members)
        case .array(let items):
            guard let itemSchema = schema["items"] else { return value }
            return .array(items.map { defaulted($0, itemSchema) })
        default:
            return value
        }
    }

    /// Every violation, as `path: what`.
    func errors(_ value: JSON) -> [String] {
        var out: [String] = []
        check(value, root, "", pruning: true, &out)
        return out
    }

    func check(_ value: JSON, _ schema: JSON, _ path: String, pruning: Bool, _ out: inout [String]) {
        if schema["x-kubernetes-int-or-string"] == .bool(true) {
            switch value {
            case .string: break
            case .number where value.intValue != nil: break
            default: out.append("\(path): expected an integer or a string")
            }
        } else if let type = schema["type"]?.stringValue {
            let ok: Bool
            switch (type, value) {
            case ("object", .object), ("array", .array), ("string", .string), ("boolean", .bool): ok = true
            case ("integer", .number): ok = value.intValue != nil
            case ("number", .number): ok = true
            default: ok = false
            }
            if !ok {
                out.append("\(path): expected \(type), got \(value.serialized.prefix(40))")
                return
            }
        }
        if let choices = schema["enum"]?.arrayValue, !choices.contains(where: { ClusterGuardPolicies.canonicalForm($0) == ClusterGuardPolicies.canonicalForm(value) }) {
            out.append("\(path): \(value.serialized) is not one of \(JSON.array(choices).serialized)")
        }
        if case .number(let text) = value, let number = Double(text) {
            if let min = schema["minimum"].flatMap({ Double($0.serialized) }), number < min { out.append("\(path): \(text) < minimum \(min)") }
            if let max = schema["maximum"].flatMap({ Double($0.serialized) }), number > max { out.append("\(path): \(text) > maximum \(max)") }
        }
        if case .string(let text) = value {
            if let min = schema["minLength"]?.intValue, text.count < min { out.append("\(path): shorter than \(min)") }
            if let max = schema["maxLength"]?.intValue, text.count > max { out.append("\(path): longer than \(max)") }
            if let pattern = schema["pattern"]?.stringValue {
                do {
                    let regex = try Regex(pattern)
                    if (try? regex.firstMatch(in: text)) == nil { out.append("\(path): \"\(text)\" does not match \(pattern)") }
                } catch {
                    out.append("\(path): pattern \(pattern) cannot be compiled: \(error)")
                }
            }
        }
        if case .array(let items) = value {
            if let min = schema["minItems"]?.intValue, items.count < min { out.append("\(path): fewer than \(min) items") }
            if let max = schema["maxItems"]?.intValue, items.count > max { out.append("\(path): more than \(max) items") }
            if let itemSchema = schema["items"] {
                for (i, item) in items.enumerated() { check(item, itemSchema, "\(path)[\(i)]", pruning: pruning, &out) }
            }
        }
        if case .object(let members) = value {
            if let min = schema["minProperties"]?.intValue, members.count < min { out.append("\(path): fewer than \(min) properties") }
            if let max = schema["maxProperties"]?.intValue, members.count > max { out.append("\(path): more than \(max) properties") }
            for key in schema["required"]?.arrayValue?.compactMap(\.stringValue) ?? [] where value[key] == nil || value[key] == .null {
                out.append("\(path): required field \(key) is missing")
            }
            let properties = schema["properties"]
            let additional = schema["additionalProperties"]
            let preserve = schema["x-kubernetes-preserve-unknown-fields"] == .bool(true)
            for member in members {
                let child = "\(path).\(member.key)"
                if let sub = properties?[member.key] {
                    check(member.value, sub, child, pruning: pruning, &out)
                } else if let additional, case .object = additional {
                    check(member.value, additional, child, pruning: pruning, &out)
                } else if additional == .bool(true) || preserve {
                    continue
                } else if pruning && properties != nil {
                    out.append("\(child): unknown field (the API server would prune it)")
                }
                // An object schema without properties is `metadata` (ObjectMeta, checked below).
            }
        }
        // Value validations: their properties narrow, they never name new fields.
        for sub in schema["allOf"]?.arrayValue ?? [] { check(value, sub, path, pruning: false, &out) }
        if let anyOf = schema["anyOf"]?.arrayValue, !anyOf.isEmpty {
            if !anyOf.contains(where: { sub in var e: [String] = []; check(value, sub, path, pruning: false, &e); return e.isEmpty }) {
                out.append("\(path): matches none of anyOf")
            }
        }
        if let oneOf = schema["oneOf"]?.arrayValue, !oneOf.isEmpty {
            let passing = oneOf.filter { sub in var e: [String] = []; check(value, sub, path, pruning: false, &e); return e.isEmpty }.count
            if passing != 1 { out.append("\(path): matches \(passing) of oneOf, expected exactly 1") }
        }
    }
}

/// One fixture CRD, read from the YAML its project publishes.
struct CRDFixture {
    let group: String
    let kind: String
    let scope: String
    let version: String
    let schema: StructuralSchema

    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("CRDs")

    init(_ file: String) throws {
        let bytes = Array(try Data(contentsOf: Self.directory.appendingPathComponent(file)))
        let document = try #require(try YAMLReader.documents(bytes, file: file).first { $0.json != .null }).json
        group = try #require(document["spec"]?["group"]?.stringValue)
        kind = try #require(document["spec"]?["names"]?["kind"]?.stringValue)
        scope = try #require(document["spec"]?["scope"]?.stringValue)
        let served = try #require(document["spec"]?["versions"]?.arrayValue?.first { $0["served"] == .bool(true) && $0["storage"] == .bool(true) })
        version = try #require(served["name"]?.stringValue)
        schema = StructuralSchema(root: try #require(served["schema"]?["openAPIV3Schema"]))
    }

    /// Why the API server would refuse or alter `object`; empty when it stores it as is.
    func problems(_ object: JSON) -> [String] {
        var out = schema.errors(object)
        if object["apiVersion"]?.stringValue != "\(group)/\(version)" { out.append("apiVersion is not \(group)/\(version)") }
        if object["kind"]?.stringValue != kind { out.append("kind is not \(kind)") }
        if scope == "Cluster" && object["metadata"]?["namespace"] != nil { out.append("a cluster-scoped object carries a namespace") }
        let name = object["metadata"]?["name"]?.stringValue ?? ""
        let subdomain = !name.isEmpty && name.count <= 253 && name.allSatisfy { $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-" || $0 == ".") }
        if !subdomain { out.append("metadata.name \(name) is not a DNS subdomain") }
        return out
    }
}

@Suite("Cluster-scoped guard objects against the projects' real CRDs")
struct CRDSchemaTests {
    static let files: [String: String] = [
        "AdminNetworkPolicy": "policy.networking.k8s.io_adminnetworkpolicies.yaml",
        "GlobalNetworkPolicy": "projectcalico.org_globalnetworkpolicies.yaml",
        "Tier": "projectcalico.org_tiers.yaml",
        "CiliumClusterwideNetworkPolicy": "cilium.io_ciliumclusterwidenetworkpolicies.yaml",
    ]

    nonisolated(unsafe) static var cache: [String: CRDFixture] = [:]
    static let lock = NSLock()

    static func crd(for kind: String) throws -> CRDFixture {
        lock.lock()
        defer { lock.unlock() }
        if let known = cache[kind] { return known }
        let fixture = try CRDFixture(try #require(files[kind], "no CRD fixture for \(kind)"))
        cache[kind] = fixture
        return fixture
    }

    /// Configurations that stress the renderers: several protocols, single ports and
    /// ranges, IPv6 node subnets, no exempt namespaces, many ranges (rule chunking).
    static let configs: [(String, Config)] = {
        var many = Config.default
        many.protectedPorts = (0..<130).map { PortRange(proto: $0 % 2 == 0 ? .tcp : .udp, lower: 20_000 + $0 * 3, upper: 20_000 + $0 * 3 + ($0 % 3 == 0 ? 0 : 1))! }
        many.nodeCIDRs = [CIDR("10.0.0.0/16")!, CIDR("fd00::/64")!]
        var mixed = Config.default
        mixed.protectedPorts = [PortRange("9001-9022")!, PortRange("UDP/9002")!, PortRange("SCTP/9001-9005")!]
        mixed.exemptNamespaces = []
        mixed.guardPriority = 1000
        return [("default", Config.default), ("many ranges, dual stack", many), ("three protocols, no exempt namespaces", mixed)]
    }()

    static let cases: [(String, GuardBackend)] = GuardBackend.discoveryOrder.flatMap { backend in
        configs.map { ($0.0, backend) }
    }

    @Test("every rendered object is stored as rendered by its CRD", arguments: cases.map { "\($0.1.rawValue): \($0.0)" })
    func renderedObjectsValidate(_ label: String) throws {
        let backendName = String(label.split(separator: ":")[0])
        let configName = String(label.split(separator: ":", maxSplits: 1)[1].dropFirst())
        let backend = try #require(GuardBackend(rawValue: backendName))
        let config = try #require(Self.configs.first { $0.0 == configName }?.1)
        let objects = ClusterGuardPolicies(config: config, backend: backend).objects
        #expect(!objects.isEmpty)
        for object in objects {
            let kind = try #require(object["kind"]?.stringValue)
            let problems = try Self.crd(for: kind).problems(object)
            #expect(problems.isEmpty, "\(kind) \(object["metadata"]?["name"]?.stringValue ?? ""): \(problems)")
        }
    }

    /// A wrong field, a wrong value or a wrong bound in each kind: the validator must
    /// see each one, or a passing test above proves nothing.
    static let breakages: [(String, GuardBackend, @Sendable (JSON) -> JSON)] = [
        ("ANP: a misspelt rule field", .adminnetworkpolicy, { edit($0, ["spec", "egress"]) { rename(first($0), "action", "acton") } }),
        ("ANP: action Block", .adminnetworkpolicy, { edit($0, ["spec", "egress"]) { setFirst($0, "action", "Block") } }),
        ("ANP: priority 1001", .adminnetworkpolicy, { edit($0, ["spec", "priority"]) { _ in 1001 } }),
        ("ANP: two subjects", .adminnetworkpolicy, { edit($0, ["spec", "subject"]) { $0.setting("pods", .object([])) } }),
        ("ANP: a peer that is no peer", .adminnetworkpolicy, { edit($0, ["spec", "egress"]) { setFirst($0, "to", [.obj(["hosts": .object([])])]) } }),
        ("Calico: types Out", .calico, { edit($0, ["spec", "types"]) { _ in ["Out"] } }),
        ("Calico: action Reject", .calico, { edit($0, ["spec", "egress"]) { setFirst($0, "action", "Reject") } }),
        ("Calico: order as a string", .calico, { edit($0, ["spec", "order"]) { _ in "10" } }),
        ("Calico: an unknown spec field", .calico, { edit($0, ["spec"]) { $0.setting("priority", 10) } }),
        ("Cilium: entity nodes", .cilium, { edit($0, ["spec", "egressDeny"]) { setFirst($0, "toEntities", ["nodes"]) } }),
        ("Cilium: protocol tcp in lower case", .cilium, { edit($0, ["spec", "egressDeny"]) { setFirst($0, "toPorts", [.obj(["ports": [.obj(["port": "9001", "protocol": "tcp"])]])]) } }),
        ("Cilium: no endpointSelector", .cilium, { edit($0, ["spec"]) { without($0, "endpointSelector") } }),
        ("Cilium: enableDefaultDeny as a bool", .cilium, { edit($0, ["spec", "enableDefaultDeny"]) { _ in false } }),
    ]

    static func without(_ object: JSON, _ key: String) -> JSON {
        guard case .object(let members) = object else { return object }
        return .object(members.filter { $0.key != key })
    }
    static func first(_ list: JSON) -> JSON { list.arrayValue?.first ?? .null }
    static func rename(_ object: JSON, _ from: String, _ to: String) -> JSON {
        guard case .object(let members) = object else { return object }
        return .array([.object(members.map { $0.key == from ? JSON.Member(to, $0.value) : $0 })])
    }
    static func setFirst(_ list: JSON, _ key: String, _ value: JSON) -> JSON {
        guard var items = list.arrayValue, !items.isEmpty else { return list }
        items[0] = items[0].setting(key, value)
        return .array(items)
    }
    static func edit(_ value: JSON, _ path: ArraySlice<String>, _ change: (JSON) -> JSON) -> JSON {
        guard let key = path.first else { return change(value) }
        return value.setting(key, edit(value[key] ?? .null, path.dropFirst(), change))
    }

    @Test("the validator refuses a broken object of each kind", arguments: breakages.map(\.0))
    func brokenObjectsFail(_ label: String) throws {
        let (_, backend, breakIt) = try #require(Self.breakages.first { $0.0 == label })
        let object = try #require(ClusterGuardPolicies(config: .default, backend: backend).objects.last)
        let kind = try #require(object["kind"]?.stringValue)
        let crd = try Self.crd(for: kind)
        #expect(crd.problems(object).isEmpty)
        #expect(!crd.problems(breakIt(object)).isEmpty, "\(label) was accepted")
    }

    /// A default the API server fills in would make the stored spec differ from the
    /// canonical one: the keeper would rewrite it forever and R3 would refuse every
    /// update. Every defaulted field must already be rendered.
    @Test("the API server's CRD defaulting changes nothing in the rendered specs", arguments: cases.map { "\($0.1.rawValue): \($0.0)" })
    func defaultingIsANoOp(_ label: String) throws {
        let backend = try #require(GuardBackend(rawValue: String(label.split(separator: ":")[0])))
        let configName = String(label.split(separator: ":", maxSplits: 1)[1].dropFirst())
        let config = try #require(Self.configs.first { $0.0 == configName }?.1)
        let objects = ClusterGuardPolicies(config: config, backend: backend)
        for object in objects.objects {
            let kind = try #require(object["kind"]?.stringValue)
            let stored = try Self.crd(for: kind).schema.defaulted(object)
            let name = object["metadata"]?["name"]?.stringValue ?? ""
            #expect(objects.isCanonical(spec: stored["spec"] ?? .null, kind: kind, name: name),
                    "\(kind) \(name) stored as \(stored["spec"]?.serialized ?? "")")
        }
    }

    @Test("the fixtures are the kinds and versions the backends write")
    func fixturesMatchBackends() throws {
        for backend in GuardBackend.discoveryOrder {
            for resource in backend.resources {
                let crd = try Self.crd(for: resource.kind)
                #expect(crd.group == resource.group && crd.version == resource.version && crd.scope == "Cluster")
            }
        }
    }

    /// The CEL rules of the fixtures that concern fields pxguard renders, checked by
    /// hand (the validator does not run CEL).
    @Test("CEL: no named port beside a nodes peer (ANP)")
    func anpNamedPortRule() {
        for object in ClusterGuardPolicies(config: .default, backend: .adminnetworkpolicy).objects {
            for rule in object["spec"]?["egress"]?.arrayValue ?? [] {
                #expect(!(rule["ports"]?.arrayValue ?? []).contains { $0["namedPort"] != nil })
            }
        }
    }
}

@Suite("guardBackend and guardPriority in the config file")
struct GuardBackendConfigTests {
    @Test("guardBackend defaults to auto, which counts as networkpolicy until discovery resolves it")
    func defaults() throws {
        let config = try ConfigLoader(file: "c.yaml").load(Array("mode: enforce\n".utf8))
        #expect(config.guardBackend == .auto)
        #expect(config.activeBackend == .networkpolicy)
        #expect(config.guardPriority == 10)
    }

    @Test("each backend name loads, and the priority with it", arguments: GuardBackend.allCases)
    func loads(_ backend: GuardBackend) throws {
        let config = try ConfigLoader(file: "c.yaml").load(Array("guardBackend: \(backend.rawValue)\nguardPriority: 3\n".utf8))
        #expect(config.guardBackend == backend)
        #expect(config.guardPriority == 3)
        // What render writes into the ConfigMap loads back the same.
        let again = try ConfigLoader(file: "c.yaml").load(Array(YAMLEmitter.emit(config.document).utf8))
        #expect(again.guardBackend == backend && again.guardPriority == 3)
    }
}
