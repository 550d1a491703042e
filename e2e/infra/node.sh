#!/usr/bin/env bash
# A worker node for the control plane of kubernetes.sh, so that pods really run:
# containerd and runc (Debian's packages) with the CNI bridge plugin, the kubelet
# (built from the same Kubernetes module as the control plane), and CoreDNS (built
# from its Go module) as the cluster DNS. Images are built here from local files and
# imported into containerd: no registry is involved.
#
#   e2e/infra/node.sh build|up|down|env|status
#   e2e/infra/node.sh image BINARY    the runtime image (strom-runtime:e2e) from a
#                                     built `strom` binary (images/archive.sh)
#
# The node's host address, NODE_IP on an interface of its own, is where pods reach the
# host: the cluster DNS listens there, and so do MinIO and the kubelet (it is an
# otherwise unused bridge: this kernel has no dummy interfaces). There is no
# kube-proxy: Strom's pods find each other by the headless Service's DNS names and
# the operator reaches a job's control API at its pod's IP, so no ClusterIP is used.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

K8S_MODULE=$INFRA_DIR/k8s
K8S_VERSION=$(awk '$1 == "k8s.io/kubernetes" { print $2 }' "$K8S_MODULE/go.mod")
COREDNS_MODULE=$INFRA_DIR/coredns
COREDNS_VERSION=$(awk '$1 == "github.com/coredns/coredns" { print $2 }' "$COREDNS_MODULE/go.mod")
NODE_BIN=$INFRA_BIN/node-$K8S_VERSION-coredns-$COREDNS_VERSION
K8S_RUN=$INFRA_RUN/kubernetes
PKI=$K8S_RUN/pki
NODE_RUN=$INFRA_RUN/node
NODE_NAME=strom-node
NODE_IP=$NODE_HOST_IP
POD_CIDR=10.88.0.0/16
BRIDGE=strom-cni0
KUBELET_PORT=10250
COREDNS_HEALTH_PORT=18080
PAUSE_IMAGE=strom.local/pause:3.10
RUNTIME_IMAGE=strom-runtime:e2e
CONTAINERD_SOCKET=$NODE_RUN/containerd/containerd.sock

service_build() {
    ensure_debian_packages
    if [ -f "$NODE_BIN/.complete" ]; then
        log "kubelet $K8S_VERSION and CoreDNS $COREDNS_VERSION cached in $NODE_BIN"
        return 0
    fi
    log "building the kubelet $K8S_VERSION and CoreDNS $COREDNS_VERSION from their Go modules"
    rm -rf "$NODE_BIN.tmp"
    mkdir -p "$NODE_BIN.tmp"
    local ldflags
    ldflags=$(k8s_version_ldflags "$K8S_VERSION")
    (
        export GOFLAGS=-buildvcs=false
        cd "$K8S_MODULE"
        go build -trimpath -ldflags "$ldflags" -o "$NODE_BIN.tmp/" k8s.io/kubernetes/cmd/kubelet
        # The pod sandbox's process, from the same module's sources.
        local pause_source
        pause_source="$(go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c"
        gcc -Os -static -DVERSION="$K8S_VERSION" -o "$NODE_BIN.tmp/pause" "$pause_source"
        cd "$COREDNS_MODULE"
        go build -trimpath -o "$NODE_BIN.tmp/coredns" github.com/coredns/coredns
    )
    touch "$NODE_BIN.tmp/.complete"
    rm -rf "$NODE_BIN"
    mv "$NODE_BIN.tmp" "$NODE_BIN"
}

# import_image TAR: loads an image archive into containerd's Kubernetes namespace.
import_image() {
    ctr --address "$CONTAINERD_SOCKET" -n k8s.io images import "$1" >/dev/null
}

# build_image REFERENCE ROOTFS ENTRYPOINT...: an image of ROOTFS, imported.
build_image() {
    local reference=$1 rootfs=$2
    shift 2
    python3 "$INFRA_DIR/../../images/oci_archive.py" "$NODE_RUN/image.tar" "$reference" "$rootfs" "$@"
    import_image "$NODE_RUN/image.tar"
    rm -f "$NODE_RUN/image.tar"
}

