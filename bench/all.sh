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
# says when test services are running beside them. The rescale suite starts MinIO
# and the kind cluster (the release images loaded into it), the Kafka suite Kafka,
# each unless it runs already; the Kafka suite stops the kind cluster if this
# script started it (its control plane takes a share of the cores). What this
# script started it stops when it ends, however it ends; it leaves running what it
# found running. A failed suite is reported and
# the others still run. Each suite rewrites only its own part of
# docs/benchmarks.md (tables and the PNG charts under docs/benchmarks/); the notes
# around them are written by hand. About 80 minutes on a 2-core machine, after a
# cold release build (about 35 minutes).
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

# The test services a suite needs, each started by its own script unless it runs
# already, and remembered then, to be stopped at the end (STROM_CLUSTER=kind's
# services of e2e/infra/stack.sh).
STACK_SERVICES=(kafka minio schema-registry kind)
started=()
service_script() {
    if [ "$1" = kind ]; then echo e2e/kind/kind.sh; else echo "e2e/infra/$1.sh"; fi
}
# Whether SERVICE is stopped (grep reads every line: a grep that stopped at its
# first match would end the status command early, which pipefail reports).
stopped() { "$(service_script "$1")" status | grep -E ': (stopped|absent)$' >/dev/null; }
running() { "$(service_script "$1")" status | grep -E ': running( |$)' >/dev/null; }
was_started() { [[ " ${started[*]} " == *" $1 "* ]]; }

stop_started() {
    local status=$? service
    for service in "${started[@]}"; do
        "$(service_script "$service")" down >/dev/null 2>&1 \
            || echo "$service did not stop: $(service_script "$service") down" >&2
    done
    print_stages
    exit $status
}
trap stop_started EXIT

# start SERVICE...: starts those that are stopped (built first), with the
# services' environment exported.
start() {
    local service
    for service in "$@"; do
        if stopped "$service"; then
            "$(service_script "$service")" build && "$(service_script "$service")" up || return 1
            started+=("$service")
        fi
    done
    local env
    env=$(e2e/infra/stack.sh env) || return 1
    eval "$env"
}

# The rescale suite's services: those of the e2e tests (MinIO and the kind cluster
# are the ones it uses; helm is a tool, built).
rescale_services() { e2e/infra/helm.sh build && start "${STACK_SERVICES[@]}"; }

# The Kafka suite's: Kafka, without the kind cluster this script started.
kafka_services() {
    start kafka || return 1
    if was_started kind; then
        e2e/kind/kind.sh down >/dev/null || return 1
        local service still=()
        for service in "${started[@]}"; do [ "$service" = kind ] || still+=("$service"); done
        started=("${still[@]}")
    elif running kind; then
        echo "note: the kind cluster is running and takes a share of the cores (e2e/kind/kind.sh down)" >&2
    fi
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

any_running() {
    local service
    for service in "${STACK_SERVICES[@]}"; do running "$service" && return 0; done
    return 1
}
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
    if stage "services for rescale" rescale_services; then
        suite "rescale suite" rescale
    else
        failed=1
    fi
fi
if wants kafka; then
    if stage "Kafka" kafka_services; then
        suite "kafka suite" "$bench" --suite kafka --kafka-events 4000000 --kafka-repeats 3 --parallelism "$throughput"
    else
        failed=1
    fi
fi
exit $failed
