#!/usr/bin/env bash
# Every service the integration and e2e tests run against: three Kafka clusters,
# MinIO, a schema registry and a Kubernetes cluster that runs pods (kafka.sh,
# minio.sh, schema-registry.sh), and Helm to check the chart (helm.sh).
#
# The cluster is a kind cluster (e2e/kind/kind.sh: the cluster users run the e2e tests
# on), or with STROM_CLUSTER=host the control plane and node run as processes on this
# machine (kubernetes.sh, node.sh: no container provider needed, starts in seconds).
#
#   e2e/infra/stack.sh build   build or download what is missing (cached)
#   e2e/infra/stack.sh up      build, then start every service and wait until healthy
#   e2e/infra/stack.sh env     the environment the tests read (export lines)
#   e2e/infra/stack.sh down    stop every service
#   e2e/infra/stack.sh status
#
# `up` prints how long each service took to build and to start, and writes the
# environment to $STROM_CACHE/run/env.sh as well:  source ~/.cache/strom/run/env.sh
set -euo pipefail
source "$(dirname "$0")/lib.sh"

CLUSTER=${STROM_CLUSTER:-kind}
# Started side by side (helm is a tool: only built); NODE, if any, joins the control
# plane once the others are up.
case $CLUSTER in
    kind) SERVICES=(kafka minio schema-registry helm kind) NODE="" ;;
    host) SERVICES=(kafka minio schema-registry kubernetes helm) NODE=node ;;
    *)
        echo "STROM_CLUSTER must be kind or host, not '$CLUSTER'" >&2
        exit 2
        ;;
esac

# script SERVICE: the script that builds, starts and stops SERVICE.
script() {
    if [ "$1" = kind ]; then
        echo "$INFRA_DIR/../kind/kind.sh"
    else
        echo "$INFRA_DIR/$1.sh"
    fi
}

# The toolchains the builds need, which every machine of this kind has: Debian's Go
# is too old for Kubernetes 1.34, so a missing one is reported, not installed.
check_toolchains() {
    local missing=0
    command -v java >/dev/null || { log "java (JDK 17 or newer) is missing: Kafka and the schema registry run on it"; missing=1; }
    command -v mvn >/dev/null || { log "mvn is missing: it fetches Kafka's and the schema registry's jars"; missing=1; }
    command -v go >/dev/null || { log "go (1.24 or newer) is missing: it builds MinIO and Kubernetes"; missing=1; }
    return $missing
}

# build: each service in turn (they compete for the same cores).
stack_build() {
    check_toolchains || return 1
    local service
    for service in "${SERVICES[@]}" $NODE; do
        stage "build $service" "$(script "$service")" build || return 1
    done
}

# up: builds, then starts the services side by side, each with its own log.
stack_up() {
    stack_build || return 1
    local service pids=() start=$SECONDS
    for service in "${SERVICES[@]}"; do
        (
            began=$SECONDS status=0
            "$(script "$service")" up >"$INFRA_RUN/$service-up.log" 2>&1 || status=$?
            echo "$((SECONDS - began))" >"$INFRA_RUN/$service-up.seconds"
            exit $status
        ) &
        pids+=($!)
    done
    local failed=0 index
    for index in "${!SERVICES[@]}"; do
        service=${SERVICES[$index]}
        if wait "${pids[$index]}"; then
            printf '  %-12s up in %ss\n' "$service" "$(cat "$INFRA_RUN/$service-up.seconds")"
        else
            printf '  %-12s FAILED:\n' "$service"
            sed 's/^/    /' "$INFRA_RUN/$service-up.log"
            failed=1
        fi
    done
    if [ $failed -eq 0 ] && [ -n "$NODE" ]; then
        local began=$SECONDS
        if "$INFRA_DIR/$NODE.sh" up >"$INFRA_RUN/$NODE-up.log" 2>&1; then
            printf '  %-12s up in %ss\n' "$NODE" "$((SECONDS - began))"
        else
            printf '  %-12s FAILED:\n' "$NODE"
            sed 's/^/    /' "$INFRA_RUN/$NODE-up.log"
            failed=1
        fi
    fi
    stack_env >"$INFRA_RUN/env.sh"
    echo "all services started in $((SECONDS - start))s; environment in $INFRA_RUN/env.sh"
    return $failed
}

stack_env() {
    local service
    for service in "${SERVICES[@]}" $NODE; do
        "$(script "$service")" env
    done
}

# down: stops the node (its pods first), then the other services side by side —
# those of both kinds of cluster, so that switching STROM_CLUSTER leaves nothing
# running.
stack_down() {
    "$INFRA_DIR/node.sh" down || true
    local service pids=()
    for service in kafka minio schema-registry kubernetes helm kind; do
        "$(script "$service")" down &
        pids+=($!)
    done
    local failed=0 pid
    for pid in "${pids[@]}"; do
        wait "$pid" || failed=1
    done
    return $failed
}

stack_status() {
    local service
    for service in "${SERVICES[@]}" $NODE; do
        "$(script "$service")" status
    done
}

case "${1:-}" in
    build) stack_build && print_stages ;;
    up) stack_up ;;
    env) stack_env ;;
    down) stack_down ;;
    status) stack_status ;;
    *)
        echo "usage: $0 {build|up|env|down|status}" >&2
        exit 2
        ;;
esac
