#!/usr/bin/env bash
# Runs every check and test of the project on this machine, installing what is
# missing first. CI runs exactly this (.ci/run).
#
#   scripts/test.sh
#
# Prints each stage's duration and a closing test summary.
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

test_log="$STROM_CACHE/test.log"

# Every wait has a deadline, the tests' too: a hung test fails the run (naming the
# tests still running) instead of running into CI's own limit.
test_deadline_s=${STROM_TEST_DEADLINE_S:-2400}
run_tests() {
    local status=0
    timeout --kill-after=30 "$test_deadline_s" cargo test --workspace --no-fail-fast 2>&1 |
        tee "$test_log" || status=$?
    if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
        echo "tests did not finish within ${test_deadline_s}s; still running:"
        # Tests reported running long that never reported a result.
        awk '/has been running for over/ { running[$2] = 1 }
             / \.\.\. (ok|FAILED|ignored)$/ { delete running[$2] }
             END { for (name in running) print "  " name }' "$test_log"
    fi
    return "$status"
}

# Sums the `test result:` lines of cargo test into one summary line.
summarize_tests() {
    awk '/^test result:/ {
            for (i = 1; i <= NF; i++) {
                if ($(i + 1) ~ /^passed/) passed += $i
                if ($(i + 1) ~ /^failed/) failed += $i
                if ($(i + 1) ~ /^ignored/) ignored += $i
            }
         }
         END { printf "tests: %d passed, %d failed, %d skipped\n", passed, failed, ignored }' "$test_log"
}


# One build for every later step: `cargo test --workspace` resolves the same
# features as clippy's `--workspace --all-targets`, so librocksdb-sys and librdkafka
# are compiled once, and the binaries it builds (`strom`, `strom-operator`) are the
# ones the images are made from. (`cargo build -p strom-runtime` alone would resolve
# other features and compile both C++ libraries again.)
build_tests() {
    cargo test --workspace --no-run --locked
}

# Strom's images, made from the binaries the tests use, in the e2e cluster: loaded
# into the kind node (runtime, operator, and the image of examples/custom-pipeline's
# binary), or imported into the host node's containerd (runtime) with
# STROM_CLUSTER=host.
images() {
    local bin=$CARGO_TARGET_DIR/debug
    if [ "${STROM_CLUSTER:-kind}" = host ]; then
        e2e/infra/node.sh image "$bin/strom"
    else
        e2e/kind/kind.sh image runtime "$bin/strom" \
            && e2e/kind/kind.sh image operator "$bin/strom-operator" \
            && e2e/kind/kind.sh image runtime "$bin/orders-pipelines" orders-pipelines:e2e
    fi
}

# The services the tests run against (e2e/infra) are built (Go and Maven; cached
# after the first run) and started beside the Rust stages, mostly waiting on their
# health checks while cargo works; stopped after the tests whatever happens. The
# tests read their addresses from the environment.
stack_log="$STROM_CACHE/stack-build.log"
start_services() {
    { e2e/infra/stack.sh build && e2e/infra/stack.sh up; } >"$stack_log" 2>&1 &
    services_pid=$!
}
wait_for_services() {
    local status=0
    wait "$services_pid" || status=$?
    sed -n '/^stage /,$p' "$stack_log"
    [ $status -eq 0 ] || { tail -n 40 "$stack_log"; return $status; }
    source "$STROM_CACHE/run/env.sh"
}

# The Java sides of the benchmark comparisons (bench/flink, bench/kstreams, Maven):
# their unit tests, among them the Nexmark generator's values pinned by the Rust
# tests and the Kafka Streams topologies.
bench_harnesses() {
    local log="$STROM_CACHE/bench-harnesses.log" project
    : >"$log"
    for project in bench/flink bench/kstreams; do
        if ! mvn -q -B -f "$project/pom.xml" test >>"$log" 2>&1; then
            echo "mvn test failed in $project; the end of $log:"
            tail -n 40 "$log"
            return 1
        fi
    done
}

failed=0
stage "system packages" ensure_debian_packages || exit 1
stage "rust toolchain" ensure_rust || exit 1
trap 'e2e/infra/stack.sh down' EXIT
start_services
stage "format (cargo fmt --check)" cargo fmt --all -- --check || failed=1
stage "lint (cargo clippy)" cargo clippy --workspace --all-targets --locked -- -D warnings || failed=1
stage "build (cargo test --no-run)" build_tests || failed=1
stage "benchmark harnesses (mvn test)" bench_harnesses || failed=1
stage "services built and up (beside the above)" wait_for_services || failed=1
stage "images (e2e cluster)" images || failed=1
stage "tests (cargo test)" run_tests || failed=1
stage "services down" e2e/infra/stack.sh down || failed=1
stage "prune build cache" python3 scripts/prune-build-cache.py || failed=1
trap - EXIT

print_stages
echo
summarize_tests
exit $failed
