"""Grouped bar chart of median req/s and p99 from compare.sh outputs: one group per
harness run, each with its own nginx, Go peer and pxguard rows (runs are never mixed).
Usage: chart.py OUT.png LABEL=compare.txt [LABEL=compare.txt ...]"""
import subprocess, sys
from results import medians

try:
    import matplotlib
except ImportError:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--root-user-action=ignore", "matplotlib"], check=True)
    import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

out, groups = sys.argv[1], [a.split("=", 1) for a in sys.argv[2:]]
roles = [("nginx", ("limit-nginx", "nginx-2w"), "#999"), ("Go peer", ("peer-go",), "#6a9fd8"),
         ("pxguard", ("pxguard", "pxguard-1"), "#e07b39")]
fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
width = 0.26
for g, (label, path) in enumerate(groups):
    m = medians(path)
    for r, (role, names, color) in enumerate(roles):
        name = next((n for n in names if n in m), None)
        if name is None:
            continue
        for ax, value in zip(axes, m[name]):
            x = g + (r - 1) * width
            ax.bar(x, value, width, color=color, label=role if g == 0 else None)
            ax.text(x, value, f"{value:,.0f}", ha="center", va="bottom", fontsize=7)
for ax, title in zip(axes, ("throughput (req/s, median of rounds)", "p99 latency (µs, median of rounds)")):
    ax.set_xticks(range(len(groups)), [label.replace(" vs ", "\nvs ") for label, _ in groups], fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.set_ylim(top=ax.get_ylim()[1] * 1.2)  # room for the legend
axes[0].legend(fontsize=8, ncol=3, loc="upper center")
fig.suptitle("3.3 KB pod review over TLS, wrk 32 keep-alive connections; each group is one harness run", fontsize=10)
fig.tight_layout()
fig.savefig(out, dpi=110)
