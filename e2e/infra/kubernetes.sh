#!/usr/bin/env bash
# A Kubernetes control plane on loopback: etcd, kube-apiserver (https://127.0.0.1:16443),
# kube-controller-manager and kube-scheduler, built from the Kubernetes Go modules at
# the version pinned in k8s/go.mod, with certificates and kubeconfigs made here.
# No node yet: objects are stored, validated, admitted and reconciled by the
# controllers, but no pod runs.
#
#   e2e/infra/kubernetes.sh build|up|down|env|status
set -euo pipefail
source "$(dirname "$0")/lib.sh"

K8S_MODULE=$INFRA_DIR/k8s
K8S_VERSION=$(awk '$1 == "k8s.io/kubernetes" { print $2 }' "$K8S_MODULE/go.mod")
K8S_BIN=$INFRA_BIN/kubernetes-$K8S_VERSION
K8S_RUN=$INFRA_RUN/kubernetes
PKI=$K8S_RUN/pki
ETCD_PORT=12379
APISERVER_PORT=16443
CONTROLLER_MANAGER_PORT=20257
SCHEDULER_PORT=20259
SERVICE_CIDR=10.96.0.0/16
COMMANDS=(kube-apiserver kube-controller-manager kube-scheduler kubectl)

service_build() {
    if [ -f "$K8S_BIN/.complete" ]; then
        log "Kubernetes $K8S_VERSION cached in $K8S_BIN"
        return 0
    fi
    log "building Kubernetes $K8S_VERSION and etcd from their Go modules (cold: tens of minutes on 2 cores)"
    rm -rf "$K8S_BIN.tmp"
    mkdir -p "$K8S_BIN.tmp"
    local packages=() command
    for command in "${COMMANDS[@]}"; do
        packages+=("k8s.io/kubernetes/cmd/$command")
    done
    # The version the binaries report (kubectl version, the apiserver's /version).
    local ldflags
    ldflags=$(k8s_version_ldflags "$K8S_VERSION")
    (
        cd "$K8S_MODULE"
        export GOFLAGS=-buildvcs=false
        go build -trimpath -ldflags "$ldflags" -o "$K8S_BIN.tmp/" "${packages[@]}"
        # etcd's main package is its server module's root, whose path ends in /v3.
        go build -trimpath -o "$K8S_BIN.tmp/etcd" go.etcd.io/etcd/server/v3
    )
    touch "$K8S_BIN.tmp/.complete"
    rm -rf "$K8S_BIN"
    mv "$K8S_BIN.tmp" "$K8S_BIN"
}

# issue CN ORGANIZATION EXTENSIONS NAME: a key and a certificate signed by the
# cluster CA, $PKI/NAME.key and $PKI/NAME.crt.
issue() {
    issue_certificate "$PKI" "$PKI" "$@"
}

make_certificates() {
    mkdir -p "$PKI"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$PKI/ca.key" -out "$PKI/ca.crt" \
        -days 30 -subj "/CN=strom e2e Kubernetes CA" 2>/dev/null
    issue kube-apiserver "" "subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
extendedKeyUsage=serverAuth" apiserver
    issue strom-e2e-admin system:masters "extendedKeyUsage=clientAuth" admin
    issue system:kube-controller-manager "" "extendedKeyUsage=clientAuth" controller-manager
    issue system:kube-scheduler "" "extendedKeyUsage=clientAuth" scheduler
    issue kube-apiserver-kubelet-client system:masters "extendedKeyUsage=clientAuth" apiserver-kubelet-client
    # The aggregation layer's front proxy: its own CA, and the client certificate the
    # apiserver presents to extension apiservers.
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$PKI/front-proxy-ca.key" \
        -out "$PKI/front-proxy-ca.crt" -days 30 -subj "/CN=strom e2e front proxy CA" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout "$PKI/front-proxy-client.key" \
        -out "$PKI/front-proxy-client.csr" -subj "/CN=front-proxy-client" 2>/dev/null
    openssl x509 -req -in "$PKI/front-proxy-client.csr" -CA "$PKI/front-proxy-ca.crt" \
        -CAkey "$PKI/front-proxy-ca.key" -CAcreateserial -days 30 \
        -extfile <(echo "extendedKeyUsage=clientAuth") -out "$PKI/front-proxy-client.crt" 2>/dev/null
    # Service account tokens are signed with this key pair.
    openssl genrsa -out "$PKI/service-accounts.key" 2048 2>/dev/null
    openssl rsa -in "$PKI/service-accounts.key" -pubout -out "$PKI/service-accounts.pub" 2>/dev/null
}

# write_kubeconfig NAME: a kubeconfig for the client certificate NAME.
write_kubeconfig() {
    cat >"$K8S_RUN/$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: strom-e2e
    cluster:
      server: https://127.0.0.1:$APISERVER_PORT
      certificate-authority: $PKI/ca.crt
users:
  - name: $1
    user:
      client-certificate: $PKI/$1.crt
      client-key: $PKI/$1.key
contexts:
  - name: $1@strom-e2e
    context: {cluster: strom-e2e, user: $1}
current-context: $1@strom-e2e
EOF
}

etcd_healthy() {
    curl -sf "http://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"'
}

apiserver_ready() {
    "$K8S_BIN/kubectl" --kubeconfig "$K8S_RUN/admin.kubeconfig" get --raw /readyz
}

# secure_port_healthy PORT: the /healthz of a controller-manager or scheduler.
secure_port_healthy() {
    curl -sfk "https://127.0.0.1:$1/healthz"
}

