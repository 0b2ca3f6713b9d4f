import PXGuardCore
import PXGuardPlatform
import PXGuardServer
import PXGuardYAML
#if canImport(Glibc)
import Glibc
#endif

/// Reads a file, or standard input for `-`.
func readInput(_ path: String, limit: Int = 64 << 20) throws(CommandError) -> [UInt8] {
    do {
        return try FileIO.read(path == "-" ? "/dev/stdin" : path, limit: limit)
    } catch {
        throw CommandError("\(path == "-" ? "standard input" : path): \(error)")
    }
}

/// `pxguard review`: one AdmissionReview in, the `/validate` (or `/mutate`)
/// response out. Exit 0 for any decision; 2 for a broken review.
public func reviewCommand(configPath: String?, mutate: Bool, file: String) throws(CommandError) -> String {
    let policy = AdmissionPolicy(config: try loadConfig(configPath))
    let bytes = try readInput(file)
    var out: [UInt8] = []
    do {
        try bytes.withUnsafeBytes { raw in
            try AdmissionRequest.withDecoded(raw) { request in
                let verdict = mutate ? policy.mutate(request).verdict : policy.validate(request)
                ReviewEncoder.encode(verdict, uid: request.uid, version: request.version, into: &out)
            }
        }
    } catch {
        throw CommandError("\(file == "-" ? "standard input" : file): invalid AdmissionReview: \(error)")
    }
    return String(decoding: out, as: UTF8.self)
}

/// `pxguard certs`: writes the CA and serving pair, reusing an existing CA.
public func certsCommand(out: String, service: String, namespace: String, days: Int) throws(CommandError) -> String {
    guard (1...3650).contains(days) else { throw CommandError("--days must be between 1 and 3650") }
    do {
        let result = try CertificateFactory.write(to: out, service: service, namespace: namespace, days: days)
        let names = CertificateFactory.subjectAltNames(service: service, namespace: namespace).joined(separator: ", ")
        return "wrote \(out)/tls.crt and \(out)/tls.key (\(names)); "
            + (result.caReused ? "reused the CA in \(out)/ca.crt" : "created a new CA in \(out)/ca.crt and \(out)/ca.key")
    } catch {
        throw CommandError("cannot write certificates to \(out): \(error)")
    }
}

/// `pxguard render`: the guard's artifacts as YAML (the iptables rules as a script).
/// `note` receives what the output leaves out and why (the command line prints it on stderr).
public func renderCommand(configPath: String?, caBundle: String?, nodes: String?, namespace: String, what: String,
                          guardBackend: String? = nil, note: (String) -> Void = { _ in })
    throws(CommandError) -> String
{
    // Without --config: the install bundle's configuration (nodeCIDRs: [auto]).
    var config = configPath == nil ? Config.install : try loadConfig(configPath)
    if let guardBackend {
        guard let backend = GuardBackend(rawValue: guardBackend) else {
            throw CommandError("--guard-backend \"\(guardBackend)\": expected "
                + GuardBackend.allCases.map(\.rawValue).joined(separator: ", "))
        }
        config.guardBackend = backend
    }
    let pem = try caBundle.map { path throws(CommandError) in try readInput(path, limit: 1 << 20) }
    if let pem, !String(decoding: pem, as: UTF8.self).contains("-----BEGIN CERTIFICATE-----") {
        throw CommandError("--ca-bundle \(caBundle!): not a PEM certificate bundle")
    }
    let nodeList = try parseNodeList(nodes)
    // nodeCIDRs: auto takes the node subnets from --nodes: the blocks around them, as the server would.
    if let nodeList { config = config.withNodeBlocks(NodeBlocks.around(nodeList, prefix: config.nodePrefixLength)) }
    let unknown = config.nodeAddressesPending && ["policies", "iptables", "all"].contains(what)
    if ["policies", "iptables", "all"].contains(what), !config.nodeCIDRsAuto,
        (configPath != nil && config.isSeedExampleSubnet) || !NodeBlocks.outside(nodeList ?? [], config.nodeCIDRs).isEmpty {
        note(subnetsNote(config, nodes: nodeList ?? []) + ": set your node subnets, or [auto], in the configuration")
    }
    if unknown {
        note("nodeCIDRs is auto and no --nodes was given: the guard policies and the node firewall script are left out "
             + "(they need node addresses; the server finds them from the Nodes and writes the policies). "
             + "Give --nodes LIST to render them.")
    }
    let bundle = InstallBundle(config: config, caBundlePEM: pem)
    let firewall = unknown ? nil : NodeFirewall(config: config, nodes: nodeList).script
    switch what {
    case "policies": return YAMLEmitter.documents(bundle.policies(namespace: namespace))
    case "iptables": return firewall ?? NodeFirewall.unrendered
    case "webhooks": return YAMLEmitter.documents(bundle.webhooks)
    // For scripts (install.sh): the server's namespace and service name as the config
    // loader reads them (quotes, anchors, flow style), on one line. Both are DNS labels.
    case "names": return "\(config.namespace) \(config.serviceName)\n"
    case "all":
        return YAMLEmitter.documents(bundle.all(namespace: namespace, configYAML: YAMLEmitter.emit(config.document),
                                                firewallScript: firewall))
    default:
        throw CommandError("unknown render target \"\(what)\"; expected policies, iptables, webhooks, all or names")
    }
}

