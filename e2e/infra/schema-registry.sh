#!/usr/bin/env bash
# A Confluent-compatible schema registry on loopback: Apicurio Registry, run on the
# JDK from its distribution on Maven Central (schema-registry/pom.xml), storing
# schemas in memory (a fresh registry at every start). It serves the Confluent Schema
# Registry API at http://127.0.0.1:18081/apis/ccompat/v7 ($STROM_SCHEMA_REGISTRY_URL),
# with the global compatibility BACKWARD, as Confluent's registry defaults to.
#
#   e2e/infra/schema-registry.sh build|up|down|env|status
set -euo pipefail
source "$(dirname "$0")/lib.sh"

APICURIO_VERSION=$(sed -n 's:.*<apicurio.version>\(.*\)</apicurio.version>.*:\1:p' "$INFRA_DIR/schema-registry/pom.xml")
REGISTRY_DIR=$INFRA_BIN/schema-registry-apicurio-$APICURIO_VERSION
REGISTRY_JAR=$REGISTRY_DIR/apicurio-registry-app-$APICURIO_VERSION-runner.jar
REGISTRY_RUN=$INFRA_RUN/schema-registry
REGISTRY_PORT=18081
REGISTRY_URL=http://127.0.0.1:$REGISTRY_PORT/apis/ccompat/v7

service_build() {
    if [ -f "$REGISTRY_DIR/.complete" ]; then
        log "Apicurio Registry $APICURIO_VERSION cached in $REGISTRY_DIR"
        return 0
    fi
    log "unpacking Apicurio Registry $APICURIO_VERSION from Maven"
    rm -rf "$REGISTRY_DIR.tmp"
    mkdir -p "$INFRA_RUN"
    # The plugin's markers go beside the unpacked files, not into the repository.
    if ! mvn -B -f "$INFRA_DIR/schema-registry/pom.xml" dependency:unpack \
        -DoutputDirectory="$REGISTRY_DIR.tmp" -DmarkersDirectory="$REGISTRY_DIR.tmp/.markers" \
        >"$INFRA_RUN/schema-registry-mvn.log" 2>&1 || [ ! -f "$REGISTRY_DIR.tmp/$(basename "$REGISTRY_JAR")" ]; then
        log "Maven could not fetch Apicurio Registry; the end of $INFRA_RUN/schema-registry-mvn.log:"
        tail -n 30 "$INFRA_RUN/schema-registry-mvn.log" >&2
        return 1
    fi
    touch "$REGISTRY_DIR.tmp/.complete"
    rm -rf "$REGISTRY_DIR"
    mv "$REGISTRY_DIR.tmp" "$REGISTRY_DIR"
}

healthy() {
    curl -sf -m 5 "http://127.0.0.1:$REGISTRY_PORT/health/ready"
}

service_up() {
    if daemon_running schema-registry && healthy >/dev/null 2>&1; then
        log "schema registry already running"
        return 0
    fi
    service_down
    service_build
    require_free_ports "$REGISTRY_PORT"
    local start=$SECONDS
    rm -rf "$REGISTRY_RUN"
    mkdir -p "$REGISTRY_RUN/tmp"
    # A small JVM (the machine runs three Kafka brokers beside it): C1 only and the
    # serial GC, a connection pool of a few to the in-memory H2 database. It listens
    # on every interface, as MinIO does, so that pods on the e2e node reach it at
    # $NODE_HOST_IP too. Identical schemas are told apart by their canonical form, as
    # Confluent's registry does, not by their text.
    start_daemon schema-registry "$REGISTRY_RUN/registry.log" \
        java -Xms32m -Xmx384m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
        -XX:ReservedCodeCacheSize=64m -Djava.awt.headless=true \
        -Djava.io.tmpdir="$REGISTRY_RUN/tmp" \
        -Dquarkus.banner.enabled=false \
        -Dquarkus.http.host=0.0.0.0 -Dquarkus.http.port="$REGISTRY_PORT" \
        -Dapicurio.storage.kind=sql -Dapicurio.storage.sql.kind=h2 \
        -Dapicurio.datasource.url="jdbc:h2:mem:registry" \
        -Dapicurio.datasource.jdbc.initial-size=2 -Dapicurio.datasource.jdbc.min-size=2 \
        -Dapicurio.datasource.jdbc.max-size=10 \
        -Dapicurio.storage.snapshot.location="$REGISTRY_RUN/tmp" \
        -Dapicurio.import.work-dir="$REGISTRY_RUN/tmp" \
        -Dapicurio.ccompat.use-canonical-hash=true \
        -jar "$REGISTRY_JAR"
    wait_until 90 "schema registry" "$REGISTRY_RUN/registry.log" healthy
    curl -sf -m 10 -X PUT -H 'Content-Type: application/vnd.schemaregistry.v1+json' \
        --data '{"compatibility": "BACKWARD"}' "$REGISTRY_URL/config" >/dev/null \
        || { log "setting the global compatibility failed"; return 1; }
    log "schema registry up at $REGISTRY_URL in $((SECONDS - start))s"
}

service_down() {
    stop_daemon schema-registry
}

service_env() {
    echo "export STROM_SCHEMA_REGISTRY_URL=$REGISTRY_URL"
}

service_status() {
    if daemon_running schema-registry; then
        echo "schema-registry: running on $REGISTRY_URL"
    else
        echo "schema-registry: stopped"
    fi
}

main_for_service "a Confluent-compatible schema registry (Apicurio Registry)" "$@"
