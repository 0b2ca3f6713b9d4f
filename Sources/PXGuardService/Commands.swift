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
public func renderCommand(configPath: String?, caBundle: String?, nodes: String?, namespace: String, what: String)
    throws(CommandError) -> String
{
    let config = try loadConfig(configPath)
    let pem = try caBundle.map { path throws(CommandError) in try readInput(path, limit: 1 << 20) }
    if let pem, !String(decoding: pem, as: UTF8.self).contains("-----BEGIN CERTIFICATE-----") {
        throw CommandError("--ca-bundle \(caBundle!): not a PEM certificate bundle")
    }
    let nodeList: [String]?
    do {
        nodeList = try nodes.map { list throws(RenderError) in try NodeFirewall.parseNodes(list) }
    } catch {
        throw CommandError(error.description)
    }
    let bundle = InstallBundle(config: config, caBundlePEM: pem)
    let firewall = NodeFirewall(config: config, nodes: nodeList).script
    switch what {
    case "policies": return YAMLEmitter.documents(bundle.policies(namespace: namespace))
    case "iptables": return firewall
    case "webhooks": return YAMLEmitter.documents(bundle.webhooks)
    case "all":
        return YAMLEmitter.documents(bundle.all(namespace: namespace, configYAML: YAMLEmitter.emit(config.document),
                                                firewallScript: firewall))
    default:
        throw CommandError("unknown render target \"\(what)\"; expected policies, iptables, webhooks or all")
    }
}

/// One object found in a manifest, with where it came from.
struct ManifestObject {
    let file: String
    let line: Int
    let column: Int
    let object: JSON
}

/// Reads multi-document YAML or JSON manifests, expanding `List` objects.
func manifestObjects(file: String, bytes: [UInt8]) throws(CommandError) -> [ManifestObject] {
    var roots: [(JSON, Int, Int)] = []
    let first = bytes.first { $0 != 0x20 && $0 != 0x0A && $0 != 0x0D && $0 != 0x09 }
    if first == UInt8(ascii: "{") || first == UInt8(ascii: "["), let json = try? JSON(parsing: bytes) {
        roots = [(json, 1, 1)]
    } else {
        do {
            roots = try YAMLReader.documents(bytes, file: file).map { ($0.json, $0.line, $0.column) }
        } catch let error as YAMLError {
            throw CommandError(error.description)
        } catch {
            throw CommandError("\(file): \(error)")
        }
    }
    var out: [ManifestObject] = []
    for (root, line, column) in roots {
        var pending: [JSON] = root.arrayValue ?? [root]
        while !pending.isEmpty {
            let object = pending.removeFirst()
            if case .null = object { continue }  // an empty document
            guard case .object = object else {
                throw CommandError("\(file):\(line):\(column): expected a Kubernetes object, got \(object.serialized.prefix(40))")
            }
            if let items = object["items"]?.arrayValue, object["kind"]?.stringValue?.hasSuffix("List") == true {
                pending.insert(contentsOf: items, at: 0)
                continue
            }
            guard object["kind"]?.stringValue?.isEmpty == false, object["apiVersion"]?.stringValue?.isEmpty == false else {
                throw CommandError("\(file):\(line):\(column): object has no kind or apiVersion")
            }
            out.append(ManifestObject(file: file, line: line, column: column, object: object))
        }
    }
    return out
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

/// `pxguard check`: each object evaluated as a CREATE by the same rules, one
/// kubectl-style line each and a summary. Exit 0 all allowed, 1 any denied.
public func checkCommand(configPath: String?, files: [String]) throws(CommandError) -> (String, Int32) {
    let policy = AdmissionPolicy(config: try loadConfig(configPath))
    var objects: [ManifestObject] = []
    for file in files {
        objects += try manifestObjects(file: file, bytes: try readInput(file))
    }
    var report = ""
    var denied = 0
    var warned = 0
    for item in objects {
        let object = item.object
        let kind = (object["kind"]?.stringValue ?? "").lowercased()
        let apiVersion = object["apiVersion"]?.stringValue ?? ""
        let group = apiVersion.contains("/") ? "." + apiVersion.split(separator: "/")[0] : ""
        let name = object["metadata"]?["name"]?.stringValue ?? object["metadata"]?["generateName"]?.stringValue ?? "(unnamed)"
        let bytes = Array(createReview(for: object).serialized.utf8)
        let verdict: Verdict
        do {
            verdict = try bytes.withUnsafeBytes { raw in try AdmissionRequest.withDecoded(raw) { policy.validate($0) } }
        } catch {
            throw CommandError("\(item.file):\(item.line):\(item.column): \(error)")
        }
        let subject = "\(kind)\(group)/\(name)"
        if !verdict.allowed {
            denied += 1
            report += "\(subject) denied (\(item.file):\(item.line)): \(verdict.message ?? "")\n"
        } else if let warning = verdict.warnings.first {
            warned += 1
            report += "\(subject) allowed with warning: \(warning)\n"
        } else {
            report += "\(subject) allowed\n"
        }
    }
    report += "\(objects.count) object\(objects.count == 1 ? "" : "s") checked: \(objects.count - denied) allowed"
        + (warned > 0 ? " (\(warned) with warnings)" : "") + ", \(denied) denied\n"
    return (report, denied > 0 ? 1 : 0)
}
