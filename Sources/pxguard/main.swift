#if canImport(Glibc)
import Glibc
#endif
import PXGuardCore
import PXGuardPlatform
import PXGuardService

// `pxguard`: the admission webhook server and the tools around it. Wiring only:
// each command's flags, then the function in PXGuardService that does the work.

let configOption = CommandSpec.Option("config", value: "FILE", help: "Configuration file (YAML); built-in defaults when absent.")

let commands: [(spec: CommandSpec, run: (ParsedArguments) throws -> Void)] = [
    (CommandSpec("serve", abstract: "Serve the webhook over HTTPS.", options: [
        configOption,
        .init("cert-dir", value: "DIR", help: "Directory with tls.crt and tls.key (default certs)."),
        .flag("dev-certs", help: "Create development certificates in --cert-dir when it has none (local runs only)."),
        .init("listen", value: "HOST:PORT", help: "Listen address; port 0 picks a free port (default 0.0.0.0:8443)."),
        .init("metrics-listen", value: "HOST:PORT", help: "Serve /metrics and /healthz over plain HTTP here too (overrides server.metricsListen)."),
        .init("client-ca", value: "FILE", help: "Require client certificates signed by this CA (the API server's)."),
        .init("kube-api", value: "URL", help: "Kubernetes API URL (default: in-cluster configuration)."),
        .init("kube-token-file", value: "FILE", help: "Bearer token file for the Kubernetes API (re-read on every use)."),
        .init("kube-ca", value: "FILE", help: "CA bundle for the Kubernetes API."),
        .init("shutdown-delay", value: "SECONDS", help: "Seconds to keep serving, not ready, after SIGTERM before closing the listener (default 5)."),
        .init("shutdown-grace", value: "SECONDS", help: "Seconds to finish in-flight requests after SIGTERM (default 20)."),
        .init("log-level", value: "LEVEL", help: "Lowest log level written: debug, info, warn or error (default: the config's logLevel, info)."),
    ]), { arguments in
        var options = ServeOptions()
        options.configPath = arguments.string("config")
        options.certDir = arguments.string("cert-dir") ?? options.certDir
        options.listen = arguments.string("listen") ?? options.listen
        options.devCerts = arguments.flag("dev-certs")
        options.metricsListen = arguments.string("metrics-listen") ?? ""
        options.clientCA = arguments.string("client-ca")
        options.kubeAPI = arguments.string("kube-api")
        options.kubeTokenFile = arguments.string("kube-token-file")
        options.kubeCA = arguments.string("kube-ca")
        options.shutdownDelay = try arguments.number("shutdown-delay", default: 5.0)
        guard options.shutdownDelay.isFinite, (0...3600).contains(options.shutdownDelay) else {
            throw CommandError("serve: --shutdown-delay must be a number of seconds from 0 to 3600")
        }
        options.shutdownGrace = try arguments.number("shutdown-grace", default: 20.0)
        guard options.shutdownGrace.isFinite, options.shutdownGrace >= 0 else {
            throw CommandError("serve: --shutdown-grace must be a number of seconds, 0 or more")
        }
        if let level = arguments.string("log-level") {
            guard let parsed = Logger.Level(rawValue: level) else {
                throw CommandError("serve: --log-level must be debug, info, warn or error, got \"\(level)\"")
            }
            options.logLevel = parsed
        }
        blockServiceSignals()
        let service = try Service(options: options, logger: .stderr)
        service.start()
        waitForSignals(service)
    }),
    (CommandSpec("review", abstract: "Answer one AdmissionReview offline, as /validate (or /mutate) would.", options: [
        configOption,
        .flag("mutate", help: "Answer as /mutate instead of /validate."),
    ], positional: ("FILE", "AdmissionReview JSON file, or - for standard input (default -).")), { arguments in
        print(try reviewCommand(configPath: arguments.string("config"), mutate: arguments.flag("mutate"),
                                file: arguments.positionals.first ?? "-"))
    }),
    (CommandSpec("check", abstract: "Evaluate manifests offline as CREATE requests (exit 0 allowed, 1 denied, 2 bad input).", options: [
        configOption,
        .init("file", short: "f", value: "FILE", repeatable: true,
              help: "Manifest file (multi-document YAML, JSON objects, lists) or directory (.yaml, .yml, .json files), or - for standard input."),
        .init("recursive", short: "R", value: nil, help: "Read the directories given with -f recursively."),
        .init("output", short: "o", value: "FORMAT", help: "text (default) or json."),
        .init("nodes", value: "LIST", help: "With nodeCIDRs: auto, the node addresses to judge with (the blocks around them)."),
    ], positional: ("FILE", "More manifest files: -f a.yaml b.yaml works like -f a.yaml -f b.yaml."), positionalRepeats: true), { arguments in
        let files = arguments.strings("file") + arguments.positionals
        guard !files.isEmpty else { throw CommandError("check: give at least one manifest with -f FILE") }
        let format = arguments.string("output") ?? "text"
        guard let output = CheckOutput(rawValue: format) else {
            throw CommandError("check: unknown output format \"\(format)\"; expected text or json")
        }
        let result = try checkCommand(configPath: arguments.string("config"), files: files,
                                      recursive: arguments.flag("recursive"), output: output, nodes: arguments.string("nodes"),
                                      note: printError)
        print(result.report, terminator: "")
        result.errors.forEach(printError)
        if result.code != 0 { exit(result.code) }
    }),
    (CommandSpec("audit", abstract: "Judge what already exists, offline: a verdict per guarded namespace (exit 0 protected, 1 exposed, 2 bad input).", options: [
        configOption,
        .init("file", short: "f", value: "FILE",
              help: "What kubectl get namespaces,networkpolicies,pods,services,endpoints,endpointslices -A -o json prints, or - for standard input."),
        .init("output", short: "o", value: "FORMAT", help: "text (default) or json."),
        .init("nodes", value: "LIST", help: "With nodeCIDRs: auto, the node addresses to judge with (the blocks around them)."),
    ]), { arguments in
        guard let file = arguments.string("file") else {
            throw CommandError("audit: give the cluster's objects with -f FILE (or -f - for standard input)")
        }
        let format = arguments.string("output") ?? "text"
        guard let output = AuditOutput(rawValue: format) else {
            throw CommandError("audit: unknown output format \"\(format)\"; expected text or json")
        }
        let result = try auditCommand(configPath: arguments.string("config"), file: file, output: output,
                                      nodes: arguments.string("nodes"), note: printError)
        print(result.report, terminator: "")
        result.errors.forEach(printError)
        if result.code != 0 { exit(result.code) }
    }),
    (CommandSpec("render", abstract: "Print the guard's artifacts: policies, node iptables rules, webhook registrations, or all.", options: [
        configOption,
        .init("ca-bundle", value: "FILE", help: "PEM CA bundle to put in the webhooks' caBundle."),
        .init("nodes", value: "LIST", help: "Node addresses and ranges, e.g. 70.0.98.11-70.0.98.14,70.0.98.20: the iptables sources, and with nodeCIDRs: auto the node blocks."),
        .init("namespace", value: "NS", help: "Namespace to render the namespaced guard policies for (default default)."),
        .init("guard-backend", value: "NAME", help: "networkpolicy, adminnetworkpolicy, calico, cilium or auto (default: the config's; auto renders networkpolicy offline)."),
    ], positional: ("WHAT", "policies, iptables, webhooks, all, or names (the namespace and service name, for scripts) (default all).")), { arguments in
        print(try renderCommand(configPath: arguments.string("config"), caBundle: arguments.string("ca-bundle"),
                                nodes: arguments.string("nodes"), namespace: arguments.string("namespace") ?? "default",
                                what: arguments.positionals.first ?? "all", guardBackend: arguments.string("guard-backend"),
                                note: printError), terminator: "")
    }),
    (CommandSpec("certs", abstract: "Write ca.crt, ca.key, tls.crt and tls.key (EC P-256) for the webhook service.", options: [
        .init("out", value: "DIR", help: "Output directory (default certs)."),
        .init("service", value: "NAME", help: "Service name (default pxguard)."),
        .init("namespace", value: "NS", help: "Service namespace (default pxguard-system)."),
        .init("days", value: "N", help: "Validity of the serving certificate in days (default 365)."),
    ]), { arguments in
        print(try certsCommand(out: arguments.string("out") ?? "certs", service: arguments.string("service") ?? "pxguard",
                               namespace: arguments.string("namespace") ?? "pxguard-system",
                               days: try arguments.number("days", default: 365)))
    }),
]

