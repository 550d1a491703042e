#!/usr/bin/env bash
# A kind cluster for the e2e tests — the same kind of cluster users create — that
# runs offline: the podman provider, and a node image built here from Debian's
# packages and the Kubernetes, etcd and CoreDNS Go modules (no registry is reachable).
# Strom's images are loaded into it with `kind load image-archive`.
#
#   e2e/kind/kind.sh build|up|down|env|status
#   e2e/kind/kind.sh image runtime|operator BINARY [NAME:TAG]
#                      an image from a built binary (images/archive.sh), loaded;
#                      a runtime image of another binary (a user's pipelines,
#                      examples/custom-pipeline) under NAME:TAG
#
# With STROM_KIND_NODE_IMAGE=stock (machines with Docker and internet), nothing is
# built: kind runs its own node image with its default provider and CNI.
#
# build: kind from its Go module; kubeadm and kube-proxy from the Kubernetes module of
# e2e/infra (its other binaries come from kubernetes.sh and node.sh builds); then the
# node image, once, cached in podman's storage and as an archive under
# ~/.cache/strom/bin. up: creates the single-node cluster `strom-e2e`, waits for the
# node and CoreDNS, routes the pod network from the host (tests reach pods by IP)
# and gives the host the address pods reach its services at (10.99.0.1).
set -euo pipefail
source "$(dirname "$0")/../infra/lib.sh"

KIND_DIR=$(cd "$(dirname "$0")" && pwd)
KIND_VERSION=v0.33.0
K8S_MODULE=$INFRA_DIR/k8s
K8S_VERSION=$(awk '$1 == "k8s.io/kubernetes" { print $2 }' "$K8S_MODULE/go.mod")
COREDNS_VERSION=$(awk '$1 == "github.com/coredns/coredns" { print $2 }' "$INFRA_DIR/coredns/go.mod")
ETCD_VERSION=$(awk '$1 == "go.etcd.io/etcd/server/v3" { print $2 }' "$K8S_MODULE/go.mod")
KIND_BIN=$INFRA_BIN/kind-$KIND_VERSION
# kubeadm, kube-proxy and the node image's archive.
KIND_NODE_BIN=$INFRA_BIN/kind-node-$K8S_VERSION-etcd-$ETCD_VERSION-coredns-$COREDNS_VERSION
K8S_BIN=$INFRA_BIN/kubernetes-$K8S_VERSION
NODE_BIN=$INFRA_BIN/node-$K8S_VERSION-coredns-$COREDNS_VERSION
KIND_RUN=$INFRA_RUN/kind
CLUSTER=strom-e2e
NODE_CONTAINER=$CLUSTER-control-plane
POD_CIDR=10.244.0.0/16
# Images the node runs its control plane from, under a repository of our own: they
# are built here, not pulled (the cluster config points kubeadm at it).
IMAGE_REPOSITORY=strom.local
NODE_IMAGE=$IMAGE_REPOSITORY/kind-node:$K8S_VERSION
BASE_IMAGE=$IMAGE_REPOSITORY/kind-base:$K8S_VERSION
PAUSE_IMAGE=$IMAGE_REPOSITORY/pause:3.10
RUNTIME_IMAGE=strom-runtime:e2e
OPERATOR_IMAGE=strom-operator:e2e
CUSTOM_PIPELINE_IMAGE=orders-pipelines:e2e
STOCK=$([ "${STROM_KIND_NODE_IMAGE:-}" = stock ] && echo 1 || echo 0)

# The container engine kind runs the node in: podman here; in stock mode kind's
# own default (docker) unless KIND_EXPERIMENTAL_PROVIDER names another.
if [ "$STOCK" = 0 ]; then
    export KIND_EXPERIMENTAL_PROVIDER=podman
fi
PROVIDER=${KIND_EXPERIMENTAL_PROVIDER:-docker}

kind() {
    "$KIND_BIN/kind" "$@"
}

