#!/usr/bin/env bash
# Draws a CPU flamegraph (SVG) of a running benchmark: starts COMMAND, waits until
# its output has a line matching PATTERN (the phase to profile has begun), records
# SECONDS of its CPU samples with perf (DWARF call graphs), lets the command finish,
# and folds the samples into OUT with inferno (installed with cargo on first use).
#
#   bench/flamegraph.sh OUT.svg PATTERN SECONDS -- COMMAND...
#
# e.g. the keyed window count of the runtime suite at parallelism 1:
#   bench/flamegraph.sh docs/flamegraphs/keyed-window-after.svg \
#     'keyed count \| 2 \| every 10 s' 8 -- target/release/strom-bench --seconds 10 --state-mb 10
# and the exactly-once Kafka passthrough at parallelism 1 (test services up, their
# environment sourced):
#   bench/flamegraph.sh docs/flamegraphs/kafka-exactly-once-after.svg \
#     'passthrough, at least once at 1' 5 -- target/release/strom-bench --suite kafka \
#     --kafka-events 4000000 --kafka-repeats 1 --parallelism 1 --without-kstreams --report /tmp/kafka.md
set -euo pipefail
[ $# -ge 5 ] && [ "$4" = "--" ] || { sed -n '2,16p' "$0"; exit 2; }
out=$1 pattern=$2 seconds=$3
shift 4
command -v perf >/dev/null || { echo "perf is missing (Debian: linux-perf)"; exit 1; }
if ! command -v inferno-flamegraph >/dev/null; then
    cargo install --locked inferno
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$@" >"$work/output" 2>&1 &
pid=$!
# Every wait has a deadline: the phase starts within 10 minutes or not at all.
for _ in $(seq 6000); do
    grep -Eq "$pattern" "$work/output" && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/output"; echo "the command ended before '$pattern'"; exit 1; }
    sleep 0.1
done
grep -Eq "$pattern" "$work/output" || { kill "$pid"; echo "no '$pattern' within 10 minutes"; exit 1; }
# perf fails to attach when a thread of the process ends while it attaches, as
# happens when one job ends and the next starts: it tries again, half a second
# later, up to five times; only an attach that failed is tried again (a later try
# could record a later phase), and a recording that holds nothing is an error.
for attempt in 1 2 3 4 5; do
    sleep 0.5
    perf record -q -F 199 -g --call-graph dwarf,32768 -p "$pid" -o "$work/perf.data" -- sleep "$seconds" 2>"$work/perf.log" && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/perf.log"; echo "the command ended before perf could record it"; exit 1; }
    [ $attempt -lt 5 ] || { cat "$work/perf.log"; echo "perf could not attach in 5 tries"; exit 1; }
done
[ "$(perf script -i "$work/perf.data" 2>/dev/null | head -c 1 | wc -c)" -eq 1 ] \
    || { kill "$pid"; cat "$work/perf.log"; echo "perf recorded nothing (try $attempt)"; exit 1; }
echo "recorded on try $attempt"
status=0
wait "$pid" || status=$?
[ $status -eq 0 ] || echo "the command exited with status $status (its samples are drawn all the same)"
perf script -i "$work/perf.data" 2>/dev/null | inferno-collapse-perf | inferno-flamegraph >"$out"
echo "written to $out"