let overview = """
    usage: pxguard COMMAND [OPTIONS]

    Admission webhook that guards the Portworx API (TCP 9001-9022 on the nodes).

    commands:
    \(commands.map { "  " + $0.spec.name + String(repeating: " ", count: 8 - $0.spec.name.count) + $0.spec.abstract }.joined(separator: "\n"))

    See 'pxguard COMMAND --help' for a command's options; 'pxguard --version' prints the version.

    """

let expectedCommands = "expected " + commands.dropLast().map(\.spec.name).joined(separator: ", ")
    + " or " + commands.last!.spec.name + " (see pxguard --help)"

/// One line on stderr, prefixed `pxguard: `.
func printError(_ message: String) {
    let text = "pxguard: " + message + "\n"
    _ = text.withCString { write(2, $0, strlen($0)) }
}

func fail(_ message: String) -> Never {
    printError(message)
    exit(2)
}

// Exit codes: the SPEC wants 2 with a one-line message for bad flags and bad input.
let arguments = Array(CommandLine.arguments.dropFirst())
guard let name = arguments.first else {
    fail("no command given; " + expectedCommands)
}
if name == "-h" || name == "--help" || name == "help" {
    print(overview, terminator: "")
    exit(0)
}
if name == "--version" || name == "version" {
    print("pxguard " + BuildInfo.version)
    exit(0)
}
guard let command = commands.first(where: { $0.spec.name == name }) else {
    fail("unknown command \"\(name)\"; " + expectedCommands)
}
do {
    let parsed = try command.spec.parse(Array(arguments.dropFirst()))
    if parsed.helpRequested {
        print(command.spec.help, terminator: "")
        exit(0)
    }
    try command.run(parsed)
} catch let error as CommandError {
    fail(error.description)
} catch {
    fail("\(error)")
}