pause_image() {
    local rootfs=$NODE_RUN/pause-rootfs
    rm -rf "$rootfs"
    mkdir -p "$rootfs"
    cp "$NODE_BIN/pause" "$rootfs/pause"
    build_image "$PAUSE_IMAGE" "$rootfs" /pause
}

# runtime_image BINARY: the runtime image (images/archive.sh: the binary, every
# library it links, the user strom), imported.
runtime_image() {
    local binary=$1
    [ -x "$binary" ] || { log "no runtime binary at $binary"; return 1; }
    mkdir -p "$NODE_RUN"
    "$INFRA_DIR/../../images/archive.sh" runtime "$binary" "$NODE_RUN/runtime.tar" "$RUNTIME_IMAGE"
    import_image "$NODE_RUN/runtime.tar"
    rm -f "$NODE_RUN/runtime.tar"
    log "imported $RUNTIME_IMAGE ($(du -sh "$binary" | cut -f1) binary)"
}

# issue CN ORGANIZATION EXTENSIONS NAME: a key and certificate signed by the
# cluster's CA, in the node's folder.
issue() {
    issue_certificate "$PKI" "$NODE_RUN" "$@"
}

write_config() {
    mkdir -p "$NODE_RUN/containerd" "$NODE_RUN/cni" "$NODE_RUN/kubelet"
    cat >"$NODE_RUN/containerd/config.toml" <<EOF
version = 2
root = "$NODE_RUN/containerd/root"
state = "$NODE_RUN/containerd/state"
[grpc]
  address = "$CONTAINERD_SOCKET"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # Lowering a process's OOM score needs CAP_SYS_RESOURCE, which this machine's
  # bounding set lacks: keep scores at or above containerd's own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$NODE_RUN/cni"
EOF
    cat >"$NODE_RUN/cni/10-strom.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "strom",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_CIDR"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$NODE_RUN/cni/ipam"
      }
    },
    {"type": "loopback"}
  ]
}
EOF
    # Pods resolve cluster names only: there is nothing outside to ask.
    echo "nameserver $NODE_IP" >"$NODE_RUN/resolv.conf"
    cat >"$NODE_RUN/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
containerRuntimeEndpoint: unix://$CONTAINERD_SOCKET
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
localStorageCapacityIsolation: false
clusterDNS: [$NODE_IP]
clusterDomain: cluster.local
resolvConf: $NODE_RUN/resolv.conf
# Images come from imports, not a registry: never collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "1Mi", nodefs.available: "1%", imagefs.available: "1%"}
serializeImagePulls: false
# Mounted Secrets follow changes within seconds (a kubelet's default: a minute),
# so a test of a rotated token waits little.
syncFrequency: 10s
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: AlwaysAllow}
tlsCertFile: $NODE_RUN/kubelet-serving.crt
tlsPrivateKeyFile: $NODE_RUN/kubelet-serving.key
EOF
    cat >"$NODE_RUN/Corefile" <<EOF
.:53 {
    bind $NODE_IP
    errors
    health $NODE_IP:$COREDNS_HEALTH_PORT
    kubernetes cluster.local {
        kubeconfig $K8S_RUN/admin.kubeconfig
    }
}
EOF
    cat >"$NODE_RUN/kubelet.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: strom-e2e
    cluster: {server: "https://127.0.0.1:16443", certificate-authority: $PKI/ca.crt}
users:
  - name: $NODE_NAME
    user: {client-certificate: $NODE_RUN/kubelet-client.crt, client-key: $NODE_RUN/kubelet-client.key}
contexts:
  - name: node
    context: {cluster: strom-e2e, user: $NODE_NAME}
current-context: node
EOF
}

containerd_ready() {
    ctr --address "$CONTAINERD_SOCKET" version
}

node_ready() {
    kubectl_admin get node "$NODE_NAME" \
        -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' | grep -q True
}

coredns_healthy() {
    curl -sf "http://$NODE_IP:$COREDNS_HEALTH_PORT/health"
}

kubectl_admin() {
    "$INFRA_BIN/kubernetes-$K8S_VERSION/kubectl" --kubeconfig "$K8S_RUN/admin.kubeconfig" "$@"
}

