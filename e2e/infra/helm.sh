#!/usr/bin/env bash
# Helm, built from its Go module at the version pinned in helm/go.mod, to lint and
# render the operator's chart (charts/strom-operator). A tool, not a service: `up`,
# `down` and `status` have nothing to do.
#
#   e2e/infra/helm.sh build|up|down|env|status
set -euo pipefail
source "$(dirname "$0")/lib.sh"

HELM_MODULE=$INFRA_DIR/helm
HELM_VERSION=$(awk '{ for (i = 1; i < NF; i++) if ($i == "helm.sh/helm/v3") print $(i + 1) }' "$HELM_MODULE/go.mod" | head -n 1)
HELM_BIN=$INFRA_BIN/helm-$HELM_VERSION

service_build() {
    if [ -x "$HELM_BIN/helm" ]; then
        log "Helm $HELM_VERSION cached in $HELM_BIN"
        return 0
    fi
    log "building Helm $HELM_VERSION from its Go module"
    rm -rf "$HELM_BIN.tmp"
    mkdir -p "$HELM_BIN.tmp"
    (
        cd "$HELM_MODULE"
        # As Helm's own Makefile does: the Kubernetes version `helm template` and
        # `helm lint` assume is the one of the client libraries it is built with
        # (else 1.20, which the chart's kubeVersion refuses).
        local client_go minor ldflags package
        client_go=$(go list -m -f '{{.Version}}' k8s.io/client-go)
        minor=${client_go#v0.}
        minor=${minor%%.*}
        ldflags="-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
        for package in pkg/lint/rules pkg/chartutil; do
            ldflags+=" -X helm.sh/helm/v3/$package.k8sVersionMajor=1"
            ldflags+=" -X helm.sh/helm/v3/$package.k8sVersionMinor=$minor"
        done
        GOFLAGS=-buildvcs=false go build -trimpath -ldflags "$ldflags" \
            -o "$HELM_BIN.tmp/helm" helm.sh/helm/v3/cmd/helm
    )
    rm -rf "$HELM_BIN"
    mv "$HELM_BIN.tmp" "$HELM_BIN"
}

service_up() { service_build; }
service_down() { :; }
service_status() { [ -x "$HELM_BIN/helm" ] && echo "helm: built" || echo "helm: not built"; }
service_env() { echo "export STROM_HELM=$HELM_BIN/helm"; }

main_for_service "Helm, to lint and render the operator's chart" "$@"
