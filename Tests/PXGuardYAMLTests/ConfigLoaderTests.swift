import PXGuardBytes
import Foundation
import Testing
@testable import PXGuardCore
@testable import PXGuardYAML

@Suite("Configuration file")
struct ConfigLoaderTests {
    static let directory = Bundle.module.resourceURL!.appendingPathComponent("Configs")
    static let broken: [String] = (try? FileManager.default.contentsOfDirectory(atPath: directory.path))?
        .filter { $0.hasSuffix(".yaml") && !$0.hasPrefix("valid") }.sorted() ?? []

    @Test("every broken config is refused with FILE:LINE:COLUMN and what was expected", arguments: broken)
    func brokenConfig(_ name: String) throws {
        let bytes = Array(try Data(contentsOf: Self.directory.appendingPathComponent(name)))
        let text = String(decoding: bytes, as: UTF8.self)
        let expected = try #require(text.split(separator: "\n").first?.split(separator: "expect: ", maxSplits: 1).last)
        do {
            _ = try ConfigLoader(file: name).load(bytes)
            Issue.record("\(name) was accepted")
        } catch {
            #expect(error.description.hasPrefix("\(name):\(expected)"), "\(error.description)")
        }
    }

    @Test("the broken-config folder is found and holds its cases (an empty list would test nothing)")
    func brokenCasesPresent() throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: Self.directory.path)
        #expect(names.contains("valid-full.yaml"))
        #expect(Self.broken.count >= 20, "only \(Self.broken.count) broken configs found in \(Self.directory.path)")
        #expect(Self.broken.contains("deep-nesting.yaml"))
    }

    @Test("a complete configuration loads every key")
    func validConfig() throws {
        let bytes = Array(try Data(contentsOf: Self.directory.appendingPathComponent("valid-full.yaml")))
        let config = try ConfigLoader(file: "valid-full.yaml").load(bytes)
        #expect(config.nodeCIDRs.map(\.description) == ["70.0.0.0/16", "fd00:70::/64"])
        #expect(config.protectedPorts.map(\.description) == ["TCP/9001-9022", "UDP/9002", "SCTP/9001-9005"])
        #expect(config.exemptUsers == ["breakglass@example.com"])
        #expect(config.mode(for: .guardPolicies) == .warn)
        #expect(config.mode(for: .bypassPolicies) == .repair)
        #expect(config.mode(for: .unguardedNamespace) == .audit)
        #expect(config.mode(for: .externalIPs) == .warn)
        #expect(config.policyStyle == .ports)
        #expect(config.podSecurity == .restricted)
        #expect(config.provisioning.resyncSeconds == 120)
        #expect(config.provisioning.writesPerSecond == 10 && config.provisioning.dryRun)
        #expect(config.guardPolicyNames.block == "site-block-portworx" && config.guardPolicyNames.allowAPI == "site-allow-api")
        #expect(config.guardPolicyNames.annotation == "site-block-portworx,site-allow-api")
        #expect(config.serviceAccount == "system:serviceaccount:guard:pxguard")
        #expect(config.server.maxRequestsPerConnection == 1000)
        #expect(config.server.workers == 3)
        #expect(config.server.maxConnections == 6000)
        #expect(config.server.maxHandshakesPerWorker == 100)
        #expect(config.server.maxClientHelloBytes == 8192)
        #expect(config.server.maxBufferedBytesPerWorker == 64 << 20)
        #expect(config.replicas == 3)
    }

    @Test("an empty file is the built-in default; the default is the seed's values")
    func defaults() throws {
        #expect(try ConfigLoader(file: "empty.yaml").load([]) == .default)
        #expect(Config.default.nodeCIDRs.map(\.description) == ["70.0.0.0/16"])
        #expect(Config.default.protectedPorts.map(\.description) == ["TCP/9001-9022"])
        #expect(Config.default.apiServerPort == 6443)
        #expect(Config.default.policyStyle == .ports, "ports is the default since v3: seed cuts CoreDNS off")
        #expect(Config.default.guardPolicyNames.block == "block-9001-for-non-system-users")
        #expect(Config.default.guardPolicyNames.allowAPI == "allow-api")
        #expect(Config.default.provisioning.writesPerSecond == 50 && !Config.default.provisioning.dryRun)
        #expect(Config.default.podSecurity == .baseline)
        #expect(Config.default.serviceAccount == "system:serviceaccount:pxguard-system:pxguard")
    }

    @Test("nodeCIDRs: auto written as one word is the list [auto]")
    func nodeCIDRsAutoScalar() throws {
        let scalar = try ConfigLoader(file: "a.yaml").load(Array("nodeCIDRs: auto\n".utf8))
        #expect(scalar == (try ConfigLoader(file: "b.yaml").load(Array("nodeCIDRs: [auto]\n".utf8))))
        #expect(scalar.nodeAddressesPending)
        #expect(throws: (any Error).self) { _ = try ConfigLoader(file: "c.yaml").load(Array("nodeCIDRs: 70.0.0.0/16\n".utf8)) }
    }

    @Test("the rendered config document reads back to the same configuration")
    func roundTrip() throws {
        let bytes = Array(try Data(contentsOf: Self.directory.appendingPathComponent("valid-full.yaml")))
        let config = try ConfigLoader(file: "valid-full.yaml").load(bytes)
        let text = YAMLEmitter.emit(config.document)
        var again = try ConfigLoader(file: "rendered").load(Array(text.utf8))
        again.image = config.image
        again.replicas = config.replicas
        #expect(again == config)
    }
}

