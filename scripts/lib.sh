# Shared by the project's scripts: caches, stage timing, installing what is missing.
# Source it; do not run it.

# Caches live outside the clone, so a fresh clone (CI) builds warm.
STROM_CACHE=${STROM_CACHE:-$HOME/.cache/strom}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$STROM_CACHE/target}
mkdir -p "$STROM_CACHE"

# Debian packages the workspace needs to build (rocksdb; rdkafka with TLS, SASL and
# libcurl), the e2e scripts' certificates and signed S3 requests (openssl, curl), and
# the e2e node's container runtime and pod network (containerd, runc, CNI plugins),
# and the kind cluster's provider and node image build (podman, debootstrap, zstd).
STROM_DEBIAN_PACKAGES=(
    build-essential cmake clang libclang-dev pkg-config
    libssl-dev libsasl2-dev zlib1g-dev libzstd-dev
    libcurl4-openssl-dev openssl curl
    containerd runc containernetworking-plugins iproute2
    podman netavark aardvark-dns conmon uidmap debootstrap zstd
)

STROM_STAGES=()

# stage NAME COMMAND...: runs COMMAND, prints how long it took, remembers the time.
# Returns COMMAND's exit status.
stage() {
    local name=$1
    shift
    local start=$SECONDS status=0
    printf '\n==> %s\n' "$name"
    "$@" || status=$?
    local took=$((SECONDS - start))
    STROM_STAGES+=("$(printf '%-28s %5ss  %s' "$name" "$took" "$([ $status -eq 0 ] && echo ok || echo FAILED)")")
    printf '<== %s: %ss%s\n' "$name" "$took" "$([ $status -eq 0 ] || echo ", FAILED (exit $status)")"
    return $status
}

# Prints the table of stages run so far.
print_stages() {
    printf '\n%-28s %6s  %s\n' "stage" "time" "result"
    printf '%s\n' "${STROM_STAGES[@]}"
}

# Installs the Debian packages of STROM_DEBIAN_PACKAGES that are missing.
ensure_debian_packages() {
    local missing=() package
    for package in "${STROM_DEBIAN_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
            || missing+=("$package")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        echo "all ${#STROM_DEBIAN_PACKAGES[@]} Debian packages present"
        return 0
    fi
    echo "installing: ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# Checks for the Rust toolchain (rustup, with rustfmt and clippy).
ensure_rust() {
    if ! command -v cargo >/dev/null; then
        echo "cargo is missing: install Rust 1.95 or newer with rustup" >&2
        return 1
    fi
    local component
    for component in rustfmt clippy; do
        if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
            rustup component add "$component" || return 1
        fi
    done
    cargo --version
}
