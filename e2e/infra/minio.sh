#!/usr/bin/env bash
# An S3-compatible object store on loopback: MinIO, built from its Go module, serving
# http://127.0.0.1:19000 with one bucket, `strom-e2e`. Its access keys are new for
# every start and laid out as the StreamJob's `state.storageSecret` is mounted: a
# folder with the files AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, at
# $STROM_S3_CREDENTIALS.
#
#   e2e/infra/minio.sh build|up|down|env|status
set -euo pipefail
source "$(dirname "$0")/lib.sh"

# MinIO tags its releases by date, not by semantic version: this is the Go module
# proxy's name for the commit we build.
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
MINIO_BIN=$INFRA_BIN/minio-$MINIO_VERSION
MINIO_RUN=$INFRA_RUN/minio
MINIO_PORT=19000
MINIO_BUCKET=strom-e2e
MINIO_REGION=us-east-1
CREDENTIALS=$MINIO_RUN/secrets/s3-credentials

service_build() {
    if [ -x "$MINIO_BIN/minio" ]; then
        log "MinIO cached in $MINIO_BIN"
        return 0
    fi
    log "building MinIO $MINIO_VERSION from its Go module (a few minutes the first time)"
    rm -rf "$MINIO_BIN.tmp"
    GOBIN="$MINIO_BIN.tmp" GOFLAGS=-buildvcs=false \
        go install -trimpath "github.com/minio/minio@$MINIO_VERSION"
    rm -rf "$MINIO_BIN"
    mv "$MINIO_BIN.tmp" "$MINIO_BIN"
}

healthy() {
    curl -sf "http://127.0.0.1:$MINIO_PORT/minio/health/ready"
}

# s3_request METHOD PATH: a request signed with the access keys (curl's SigV4).
s3_request() {
    curl -sf -X "$1" --aws-sigv4 "aws:amz:$MINIO_REGION:s3" \
        --user "$(cat "$CREDENTIALS/AWS_ACCESS_KEY_ID"):$(cat "$CREDENTIALS/AWS_SECRET_ACCESS_KEY")" \
        "http://127.0.0.1:$MINIO_PORT$2"
}

service_up() {
    if daemon_running minio && healthy >/dev/null 2>&1; then
        log "MinIO already running"
        return 0
    fi
    service_down
    service_build
    require_free_ports "$MINIO_PORT"
    local start=$SECONDS
    rm -rf "$MINIO_RUN"
    mkdir -p "$MINIO_RUN/data"
    write_secret "$CREDENTIALS" AWS_ACCESS_KEY_ID "strom-$(openssl rand -hex 4)"
    write_secret "$CREDENTIALS" AWS_SECRET_ACCESS_KEY "$(random_secret)"
    MINIO_ROOT_USER=$(cat "$CREDENTIALS/AWS_ACCESS_KEY_ID") \
        MINIO_ROOT_PASSWORD=$(cat "$CREDENTIALS/AWS_SECRET_ACCESS_KEY") \
        MINIO_BROWSER=off MINIO_UPDATE=off MINIO_REGION=$MINIO_REGION \
        start_daemon minio "$MINIO_RUN/minio.log" \
        "$MINIO_BIN/minio" server --quiet --address ":$MINIO_PORT" "$MINIO_RUN/data"
    wait_until 60 MinIO "$MINIO_RUN/minio.log" healthy
    s3_request PUT "/$MINIO_BUCKET" >/dev/null || { log "creating bucket $MINIO_BUCKET failed"; return 1; }
    log "MinIO up with bucket $MINIO_BUCKET in $((SECONDS - start))s"
}

service_down() {
    stop_daemon minio
}

service_env() {
    echo "export STROM_S3_ENDPOINT=http://127.0.0.1:$MINIO_PORT"
    echo "export STROM_S3_BUCKET=$MINIO_BUCKET"
    echo "export STROM_S3_REGION=$MINIO_REGION"
    echo "export STROM_S3_CREDENTIALS=$CREDENTIALS"
}

service_status() {
    if daemon_running minio; then
        echo "minio: running on http://127.0.0.1:$MINIO_PORT"
    else
        echo "minio: stopped"
    fi
}

main_for_service "S3-compatible object storage (MinIO)" "$@"
