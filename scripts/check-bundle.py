#!/usr/bin/env python3
"""Checks of the install bundle that need more than a schema (scripts/check-manifests.sh):

  kustomize   `kubectl kustomize deploy` equals deploy/base/pxguard.yaml object for
              object, in order; the cert-manager overlay is that bundle plus the CA
              injection annotation on both registrations and the Issuers/Certificates
              for the Service's names (fields checked against what cert-manager v1 accepts).
  cel         every matchConditions expression compiles and evaluates with an
              independent CEL implementation (cel-python), and leaves exactly the
              exempt users, exempt groups and cleanup DELETEs to the API server.

usage: check-bundle.py kustomize BASE.yaml OVERLAY.yaml NAME=KUSTOMIZED.yaml...
       check-bundle.py cel WEBHOOKS.yaml EXEMPT_USER|- EXEMPT_GROUP|-
"""
import copy
import sys

import yaml

FAILED = []


def check(ok, what):
    print(("ok     - " if ok else "FAILED - ") + what)
    if not ok:
        FAILED.append(what)


def load(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def kustomize(base_path, overlay_path, *built_paths):
    base, overlay = load(base_path), load(overlay_path)
    for built_path in built_paths:
        name, path = built_path.split("=", 1)
        check(base == load(path), f"kubectl kustomize {name} equals {base_path} ({len(base)} objects, same order)")
    key = lambda d: (d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"])  # noqa: E731
    extra = [d for d in overlay if d["apiVersion"].startswith("cert-manager.io/")]
    rest = {key(d): d for d in overlay if not d["apiVersion"].startswith("cert-manager.io/")}
    expected = {}
    for d in base:
        d = copy.deepcopy(d)
        if d["kind"] in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
            service = d["webhooks"][0]["clientConfig"]["service"]
            d["metadata"]["annotations"] = {"cert-manager.io/inject-ca-from": f"{service['namespace']}/{service['name']}"}
        if d["kind"] == "Deployment":
            # The pods wait for cert-manager's Secret instead of starting on the optional volume.
            for v in d["spec"]["template"]["spec"]["volumes"]:
                if "secret" in v:
                    v["secret"]["optional"] = False
        expected[key(d)] = d
    check(rest == expected, "the cert-manager overlay is the base plus cert-manager.io/inject-ca-from on both registrations and a required certs volume")
    for d in overlay:
        if d["kind"] in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
            check(all("caBundle" not in w["clientConfig"] for w in d["webhooks"]),
                  f"{d['kind']}: no caBundle of its own (the CA injector owns it)")
    deployment = next(d for d in base if d["kind"] == "Deployment")
    service = next(d for d in base if d["kind"] == "Service")
    namespace, name = service["metadata"]["namespace"], service["metadata"]["name"]
    secret = next(v["secret"]["secretName"] for v in deployment["spec"]["template"]["spec"]["volumes"] if "secret" in v)
    allowed = {
        "Issuer": {"selfSigned", "ca"},
        "Certificate": {"secretName", "dnsNames", "duration", "renewBefore", "privateKey", "usages", "issuerRef",
                        "isCA", "commonName"},
    }
    issuers = {d["metadata"]["name"]: d for d in extra if d["kind"] == "Issuer"}
    certificates = {d["metadata"]["name"]: d for d in extra if d["kind"] == "Certificate"}
    for d in extra:
        check(d["apiVersion"] == "cert-manager.io/v1" and d["metadata"].get("namespace") == namespace
              and set(d["spec"]) <= allowed[d["kind"]], f"{d['kind']} {d['metadata']['name']}: cert-manager v1 fields only")
        if d["kind"] == "Certificate":
            ref = d["spec"]["issuerRef"]
            check(ref.get("kind") == "Issuer" and ref["name"] in issuers, f"Certificate {d['metadata']['name']}: its Issuer exists")
            check(set(d["spec"]["privateKey"]) <= {"algorithm", "size", "rotationPolicy", "encoding"},
                  f"Certificate {d['metadata']['name']}: privateKey fields")
        if d["kind"] == "Issuer" and "ca" in d["spec"]:
            check(any(c["spec"]["secretName"] == d["spec"]["ca"]["secretName"] and c["spec"].get("isCA")
                      for c in certificates.values()), f"Issuer {d['metadata']['name']}: its CA secret is issued")
    serving = certificates.get(name)
    check(serving is not None and serving["spec"]["secretName"] == secret,
          f"Certificate {namespace}/{name} (the inject-ca-from source) writes the Secret the Deployment mounts ({secret})")
    if serving:
        check(f"{name}.{namespace}.svc" in serving["spec"]["dnsNames"],
              f"the serving certificate names {name}.{namespace}.svc, the name the API server verifies")


def cel(webhooks_path, user, group):
    import celpy  # cel-python: an independent CEL implementation

    env = celpy.Environment()
    registrations = load(webhooks_path)
    cleanup = ["system:serviceaccount:kube-system:namespace-controller",
               "system:serviceaccount:kube-system:generic-garbage-collector", "system:kube-controller-manager"]
    cases = [
        ("alice CREATE", {"username": "alice", "groups": ["system:authenticated"]}, "CREATE", True),
        ("alice DELETE", {"username": "alice", "groups": ["system:authenticated"]}, "DELETE", True),
        ("a user with no groups", {"username": "bob"}, "UPDATE", True),
        (f"exempt user {user}", {"username": user, "groups": []}, "DELETE", False),
        (f"exempt group {group}", {"username": "carol", "groups": ["system:authenticated", group]}, "UPDATE", False),
    ]
    cases = [c for c in cases if not (c[0].startswith("exempt user -") or c[0].startswith("exempt group -"))]
    cases += [(f"{who} DELETE", {"username": who, "groups": ["system:serviceaccounts"]}, "DELETE", False) for who in cleanup] + [
        (f"{who} UPDATE", {"username": who, "groups": ["system:serviceaccounts"]}, "UPDATE", True) for who in cleanup]
    # R8: the endpoint controllers' writes stay at the API server (any operation), on the endpoints webhook only.
    controllers = ["system:serviceaccount:kube-system:endpoint-controller",
                   "system:serviceaccount:kube-system:endpointslice-controller",
                   "system:serviceaccount:kube-system:endpointslicemirroring-controller", "system:kube-controller-manager"]
    named = {"metadata": {"name": "team-a"}}
    for registration in registrations:
        for webhook in registration["webhooks"]:
            programs = []
            for condition in webhook.get("matchConditions", []):
                ast = env.compile(condition["expression"])
                programs.append(env.program(ast))
            check(bool(programs), f"{webhook['name']}: has matchConditions")
            endpoints = webhook["name"].startswith("endpoints.")
            for label, user_info, operation, sent in cases:
                if endpoints and user_info["username"] in controllers:
                    sent = False
                activation = {"request": celpy.json_to_cel({"operation": operation, "userInfo": user_info}),
                              "object": celpy.json_to_cel(named)}
                result = all(bool(p.evaluate(activation)) for p in programs)
                if webhook["name"].startswith("namespace-names.") and group == "system:masters":
                    continue
                check(result == sent, f"{webhook['name']}: {label} is {'sent to pxguard' if sent else 'left to the API server'}")
            if endpoints:
                for who in controllers:
                    activation = {"request": celpy.json_to_cel({"operation": "UPDATE", "userInfo": {"username": who}}),
                                  "object": celpy.json_to_cel(named)}
                    check(not all(bool(p.evaluate(activation)) for p in programs), f"{webhook['name']}: {who} is left to the API server")
            if webhook["name"] == "namespaces.mutate.pxguard.io":
                # M1 has no namespaceSelector: its condition decides, and must not error on a
                # nameless (generateName) namespace, which failurePolicy Ignore would skip.
                check("namespaceSelector" not in webhook, f"{webhook['name']}: no namespaceSelector")
                for label, metadata, sent in [
                    ("a named namespace", {"name": "team-a"}, True),
                    ("a generateName namespace with a spoofed name label",
                     {"generateName": "team-", "labels": {"kubernetes.io/metadata.name": "kube-system"}}, True),
                    ("an empty name", {"name": "", "generateName": "x-"}, True),
                    ("the exempt name kube-system", {"name": "kube-system"}, False),
                ]:
                    activation = {"request": celpy.json_to_cel({"operation": "CREATE", "userInfo": {"username": "alice"}}),
                                  "object": celpy.json_to_cel({"metadata": metadata})}
                    result = all(bool(p.evaluate(activation)) for p in programs)
                    check(result == sent, f"{webhook['name']}: {label} is {'mutated' if sent else 'left alone'}")
            if webhook["name"].startswith("namespace-names."):
                activation = {"request": celpy.json_to_cel(
                    {"operation": "CREATE", "userInfo": {"username": "root", "groups": ["system:masters"]}})}
                check(not all(bool(p.evaluate(activation)) for p in programs),
                      f"{webhook['name']}: system:masters may create exempt names")


if __name__ == "__main__":
    if len(sys.argv) >= 5 and sys.argv[1] == "kustomize":
        kustomize(*sys.argv[2:])
    elif len(sys.argv) == 5 and sys.argv[1] == "cel":
        cel(*sys.argv[2:])
    else:
        sys.exit(__doc__)
    if FAILED:
        sys.exit(f"check-bundle: {len(FAILED)} failed")
