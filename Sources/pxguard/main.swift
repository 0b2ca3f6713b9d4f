import ArgumentParser
#if canImport(Glibc)
import Glibc
#endif
import PXGuardService
import PXGuardServer

/// `pxguard`: the admission webhook server and the tools around it.
struct PXGuard: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pxguard",
        abstract: "Admission webhook that guards the Portworx API (TCP 9001-9022 on the nodes).",
        subcommands: [Serve.self, Review.self, Check.self, Render.self, Certs.self])
}

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Serve the webhook over HTTPS.")
    @Option(name: .long, help: "Configuration file (YAML); built-in defaults when absent.") var config: String?
    @Option(name: .long, help: "Directory with tls.crt and tls.key (created with development certificates when empty).")
    var certDir = "certs"
    @Option(name: .long, help: "Listen address HOST:PORT; port 0 picks a free port.") var listen = "0.0.0.0:8443"
    @Option(name: .long, help: "Require client certificates signed by this CA (the API server's).") var clientCA: String?
    @Option(name: .long, help: "Kubernetes API URL (default: in-cluster configuration).") var kubeApi: String?
    @Option(name: .long, help: "Bearer token file for the Kubernetes API (re-read on every use).") var kubeTokenFile: String?
    @Option(name: .long, help: "CA bundle for the Kubernetes API.") var kubeCa: String?
    @Option(name: .long, help: "Seconds to finish in-flight requests after SIGTERM.") var shutdownGrace = 20.0

    func run() throws {
        var options = ServeOptions()
        options.configPath = config
        options.certDir = certDir
        options.listen = listen
        options.clientCA = clientCA
        options.kubeAPI = kubeApi
        options.kubeTokenFile = kubeTokenFile
        options.kubeCA = kubeCa
        options.shutdownGrace = shutdownGrace
        blockServiceSignals()
        let service = try Service(options: options, logger: .stderr)
        service.start()
        waitForSignals(service)
    }
}

struct Review: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Answer one AdmissionReview offline, as /validate (or /mutate) would.")
    @Option(name: .long, help: "Configuration file (YAML).") var config: String?
    @Flag(name: .long, help: "Answer as /mutate instead of /validate.") var mutate = false
    @Argument(help: "AdmissionReview JSON file, or - for standard input.") var file = "-"

    func run() throws {
        print(try reviewCommand(configPath: config, mutate: mutate, file: file))
    }
}

struct Check: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate manifests offline as CREATE requests (exit 0 allowed, 1 denied, 2 bad input).")
    @Option(name: .long, help: "Configuration file (YAML).") var config: String?
    @Option(name: .shortAndLong, help: "Manifest file (multi-document YAML or JSON), or - for standard input.")
    var file: [String] = []

    func validate() throws {
        if file.isEmpty { throw ValidationError("give at least one manifest with -f FILE") }
    }

    func run() throws {
        let (report, code) = try checkCommand(configPath: config, files: file)
        print(report, terminator: "")
        if code != 0 { throw ExitCode(code) }
    }
}

struct Render: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the guard's artifacts: policies, node iptables rules, webhook registrations, or all.")
    @Option(name: .long, help: "Configuration file (YAML).") var config: String?
    @Option(name: .long, help: "PEM CA bundle to put in the webhooks' caBundle.") var caBundle: String?
    @Option(name: .long, help: "Node addresses and ranges for iptables, e.g. 70.0.98.11-70.0.98.14,70.0.98.20.")
    var nodes: String?
    @Option(name: .long, help: "Namespace to render the namespaced guard policies for.") var namespace = "default"
    @Argument(help: "policies, iptables, webhooks or all") var what = "all"

    func run() throws {
        print(try renderCommand(configPath: config, caBundle: caBundle, nodes: nodes, namespace: namespace, what: what),
              terminator: "")
    }
}

struct Certs: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write ca.crt, ca.key, tls.crt and tls.key (EC P-256) for the webhook service.")
    @Option(name: .long, help: "Output directory.") var out = "certs"
    @Option(name: .long, help: "Service name.") var service = "pxguard"
    @Option(name: .long, help: "Service namespace.") var namespace = "pxguard-system"
    @Option(name: .long, help: "Validity of the serving certificate in days.") var days = 365

    func run() throws {
        print(try certsCommand(out: out, service: service, namespace: namespace, days: days))
    }
}

// Exit codes: the SPEC wants 2 with a one-line message for bad flags and bad input.
do {
    var command = try PXGuard.parseAsRoot()
    try command.run()
} catch let error as CommandError {
    printError("pxguard: \(error.description)")
    Glibc.exit(error.exitCode)
} catch let code as ExitCode {
    Glibc.exit(code.rawValue)
} catch {
    let code = PXGuard.exitCode(for: error)
    if code == .success {
        print(PXGuard.fullMessage(for: error))
        Glibc.exit(0)
    }
    let message = PXGuard.message(for: error).split(separator: "\n").first.map(String.init) ?? "invalid arguments"
    printError("pxguard: \(message) (see pxguard --help)")
    Glibc.exit(2)
}

func printError(_ line: String) {
    let text = line + "\n"
    _ = text.withCString { write(2, $0, strlen($0)) }
}
