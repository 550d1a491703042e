"""Grouped bar charts of benchmark figures, for docs/benchmarks.md.

Reads a CSV of `group,series,value` rows (a header line first) and writes a PNG
with one group of bars per `group` (in order of first appearance) and one bar per
`series` in each, labelled with its value. Run by `strom-bench`, which writes the
CSV; usage: plot.py CSV PNG TITLE Y-LABEL
"""

import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(path, out, title, ylabel):
    groups, series, values = [], [], {}
    with open(path, newline="") as file:
        for row in csv.DictReader(file):
            if row["group"] not in groups:
                groups.append(row["group"])
            if row["series"] not in series:
                series.append(row["series"])
            values[(row["group"], row["series"])] = float(row["value"])
    width = 0.8 / max(len(series), 1)
    figure, axes = plt.subplots(figsize=(max(6, 1.6 * len(groups)), 4.5), dpi=100)
    for index, name in enumerate(series):
        xs = [g + (index - (len(series) - 1) / 2) * width for g in range(len(groups))]
        ys = [values.get((group, name), 0.0) for group in groups]
        bars = axes.bar(xs, ys, width, label=name)
        axes.bar_label(bars, labels=[human(y) for y in ys], fontsize=7, padding=2)
    axes.set_xticks(range(len(groups)), groups, fontsize=8)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    axes.legend()
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(out)


def human(value):
    """1234567 -> '1.23M'."""
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= limit:
            return f"{value / limit:.2f}{suffix}"
    return f"{value:.2f}"


if __name__ == "__main__":
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    main(*sys.argv[1:])
