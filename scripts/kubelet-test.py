#!/usr/bin/env python3
"""The kubelet-faithful test: runs the install bundle's Deployment the way a node
would, from the image `make image` wrote, and calls it the way the API server does.

  1. Reads the manifests users apply (the Deployment, its Secret and ConfigMaps, the
     Service, the webhook registrations) and the OCI image archive.
  2. Unpacks the image's layers into a root, and materializes each pod volume as the
     kubelet does (atomic-writer layout: files in a timestamped directory behind
     `..data` and per-key symlinks, owned by root with the volume's defaultMode; with
     a pod fsGroup, group-owned by it and group-readable, directories setgid).
  3. Starts the container's command (image Entrypoint, the container's args) from
     that root, read-only when readOnlyRootFilesystem says so, as runAsUser /
     runAsGroup with the fsGroup among its groups, no capabilities, no_new_privs,
     /proc, a minimal /dev, the volumes at their mountPaths, and the kubelet's env.
  4. Runs the startup, readiness and liveness probes as the kubelet does (scheme,
     named port resolved against the container's ports, path, timeouts, thresholds,
     TLS without verification, success on 200-399).
  5. Calls every webhook in both registrations as the API server does: the Service's
     port mapped to the container port, TLS verified against the registration's
     caBundle for the name <service>.<namespace>.svc, an AdmissionReview POSTed to
     the registration's path with ?timeout=; checks the answers.
  6. Sends SIGTERM and expects exit 0 within terminationGracePeriodSeconds.

It must run as root inside fresh mount, network and PID namespaces
(scripts/kubelet-test.sh does `unshare --mount --net --pid --fork`): the server
binds the pod's ports in a network namespace of its own, and only loopback exists.
"""
import argparse
import base64
import ctypes
import gzip
import http.client
import io
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tarfile
import time
import uuid

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from procfs import Process, ProcessMismatch  # noqa: E402

RESULTS = {"passed": 0, "failed": 0}


def check(ok, what, detail=""):
    RESULTS["passed" if ok else "failed"] += 1
    print(("ok     - " if ok else "FAILED - ") + what + (f": {detail}" if detail and not ok else ""), flush=True)
    return ok


def run(*argv):
    subprocess.run(argv, check=True)


# ---------------------------------------------------------------------------- image

def unpack_image(archive, root):
    """Applies the image's layers in order (whiteouts honoured) and returns its config."""
    with tarfile.open(archive) as outer:
        def blob(digest):
            return outer.extractfile("blobs/sha256/" + digest.split(":")[1]).read()
        index = json.loads(outer.extractfile("index.json").read())
        manifest = json.loads(blob(index["manifests"][0]["digest"]))
        config = json.loads(blob(manifest["config"]["digest"]))
        os.makedirs(root, exist_ok=True)
        for layer in manifest["layers"]:
            data = blob(layer["digest"])
            if layer["mediaType"].endswith("gzip"):
                data = gzip.decompress(data)
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                for member in tar.getmembers():
                    base = os.path.basename(member.name)
                    if base.startswith(".wh."):
                        target = os.path.join(root, os.path.dirname(member.name), base[4:])
                        shutil.rmtree(target, ignore_errors=True) if os.path.isdir(target) else None
                        if os.path.lexists(target):
                            os.remove(target)
                        continue
                    # The "tar" filter (where Python has it) keeps owners and modes but refuses
                    # paths and links that leave the root, as a runtime's unpacker does.
                    extra = {"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}
                    tar.extract(member, root, set_attrs=True, numeric_owner=True, **extra)
    return config


# -------------------------------------------------------------------------- volumes

def atomic_write(directory, files, fs_group):
    """The kubelet's AtomicWriter plus SetVolumeOwnership for secret, configMap and
    projected volumes. `files`: {relative path: (bytes, mode)}."""
    os.makedirs(directory)
    os.chmod(directory, 0o777)  # the emptyDir (tmpfs) under the volume
    stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime()) + uuid.uuid4().hex[:9]
    ts_dir = os.path.join(directory, stamp)
    os.mkdir(ts_dir)
    os.chmod(ts_dir, 0o755)
    for path, (content, mode) in files.items():
        full = os.path.join(ts_dir, path)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(content)
        os.chmod(full, mode)
        os.chown(full, 0, 0)
    os.symlink(stamp, os.path.join(directory, "..data"))
    for path in files:
        top = path.split("/")[0]
        link = os.path.join(directory, top)
        if not os.path.lexists(link):
            os.symlink(os.path.join("..data", top), link)
    if fs_group is not None:
        # volume_linux.go: chown -1:fsGroup; files |= 0440 (read-only volume), dirs also
        # get setgid and the execute bits.
        for here, dirs, names in os.walk(directory):
            for name in [None] + dirs + names:
                full = here if name is None else os.path.join(here, name)
                if os.path.islink(full):
                    continue
                st = os.lstat(full)
                os.lchown(full, -1, fs_group)
                mask = 0o440
                if os.path.isdir(full):
                    mask |= 0o2000 | 0o110
                os.chmod(full, (st.st_mode & 0o7777) | mask)


