#!/usr/bin/env python3
"""Plots fan-out latency percentiles against offered load for every target.

Reads bench/results/PREFIX-*.json (written by bench/run-fanout.sh; PREFIX is
the first argument, default "fanout") and writes
bench/results/PREFIX-latency.png.  Needs matplotlib (pip install matplotlib).
"""
import glob
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

here = os.path.dirname(os.path.abspath(__file__))
prefix = sys.argv[1] if len(sys.argv) > 1 else "fanout"
runs = {}
for path in glob.glob(os.path.join(here, "results", f"{prefix}-*.json")):
    with open(path) as f:
        result = json.load(f)
    offered = result["senders"] * result["rate_per_sender"] * (result["members"] - 1)
    if offered == 0:  # flat out: plot at the load actually delivered
        offered = result["deliveries_per_sec"]
    runs.setdefault(result["target"], []).append((offered, result))

fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
for target, points in sorted(runs.items()):
    points.sort(key=lambda p: p[0])
    offered = [p[0] for p in points]
    for axis, key in zip(axes, ["p50_ms", "p99_ms"]):
        axis.plot(offered, [p[1]["latency"][key] for p in points], marker="o", label=target)
for axis, title in zip(axes, ["p50 send→receive latency", "p99 send→receive latency"]):
    axis.set_title(title)
    axis.set_xlabel("offered deliveries per second")
    axis.set_ylabel("ms")
    axis.set_xscale("log")
    axis.set_yscale("log")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend()
fig.tight_layout()
out = os.path.join(here, "results", f"{prefix}-latency.png")
fig.savefig(out, dpi=110)
print(f"wrote {out}")
