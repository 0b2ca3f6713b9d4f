#!/usr/bin/env bash
# Times config parsing on hostile sizes (issue 15 item 6): a 40,000-item list, a 1 MiB
# list, an 80,000-deep block document and an 80,000-deep flow document. Prints seconds
# and the exit status per case; a crash shows as status >= 128. Not a test: a figure.
#   scripts/yaml-scale.sh [path/to/pxguard]   (default .build/debug/pxguard)
set -u
bin=${1:-.build/debug/pxguard}
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
python3 - "$dir" <<'PY'
import sys
d = sys.argv[1]
def write(name, text):
    open(f"{d}/{name}", "w").write(text)
write("list-40000.yaml", "exemptNamespaces:\n" + "".join(f"  - ns-{i}\n" for i in range(40000)))
items, size = [], 0
while size < (1 << 20) - 64:  # just under the 1 MiB config limit
    line = f"  - namespace-{len(items)}\n"; items.append(line); size += len(line)
write("list-1MiB.yaml", "exemptNamespaces:\n" + "".join(items))
# 80,000 nested one-item block sequences: "- - - - ... x"
# 80,000 nested block sequences ("- - - ... x", 160 KB) and 80,000 nested flow sequences.
write("deep-block-80000.yaml", "- " * 80000 + "x\n")
write("deep-flow-80000.yaml", "[" * 80000 + "]" * 80000 + "\n")
PY
printf '%-24s %10s %s\n' case seconds status
for f in list-40000 list-1MiB deep-block-80000 deep-flow-80000; do
    start=$(date +%s.%N)
    timeout 120 "$bin" render iptables --config "$dir/$f.yaml" >/dev/null 2>"$dir/err"
    status=$?
    end=$(date +%s.%N)
    printf '%-24s %10.3f %s %s\n' "$f" "$(echo "$end - $start" | bc)" "$status" "$(head -c 120 "$dir/err" | tr '\n' ' ')"
done
