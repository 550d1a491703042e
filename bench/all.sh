#!/usr/bin/env bash
# Every table and chart of docs/benchmarks.md in one command, on this machine:
#
#   bench/all.sh [--cores N] [SUITE...]
#
# SUITE: runtime, sql, compare, latency, rescale, kafka (default: all of them, in
# that order). --cores N: the throughput suites run at parallelism 1 and N (default:
# the machine's cores) and the rescale goes from 1 to N (at least 2).
#
# Builds Strom in release (the benchmark, the runtime and the operator; the Flink and
# Kafka Streams harnesses are built by Maven inside their suites) and runs the
# suites. The throughput and latency suites want the cores to themselves: a note
# says when test services are running beside them. The rescale suite starts the
# test services (e2e/infra/stack.sh: MinIO, the kind cluster with the release images
# loaded) unless they all run already; the Kafka suite starts Kafka unless it runs,
# and stops the kind cluster if this script started it (its control plane takes a
# share of the cores). What this script started it stops when it ends, however it
# ends; it leaves running what it found running. A failed suite is reported and
# the others still run. Each suite rewrites only its own part of
# docs/benchmarks.md (tables and the PNG charts under docs/benchmarks/); the notes
# around them are written by hand. About 80 minutes on a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
# Release builds beside the debug ones of the tests, in the cache outside the clone.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-${STROM_CACHE:-$HOME/.cache/strom}/target-rel}
# The rescale suite runs on the kind cluster.
export STROM_CLUSTER=kind
source scripts/lib.sh

cores=$(nproc)
suites=()
while [ $# -gt 0 ]; do
    case $1 in
        --cores)
            cores=${2:?--cores takes a number}
            shift 2
            ;;
        runtime | sql | compare | latency | rescale | kafka)
            suites+=("$1")
            shift
            ;;
        *)
            sed -n '2,8p' "$0" >&2
            exit 2
            ;;
    esac
done
[ ${#suites[@]} -gt 0 ] || suites=(runtime sql compare latency rescale kafka)
[[ $cores =~ ^[1-9][0-9]*$ ]] || { echo "--cores takes a positive number, not '$cores'" >&2; exit 2; }
throughput=$([ "$cores" -gt 1 ] && echo "1,$cores" || echo 1)
rescale_to=$([ "$cores" -gt 2 ] && echo "$cores" || echo 2)
bench=$CARGO_TARGET_DIR/release/strom-bench
wants() { [[ " ${suites[*]} " == *" $1 "* ]]; }

# The status lines of the test services (grep reads them all: a grep that stopped
# at its first match would end the status command early, which pipefail reports).
status() { e2e/infra/stack.sh status; }
any_running() { status | grep -E ': running( |$)' >/dev/null; }
any_stopped() { status | grep -E ': (stopped|absent)$' >/dev/null; }
kafka_stopped() { e2e/infra/kafka.sh status | grep -E ': stopped$' >/dev/null; }

# What this script started, stopped at its end.
started_stack=0 started_kafka=0
stop_started() {
    local status=$?
    if [ $started_stack -eq 1 ]; then
        e2e/infra/stack.sh down >/dev/null 2>&1 || echo "the test services did not all stop: e2e/infra/stack.sh down" >&2
    elif [ $started_kafka -eq 1 ]; then
        e2e/infra/kafka.sh down >/dev/null 2>&1 || echo "Kafka did not stop: e2e/infra/kafka.sh down" >&2
    fi
    print_stages
    exit $status
}
trap stop_started EXIT

# The test services, all of them (the rescale suite).
stack_up() {
    if any_stopped; then
        started_stack=1
        e2e/infra/stack.sh up || return 1
    fi
    eval "$(e2e/infra/stack.sh env)"
}

# Kafka, without the kind cluster this script started (the Kafka suite).
kafka_up() {
    if kafka_stopped; then
        started_kafka=1
        e2e/infra/kafka.sh up || return 1
    fi
    if [ $started_stack -eq 1 ]; then
        e2e/kind/kind.sh down >/dev/null || return 1
    elif e2e/kind/kind.sh status | grep -E ': running$' >/dev/null; then
        echo "note: the kind cluster is running and takes a share of the cores (e2e/kind/kind.sh down)" >&2
    fi
    eval "$(e2e/infra/kafka.sh env)"
}

# The release images on the kind cluster, then the rescale suite.
rescale() {
    e2e/kind/kind.sh image runtime "$CARGO_TARGET_DIR/release/strom" \
        && e2e/kind/kind.sh image operator "$CARGO_TARGET_DIR/release/strom-operator" \
        && "$bench" --suite rescale --state-mb 100,1000 --parallelism "1,$rescale_to"
}

stage "build (release)" cargo build --release -p strom-bench -p strom-runtime -p strom-operator

failed=0
suite() { stage "$@" || failed=1; }

if { wants runtime || wants sql || wants compare || wants latency; } && any_running; then
    echo "note: test services are running and take a share of the cores (e2e/infra/stack.sh down)" >&2
fi
if wants runtime; then
    suite "runtime suite" "$bench" --suite runtime --seconds 20 --state-mb 100,1000 --parallelism "$throughput"
fi
if wants sql; then
    suite "sql suite" "$bench" --suite sql --seconds 10 --parallelism "$throughput"
fi
if wants compare; then
    suite "compare suite" "$bench" --suite compare --events 3000000 --seconds 16 --parallelism "$throughput"
fi
if wants latency; then
    suite "latency suite" "$bench" --suite latency --rate 10000 --seconds 15 --parallelism "$throughput"
fi
if wants rescale; then
    if stage "services for rescale" stack_up; then
        suite "rescale suite" rescale
    else
        failed=1
    fi
fi
if wants kafka; then
    if stage "Kafka" kafka_up; then
        suite "kafka suite" "$bench" --suite kafka --kafka-events 4000000 --kafka-repeats 3 --parallelism "$throughput"
    else
        failed=1
    fi
fi
exit $failed
