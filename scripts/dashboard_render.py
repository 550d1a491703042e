"""Scrapes a Strom job's /metrics and renders the panels of the chart's Grafana
dashboard from the samples (scripts/dashboard-snapshot.sh runs both).

    dashboard_render.py scrape URL SAMPLES.jsonl      # until killed, every 2 s
    dashboard_render.py render SAMPLES.jsonl DASHBOARD.json OUT.png

Each panel of the dashboard is computed here as its PromQL query computes it
(rates over a shorter window, 20 s, so a one-minute run shows its shape); a panel
without a computation here fails the render, so the picture follows the
dashboard.
"""

import json
import math
import re
import sys
import time
import urllib.request

SCRAPE_INTERVAL_S = 2.0
RATE_WINDOW_S = 20.0
LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text):
    """The samples of a Prometheus text exposition: (name, labels, value)."""
    samples = []
    for line in text.splitlines():
        match = LINE.match(line)
        if not match or line.startswith("#"):
            continue
        name, labels, value = match.groups()
        samples.append((name, dict(LABEL.findall(labels or "")), float(value)))
    return samples


def scrape(url, path):
    """Appends one line of samples per scrape to `path` until killed; a refused
    scrape (the job restarting) is a gap."""
    with open(path, "a", encoding="utf-8") as out:
        while True:
            started = time.time()
            try:
                with urllib.request.urlopen(url, timeout=1.5) as response:
                    text = response.read().decode()
                out.write(json.dumps({"t": started, "samples": parse(text)}) + "\n")
                out.flush()
            except OSError:
                pass
            time.sleep(max(0.0, SCRAPE_INTERVAL_S - (time.time() - started)))


def load(path):
    scrapes = [json.loads(line) for line in open(path, encoding="utf-8") if line.strip()]
    if not scrapes:
        sys.exit(f"no samples in {path}: did the job serve /metrics?")
    return scrapes


def series_key(name, labels, by):
    return (name,) + tuple(labels.get(label, "") for label in by)


def gauge(scrapes, metric, by=(), reduce=max, transform=None):
    """`reduce by (by) (metric)` at each scrape: {group: [(t, value)]}."""
    groups = {}
    for scrape in scrapes:
        values = {}
        for name, labels, value in scrape["samples"]:
            if name != metric:
                continue
            if transform:
                value = transform(scrape["t"], value)
                if value is None:
                    continue
            values.setdefault(series_key(name, labels, by)[1:], []).append(value)
        for group, found in values.items():
            groups.setdefault(group, []).append((scrape["t"], reduce(found)))
    return groups


def rate(scrapes, metric, by=()):
    """`sum by (by) (rate(metric[window]))` at each scrape, counter resets (a
    restarted process) counted as Prometheus counts them."""
    history = {}  # full label set -> [(t, value)]
    for scrape in scrapes:
        for name, labels, value in scrape["samples"]:
            if name == metric:
                history.setdefault(tuple(sorted(labels.items())), []).append((scrape["t"], value))
    groups = {}
    for scrape in scrapes:
        now = scrape["t"]
        sums = {}
        for labels, points in history.items():
            window = [(t, v) for t, v in points if now - RATE_WINDOW_S <= t <= now]
            if len(window) < 2 or window[-1][0] != now:
                continue
            increase = 0.0
            for (_, before), (_, after) in zip(window, window[1:]):
                increase += after - before if after >= before else after
            group = tuple(dict(labels).get(label, "") for label in by)
            sums[group] = sums.get(group, 0.0) + increase / (window[-1][0] - window[0][0])
        for group, value in sums.items():
            groups.setdefault(group, []).append((now, value))
    return groups


def checkpoint_age(now, completed_at):
    return now - completed_at if completed_at > 0 else None


def panels(scrapes):
    """Each dashboard panel's series: title -> [(legend, {group: points})]."""
    return {
        "Throughput": [
            ("records in /s", rate(scrapes, "strom_records_in_total")),
            ("records out /s", rate(scrapes, "strom_records_out_total")),
        ],
        "Backpressure": [
            ("{}", rate(scrapes, "strom_backpressure_seconds_total", by=("operator",))),
        ],
        "Checkpoint duration": [
            ("seconds", gauge(scrapes, "strom_checkpoint_duration_seconds")),
        ],
        "Checkpoint size": [
            ("bytes", gauge(scrapes, "strom_checkpoint_size_bytes")),
        ],
        "Checkpoint age": [
            (
                "seconds",
                gauge(
                    scrapes,
                    "strom_last_checkpoint_timestamp_seconds",
                    transform=checkpoint_age,
                ),
            ),
        ],
        "Watermark lag": [
            ("{}", gauge(scrapes, "strom_watermark_lag_seconds", by=("operator",))),
        ],
        "Kafka consumer lag": [
            (
                "{}",
                gauge(
                    scrapes, "strom_kafka_consumer_lag_records", by=("topic",), reduce=sum
                ),
            ),
        ],
        "Rescale timeline": [
            ("parallelism", gauge(scrapes, "strom_parallelism")),
            ("processes", gauge(scrapes, "strom_parallelism", reduce=len)),
        ],
    }


def with_gaps(points, start):
    """Times (s from `start`) and values, broken where scrapes stopped."""
    times, values = [], []
    for (t, value), following in zip(points, points[1:] + [None]):
        times.append(t - start)
        values.append(value)
        if following and following[0] - t > 3 * SCRAPE_INTERVAL_S:
            times.append(t - start + SCRAPE_INTERVAL_S)
            values.append(math.nan)
    return times, values


def render(samples_path, dashboard_path, out_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scrapes = load(samples_path)
    dashboard = json.load(open(dashboard_path, encoding="utf-8"))
    titles = [panel["title"] for panel in dashboard["panels"] if panel.get("targets")]
    computed = panels(scrapes)
    missing = [title for title in titles if title not in computed]
    if missing:
        sys.exit(f"dashboard panels with no computation in {__file__}: {missing}")
    start = scrapes[0]["t"]
    columns = 4
    rows = math.ceil(len(titles) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.0 * rows))
    for ax, title in zip(axes.flat, titles):
        for legend, groups in computed[title]:
            for group, points in sorted(groups.items()):
                times, values = with_gaps(points, start)
                label = legend.format(*group) if "{}" in legend else legend
                ax.plot(times, values, label=label, linewidth=1.4)
        ax.set_title(title, fontsize=11)
        ax.set_xlabel("seconds", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7, loc="best")
    for ax in list(axes.flat)[len(titles):]:
        ax.axis("off")
    figure.suptitle(
        "strom-jobs dashboard, from a real job's /metrics: views-per-user at "
        "parallelism 2, stopped with a savepoint, resumed at 4",
        fontsize=12,
    )
    figure.tight_layout()
    figure.savefig(out_path, dpi=90)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "scrape":
        scrape(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 5 and sys.argv[1] == "render":
        render(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(__doc__)