/// The AdmissionReview the API server would send for creating `object`.
func createReview(for object: JSON) -> JSON {
    let apiVersion = object["apiVersion"]?.stringValue ?? ""
    let parts = apiVersion.split(separator: "/")
    let group = parts.count == 2 ? String(parts[0]) : ""
    let version = String(parts.last ?? "v1")
    let kind = object["kind"]?.stringValue ?? ""
    let name = object["metadata"]?["name"]?.stringValue ?? ""
    let namespace = kind == "Namespace" ? name : (object["metadata"]?["namespace"]?.stringValue ?? "default")
    return .obj([
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": .obj([
            "uid": "pxguard-check",
            "kind": .obj(["group": .string(group), "version": .string(version), "kind": .string(kind)]),
            "name": .string(name), "namespace": .string(namespace), "operation": "CREATE",
            "userInfo": .obj(["username": "pxguard-check"]),
            "object": object, "oldObject": .null, "dryRun": true,
        ]),
    ])
}

/// The decision the cluster would reach for creating `object`: the mutating answer
/// first, as the API server runs it, then `/validate` on the result. M1's labels
/// and a R4 repair change what is judged; a repair's warning is kept.
func judge(_ object: JSON, _ policy: AdmissionPolicy) throws -> Verdict {
    func review(_ object: JSON, _ body: (AdmissionRequest) -> Verdict) throws -> Verdict {
        let bytes = Array(createReview(for: object).serialized.utf8)
        return try bytes.withUnsafeBytes { raw in try AdmissionRequest.withDecoded(raw, body) }
    }
    let mutation = try review(object) { policy.mutate($0).verdict }
    guard let patch = mutation.patch, let mutated = applyMemberPatch(try JSON(parsing: patch), to: object)
    else { return try review(object) { policy.validate($0) } }
    var verdict = try review(mutated) { policy.validate($0) }
    if mutation.rule == .bypassPolicies && verdict.allowed {
        verdict.rule = .bypassPolicies
        verdict.decision = .repair
        verdict.warnings = mutation.warnings + verdict.warnings
    }
    return verdict
}

