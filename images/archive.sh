#!/usr/bin/env bash
# Strom's images from binaries already built (release or debug), without a
# registry or a Docker engine: the binary, the libraries it links (from this
# machine, Debian 12), CA certificates and the /etc/strom layout, as a
# docker-archive that `ctr images import`, `kind load image-archive`,
# `docker load` and `podman load` take. What images/Dockerfile builds from
# source, made from the binaries the tests use.
#
#   images/archive.sh runtime|operator BINARY OUTPUT.tar NAME:TAG
#
# Both run as the user strom (65532:65532) and need no writable path of the
# image: job pods mount their work folder (/var/lib/strom) and set TMPDIR to it,
# so the root filesystem can be read-only.
set -euo pipefail

usage() {
    echo "usage: $0 runtime|operator BINARY OUTPUT.tar NAME:TAG" >&2
    exit 2
}
[ $# -eq 4 ] || usage
kind=$1 binary=$2 output=$3 reference=$4
case $kind in
    runtime) name=strom ;;
    operator) name=strom-operator ;;
    *) usage ;;
esac
[ -x "$binary" ] || { echo "no binary at $binary" >&2; exit 1; }

rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc/ssl/certs" "$rootfs/tmp" "$rootfs/var/lib/strom"
chmod 1777 "$rootfs/tmp"
objcopy --strip-debug "$binary" "$rootfs/usr/local/bin/$name"
for library in $(ldd "$binary" | awk '$2 == "=>" { print $3 } $1 ~ /^\// { print $1 }'); do
    mkdir -p "$rootfs$(dirname "$library")"
    cp -L "$library" "$rootfs$library"
done
cp -L /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/"
cat >"$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/usr/sbin/nologin
strom:x:65532:65532:strom:/var/lib/strom:/usr/sbin/nologin
EOF
cat >"$rootfs/etc/group" <<'EOF'
root:x:0:
strom:x:65532:
EOF
echo 'hosts: files dns' >"$rootfs/etc/nsswitch.conf"
if [ "$kind" = runtime ]; then
    # Where job pods mount the job's manifest, its control token and its Kafka
    # clusters' Secrets.
    mkdir -p "$rootfs/etc/strom/job" "$rootfs/etc/strom/control" "$rootfs/etc/strom/secrets"
fi
python3 "$(dirname "$0")/oci_archive.py" --user 65532:65532 \
    "$output" "$reference" "$rootfs" "/usr/local/bin/$name"