kubectl_kind() {
    "$K8S_BIN/kubectl" --kubeconfig "$KIND_RUN/kubeconfig" "$@"
}

# podman as kind needs it on these machines: open-file and process limits within the
# host's hard limits, runc (crun 1.8 refuses kind's --cgroupns=private on a hybrid
# cgroup host), container networks away from the e2e node's 10.88.0.0/16, and
# /lib/modules to bind-mount (this VM's kernel ships none).
configure_podman() {
    # A drop-in of our own: the machine's containers.conf is left as it is.
    local dropin=/etc/containers/containers.conf.d/50-strom-kind.conf
    mkdir -p "$(dirname "$dropin")"
    cat >"$dropin" <<'CONF'
# strom: kind (e2e/kind/kind.sh) needs these on this machine.
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=10000:10000"]
[engine]
runtime = "runc"
[network]
default_subnet = "10.213.0.0/16"
default_subnet_pools = [{"base" = "10.214.0.0/16", "size" = 24}]
CONF
    # Earlier versions of this script wrote containers.conf itself.
    if grep -q 'strom: kind' /etc/containers/containers.conf 2>/dev/null; then
        rm /etc/containers/containers.conf
    fi
    # The podman package puts a CNI config where a host containerd looks for its
    # pod network; netavark does not use it.
    if [ -f /etc/cni/net.d/87-podman-bridge.conflist ]; then
        mv /etc/cni/net.d/87-podman-bridge.conflist "$INFRA_RUN/87-podman-bridge.conflist.moved"
    fi
    mkdir -p /lib/modules
}

build_kind() {
    if [ -x "$KIND_BIN/kind" ]; then
        log "kind $KIND_VERSION cached in $KIND_BIN"
        return 0
    fi
    log "building kind $KIND_VERSION from its Go module"
    rm -rf "$KIND_BIN.tmp"
    GOFLAGS=-buildvcs=false GOBIN="$KIND_BIN.tmp" go install "sigs.k8s.io/kind@$KIND_VERSION"
    rm -rf "$KIND_BIN"
    mv "$KIND_BIN.tmp" "$KIND_BIN"
}

# kubeadm and kube-proxy, which only a kind node needs.
build_node_binaries() {
    if [ -f "$KIND_NODE_BIN/.binaries" ]; then
        return 0
    fi
    log "building kubeadm and kube-proxy $K8S_VERSION from the Kubernetes module"
    mkdir -p "$KIND_NODE_BIN"
    (
        cd "$K8S_MODULE"
        GOFLAGS=-buildvcs=false go build -trimpath -ldflags "$(k8s_version_ldflags "$K8S_VERSION")" \
            -o "$KIND_NODE_BIN/" k8s.io/kubernetes/cmd/kubeadm k8s.io/kubernetes/cmd/kube-proxy
    )
    touch "$KIND_NODE_BIN/.binaries"
}

# The machine's own Debian mirror, as apt is configured with it (deb822 .sources
# files or one-line .list files).
debian_mirror() {
    local file
    for file in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$file" ] || continue
        awk '/^URIs:/ { print $2 }
             $1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break } }' "$file"
    done | grep -v -- '-security' | head -n 1 || true
}

