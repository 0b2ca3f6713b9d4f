#!/usr/bin/env bash
# The monitoring component (deploy/components/monitoring), offline:
#  - `kubectl kustomize deploy/overlays/monitoring` builds, and adds the metrics listener
#    flag and port, the metrics Service, the ServiceMonitor, the PrometheusRule and the
#    dashboard ConfigMap to the bundle;
#  - the PrometheusRule's groups pass `promtool check rules`, and every alert is covered
#    by `promtool test rules` (alerts.test.yaml);
#  - the dashboard is JSON whose queries name only pxguard series the rules file knows or
#    the server exports (the Swift test MonitoringRulesTests checks the latter against a
#    real scrape).
# Needs promtool (installed with `apt-get install -y prometheus` when missing and
# running as root), kubectl (client) and PyYAML (from PyPI when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v promtool >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq prometheus >/dev/null 2>&1 || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq prometheus >/dev/null 2>&1; } || true
fi
command -v promtool >/dev/null 2>&1 || { echo "check-monitoring: needs promtool: apt-get install -y prometheus" >&2; exit 1; }
command -v kubectl >/dev/null 2>&1 || { echo "check-monitoring: needs kubectl (client only, for kubectl kustomize)" >&2; exit 1; }
python3 -c 'import yaml' 2>/dev/null || python3 -m pip install -q --root-user-action=ignore pyyaml >/dev/null 2>&1 \
  || { echo "check-monitoring: cannot install PyYAML from PyPI" >&2; exit 1; }
component=deploy/components/monitoring
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

kubectl kustomize deploy/overlays/monitoring > "$work/bundle.yaml"
python3 - "$work/bundle.yaml" "$component" "$work" <<'PY'
import json, re, sys, yaml
bundle_path, component, work = sys.argv[1:4]
docs = [d for d in yaml.safe_load_all(open(bundle_path)) if d]
kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
for want in [("Service", "pxguard-metrics"), ("ServiceMonitor", "pxguard"), ("PrometheusRule", "pxguard"),
             ("ConfigMap", "pxguard-grafana-dashboard"), ("Deployment", "pxguard")]:
    assert want in kinds, f"monitoring overlay lacks {want}"
deployment = next(d for d in docs if d["kind"] == "Deployment")
container = deployment["spec"]["template"]["spec"]["containers"][0]
args = container["args"]
assert args[args.index("--metrics-listen") + 1] == "0.0.0.0:9090", args
assert {"name": "metrics", "containerPort": 9090, "protocol": "TCP"} in container["ports"], container["ports"]
rule = next(d for d in docs if d["kind"] == "PrometheusRule")
with open(f"{work}/rules.yaml", "w") as f:
    yaml.safe_dump({"groups": rule["spec"]["groups"]}, f)
alerts = [r["alert"] for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
tests = yaml.safe_load(open(f"{component}/alerts.test.yaml"))
tested = {a["alertname"] for t in tests["tests"] for a in t.get("alert_rule_test", []) if a.get("exp_alerts")}
untested = [a for a in alerts if a not in tested]
assert not untested, f"alerts without a firing test in alerts.test.yaml: {untested}"
dashboard_cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "pxguard-grafana-dashboard")
assert dashboard_cm["metadata"]["labels"].get("grafana_dashboard") == "1"
dashboard = json.loads(dashboard_cm["data"]["pxguard-dashboard.json"])
exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
names = sorted(set(re.findall(r"pxguard_[a-z_]+", " ".join(exprs + [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]))))
open(f"{work}/names.txt", "w").write("\n".join(names) + "\n")
print(f"check-monitoring: overlay builds; {len(alerts)} alerts, all tested; dashboard: {len(dashboard['panels'])} panels over {len(names)} pxguard series")
PY
promtool check rules "$work/rules.yaml" >/dev/null
cp "$component/alerts.test.yaml" "$work/"
(cd "$work" && promtool test rules alerts.test.yaml)
