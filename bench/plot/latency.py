#!/usr/bin/env python3
"""Draw the end-to-end latency distribution of `e2e_latency` runs as one PNG.

Usage:
    latency.py OUT.png RUN.csv [RUN.csv ...]

Each CSV is what `cargo bench --bench e2e_latency` writes to $BENCH_OUT: a `# window_ms=...`
comment line, a header, then one row per notification (`latency_ms`: POST start to frame).
The figure has two panels, a histogram of the latencies on a log time axis and their CDF, one
colour per run, each labelled with its rate, batching window, p50 and p99 (nearest rank, as the
bench prints them). `scripts/bench e2e` runs
it with matplotlib from $HERALD_CACHE/venv.
"""

import math
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)


def read_run(path):
    """The run's settings (from its comment line) and its latencies in ms, ascending."""
    meta, latencies, column = {}, [], None
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line.startswith("#"):
                for pair in line[1:].split():
                    key, _, value = pair.partition("=")
                    meta[key] = value
            elif column is None:
                column = line.split(",").index("latency_ms")
            elif line:
                latencies.append(float(line.split(",")[column]))
    latencies.sort()
    return meta, latencies


def quantile(sorted_values, q):
    """Nearest rank, as herald_bench::quantile."""
    if not sorted_values:
        return 0.0
    rank = math.ceil(q * len(sorted_values))
    return sorted_values[min(max(rank, 1), len(sorted_values)) - 1]


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    out, paths = argv[1], argv[2:]
    runs = [read_run(p) for p in paths]
    runs = [(m, l) for m, l in runs if l]
    if not runs:
        sys.exit("no latencies in " + ", ".join(paths))

    lo = max(min(l[0] for _, l in runs), 0.1)
    hi = max(l[-1] for _, l in runs)
    edges = [lo * (hi / lo) ** (i / 80) for i in range(81)]

    fig, (hist, cdf) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red"]
    for (meta, lat), colour in zip(runs, colours * len(runs)):
        p50, p99 = quantile(lat, 0.5), quantile(lat, 0.99)
        label = (
            f"{int(meta.get('rate', 0)):,}/s, window {meta.get('window_ms', '?')} ms: "
            f"p50 {p50:,.0f} ms, p99 {p99:,.0f} ms"
        )
        weights = [1 / len(lat)] * len(lat)
        hist.hist(lat, bins=edges, weights=weights, histtype="stepfilled", alpha=0.3, color=colour)
        hist.hist(lat, bins=edges, weights=weights, histtype="step", color=colour)
        ys = [(i + 1) / len(lat) for i in range(len(lat))]
        cdf.plot(lat, ys, color=colour, label=label)
        for q, style in ((p50, "--"), (p99, ":")):
            hist.axvline(q, color=colour, linestyle=style, linewidth=1)
            cdf.axvline(q, color=colour, linestyle=style, linewidth=1)

    meta = runs[0][0]
    fig.suptitle(
        "Herald end to end: POST start to notification.created frame, through devstack\n"
        f"one 2-core machine, {int(meta.get('clients', 0)):,} WebSocket clients, open-loop load "
        f"for {meta.get('seconds', '?')} s per run",
        fontsize=10,
    )
    for ax in (hist, cdf):
        ax.set_xscale("log")
        ax.set_xlabel("latency (ms, log scale); dashed p50, dotted p99")
        ax.grid(True, which="both", alpha=0.3)
    hist.set_ylabel("share of notifications per bin")
    hist.set_title("distribution", fontsize=10)
    cdf.set_ylabel("share of notifications")
    cdf.set_ylim(0, 1.0)
    cdf.set_title("cumulative", fontsize=10)
    cdf.legend(loc="lower right", fontsize=8)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv)