@Suite("YAML reader")
struct YAMLReaderTests {
    @Test("multi-document streams keep line and column on every node")
    func positions() throws {
        let docs = try YAMLReader.documents(Array("a: 1\n---\nb:\n  - x\n  - 'y'\n".utf8), file: "t.yaml")
        #expect(docs.count == 2)
        guard case .mapping(let pairs) = docs[1].value, case .sequence(let items) = pairs[0].value.value else {
            Issue.record("shape")
            return
        }
        #expect(items[1].line == 5 && items[1].column == 5)
        #expect(docs[1].json == .obj(["b": ["x", "y"]]))
    }

    @Test("plain scalars resolve like Kubernetes' YAML reader; quoted ones stay strings")
    func resolution() throws {
        let doc = try YAMLReader.documents(Array("a: true\nb: \"true\"\nc: 8099\nd: '8099'\ne: ~\nf: 1.5\ng: yes\n".utf8), file: "t")[0]
        #expect(doc.json == .obj(["a": true, "b": "true", "c": 8099, "d": "8099", "e": .null, "f": .number("1.5"), "g": true]))
    }

    @Test("explicit tags resolve as go-yaml does: !!bool, !!int, !!float, !!null on quoted text; !!str keeps text")
    func explicitTags() throws {
        let text = """
            a: !!bool "true"
            b: !!int "9100"
            c: !!str 123
            d: !!float "1.5"
            e: !!null ""
            f: !!str true
            g: !!int 0x10
            h: !!float "2"
            i: !!bool 'no'
            j: ! 123
            k: !!str
            """
        let doc = try YAMLReader.documents(Array(text.utf8), file: "t")[0]
        #expect(doc.json == .obj(["a": true, "b": 9100, "c": "123", "d": .number("1.5"), "e": .null, "f": "true", "g": 16,
                                  "h": 2, "i": false, "j": "123", "k": ""]))
    }

    @Test("a tag the text does not fit is refused where it stands", arguments: [
        ("a: !!int \"abc\"\n", 1, 4), ("x: 1\nb: !!bool \"maybe\"\n", 2, 4), ("c: !!null 0\n", 1, 4), ("d: !!int \"1.5\"\n", 1, 4),
    ])
    func badTags(_ text: String, _ line: Int, _ column: Int) {
        do {
            _ = try YAMLReader.documents(Array(text.utf8), file: "t.yaml")
            Issue.record("accepted \(text)")
        } catch let error as YAMLError {
            #expect(error.line == line && error.column == column, "\(error)")
            #expect(error.message.hasPrefix("cannot decode"), "\(error)")
        } catch {
            Issue.record("\(error)")
        }
    }

    @Test("merge keys (<<) merge as YAML 1.1 says: explicit keys win, earlier mappings of a list win")
    func mergeKeys() throws {
        func json(_ text: String) throws -> JSON { try YAMLReader.documents(Array(text.utf8), file: "m")[0].json }
        #expect(try json("spec:\n  <<: {hostNetwork: true}\n  c: 1\n") == .obj(["spec": .obj(["hostNetwork": true, "c": 1])]))
        #expect(try json("a: &a {x: 1, y: 1}\nb: &b {y: 2, z: 2}\nc:\n  <<: [*a, *b]\n  z: 3\n")["c"]
                == .obj(["x": 1, "y": 1, "z": 3]))
        #expect(try json("a: &a {x: 1}\nc:\n  <<: *a\n  x: 2\n")["c"] == .obj(["x": 2]))
        #expect(try json("a: &a {x: 1}\nc: {<<: *a}\n")["c"] == .obj(["x": 1]))
        #expect(try json("c: {!!merge <<: {x: 1}}\n")["c"] == .obj(["x": 1]))
        // A quoted "<<" is an ordinary key.
        #expect(try json("c: {\"<<\": {x: 1}}\n")["c"] == .obj(["<<": .obj(["x": 1])]))
        // Merged mappings merge their own merges first.
        #expect(try json("a: &a {<<: {deep: true}}\nc: {<<: *a}\n")["c"] == .obj(["deep": true]))
    }

    @Test("merge keys that readers disagree on, or that merge no mapping, are refused", arguments: [
        // go-yaml v2 (kubectl) lets a later merge overwrite an earlier explicit key; YAML 1.1 keeps the explicit one.
        ("spec:\n  hostNetwork: false\n  <<: {hostNetwork: true}\n", "hostNetwork"),
        ("c: {<<: 1}\n", "mapping"),
        ("c: {<<: [{x: 1}, 2]}\n", "mapping"),
    ])
    func badMerges(_ text: String, _ mentions: String) {
        #expect(throws: YAMLError.self) { try YAMLReader.documents(Array(text.utf8), file: "m.yaml") }
        do { _ = try YAMLReader.documents(Array(text.utf8), file: "m.yaml") } catch {
            #expect("\(error)".contains(mentions), "\(error)")
        }
    }

    @Test("a key repeated in one mapping is refused at the second occurrence; the same key in sibling mappings is fine")
    func duplicateKeys() throws {
        #expect(throws: YAMLError.self) { try YAMLReader.documents(Array("spec:\n  hostNetwork: false\n  hostNetwork: true\n".utf8), file: "d") }
        do {
            _ = try YAMLReader.documents(Array("a: {x: 1}\nb: {x: 2, y: 3, x: 4}\n".utf8), file: "d.yaml")
            Issue.record("duplicate accepted")
        } catch {
            #expect("\(error)" == "d.yaml:2:17: duplicate key \"x\" (first defined on line 2); keep one")
        }
        #expect(try YAMLReader.documents(Array("a: {x: 1}\nb: {x: 2}\n".utf8), file: "d").count == 1)
    }

    @Test("alias bombs are refused")
    func aliasBomb() {
        var text = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
        for i in 1..<9 { text += "a\(i): &a\(i) [" + Array(repeating: "*a\(i - 1)", count: 10).joined(separator: ", ") + "]\n" }
        #expect(throws: YAMLError.self) { try YAMLReader.documents(Array(text.utf8), file: "bomb.yaml") }
    }

    @Test("nesting past the depth limit is refused at the collection that crosses it, for 80,000 levels without a crash")
    func depthLimit() throws {
        let depth = YAMLReader.maxDepth
        let cases: [(text: String, column: Int)] = [
            (String(repeating: "- ", count: 80_000) + "x\n", 2 * depth + 1),
            (String(repeating: "[", count: 80_000) + String(repeating: "]", count: 80_000) + "\n", depth + 1),
            (String(repeating: "{a: ", count: 80_000) + "x" + String(repeating: "}", count: 80_000) + "\n", 4 * depth + 1),
        ]
        for (text, column) in cases {
            do {
                _ = try YAMLReader.documents(Array(text.utf8), file: "deep.yaml")
                Issue.record("80,000 levels accepted")
            } catch {
                #expect("\(error)" == "deep.yaml:1:\(column): nesting deeper than \(depth) levels; flatten the document")
            }
        }
        // Exactly at the limit is fine.
        let atLimit = String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
        #expect(try YAMLReader.documents(Array(atLimit.utf8), file: "ok").count == 1)
    }

    @Test("an alias cannot nest a document past the depth limit")
    func aliasDepth() throws {
        // Each alias repeats a 100-deep list inside another 100-deep one: legal
        // levels in the text, 200 and more in the tree.
        let deep = String(repeating: "[", count: 100) + "x" + String(repeating: "]", count: 100)
        let text = "a: &a \(deep)\nb: " + String(repeating: "[", count: 100) + "*a" + String(repeating: "]", count: 100) + "\n"
        do {
            _ = try YAMLReader.documents(Array(text.utf8), file: "alias.yaml")
            Issue.record("alias past the limit accepted")
        } catch {
            #expect("\(error)".hasPrefix("alias.yaml:2:"))
            #expect("\(error)".hasSuffix("alias *a nests deeper than \(YAMLReader.maxDepth) levels; flatten the document"))
        }
    }

    @Test("a 40,000-item list keeps every item in order (built in place, not copied per item)")
    func longList() throws {
        let text = "exemptNamespaces:\n" + (0..<40_000).map { "  - ns-\($0)\n" }.joined()
        let config = try ConfigLoader(file: "long.yaml").load(Array(text.utf8))
        #expect(config.exemptNamespaces.count == 40_000)
        #expect(config.exemptNamespaces.first == "ns-0" && config.exemptNamespaces.last == "ns-39999")
    }

    @Test("emitted YAML reads back to the same JSON")
    func emitterRoundTrip() throws {
        let value: JSON = .obj([
            "s": "plain", "n": "123", "b": "true", "y": "yes", "e": "", "colon": "a: b", "ns": "system:serviceaccount:x:y",
            "list": [.obj(["k": "v", "k2": ["a", "b"]]), "x", .array([]), .object([])], "int": 5, "nested": .obj(["deep": .obj(["x": .null])]),
            "multi": "line1\nline2\n",
        ])
        let back = try YAMLReader.documents(Array(YAMLEmitter.emit(value).utf8), file: "e")[0].json
        #expect(back == value)
    }

    @Test("multi-line text keeps its exact ending and leading spaces (|- and indentation indicators)",
          arguments: ["no newline\nat the end", "one newline\n", "two newlines\n\n", " starts with a space\nand breaks",
                      "\nstarts with a newline", "  indented\n    more\n", "tab\tand\nbreak", "trailing space \nline"])
    func multiLine(_ text: String) throws {
        let emitted = YAMLEmitter.emit(.obj(["text": .string(text)]))
        let back = try YAMLReader.documents(Array(emitted.utf8), file: "e")[0].json
        #expect(back == .obj(["text": .string(text)]), "\(emitted)")
    }

    @Test("emit, parse with libyaml, compare: random trees of awkward strings round-trip")
    func roundTripProperty() throws {
        var generator = SeededRandom(seed: 0x9a11)
        let pieces = ["", " ", "  ", "\n", "\n\n", "\t", "a", "Yes", "no", "~", "null", "0x1F", "1e3", "12:30", "-", "- x", "#", " #c",
                      "key: value", "'", "\"", "\\", "{", "[]", "&a", "*a", "!tag", "%", "@", "`", "|", ">", "é", "日本", "\u{1F600}",
                      "\r\n", "\u{7}", "\u{85}", "\u{2028}", "...", "---", "?", ",", "0", "-1", ".5", "+", "true"]
        func string() -> String {
            (0..<generator.next(5)).map { _ in pieces[generator.next(pieces.count)] }.joined()
        }
        func tree(_ depth: Int) -> JSON {
            switch depth == 0 ? generator.next(3) : generator.next(6) {
            case 0: return .string(string())
            case 1: return [.int(generator.next(1000)), .null, .bool(true), .bool(false)][generator.next(4)]
            case 2: return .string(string())
            case 3, 4:
                var members: [JSON.Member] = []
                var seen: Set<String> = []
                for _ in 0..<generator.next(4) {
                    let key = string()
                    if seen.insert(key).inserted { members.append(.init(key, tree(depth - 1))) }
                }
                return .object(members)
            default:
                return .array((0..<generator.next(4)).map { _ in tree(depth - 1) })
            }
        }
        for _ in 0..<500 {
            let docs = (0..<1 + generator.next(3)).map { _ in tree(4) }
            let text = YAMLEmitter.documents(docs)
            let back = try YAMLReader.documents(Array(text.utf8), file: "e").map(\.json)
            #expect(back == docs, "\(text)")
            if back != docs { break }
        }
    }
}