/// Applies a JSONPatch made only of `add`/`replace` operations on object members
/// (the kind pxguard's own patches use), or nil for anything else.
func applyMemberPatch(_ patch: JSON, to document: JSON) -> JSON? {
    func set(_ node: JSON, _ keys: ArraySlice<String>, _ value: JSON) -> JSON? {
        guard let key = keys.first, case .object = node else { return nil }
        if keys.count == 1 { return node.setting(key, value) }
        guard let child = node[key], let updated = set(child, keys.dropFirst(), value) else { return nil }
        return node.setting(key, updated)
    }
    var document = document
    for op in patch.arrayValue ?? [] {
        guard let name = op["op"]?.stringValue, name == "add" || name == "replace",
            let path = op["path"]?.stringValue, path.hasPrefix("/"), let value = op["value"]
        else { return nil }
        let keys = path.dropFirst().split(separator: "/", omittingEmptySubsequences: false).map {
            String($0).replacing("~1", with: "/").replacing("~0", with: "~")
        }
        guard let updated = set(document, keys[...], value) else { return nil }
        document = updated
    }
    return document
}

/// How `check` prints its findings.
public enum CheckOutput: String, Sendable {
    /// One kubectl-style line per object and a summary.
    case text
    /// One JSON document with every result, every input problem and the counts, for CI.
    case json
}

/// What `check` found: the report for standard output, one line per input problem
/// for standard error (also in the report with `-o json`), and the exit code.
public struct CheckResult: Sendable {
    public let report: String
    public let errors: [String]
    public let code: Int32
}

/// `--nodes` parsed (nil when not given); a bad list is a bad flag (exit 2).
func parseNodeList(_ nodes: String?) throws(CommandError) -> [String]? {
    do {
        return try nodes.map { list throws(RenderError) in try NodeFirewall.parseNodes(list) }
    } catch {
        throw CommandError(error.description)
    }
}

/// What the configuration's explicit node subnets are, for a note: the seed's example
/// when they are the built-in default, and which of `nodes` they leave out.
func subnetsNote(_ config: Config, nodes: [String]) -> String {
    let subnets = config.nodeCIDRs.map(\.description).joined(separator: ", ")
    var text = config.isSeedExampleSubnet
        ? "the node subnets are the seed's example \(subnets) (the built-in default)"
        : "the configuration lists the node subnets (\(subnets))"
    let outside = NodeBlocks.outside(nodes, config.nodeCIDRs)
    if !outside.isEmpty { text += ", which leave out \(outside.joined(separator: ", ")): the guard does not cover those" }
    return text
}

/// The configuration an offline command judges by: with `nodeCIDRs: auto`, `nodes`
/// (`--nodes`) gives the node blocks, as the server would find them; without any node
/// address the rules that read node addresses cannot judge, so the command stops.
/// `note` hears what the caller should print on stderr (node addresses it does not use).
func offlineConfig(_ configPath: String?, nodes: String?, command: String, note: (String) -> Void) throws(CommandError) -> Config {
    var config = try loadConfig(configPath)
    let list = try parseNodeList(nodes)
    if let list, !config.nodeCIDRsAuto {
        note("\(command): --nodes is not used: " + subnetsNote(config, nodes: list) + "; add auto beside them to judge with the nodes' blocks")
    } else if let list {
        config = config.withNodeBlocks(NodeBlocks.around(list, prefix: config.nodePrefixLength))
    }
    guard !config.nodeAddressesPending else {
        throw CommandError("\(command): nodeCIDRs is auto and no node address is known offline: give --nodes LIST "
                           + "(node addresses, e.g. from kubectl get nodes -o wide), or explicit CIDRs beside auto")
    }
    return config
}

