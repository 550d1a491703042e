# Shared by the e2e/infra service scripts: where builds and running services live,
# starting and stopping daemons, health waits. Source it; do not run it.

source "$(dirname "${BASH_SOURCE[0]}")/../../scripts/lib.sh"

INFRA_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Built binaries and downloaded jars, kept between runs (and between clones).
INFRA_BIN=$STROM_CACHE/bin
# Data, logs, certificates and credentials of the running services. `up` on a stopped
# service starts it afresh here; `down` stops it and keeps the logs for a look.
INFRA_RUN=${STROM_INFRA_RUN:-$STROM_CACHE/run}
mkdir -p "$INFRA_BIN" "$INFRA_RUN"

# Where pods reach the host (on an interface of its own, NODE_HOST_INTERFACE, which
# node.sh and e2e/kind/kind.sh add): services that pods use listen there too.
NODE_HOST_IP=10.99.0.1
NODE_HOST_INTERFACE=strom-node0

# add_host_address: puts NODE_HOST_IP on NODE_HOST_INTERFACE (an otherwise unused
# bridge: this kernel has no dummy interfaces).
add_host_address() {
    ip link show "$NODE_HOST_INTERFACE" >/dev/null 2>&1 || ip link add "$NODE_HOST_INTERFACE" type bridge
    ip addr replace "$NODE_HOST_IP/32" dev "$NODE_HOST_INTERFACE"
    ip link set "$NODE_HOST_INTERFACE" up
}

# k8s_version_ldflags VERSION: the linker flags that stamp a Kubernetes version into
# binaries built from its module (what `kubectl version` and /version report), as
# Kubernetes' own build sets them.
k8s_version_ldflags() {
    local version=$1 minor package ldflags=""
    minor=${version#v1.}
    minor=${minor%%.*}
    for package in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        ldflags+=" -X $package.gitVersion=$version -X $package.gitMajor=1"
        ldflags+=" -X $package.gitMinor=$minor -X $package.gitTreeState=clean"
        ldflags+=" -X $package.gitCommit="
    done
    echo "$ldflags"
}

# log MESSAGE...: a line on stderr, prefixed with the script's name.
log() {
    printf '[%s] %s\n' "$(basename "$0" .sh)" "$*" >&2
}

# port_open PORT: whether something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# require_free_ports PORT...: fails, naming the port, if anything listens on one of
# them — a process this script did not start (or lost track of) would otherwise
# answer the health checks in place of the one it starts.
require_free_ports() {
    local port
    for port in "$@"; do
        if port_open "$port"; then
            log "127.0.0.1:$port is already in use by another process; stop it first"
            return 1
        fi
    done
}

# wait_until SECONDS WHAT LOGFILE COMMAND...: runs COMMAND every 0.2 s until it
# succeeds. After SECONDS, says that WHAT did not come up, shows the end of LOGFILE
# and fails.
wait_until() {
    local limit=$1 what=$2 logfile=$3
    shift 3
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        if [ $SECONDS -ge $deadline ]; then
            log "$what did not become healthy within ${limit}s; the end of $logfile:"
            tail -n 30 "$logfile" >&2 || true
            return 1
        fi
        sleep 0.2
    done
}

# start_daemon NAME LOGFILE COMMAND...: starts COMMAND in its own session, detached
# from this shell, its output in LOGFILE. $INFRA_RUN/NAME.pid holds its process id
# and start time, so that a later run never mistakes a new process that got the
# same id (after a reboot, or once the session that started it ended) for it.
start_daemon() {
    local name=$1 logfile=$2
    shift 2
    setsid "$@" </dev/null >"$logfile" 2>&1 &
    local pid=$!
    echo "$pid $(start_time_of "$pid")" >"$INFRA_RUN/$name.pid"
}

# start_time_of PID: when the process started, in clock ticks since boot.
start_time_of() {
    # Field 22 of /proc/PID/stat; the name in field 2 is cut off first, as it may
    # hold spaces.
    sed 's/^.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f20
}

# daemon_pid NAME: the process id of the daemon NAME if that process still runs.
daemon_pid() {
    local pidfile="$INFRA_RUN/$1.pid" pid started
    [ -f "$pidfile" ] || return 1
    read -r pid started <"$pidfile"
    [ -n "$pid" ] && [ "$(start_time_of "$pid")" = "$started" ] && echo "$pid"
}

# daemon_running NAME: whether the process started as NAME is alive.
daemon_running() {
    daemon_pid "$1" >/dev/null
}

# stop_daemon NAME: stops the process group started as NAME — politely, then after
# 20 seconds by force — and waits until it is gone.
stop_daemon() {
    local name=$1 pid
    if pid=$(daemon_pid "$name"); then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
        local deadline=$((SECONDS + 20))
        while daemon_running "$name" && [ $SECONDS -lt $deadline ]; do
            sleep 0.2
        done
        if daemon_running "$name"; then
            log "$name did not stop within 20s; killing it"
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null
            while daemon_running "$name"; do sleep 0.1; done
        fi
    fi
    rm -f "$INFRA_RUN/$name.pid"
}

# issue_certificate CA_DIR OUT_DIR CN ORGANIZATION EXTENSIONS NAME: a key and a
# certificate signed by the CA in CA_DIR (ca.crt, ca.key), as OUT_DIR/NAME.key and
# OUT_DIR/NAME.crt. ORGANIZATION may be empty; EXTENSIONS are openssl's lines.
issue_certificate() {
    local ca=$1 out=$2 subject="/CN=$3"
    [ -n "$4" ] && subject="/O=$4$subject"
    openssl req -newkey rsa:2048 -nodes -keyout "$out/$6.key" -out "$out/$6.csr" \
        -subj "$subject" 2>/dev/null
    openssl x509 -req -in "$out/$6.csr" -CA "$ca/ca.crt" -CAkey "$ca/ca.key" \
        -CAcreateserial -days 30 -extfile <(printf '%s\n' "$5") -out "$out/$6.crt" 2>/dev/null
    rm -f "$out/$6.csr"
}

# random_secret: 32 hex characters for a generated password or key.
random_secret() {
    openssl rand -hex 16
}

# write_secret DIR KEY VALUE: a Secret's key as Kubernetes mounts it: a file named
# KEY in the Secret's folder, holding exactly VALUE, readable by its owner only.
write_secret() {
    mkdir -p "$1"
    (umask 077 && printf '%s' "$3" >"$1/$2")
}

# main_for_service USAGE "$@": dispatches the command line to the service script's
# functions build, up, down, env and status.
main_for_service() {
    local usage=$1
    shift
    local command=${1:-}
    case "$command" in
        build | up | down | env | status) "service_$command" ;;
        *)
            echo "usage: $0 {build|up|down|env|status}" >&2
            echo "$usage" >&2
            return 2
            ;;
    esac
}