/// A fixed-seed generator (64-bit LCG) so that generated cases repeat.
struct SeededRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next(_ bound: Int) -> Int {
        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
        return Int((state >> 33) % UInt64(bound))
    }
}

@Suite("Config: day-two keys (manageWebhooks, certificates, server.metricsListen)")
struct DayTwoConfigTests {
    static func load(_ text: String) throws(YAMLError) -> Config { try ConfigLoader(file: "c.yaml").load(Array(text.utf8)) }

    @Test("defaults: registrations managed, certificates self-managed (90-day serving pair renewed 30 days ahead, 10-year CA), no metrics listener")
    func defaults() throws {
        let config = try Self.load("")
        #expect(config.manageWebhooks)
        #expect(config.certificates.selfManaged)
        #expect(config.certificates.validitySeconds == 90 * 86_400 && config.certificates.renewBeforeSeconds == 30 * 86_400)
        #expect(config.certificates.caValiditySeconds == 3650 * 86_400)
        #expect(config.metricsListen.isEmpty)
    }

    @Test("short lifetimes for drills and tests, metricsListen, manageWebhooks: false")
    func readsKeys() throws {
        let config = try Self.load("""
            manageWebhooks: false
            certificates: {caValiditySeconds: 120, caRenewBeforeSeconds: 60, validitySeconds: 40, renewBeforeSeconds: 20, rolloutSeconds: 10}
            server: {metricsListen: "0.0.0.0:9090"}
            """)
        #expect(!config.manageWebhooks)
        #expect(config.certificates.validitySeconds == 40 && config.certificates.rolloutSeconds == 10)
        #expect(config.metricsListen == "0.0.0.0:9090")
        // Round trip through the rendered ConfigMap.
        let again = try Self.load(YAMLEmitter.emit(config.document))
        #expect(again == config)
    }