# base_image WORK: a Debian bookworm root filesystem with systemd, containerd, runc,
# the CNI plugins and iptables, and kind's own base-image files (entrypoint, units,
# containerd config) from the kind module, imported as BASE_IMAGE.
base_image() {
    local work=$1 rootfs=$1/rootfs mirror
    mirror=$(debian_mirror)
    [ -n "$mirror" ] || { log "no Debian mirror in apt's sources"; return 1; }
    log "debootstrap bookworm from $mirror"
    debootstrap --variant=minbase \
        --include=systemd,systemd-sysv,dbus,containerd,runc,iptables,containernetworking-plugins,ca-certificates,procps,iproute2,kmod,mount,util-linux,conntrack,ethtool,socat,ebtables,libseccomp2,e2fsprogs,bash,curl,nftables,pigz,jq \
        bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
        || { tail -n 20 "$work/debootstrap.log" >&2; return 1; }
    local files
    files=$(go env GOMODCACHE)/sigs.k8s.io/kind@$KIND_VERSION/images/base/files
    [ -d "$files" ] || { log "kind's base-image files are missing from $files"; return 1; }
    install -m 0755 "$files"/usr/local/bin/* "$rootfs/usr/local/bin/"
    mkdir -p "$rootfs/kind" "$rootfs/etc/containerd" "$rootfs/etc/systemd/system/kubelet.service.d" \
        "$rootfs/etc/cni/net.d" "$rootfs/etc/kubernetes/manifests"
    cp -r "$files"/kind/* "$rootfs/kind/"
    chmod -R a+rX "$rootfs/kind"
    chmod 0755 "$rootfs"/kind/bin/*
    cp "$files/etc/crictl.yaml" "$rootfs/etc/"
    cp "$files/etc/default/kubelet" "$rootfs/etc/default/"
    cp "$files"/etc/sysctl.d/* "$rootfs/etc/sysctl.d/"
    cp "$files"/etc/systemd/system/*.service "$files"/etc/systemd/system/*.slice "$rootfs/etc/systemd/system/"
    cp "$files"/etc/systemd/system/kubelet.service.d/* "$rootfs/etc/systemd/system/kubelet.service.d/"
    # kind's containerd config without the fuse-overlayfs snapshotter (not installed),
    # keeping OOM scores at or above containerd's own (no CAP_SYS_RESOURCE here), and
    # the pause image built here.
    python3 - "$files/etc/containerd/config.toml" "$rootfs/etc/containerd/config.toml" "$PAUSE_IMAGE" <<'PY'
import sys
source, target, pause = sys.argv[1:]
text = open(source).read()
start, end = text.index("[proxy_plugins]"), text.index("[plugins.")
text = text[:start] + text[end:]
text = text.replace("restrict_oom_score_adj = false", "restrict_oom_score_adj = true")
text = text.replace('sandbox_image = "registry.k8s.io/pause:3.10"', f'sandbox_image = "{pause}"')
open(target, "w").write(text)
PY
    local binary
    for binary in containerd ctr containerd-shim-runc-v2; do
        ln -sf "/usr/bin/$binary" "$rootfs/usr/local/bin/$binary"
    done
    rm -rf "$rootfs/opt/cni/bin"
    mkdir -p "$rootfs/opt/cni"
    ln -s /usr/lib/cni "$rootfs/opt/cni/bin"
    # The OCI spec containerd starts containers from: kind's hook that mounts product
    # files, no rlimits (they cannot be raised here).
    ctr oci spec | python3 -c '
import json, sys
spec = json.load(sys.stdin)
spec.setdefault("hooks", {}).setdefault("createContainer", []).append(
    {"path": "/kind/bin/mount-product-files.sh"})
spec["process"].pop("rlimits", None)
json.dump(spec, open(sys.argv[1], "w"), indent=2)' "$rootfs/etc/containerd/cri-base.json"
    # Single node without kindnetd (not buildable from the Go proxy): a bridge.
    cat >"$rootfs/etc/cni/net.d/10-bridge.conflist" <<JSON
{"cniVersion": "1.0.0", "name": "kind-bridge", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
JSON
    chroot "$rootfs" /bin/bash -c '
        find /lib/systemd/system/sysinit.target.wants/ -name systemd-tmpfiles-setup.service -delete
        rm -f /lib/systemd/system/multi-user.target.wants/* /etc/systemd/system/*.wants/* \
            /lib/systemd/system/local-fs.target.wants/* /lib/systemd/system/sockets.target.wants/*udev* \
            /lib/systemd/system/sockets.target.wants/*initctl* /lib/systemd/system/basic.target.wants/*
        echo ReadKMsg=no >>/etc/systemd/journald.conf
        ln -sf /usr/lib/systemd/systemd /sbin/init
        systemctl enable kubelet.service containerd.service undo-mount-hacks.service
        systemctl mask systemd-binfmt.service
        apt-get clean
        rm -rf /var/lib/apt/lists/*' >"$work/chroot.log" 2>&1 \
        || { tail -n 20 "$work/chroot.log" >&2; return 1; }
    tar -C "$rootfs" -c . | podman import -q \
        --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' \
        --change 'ENV container=docker' --change 'STOPSIGNAL SIGRTMIN+3' \
        - "$BASE_IMAGE" >/dev/null
    rm -rf "$rootfs"
}

# component_image WORK REFERENCE BASE BINARY PATH: an image of BASE with BINARY at
# PATH as its entrypoint, saved as WORK/images/<name>.tar.
component_image() {
    local work=$1 reference=$2 base=$3 binary=$4 path=$5 context
    context=$(mktemp -d "$work/context.XXXX")
    cp "$binary" "$context/binary"
    printf 'FROM %s\nCOPY binary %s\nENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\nENTRYPOINT ["%s"]\n' \
        "$base" "$path" "$path" >"$context/Containerfile"
    podman build -q --pull=never -t "$reference" "$context" >/dev/null
    mkdir -p "$work/images"
    podman save -q --format docker-archive -o "$work/images/$(echo "$reference" | tr '/:' '__').tar" "$reference"
    podman rmi -f "$reference" >/dev/null
    rm -rf "$context"
}

# node_image WORK: the base image with kubelet, kubeadm and kubectl and the control
# plane's images preloaded into its containerd — what `kind build node-image` does.
node_image() {
    local work=$1 tag=$K8S_VERSION
    log "control-plane images"
    local component
    for component in kube-apiserver kube-controller-manager kube-scheduler; do
        component_image "$work" "$IMAGE_REPOSITORY/$component:$tag" "$BASE_IMAGE" "$K8S_BIN/$component" "/usr/local/bin/$component"
    done
    component_image "$work" "$IMAGE_REPOSITORY/kube-proxy:$tag" "$BASE_IMAGE" "$KIND_NODE_BIN/kube-proxy" /usr/local/bin/kube-proxy
    component_image "$work" "$IMAGE_REPOSITORY/etcd:${ETCD_VERSION#v}" "$BASE_IMAGE" "$K8S_BIN/etcd" /usr/local/bin/etcd
    component_image "$work" "$IMAGE_REPOSITORY/coredns:$COREDNS_VERSION" "$BASE_IMAGE" "$NODE_BIN/coredns" /coredns
    component_image "$work" "$PAUSE_IMAGE" scratch "$NODE_BIN/pause" /pause
    log "node image $NODE_IMAGE"
    # One name, so a build that failed halfway leaves nothing the next one keeps.
    local container=strom-kind-build
    podman rm -f -t 0 "$container" >/dev/null 2>&1 || true
    podman run -d --name "$container" --entrypoint sleep --security-opt seccomp=unconfined \
        "$BASE_IMAGE" infinity >/dev/null
    local binary
    for binary in kubelet; do podman cp "$NODE_BIN/$binary" "$container:/usr/bin/$binary"; done
    for binary in kubeadm; do podman cp "$KIND_NODE_BIN/$binary" "$container:/usr/bin/$binary"; done
    podman cp "$K8S_BIN/kubectl" "$container:/usr/bin/kubectl"
    podman exec "$container" bash -c "echo $K8S_VERSION >/kind/version"
    podman exec "$container" bash -c 'nohup containerd >/tmp/containerd.log 2>&1 &
        for i in $(seq 300); do [ -S /run/containerd/containerd.sock ] && exit 0; sleep 0.2; done; exit 1'
    local archive
    for archive in "$work"/images/*.tar; do
        podman exec -i "$container" ctr --namespace=k8s.io images import \
            --label=io.cri-containerd.pinned=pinned --all-platforms --no-unpack --digests - <"$archive" >/dev/null
    done
    # containerd's metadata is complete once it has exited (a minute at most). The
    # container's PID 1 (sleep) reaps nothing: an exited containerd stays a zombie,
    # which counts as gone.
    podman exec "$container" bash -c 'running() { ps -C containerd -o stat= | grep -qv "^Z"; }
        pkill containerd
        for i in $(seq 600); do running || break; sleep 0.1; done
        ! running && rm -rf /tmp/* /run/containerd'
    podman commit -q --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' --change 'CMD []' \
        "$container" "$NODE_IMAGE" >/dev/null
    podman rm -f -t 0 "$container" >/dev/null
    podman rmi -f "$BASE_IMAGE" >/dev/null 2>&1 || true
}

# The node image: in podman's storage already, or loaded from its cached archive, or
# built (a few minutes) and archived.
ensure_node_image() {
    if podman image exists "$NODE_IMAGE"; then
        log "node image $NODE_IMAGE present"
        return 0
    fi
    if [ -f "$KIND_NODE_BIN/node-image.tar.zst" ]; then
        log "loading the node image from $KIND_NODE_BIN"
        zstd -q -dc "$KIND_NODE_BIN/node-image.tar.zst" | podman load -q >/dev/null
        return 0
    fi
    local work=$STROM_CACHE/kind-build
    rm -rf "$work"
    mkdir -p "$work"
    base_image "$work"
    node_image "$work"
    rm -rf "$work"
    podman save -q --format oci-archive "$NODE_IMAGE" | zstd -q -T0 -3 >"$KIND_NODE_BIN/node-image.tar.zst.tmp"
    mv "$KIND_NODE_BIN/node-image.tar.zst.tmp" "$KIND_NODE_BIN/node-image.tar.zst"
}

service_build() {
    build_kind
    if [ "$STOCK" = 1 ]; then
        # kubectl, at the version the tests are built for.
        "$INFRA_DIR/kubernetes.sh" build
        return 0
    fi
    ensure_debian_packages
    configure_podman
    "$INFRA_DIR/kubernetes.sh" build
    "$INFRA_DIR/node.sh" build
    build_node_binaries
    ensure_node_image
}

cluster_exists() {
    local clusters
    clusters=$(kind get clusters 2>/dev/null) || return 1
    grep -qx "$CLUSTER" <<<"$clusters"
}

node_address() {
    "$PROVIDER" inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$NODE_CONTAINER"
}

all_healthy() {
    cluster_exists && [ -f "$KIND_RUN/kubeconfig" ] \
        && kubectl_kind get --raw /readyz >/dev/null 2>&1
}

cluster_config() {
    if [ "$STOCK" = 1 ]; then
        printf 'kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nname: %s\n' "$CLUSTER"
        return
    fi
    cat <<YAML
kind: Cluster
apiVersion: kind.x-k8s.io/v1alpha4
name: $CLUSTER
networking:
  # The node image carries a bridge CNI (kindnetd cannot be built offline).
  disableDefaultCNI: true
  podSubnet: $POD_CIDR
kubeadmConfigPatches:
  - |
    kind: ClusterConfiguration
    imageRepository: $IMAGE_REPOSITORY
    etcd:
      local:
        imageTag: "${ETCD_VERSION#v}"
    dns:
      imageTag: "$COREDNS_VERSION"
  - |
    # Mounted Secrets follow changes within seconds (a kubelet's default: a
    # minute), so a test of a rotated token waits little.
    kind: KubeletConfiguration
    syncFrequency: 10s
nodes:
  - role: control-plane
YAML
}

service_up() {
    service_build
    if all_healthy; then
        log "kind cluster $CLUSTER already running"
    else
        cluster_exists && kind delete cluster --name "$CLUSTER" >/dev/null 2>&1
        local start=$SECONDS image_flag=()
        rm -rf "$KIND_RUN"
        mkdir -p "$KIND_RUN"
        cluster_config >"$KIND_RUN/cluster.yaml"
        [ "$STOCK" = 1 ] || image_flag=(--image "$NODE_IMAGE")
        kind create cluster "${image_flag[@]}" --config "$KIND_RUN/cluster.yaml" \
            --kubeconfig "$KIND_RUN/kubeconfig" --wait 180s >"$KIND_RUN/create.log" 2>&1 \
            || { tail -n 40 "$KIND_RUN/create.log" >&2; return 1; }
        timeout 120 "$K8S_BIN/kubectl" --kubeconfig "$KIND_RUN/kubeconfig" \
            -n kube-system rollout status deployment/coredns --timeout=120s >/dev/null \
            || { log "CoreDNS did not become ready within 120s"; return 1; }
        log "kind cluster $CLUSTER ready in $((SECONDS - start))s"
    fi
    # Tests on the host reach pods by IP (the operator's control API calls, pods'
    # metrics).
    ip route replace "$POD_CIDR" via "$(node_address)"
    # Pods reach the host's services at NODE_HOST_IP through the node's default route.
    add_host_address
}

service_down() {
    if [ -x "$KIND_BIN/kind" ] && cluster_exists; then
        kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || log "kind delete cluster failed"
    fi
    ip route del "$POD_CIDR" 2>/dev/null || true
}

service_env() {
    echo "export STROM_CLUSTER=kind"
    echo "export STROM_KIND=$KIND_BIN/kind"
    echo "export STROM_KIND_CLUSTER=$CLUSTER"
    echo "export STROM_KUBECONFIG=$KIND_RUN/kubeconfig"
    echo "export STROM_KUBECTL=$K8S_BIN/kubectl"
    echo "export STROM_NODE=$NODE_CONTAINER"
    echo "export STROM_NODE_HOST_IP=$NODE_HOST_IP"
    echo "export STROM_RUNTIME_IMAGE=$RUNTIME_IMAGE"
    echo "export STROM_OPERATOR_IMAGE=$OPERATOR_IMAGE"
    echo "export STROM_CUSTOM_PIPELINE_IMAGE=$CUSTOM_PIPELINE_IMAGE"
}

service_status() {
    if cluster_exists; then echo "kind cluster $CLUSTER: running"; else echo "kind cluster $CLUSTER: absent"; fi
}

# image runtime|operator BINARY [REFERENCE]: the image (images/archive.sh), loaded
# into the node.
load_image() {
    local kind=$1 binary=$2 reference=${3:-}
    case $kind in
        runtime) reference=${reference:-$RUNTIME_IMAGE} ;;
        operator) reference=${reference:-$OPERATOR_IMAGE} ;;
        *) echo "usage: $0 image runtime|operator BINARY [NAME:TAG]" >&2; return 2 ;;
    esac
    mkdir -p "$KIND_RUN"
    "$KIND_DIR/../../images/archive.sh" "$kind" "$binary" "$KIND_RUN/$kind.tar" "$reference"
    local output
    output=$(kind load image-archive --name "$CLUSTER" "$KIND_RUN/$kind.tar" 2>&1) \
        || { echo "$output" >&2; rm -f "$KIND_RUN/$kind.tar"; return 1; }
    rm -f "$KIND_RUN/$kind.tar"
    log "loaded $reference into $CLUSTER"
}

if [ "${1:-}" = image ]; then
    [ $# -eq 3 ] || [ $# -eq 4 ] || { echo "usage: $0 image runtime|operator BINARY [NAME:TAG]" >&2; exit 2; }
    shift
    load_image "$@"
    exit 0
fi
main_for_service "a kind cluster (podman, a node image built here) for the e2e tests" "$@"