def atomic_update(directory, files, fs_group):
    """A later sync of the same volume, as AtomicWriter does it: the new files in a new
    timestamped directory, `..data` swapped to it by renaming a fresh symlink over
    it, the old directory removed. The mount sees the swap at once."""
    stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime()) + uuid.uuid4().hex[:9]
    ts_dir = os.path.join(directory, stamp)
    os.mkdir(ts_dir)
    os.chmod(ts_dir, 0o755)
    for path, (content, mode) in files.items():
        full = os.path.join(ts_dir, path)
        with open(full, "wb") as f:
            f.write(content)
        os.chmod(full, mode)
        if fs_group is not None:
            os.chown(full, 0, fs_group)
            os.chmod(full, mode | 0o440)
    if fs_group is not None:
        os.chown(ts_dir, 0, fs_group)
        os.chmod(ts_dir, 0o755 | 0o2000 | 0o550)
    old = os.readlink(os.path.join(directory, "..data"))
    os.symlink(stamp, os.path.join(directory, "..data_tmp"))
    os.rename(os.path.join(directory, "..data_tmp"), os.path.join(directory, "..data"))
    shutil.rmtree(os.path.join(directory, old))


def volume_files(volume, objects, namespace, token_ca):
    """The files of one pod volume, {path: (bytes, mode)}, as the kubelet would write them."""
    def items(data, spec, default_mode):
        mode = spec.get("defaultMode", default_mode)
        if spec.get("items"):
            return {i["path"]: (data[i["key"]], i.get("mode", mode)) for i in spec["items"]}
        return {k: (v, mode) for k, v in data.items()}

    if "secret" in volume:
        spec = volume["secret"]
        secret = objects.get(("Secret", namespace, spec["secretName"]))
        if secret is None:
            raise SystemExit(f"pod volume {volume['name']}: Secret {namespace}/{spec['secretName']} is not in the "
                             "manifests: the pod would stay in ContainerCreating")
        data = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
        data.update({k: v.encode() for k, v in (secret.get("stringData") or {}).items()})
        return items(data, spec, 0o644)
    if "configMap" in volume:
        spec = volume["configMap"]
        cm = objects.get(("ConfigMap", namespace, spec["name"]))
        if cm is None:
            raise SystemExit(f"pod volume {volume['name']}: ConfigMap {spec['name']} is not in the manifests")
        data = {k: v.encode() for k, v in (cm.get("data") or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in (cm.get("binaryData") or {}).items()})
        return items(data, spec, 0o644)
    if volume.get("name") == "kube-api-access":
        # The projected service-account volume the admission plugin adds.
        return {"token": (b"kubelet-test-token", 0o644), "ca.crt": (token_ca, 0o644),
                "namespace": (namespace.encode(), 0o644)}
    raise SystemExit(f"pod volume {volume['name']}: kind not supported by this test")


# ------------------------------------------------------------------------ container

libc = ctypes.CDLL(None, use_errno=True)
PR_SET_NO_NEW_PRIVS, PR_CAPBSET_DROP = 38, 24


