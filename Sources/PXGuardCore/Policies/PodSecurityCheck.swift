/// What Pod Security Admission's `baseline` and `restricted` levels (v1.30 policy)
/// would refuse in a running Pod, so that the provisioner never raises a
/// namespace's enforce level over Pods the new level would reject (SPEC
/// "Provisioner"): it reports them instead. Pure: the Pod's JSON in, reasons out.
/// The checks follow the Pod Security Standards, one entry per control.
public enum PodSecurityCheck {
    /// Capabilities `baseline` allows a container to add.
    static let baselineCapabilities: Set<String> = [
        "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
        "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
    ]
    static let safeSysctls: Set<String> = [
        "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
        "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
        "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
        "net.ipv4.tcp_keepalive_probes",
    ]
    static let seLinuxTypes: Set<String> = ["", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"]
    static let restrictedVolumes: Set<String> = [
        "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret",
    ]

    /// The controls of `level` that `pod` fails (empty: it would be admitted).
    /// `privileged` (and anything below baseline) admits everything.
    public static func violations(_ pod: JSON, level: String) -> [String] {
        let rank = PodSecurityLevel.rank(ofLabel: level)
        guard rank >= 1, let spec = pod["spec"] else { return [] }
        var out: [String] = []
        func add(_ reason: String) { if !out.contains(reason) { out.append(reason) } }
        let containers = ["containers", "initContainers", "ephemeralContainers"].flatMap { spec[$0]?.arrayValue ?? [] }
        let podContext = spec["securityContext"]

        // baseline
        for key in ["hostNetwork", "hostPID", "hostIPC"] where spec[key] == .bool(true) { add("\(key)=true") }
        for volume in spec["volumes"]?.arrayValue ?? [] where volume["hostPath"] != nil {
            add("hostPath volume \(volume["name"]?.stringValue ?? "")")
        }
        func seLinux(_ options: JSON?) {
            guard let options else { return }
            if !seLinuxTypes.contains(options["type"]?.stringValue ?? "") || options["user"] != nil || options["role"] != nil {
                add("seLinuxOptions")
            }
        }
        func seccomp(_ context: JSON?) -> String? { context?["seccompProfile"]?["type"]?.stringValue }
        seLinux(podContext?["seLinuxOptions"])
        if seccomp(podContext) == "Unconfined" { add("seccompProfile Unconfined") }
        if podContext?["windowsOptions"]?["hostProcess"] == .bool(true) { add("hostProcess") }
        for sysctl in podContext?["sysctls"]?.arrayValue ?? [] where !safeSysctls.contains(sysctl["name"]?.stringValue ?? "") {
            add("sysctl \(sysctl["name"]?.stringValue ?? "")")
        }
        for container in containers {
            let name = container["name"]?.stringValue ?? ""
            let context = container["securityContext"]
            if context?["privileged"] == .bool(true) { add("privileged container \(name)") }
            for added in context?["capabilities"]?["add"]?.arrayValue ?? [] {
                if let cap = added.stringValue, !baselineCapabilities.contains(cap) { add("capability \(cap) in \(name)") }
            }
            for port in container["ports"]?.arrayValue ?? [] where (port["hostPort"]?.intValue ?? 0) != 0 {
                add("hostPort in \(name)")
            }
            seLinux(context?["seLinuxOptions"])
            if let mount = context?["procMount"]?.stringValue, mount != "Default" { add("procMount \(mount) in \(name)") }
            if seccomp(context) == "Unconfined" { add("seccompProfile Unconfined in \(name)") }
            if context?["windowsOptions"]?["hostProcess"] == .bool(true) { add("hostProcess in \(name)") }
        }
        for member in pod["metadata"]?["annotations"]?.members ?? []
        where member.key.hasPrefix("container.apparmor.security.beta.kubernetes.io/") && member.value.stringValue == "unconfined" {
            add("AppArmor unconfined")
        }
        guard rank >= 2 else { return out }

        // restricted
        for volume in spec["volumes"]?.arrayValue ?? [] {
            let kinds = (volume.members ?? []).map(\.key).filter { $0 != "name" }
            if let kind = kinds.first, !restrictedVolumes.contains(kind) { add("volume type \(kind)") }
        }
        let podNonRoot = podContext?["runAsNonRoot"] == .bool(true)
        if podContext?["runAsUser"]?.intValue == 0 { add("runAsUser 0") }
        let podSeccomp = seccomp(podContext)
        for container in containers {
            let name = container["name"]?.stringValue ?? ""
            let context = container["securityContext"]
            if context?["allowPrivilegeEscalation"] != .bool(false) { add("allowPrivilegeEscalation not false in \(name)") }
            let nonRoot = context?["runAsNonRoot"].map { $0 == .bool(true) } ?? podNonRoot
            if !nonRoot { add("runAsNonRoot not true in \(name)") }
            if context?["runAsUser"]?.intValue == 0 { add("runAsUser 0 in \(name)") }
            let profile = seccomp(context) ?? podSeccomp
            if profile != "RuntimeDefault" && profile != "Localhost" { add("seccompProfile not RuntimeDefault in \(name)") }
            let drops = (context?["capabilities"]?["drop"]?.arrayValue ?? []).compactMap(\.stringValue)
            if !drops.contains("ALL") { add("capabilities not dropping ALL in \(name)") }
            for added in context?["capabilities"]?["add"]?.arrayValue ?? [] where added.stringValue != "NET_BIND_SERVICE" {
                add("capability \(added.stringValue ?? "") in \(name)")
            }
        }
        return out
    }
}