start_etcd() {
    start_daemon etcd "$K8S_RUN/etcd.log" "$K8S_BIN/etcd" \
        --name strom-e2e --data-dir "$K8S_RUN/etcd" \
        --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
        --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
        --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
        --initial-cluster "strom-e2e=http://127.0.0.1:$((ETCD_PORT + 1))" \
        --unsafe-no-fsync
}

# The apiserver advertises itself on loopback, which Endpoints may not hold: the
# `kubernetes` Service gets no endpoints until a node (issue 7) brings an address.
start_apiserver() {
    start_daemon kube-apiserver "$K8S_RUN/kube-apiserver.log" "$K8S_BIN/kube-apiserver" \
        --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
        --bind-address 127.0.0.1 --advertise-address 127.0.0.1 \
        --secure-port "$APISERVER_PORT" \
        --endpoint-reconciler-type none \
        --client-ca-file "$PKI/ca.crt" \
        --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
        --kubelet-preferred-address-types InternalIP \
        --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
        --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
        --service-account-issuer https://kubernetes.default.svc.cluster.local \
        --service-account-key-file "$PKI/service-accounts.pub" \
        --service-account-signing-key-file "$PKI/service-accounts.key" \
        --service-cluster-ip-range "$SERVICE_CIDR" \
        --authorization-mode Node,RBAC \
        --requestheader-client-ca-file "$PKI/front-proxy-ca.crt" \
        --requestheader-allowed-names front-proxy-client \
        --requestheader-username-headers X-Remote-User \
        --requestheader-group-headers X-Remote-Group \
        --requestheader-extra-headers-prefix X-Remote-Extra- \
        --proxy-client-cert-file "$PKI/front-proxy-client.crt" \
        --proxy-client-key-file "$PKI/front-proxy-client.key" \
        --allow-privileged=true \
        --profiling=false
}

start_controllers() {
    start_daemon kube-controller-manager "$K8S_RUN/kube-controller-manager.log" \
        "$K8S_BIN/kube-controller-manager" \
        --kubeconfig "$K8S_RUN/controller-manager.kubeconfig" \
        --authentication-kubeconfig "$K8S_RUN/controller-manager.kubeconfig" \
        --authorization-kubeconfig "$K8S_RUN/controller-manager.kubeconfig" \
        --bind-address 127.0.0.1 --secure-port "$CONTROLLER_MANAGER_PORT" \
        --service-account-private-key-file "$PKI/service-accounts.key" \
        --root-ca-file "$PKI/ca.crt" \
        --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
        --service-cluster-ip-range "$SERVICE_CIDR" \
        --use-service-account-credentials=true \
        --leader-elect=false --profiling=false
    start_daemon kube-scheduler "$K8S_RUN/kube-scheduler.log" "$K8S_BIN/kube-scheduler" \
        --kubeconfig "$K8S_RUN/scheduler.kubeconfig" \
        --authentication-kubeconfig "$K8S_RUN/scheduler.kubeconfig" \
        --authorization-kubeconfig "$K8S_RUN/scheduler.kubeconfig" \
        --bind-address 127.0.0.1 --secure-port "$SCHEDULER_PORT" \
        --leader-elect=false --profiling=false
}

all_healthy() {
    {
        daemon_running etcd && etcd_healthy \
            && daemon_running kube-apiserver && apiserver_ready \
            && daemon_running kube-controller-manager \
            && secure_port_healthy "$CONTROLLER_MANAGER_PORT" \
            && daemon_running kube-scheduler && secure_port_healthy "$SCHEDULER_PORT"
    } >/dev/null 2>&1
}

service_up() {
    if all_healthy; then
        log "Kubernetes control plane already running"
        return 0
    fi
    service_down
    service_build
    require_free_ports "$ETCD_PORT" "$((ETCD_PORT + 1))" "$APISERVER_PORT" \
        "$CONTROLLER_MANAGER_PORT" "$SCHEDULER_PORT"
    local start=$SECONDS
    rm -rf "$K8S_RUN"
    mkdir -p "$K8S_RUN"
    make_certificates
    local name
    for name in admin controller-manager scheduler; do
        write_kubeconfig "$name"
    done
    start_etcd
    wait_until 60 etcd "$K8S_RUN/etcd.log" etcd_healthy
    start_apiserver
    wait_until 120 kube-apiserver "$K8S_RUN/kube-apiserver.log" apiserver_ready
    start_controllers
    wait_until 60 kube-controller-manager "$K8S_RUN/kube-controller-manager.log" \
        secure_port_healthy "$CONTROLLER_MANAGER_PORT"
    wait_until 60 kube-scheduler "$K8S_RUN/kube-scheduler.log" \
        secure_port_healthy "$SCHEDULER_PORT"
    log "Kubernetes $K8S_VERSION control plane up in $((SECONDS - start))s"
}

service_down() {
    local name
    for name in kube-scheduler kube-controller-manager kube-apiserver etcd; do
        stop_daemon "$name"
    done
}

service_env() {
    echo "export STROM_KUBECONFIG=$K8S_RUN/admin.kubeconfig"
    echo "export STROM_KUBECTL=$K8S_BIN/kubectl"
}

service_status() {
    local name
    for name in etcd kube-apiserver kube-controller-manager kube-scheduler; do
        if daemon_running "$name"; then echo "$name: running"; else echo "$name: stopped"; fi
    done
}

main_for_service "a Kubernetes control plane (etcd, apiserver, controller-manager, scheduler)" "$@"