    @Test("refused with the line and what to do", arguments: [
        ("certificates: {renewBeforeSeconds: 50, validitySeconds: 60}", "at most half of validitySeconds"),
        ("certificates: {caValiditySeconds: 100, caRenewBeforeSeconds: 20, rolloutSeconds: 10, validitySeconds: 10, renewBeforeSeconds: 5}", "at least 2 × rolloutSeconds"),
        ("certificates: {lifetime: 5}", "expected selfManaged"),
        ("server: {metricsListen: \"9090\"}", "expected HOST:PORT"),
        ("manageWebhooks: maybe", "expected true or false"),
    ])
    func refusesBad(_ text: String, _ expected: String) {
        do {
            _ = try Self.load(text)
            Issue.record("accepted: \(text)")
        } catch {
            #expect(error.description.contains(expected), "\(error.description)")
            #expect(error.description.hasPrefix("c.yaml:1:"))
        }
    }
}

@Suite("Configuration keys of issue 23 (R7 load balancers, R8 endpoints)")
struct LoadBalancerConfigTests {
    @Test("loadBalancerIPAnnotations, loadBalancerUsesNodeIPs and rules.endpoints load, with the SPEC's defaults when absent")
    func keys() throws {
        let defaults = try ConfigLoader(file: "c.yaml").load(Array("mode: enforce\n".utf8))
        #expect(defaults.loadBalancerIPAnnotations == ["metallb.universe.tf/loadBalancerIPs", "metallb.io/loadBalancerIPs",
                                                       "kube-vip.io/loadbalancerIPs", "lbipam.cilium.io/ips", "io.cilium/lb-ipam-ips"])
        #expect(!defaults.loadBalancerUsesNodeIPs)
        let text = "loadBalancerIPAnnotations: [example.com/vip]\nloadBalancerUsesNodeIPs: true\nrules:\n  endpoints: {mode: warn}\n"
        let config = try ConfigLoader(file: "c.yaml").load(Array(text.utf8))
        #expect(config.loadBalancerIPAnnotations == ["example.com/vip"])
        #expect(config.loadBalancerUsesNodeIPs)
        #expect(config.mode(for: .endpoints) == .warn)
        // The rendered ConfigMap carries them back.
        let again = try ConfigLoader(file: "c.yaml").load(Array(YAMLEmitter.emit(config.document).utf8))
        #expect(again == config)
    }

    @Test("a wrong type is refused with where and what was expected")
    func wrongType() {
        #expect(throws: YAMLError.self) { try ConfigLoader(file: "c.yaml").load(Array("loadBalancerUsesNodeIPs: maybe\n".utf8)) }
        #expect(throws: YAMLError.self) { try ConfigLoader(file: "c.yaml").load(Array("rules: {endpoints: {mode: repair}}\n".utf8)) }
    }
}

@Suite("Config: audit keys")
struct AuditConfigTests {
    @Test("audit defaults to on without repair; both keys read, round trip through the rendered ConfigMap; unknown key and non-boolean refused")
    func auditKeys() throws {
        let defaults = try DayTwoConfigTests.load("")
        #expect(defaults.audit.enabled && !defaults.audit.repairBypassPolicies)
        let config = try DayTwoConfigTests.load("audit: {enabled: false, repairBypassPolicies: true}\n")
        #expect(!config.audit.enabled && config.audit.repairBypassPolicies)
        #expect(try DayTwoConfigTests.load(YAMLEmitter.emit(config.document)) == config)
        for (text, expected) in [("audit: {repair: true}", "expected enabled or repairBypassPolicies"),
                                 ("audit: {enabled: yes please}", "expected true or false")] {
            do {
                _ = try DayTwoConfigTests.load(text)
                Issue.record("accepted: \(text)")
            } catch {
                #expect(error.description.contains(expected) && error.description.hasPrefix("c.yaml:1:"), "\(error.description)")
            }
        }
    }
}