def start_container(root, argv, env, uid, gid, groups, workdir, log_path, no_new_privs):
    log = open(log_path, "wb")
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            os.chroot(root)
            os.chdir(workdir or "/")
            for cap in range(64):
                libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)
            os.setgroups(groups)
            os.setgid(gid)
            os.setuid(uid)  # drops every capability: the container runs with none
            if no_new_privs:
                libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
            program = argv[0]
            if "/" not in program:
                for d in dict(e.split("=", 1) for e in env).get("PATH", "/usr/bin:/bin").split(":"):
                    if os.path.exists(os.path.join(d, program)):
                        program = os.path.join(d, program)
                        break
            os.execve(program, argv, dict(e.split("=", 1) for e in env))
        except BaseException as error:  # noqa: BLE001 - report and leave the child
            os.write(2, f"kubelet-test: cannot start the container: {error}\n".encode())
        os._exit(127)
    log.close()
    return pid


EXIT_CODES = {}


def exited(pid):
    """The container's exit code once it has exited (reaped once, remembered), else None."""
    if pid not in EXIT_CODES:
        done, status = os.waitpid(pid, os.WNOHANG)
        if not done:
            return None
        EXIT_CODES[pid] = os.waitstatus_to_exitcode(status)
    return EXIT_CODES[pid]


# --------------------------------------------------------------------------- probes

def port_number(port, container):
    if isinstance(port, int):
        return port
    for p in container.get("ports", []):
        if p.get("name") == port:
            return p["containerPort"]
    raise SystemExit(f"probe port {port!r} names no container port")


def http_probe(probe, container, pod_ip):
    """One probe attempt as prober/http.go does it: (success, detail)."""
    get = probe["httpGet"]
    scheme = get.get("scheme", "HTTP")
    port = port_number(get["port"], container)
    host = get.get("host") or pod_ip
    timeout = probe.get("timeoutSeconds", 1)
    try:
        if scheme == "HTTPS":
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE  # the kubelet's prober skips verification
            conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        headers = {"User-Agent": "kube-probe/1.31", "Accept": "*/*", "Connection": "close"}
        for h in get.get("httpHeaders", []):
            headers[h["name"]] = h["value"]
        conn.request("GET", get.get("path", "/"), headers=headers)
        response = conn.getresponse()
        body = response.read(1024)
        conn.close()
        return 200 <= response.status < 400, f"{scheme} :{port}{get.get('path', '/')} -> {response.status} {body[:80]!r}"
    except Exception as error:  # noqa: BLE001 - a failed probe is a result
        return False, f"{scheme} :{port}{get.get('path', '/')} -> {type(error).__name__}: {error}"


def run_probe(name, probe, container, pod_ip, pid, want_threshold=True):
    """Waits initialDelaySeconds, then probes every periodSeconds until successThreshold
    successes; fails after failureThreshold consecutive failures (the kubelet would
    restart the container) or when the container exits."""
    if probe is None:
        return check(False, f"{name}: the container declares one")
    time.sleep(probe.get("initialDelaySeconds", 0))
    failures, successes, last = 0, 0, ""
    threshold = probe.get("failureThreshold", 3)
    while True:
        code = exited(pid)
        if code is not None:
            return check(False, f"{name}: container running", f"exited with {code}")
        ok, last = http_probe(probe, container, pod_ip)
        if ok:
            successes += 1
            if successes >= probe.get("successThreshold", 1):
                return check(True, f"{name}: {last}")
        else:
            failures += 1
            successes = 0
            if failures >= threshold and want_threshold:
                return check(False, f"{name} within {threshold} x {probe.get('periodSeconds', 10)}s", last)
        time.sleep(probe.get("periodSeconds", 10))


# ------------------------------------------------------------------- API server side

class PinnedHTTPS(http.client.HTTPSConnection):
    """Connects to the endpoint address but verifies the certificate for `host`, as
    the API server does for a service reference (ServerName <svc>.<ns>.svc)."""

    def __init__(self, address, server_name, port, context, timeout):
        super().__init__(server_name, port, context=context, timeout=timeout)
        self.address = address

    def connect(self):
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def review(rule, operation, namespace, obj, old=None, subresource=""):
    group = rule["apiGroups"][0]
    resource = rule["resources"][0].split("/")[0]
    kinds = {"pods": "Pod", "namespaces": "Namespace", "networkpolicies": "NetworkPolicy", "services": "Service",
             "deployments": "Deployment", "podtemplates": "PodTemplate", "jobs": "Job"}
    uid = str(uuid.uuid4())
    return uid, {
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": group, "version": "v1", "kind": kinds.get(resource, "Unknown")},
            "resource": {"group": group, "version": "v1", "resource": resource},
            "subResource": subresource or None,
            "requestKind": {"group": group, "version": "v1", "kind": kinds.get(resource, "Unknown")},
            "name": obj.get("metadata", {}).get("name", ""),
            "namespace": namespace,
            "operation": operation,
            "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
            "object": obj if operation != "DELETE" else None,
            "oldObject": old,
            "dryRun": False,
            "options": None,
        },
    }