all_healthy() {
    {
        daemon_running containerd && containerd_ready \
            && daemon_running kubelet && node_ready \
            && daemon_running coredns && coredns_healthy
    } >/dev/null 2>&1
}

service_up() {
    if all_healthy; then
        log "node $NODE_NAME already running"
        return 0
    fi
    [ -f "$PKI/ca.crt" ] || { log "the control plane is not running: start kubernetes.sh first"; return 1; }
    service_down
    service_build
    local start=$SECONDS
    rm -rf "$NODE_RUN"
    mkdir -p "$NODE_RUN"
    add_host_address
    write_config
    issue "system:node:$NODE_NAME" system:nodes "extendedKeyUsage=clientAuth" kubelet-client
    issue "$NODE_NAME" "" "subjectAltName=IP:$NODE_IP,DNS:$NODE_NAME
extendedKeyUsage=serverAuth" kubelet-serving
    # Where the kubelet renews its heartbeat Lease (the apiserver makes it lazily).
    kubectl_admin create namespace kube-node-lease >/dev/null 2>&1 || true
    start_daemon containerd "$NODE_RUN/containerd.log" \
        containerd --config "$NODE_RUN/containerd/config.toml"
    wait_until 60 containerd "$NODE_RUN/containerd.log" containerd_ready
    pause_image
    start_daemon kubelet "$NODE_RUN/kubelet.log" "$NODE_BIN/kubelet" \
        --config "$NODE_RUN/kubelet/config.yaml" \
        --kubeconfig "$NODE_RUN/kubelet.kubeconfig" \
        --root-dir "$NODE_RUN/kubelet" \
        --hostname-override "$NODE_NAME" --node-ip "$NODE_IP"
    start_daemon coredns "$NODE_RUN/coredns.log" "$NODE_BIN/coredns" -conf "$NODE_RUN/Corefile"
    wait_until 120 kubelet "$NODE_RUN/kubelet.log" node_ready
    wait_until 60 coredns "$NODE_RUN/coredns.log" coredns_healthy
    log "node $NODE_NAME ready in $((SECONDS - start))s"
}

# Stops the kubelet and CoreDNS, then every container (their shims outlive
# containerd), then containerd, and removes the node's mounts and interfaces.
service_down() {
    stop_daemon coredns
    stop_daemon kubelet
    if daemon_running containerd; then
        local task
        for task in $(ctr --address "$CONTAINERD_SOCKET" -n k8s.io tasks ls -q 2>/dev/null); do
            ctr --address "$CONTAINERD_SOCKET" -n k8s.io tasks kill -s KILL "$task" >/dev/null 2>&1 || true
        done
    fi
    stop_daemon containerd
    pkill -KILL -f "containerd-shim-runc-v2 .*-address $CONTAINERD_SOCKET" 2>/dev/null || true
    if [ -d "$NODE_RUN" ]; then
        local mount
        for mount in $(awk -v root="$NODE_RUN" 'index($2, root) == 1 { print $2 }' /proc/mounts | sort -r); do
            umount -l "$mount" 2>/dev/null || true
        done
    fi
    ip link del "$BRIDGE" 2>/dev/null || true
    ip link del "$NODE_HOST_INTERFACE" 2>/dev/null || true
    kubectl_admin delete node "$NODE_NAME" --ignore-not-found --wait=false >/dev/null 2>&1 || true
}

service_env() {
    echo "export STROM_NODE=$NODE_NAME"
    echo "export STROM_NODE_HOST_IP=$NODE_IP"
    echo "export STROM_RUNTIME_IMAGE=$RUNTIME_IMAGE"
}

service_status() {
    local name
    for name in containerd kubelet coredns; do
        if daemon_running "$name"; then echo "$name: running"; else echo "$name: stopped"; fi
    done
}

if [ "${1:-}" = image ]; then
    [ $# -eq 2 ] || { echo "usage: $0 image BINARY" >&2; exit 2; }
    runtime_image "$2"
    exit 0
fi
main_for_service "a Kubernetes node (containerd, kubelet, CoreDNS) that runs pods" "$@"