/// `pxguard check`: each object evaluated as a CREATE by the same rules. Inputs that
/// cannot be read are reported and the rest still checked. Exit 2 when any input
/// was bad, else 1 when anything was denied, else 0.
public func checkCommand(configPath: String?, files: [String], recursive: Bool = false, output: CheckOutput = .text,
                         nodes: String? = nil, note: (String) -> Void = { _ in })
    throws(CommandError) -> CheckResult
{
    let policy = AdmissionPolicy(config: try offlineConfig(configPath, nodes: nodes, command: "check", note: note))
    let entries = ManifestReader(recursive: recursive).read(files)
    var report = ""
    var errors: [String] = []
    var results: [JSON] = []
    var problems: [JSON] = []
    var checked = 0, denied = 0, warned = 0, bad = 0
    for entry in entries {
        let item: ManifestObject
        switch entry {
        case .failure(let problem):
            bad += 1
            errors.append("check: \(problem.description)")
            problems.append(.obj(["file": .string(problem.file), "line": problem.line > 0 ? .int(problem.line) : nil,
                                  "column": problem.line > 0 ? .int(problem.column) : nil, "message": .string(problem.message)]))
            continue
        case .success(let object):
            item = object
        }
        let object = item.object
        let kind = object["kind"]?.stringValue ?? ""
        let apiVersion = object["apiVersion"]?.stringValue ?? ""
        let group = apiVersion.contains("/") ? "." + apiVersion.split(separator: "/")[0] : ""
        let name = object["metadata"]?["name"]?.stringValue ?? object["metadata"]?["generateName"]?.stringValue ?? "(unnamed)"
        let verdict: Verdict
        do {
            verdict = try judge(object, policy)
        } catch {
            bad += 1
            errors.append("check: \(item.file):\(item.line):\(item.column): \(error)")
            problems.append(.obj(["file": .string(item.file), "line": .int(item.line), "column": .int(item.column),
                                  "message": .string("\(error)")]))
            continue
        }
        checked += 1
        let subject = "\(kind.lowercased())\(group)/\(name)"
        if !verdict.allowed {
            denied += 1
            report += "\(subject) denied (\(item.file):\(item.line)): \(verdict.message ?? "")\n"
        } else if let warning = verdict.warnings.first {
            warned += 1
            report += "\(subject) allowed with warning: \(warning)\n"
        } else {
            report += "\(subject) allowed\n"
        }
        results.append(.obj([
            "file": .string(item.file), "line": .int(item.line), "column": .int(item.column),
            "apiVersion": .string(apiVersion), "kind": .string(kind),
            "namespace": object["metadata"]?["namespace"], "name": .string(name),
            "allowed": .bool(verdict.allowed), "decision": .string(verdict.decision.rawValue),
            "rule": verdict.rule.map { .string($0.rawValue) },
            "message": verdict.message.map { .string($0) },
            "warnings": verdict.warnings.isEmpty ? nil : .array(verdict.warnings.map { .string($0) }),
        ]))
    }
    if entries.isEmpty {
        // As `kubectl apply` refuses "no objects passed to apply": a CI step that
        // checks nothing (a directory without -R, a wrong glob) must not pass.
        bad += 1
        let message = "no objects found in \(files.joined(separator: ", "))"
            + (recursive ? "" : " (subdirectories are read with -R)")
        errors.append("check: " + message)
        problems.append(.obj(["file": .string(files.joined(separator: ", ")), "message": .string(message)]))
    }
    let code: Int32 = bad > 0 ? 2 : denied > 0 ? 1 : 0
    switch output {
    case .text:
        report += "\(checked) object\(checked == 1 ? "" : "s") checked: \(checked - denied) allowed"
            + (warned > 0 ? " (\(warned) with warnings)" : "") + ", \(denied) denied"
            + (bad > 0 ? "; \(bad) input error\(bad == 1 ? "" : "s")" : "") + "\n"
        return CheckResult(report: report, errors: errors, code: code)
    case .json:
        let document: JSON = .obj([
            "results": .array(results),
            "errors": .array(problems),
            "summary": .obj(["checked": .int(checked), "allowed": .int(checked - denied), "warned": .int(warned),
                             "denied": .int(denied), "errors": .int(bad)]),
        ])
        return CheckResult(report: document.serialized + "\n", errors: errors, code: code)
    }
}