def call_webhook(webhook, objects, containers, pod_ip, body, server_name=None):
    """POSTs `body` the way the API server's webhook client does. Returns (status, json)."""
    service = webhook["clientConfig"]["service"]
    svc = objects[("Service", service["namespace"], service["name"])]
    port = service.get("port", 443)
    target = next(p.get("targetPort", p["port"]) for p in svc["spec"]["ports"] if p["port"] == port)
    container_port = None
    for c in containers:
        try:
            container_port = port_number(target, c)
            break
        except SystemExit:
            continue
    ca = base64.b64decode(webhook["clientConfig"]["caBundle"]).decode()
    ctx = ssl.create_default_context(cadata=ca)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    name = server_name or f"{service['name']}.{service['namespace']}.svc"
    conn = PinnedHTTPS(pod_ip, name, container_port, ctx, webhook.get("timeoutSeconds", 10))
    path = service.get("path", "/") + f"?timeout={webhook.get('timeoutSeconds', 10)}s"
    conn.request("POST", path, body=json.dumps(body).encode(),
                 headers={"Content-Type": "application/json", "Accept": "application/json, */*"})
    response = conn.getresponse()
    data = response.read()
    LAST_PEER["der"] = conn.sock.getpeercert(binary_form=True) if conn.sock else None
    conn.close()
    return response.status, json.loads(data) if data else None


LAST_PEER = {}


# ----------------------------------------------------------------------------- main

def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--manifests", required=True, help="what users apply (multi-document YAML)")
    parser.add_argument("--image", required=True, help="the OCI archive from make image")
    parser.add_argument("--work", required=True, help="scratch directory (removed by the caller)")
    parser.add_argument("--rotated", help="directory with a renewed tls.crt/tls.key/ca.crt (same CA) for the rotation check")
    args = parser.parse_args()
    if os.getuid() != 0 or not os.path.exists("/proc/self/ns/net"):
        raise SystemExit("kubelet-test: run as root in new namespaces (scripts/kubelet-test.sh)")
    run("ip", "link", "set", "lo", "up")
    pod_ip = "127.0.0.1"  # the pod's own network namespace; only loopback exists

    with open(args.manifests) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    objects = {(d["kind"], d.get("metadata", {}).get("namespace"), d["metadata"]["name"]): d for d in docs}
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    namespace = deployment["metadata"]["namespace"]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    print(f"kubelet test: Deployment {namespace}/{deployment['metadata']['name']}, image {container['image']}", flush=True)

    root = os.path.join(args.work, "rootfs")
    config = unpack_image(args.image, root)
    image_config = config.get("config", {})
    shells = [os.path.join(d, n) for d, _, names in os.walk(root) for n in names if n in ("sh", "bash", "dash", "busybox")]
    check(not shells, "the image holds no shell", ", ".join(shells))
    check((image_config.get("User") or "0").split(":")[0] not in ("", "0", "root"), "the image's own user is not root",
          str(image_config.get("User")))
    tag = container["image"].rsplit(":", 1)[-1] if ":" in container["image"].rsplit("/", 1)[-1] else "latest"
    check(tag == image_config.get("Labels", {}).get("org.opencontainers.image.version") and tag != "latest",
          f"the Deployment names the image's versioned tag ({container['image']})")
    check(container.get("imagePullPolicy") == "IfNotPresent", "imagePullPolicy IfNotPresent (a loaded image is used)",
          str(container.get("imagePullPolicy")))
    check(pod.get("nodeSelector", {}).get("kubernetes.io/os") == "linux", "nodeSelector kubernetes.io/os: linux")

    # Security context: container settings override the pod's; the image's User last.
    psc, csc = pod.get("securityContext", {}), container.get("securityContext", {})
    image_user = (image_config.get("User") or "0").split(":")
    uid = int(csc.get("runAsUser", psc.get("runAsUser", image_user[0])))
    gid = int(csc.get("runAsGroup", psc.get("runAsGroup", image_user[1] if len(image_user) > 1 else uid)))
    fs_group = psc.get("fsGroup")
    groups = sorted({gid} | ({fs_group} if fs_group is not None else set()) | set(psc.get("supplementalGroups", [])))
    if csc.get("runAsNonRoot", psc.get("runAsNonRoot")):
        check(uid != 0, "runAsNonRoot holds", "the kubelet refuses to start a root container")

    # Volumes, then the mount namespace: root read-only, volumes at their mountPaths.
    token_ca = objects.get(("Secret", namespace, f"{deployment['metadata']['name']}-tls"), {}).get("data", {}).get("ca.crt", "")
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    mounts = list(container.get("volumeMounts", []))
    if pod.get("automountServiceAccountToken", True):
        sa = objects.get(("ServiceAccount", namespace, pod.get("serviceAccountName", "default")), {})
        if sa.get("automountServiceAccountToken", True):
            volumes["kube-api-access"] = {"name": "kube-api-access"}
            mounts.append({"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                           "readOnly": True})
    volume_dirs = {}
    for name, volume in volumes.items():
        directory = os.path.join(args.work, "volumes", name)
        atomic_write(directory, volume_files(volume, objects, namespace, base64.b64decode(token_ca or "")), fs_group)
        volume_dirs[name] = directory
    for path in ["proc", "dev", "sys", "etc"] + [m["mountPath"].lstrip("/") for m in mounts]:
        os.makedirs(os.path.join(root, path), exist_ok=True)
    for name in ["hosts", "hostname", "resolv.conf"]:
        open(os.path.join(root, "etc", name), "a").close()
    run("mount", "--bind", root, root)
    run("mount", "-t", "proc", "proc", os.path.join(root, "proc"))
    run("mount", "-t", "tmpfs", "-o", "mode=755,nosuid", "tmpfs", os.path.join(root, "dev"))
    for dev in ["null", "zero", "full", "random", "urandom", "tty"]:
        open(os.path.join(root, "dev", dev), "a").close()
        run("mount", "--bind", "/dev/" + dev, os.path.join(root, "dev", dev))
    with open(os.path.join(args.work, "hosts"), "w") as f:
        f.write(f"127.0.0.1\tlocalhost\n{pod_ip}\tpxguard-pod\n")
    run("mount", "--bind", os.path.join(args.work, "hosts"), os.path.join(root, "etc", "hosts"))
    for m in mounts:
        target = os.path.join(root, m["mountPath"].lstrip("/"))
        run("mount", "--bind", volume_dirs[m["name"]], target)
        if m.get("readOnly"):
            run("mount", "-o", "remount,bind,ro", target)
    if csc.get("readOnlyRootFilesystem"):
        run("mount", "-o", "remount,bind,ro", root)

    argv = container.get("command") or image_config.get("Entrypoint") or []
    argv = argv + (container.get("args") if "args" in container or "command" in container else image_config.get("Cmd") or [])
    env = list(image_config.get("Env", [])) + [
        "HOSTNAME=pxguard-pod", "KUBERNETES_SERVICE_HOST=127.0.0.1", "KUBERNETES_SERVICE_PORT=6443",
        "KUBERNETES_SERVICE_PORT_HTTPS=6443"]
    for e in container.get("env", []):
        if "value" in e:
            env.append(f"{e['name']}={e['value']}")
        elif e.get("valueFrom", {}).get("fieldRef"):
            field = e["valueFrom"]["fieldRef"]["fieldPath"]
            env.append(f"{e['name']}=" + {"metadata.namespace": namespace, "metadata.name": "pxguard-pod",
                                           "status.podIP": pod_ip, "spec.nodeName": "node-1"}.get(field, ""))
    log_path = os.path.join(args.work, "container.log")
    print(f"kubelet test: running {argv} as {uid}:{gid} groups {groups}", flush=True)
    pid = start_container(root, argv, env, uid, gid, groups, image_config.get("WorkingDir"), log_path,
                          csc.get("allowPrivilegeEscalation") is False)
    try:
        started = run_probe("startupProbe", container.get("startupProbe"), container, pod_ip, pid)
        if started:
            run_probe("readinessProbe", container.get("readinessProbe"), container, pod_ip, pid)
            run_probe("livenessProbe", container.get("livenessProbe"), container, pod_ip, pid)
            api_server_calls(objects, docs, pod["containers"], pod_ip, pid)
            if args.rotated:
                rotation(args.rotated, objects, docs, pod, pod_ip, volume_dirs, fs_group, pid)
            memory_check(root, pid, argv, container)
        grace = pod.get("terminationGracePeriodSeconds", 30)
        if exited(pid) is None:
            os.kill(pid, signal.SIGTERM)
            sigterm_phase(objects, docs, pod["containers"], container, pod_ip, pid)
            deadline = time.time() + grace
            code = None
            while time.time() < deadline and code is None:
                time.sleep(0.1)
                code = exited(pid)
            check(code == 0, f"SIGTERM: exit 0 within terminationGracePeriodSeconds ({grace}s)", f"exit {code}")
    finally:
        if exited(pid) is None:
            os.kill(pid, signal.SIGKILL)
        with open(log_path, "rb") as f:
            lines = f.read().decode(errors="replace").splitlines()
        if RESULTS["failed"]:
            print("container log (last 20 lines):\n  " + "\n  ".join(lines[-20:]), flush=True)
    print(f"kubelet test: {RESULTS['passed']} passed, {RESULTS['failed']} failed", flush=True)
    sys.exit(1 if RESULTS["failed"] else 0)


def memory_check(root, pid, argv, container):
    """Resident memory under the container's limit, read from the /proc mounted for the
    pod's PID namespace (the host's /proc holds another process under that number), after
    its command line proves it is the container's process."""
    limit = container.get("resources", {}).get("limits", {}).get("memory", "")
    try:
        process = Process(pid, argv[0], proc_root=os.path.join(root, "proc"))
        measured = process.verify()
        rss_kib = process.rss_kib()
    except ProcessMismatch as error:
        check(False, "resident memory of the container's process", str(error))
        return
    check(True, f"measuring pid {pid} in the pod's /proc: {' '.join(measured[:2])}")
    try:
        Process(pid, argv[0])
        host_differs = False
    except ProcessMismatch:
        host_differs = True
    check(host_differs, f"the host's /proc/{pid} is another process (the pod's PID namespace is its own)")
    if not limit.endswith("Mi"):
        check(False, "resident memory: the container has a memory limit in Mi", f"limits.memory = {limit!r}")
        return
    check(rss_kib * 1024 < int(limit[:-2]) << 20, f"resident memory {rss_kib} KiB under the {limit} limit")


def rotation(rotated, objects, docs, pod, pod_ip, volume_dirs, fs_group, pid):
    """The kubelet syncs a renewed Secret (cert-manager renewal, install.sh re-run) into
    the volume: new connections must get the new certificate, still verified against
    the registration's caBundle (the CA is kept), with no restart."""
    webhook = next(d for d in docs if d["kind"] == "ValidatingWebhookConfiguration")["webhooks"][0]
    volume = next(v for v in pod["volumes"] if "secret" in v)
    rule = webhook["rules"][0]
    call_webhook(webhook, objects, pod["containers"], pod_ip, review(rule, "CREATE", "default", {"metadata": {"name": "a"}})[1])
    before = LAST_PEER.get("der")
    files = {}
    for key in ("tls.crt", "tls.key", "ca.crt"):
        with open(os.path.join(rotated, key), "rb") as f:
            files[key] = (f.read(), volume["secret"].get("defaultMode", 0o644))
    atomic_update(volume_dirs[volume["name"]], files, fs_group)
    after, status = before, None
    deadline = time.time() + 10
    while time.time() < deadline and after == before:
        time.sleep(0.5)
        try:
            status, _ = call_webhook(webhook, objects, pod["containers"], pod_ip,
                                     review(rule, "CREATE", "default", {"metadata": {"name": "b"}})[1])
            after = LAST_PEER.get("der")
        except Exception as error:  # noqa: BLE001
            status = f"{type(error).__name__}: {error}"
    check(after != before and status == 200 and exited(pid) is None,
          "a renewed secret synced by the kubelet (..data swap) is served to new connections, verified by the same caBundle",
          f"status {status}, certificate changed: {after != before}")


def sigterm_phase(objects, docs, containers, container, pod_ip, pid):
    """Right after SIGTERM the pod must report not ready (the endpoints controller
    removes it) while it still answers reviews from API servers that have not yet
    seen the change: a rolling update drops none."""
    time.sleep(0.5)
    ok, detail = http_probe(container["readinessProbe"], container, pod_ip)
    check(not ok and "503" in detail, "after SIGTERM: readinessProbe fails at once (503)", detail)
    webhook = next(d for d in docs if d["kind"] == "ValidatingWebhookConfiguration")["webhooks"][0]
    rule = webhook["rules"][0]
    uid, body = review(rule, "CREATE", "default", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "late"},
                                                   "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    try:
        status, answer = call_webhook(webhook, objects, containers, pod_ip, body)
        check(status == 200 and (answer or {}).get("response", {}).get("uid") == uid,
              "after SIGTERM: a review is still answered while endpoints drop the pod", f"HTTP {status}")
    except Exception as error:  # noqa: BLE001
        check(False, "after SIGTERM: a review is still answered while endpoints drop the pod", f"{type(error).__name__}: {error}")


def api_server_calls(objects, docs, containers, pod_ip, pid):
    registrations = [d for d in docs if d["kind"] in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")]
    check(len(registrations) == 2, "both webhook registrations are in the manifests")
    host_pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "escape", "namespace": "default"},
                "spec": {"hostNetwork": True, "containers": [{"name": "c", "image": "busybox"}]}}
    for registration in registrations:
        for webhook in registration["webhooks"]:
            what = f"{registration['kind']} {webhook['name']}"
            if not check(bool(webhook["clientConfig"].get("caBundle")), f"{what}: caBundle set"):
                continue
            rule = webhook["rules"][0]
            resource = rule["resources"][0]
            subresource = resource.split("/")[1] if "/" in resource else ""
            obj = host_pod if resource == "pods" else {"apiVersion": "v1", "metadata": {"name": "kubelet-test"}}
            uid, body = review(rule, rule["operations"][0], "default", obj,
                               old=obj if rule["operations"][0] in ("UPDATE", "DELETE") else None, subresource=subresource)
            try:
                status, answer = call_webhook(webhook, objects, containers, pod_ip, body)
                response = (answer or {}).get("response", {})
                ok = status == 200 and response.get("uid") == uid and answer.get("apiVersion") == "admission.k8s.io/v1"
                check(ok, f"{what}: TLS verified against caBundle for the service name, {rule['operations'][0]} "
                          f"{resource} answered", f"HTTP {status} {answer}")
                if resource == "pods":
                    check(response.get("allowed") is False and response.get("status", {}).get("code") == 403
                          and response["status"].get("message", "").startswith("pxguard:"),
                          f"{what}: a hostNetwork pod in namespace default is denied", json.dumps(response)[:300])
                if webhook["name"].startswith("namespaces.mutate"):
                    check(response.get("patchType") == "JSONPatch" and bool(response.get("patch")),
                          f"{what}: a new namespace gets the guard's JSONPatch", json.dumps(response)[:300])
            except Exception as error:  # noqa: BLE001
                check(False, f"{what}: call as the API server", f"{type(error).__name__}: {error}")
        if exited(pid) is not None:
            return
    # The negative control: the same call under another name must fail verification,
    # or the checks above prove nothing.
    webhook = registrations[0]["webhooks"][0]
    try:
        call_webhook(webhook, objects, containers, pod_ip, review(webhook["rules"][0], "CREATE", "default", host_pod)[1],
                     server_name="pxguard.elsewhere.svc")
        check(False, "a certificate for another name is refused (control)", "the call succeeded")
    except ssl.SSLCertVerificationError:
        check(True, "a certificate for another name is refused (control)")


if __name__ == "__main__":
    main()
