#!/usr/bin/env bash
# Three Apache Kafka clusters on loopback, in KRaft mode (one combined broker and
# controller each), run on the JDK from the Maven Central artifacts of kafka/pom.xml:
#
#   A  127.0.0.1:19092  PLAINTEXT, no authorization
#   B  127.0.0.1:19192  SASL_PLAINTEXT, SCRAM-SHA-512 users, ACLs
#      127.0.0.1:19195  the same users with SCRAM-SHA-256
#   C  127.0.0.1:19292  SSL with client certificates (mTLS) from a CA made here, ACLs
#      127.0.0.1:19295  SASL_SSL: one-way TLS (the client checks the broker), SCRAM-SHA-512
#
# Each client listener has a twin for pods (19094, 19194, 19197, 19294, 19297) with
# the same security, listening on every address and advertising $NODE_HOST_IP, where
# pods reach the host.
#
# On B and C the user `app` may do anything with any topic, group and transactional
# id; the user `limited` only with those whose names start with `limited.`. Their
# credentials are laid out as Kubernetes mounts Secrets (a folder per Secret, a file
# per key) under $STROM_KAFKA_SECRETS: see e2e/infra/README.md.
#
#   e2e/infra/kafka.sh build|up|down|env|status
set -euo pipefail
source "$(dirname "$0")/lib.sh"

KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$INFRA_DIR/kafka/pom.xml")
KAFKA_LIBS=$INFRA_BIN/kafka-$KAFKA_VERSION
KAFKA_RUN=$INFRA_RUN/kafka
SECRETS=$KAFKA_RUN/secrets
CLUSTERS=(a b c)

# The client port of a cluster; its controller listens on the next port, its pods'
# listener on port + 2, its second listener (B: SCRAM-SHA-256, C: SASL_SSL) on
# port + 3 and that one's pods' twin on port + 5.
port_of() {
    case $1 in a) echo 19092 ;; b) echo 19192 ;; c) echo 19292 ;; esac
}

service_build() {
    if [ -f "$KAFKA_LIBS/.complete" ]; then
        log "Kafka $KAFKA_VERSION jars cached in $KAFKA_LIBS"
        return 0
    fi
    log "copying Kafka $KAFKA_VERSION and its runtime dependencies from Maven"
    rm -rf "$KAFKA_LIBS.tmp"
    mkdir -p "$INFRA_RUN"
    if ! mvn -B -f "$INFRA_DIR/kafka/pom.xml" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS.tmp" >"$INFRA_RUN/kafka-mvn.log" 2>&1; then
        log "Maven could not fetch Kafka's jars; the end of $INFRA_RUN/kafka-mvn.log:"
        tail -n 30 "$INFRA_RUN/kafka-mvn.log" >&2
        return 1
    fi
    touch "$KAFKA_LIBS.tmp/.complete"
    rm -rf "$KAFKA_LIBS"
    mv "$KAFKA_LIBS.tmp" "$KAFKA_LIBS"
}

# kafka_java CLASS ARGS...: runs a tool of the Kafka jars on the JDK, tuned to start
# fast (C1 only, serial GC): the tools run for seconds.
kafka_java() {
    java -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -cp "$KAFKA_LIBS/*" \
        -Dlog4j2.configurationFile="$KAFKA_RUN/log4j2-WARN.properties" "$@"
}

# Logging of the brokers (INFO, to their broker.log) and of the tools (warnings only).
write_log_config() {
    local level
    for level in INFO WARN; do
        cat >"$KAFKA_RUN/log4j2-$level.properties" <<EOF
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = $level
rootLogger.appenderRef.out.ref = OUT
EOF
    done
}

# Certificates of cluster C: its CA, the broker's certificate, the client
# certificates of its users, and a client certificate for `app` from a CA that C
# does not trust.
make_certificates() {
    local pki=$KAFKA_RUN/pki
    mkdir -p "$pki"
    make_ca "$pki/c-ca" "strom e2e Kafka C CA"
    make_ca "$pki/foreign-ca" "strom e2e foreign CA"
    issue_certificate "$pki/c-ca" "$pki/broker" broker "subjectAltName=IP:127.0.0.1,IP:$NODE_HOST_IP,DNS:localhost"
    cat "$pki/broker.key" "$pki/broker.crt" >"$pki/broker.pem"
    local user
    for user in admin app limited; do
        issue_certificate "$pki/c-ca" "$pki/$user" "$user" "extendedKeyUsage=clientAuth"
        write_client_certificate "$SECRETS/kafka-c-$user" "$pki/$user" "$pki/c-ca.crt"
    done
    issue_certificate "$pki/foreign-ca" "$pki/foreign-app" app "extendedKeyUsage=clientAuth"
    write_client_certificate "$SECRETS/kafka-c-foreign-app" "$pki/foreign-app" "$pki/foreign-ca.crt"
    mkdir -p "$SECRETS/kafka-c-cluster-ca-cert"
    cp "$pki/c-ca.crt" "$SECRETS/kafka-c-cluster-ca-cert/ca.crt"
}

# make_ca PATH SUBJECT: a self-signed CA, PATH.crt and PATH.key.
make_ca() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$1.key" -out "$1.crt" -days 30 -subj "/CN=$2" 2>/dev/null
}

# issue_certificate CA PATH COMMON_NAME EXTENSION: a key (PKCS#8) and certificate
# signed by CA, PATH.key and PATH.crt.
issue_certificate() {
    local ca=$1 path=$2
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$path.key" -out "$path.csr" -subj "/CN=$3" 2>/dev/null
    openssl x509 -req -in "$path.csr" -CA "$ca.crt" -CAkey "$ca.key" -CAcreateserial \
        -days 30 -extfile <(echo "$4") -out "$path.crt" 2>/dev/null
    rm -f "$path.csr"
}

# write_client_certificate SECRET PATH CA: a client certificate Secret laid out like
# a Strimzi KafkaUser's: user.crt, user.key, ca.crt.
write_client_certificate() {
    mkdir -p "$1"
    cp "$2.crt" "$1/user.crt"
    cp "$2.key" "$1/user.key"
    cp "$3" "$1/ca.crt"
    chmod 600 "$1/user.key"
}

# SCRAM passwords of the users of cluster B and of C's SASL_SSL listener, new for
# every start.
make_passwords() {
    local user
    for user in admin app limited; do
        write_secret "$SECRETS/kafka-b-$user" password "$(random_secret)"
        write_secret "$SECRETS/kafka-c-scram-$user" password "$(random_secret)"
    done
    write_secret "$SECRETS/kafka-b-controller" password "$(random_secret)"
}

# password_of USER [CLUSTER]: a user's SCRAM password on B (or C).
password_of() {
    if [ "${2:-b}" = c ]; then
        cat "$SECRETS/kafka-c-scram-$1/password"
    else
        cat "$SECRETS/kafka-b-$1/password"
    fi
}

# The server.properties of a cluster.
write_broker_config() {
    local cluster=$1 dir=$KAFKA_RUN/$1
    local port
    port=$(port_of "$cluster")
    local controller=$((port + 1)) pods=$((port + 2)) second=$((port + 3)) second_pods=$((port + 5))
    cat >"$dir/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller
controller.listener.names=CONTROLLER
log.dirs=$dir/data
auto.create.topics.enable=false
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.segment.bytes=67108864
EOF
    case $cluster in
        a)
            cat >>"$dir/server.properties" <<EOF
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller,PODS://0.0.0.0:$pods
advertised.listeners=PLAINTEXT://127.0.0.1:$port,PODS://$NODE_HOST_IP:$pods
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,PODS:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
EOF
            ;;
        b)
            local controller_password
            controller_password=$(cat "$SECRETS/kafka-b-controller/password")
            cat >>"$dir/server.properties" <<EOF
listeners=SASL_PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller,PODS://0.0.0.0:$pods,SHA256://127.0.0.1:$second,PODS_SHA256://0.0.0.0:$second_pods
advertised.listeners=SASL_PLAINTEXT://127.0.0.1:$port,PODS://$NODE_HOST_IP:$pods,SHA256://127.0.0.1:$second,PODS_SHA256://$NODE_HOST_IP:$second_pods
listener.security.protocol.map=SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT,PODS:SASL_PLAINTEXT,SHA256:SASL_PLAINTEXT,PODS_SHA256:SASL_PLAINTEXT
inter.broker.listener.name=SASL_PLAINTEXT
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_plaintext.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$(password_of admin)";
listener.name.pods.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.pods.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sha256.sasl.enabled.mechanisms=SCRAM-SHA-256
listener.name.sha256.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.pods_sha256.sasl.enabled.mechanisms=SCRAM-SHA-256
listener.name.pods_sha256.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="controller" password="$controller_password" user_controller="$controller_password";
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:admin;User:controller
EOF
            ;;
        c)
            local pki=$KAFKA_RUN/pki
            cat >>"$dir/server.properties" <<EOF
listeners=SSL://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller,PODS://0.0.0.0:$pods,ONE_WAY://127.0.0.1:$second,PODS_ONE_WAY://0.0.0.0:$second_pods
advertised.listeners=SSL://127.0.0.1:$port,PODS://$NODE_HOST_IP:$pods,ONE_WAY://127.0.0.1:$second,PODS_ONE_WAY://$NODE_HOST_IP:$second_pods
listener.security.protocol.map=SSL:SSL,CONTROLLER:SSL,PODS:SSL,ONE_WAY:SASL_SSL,PODS_ONE_WAY:SASL_SSL
inter.broker.listener.name=SSL
ssl.client.auth=required
listener.name.one_way.ssl.client.auth=none
listener.name.one_way.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.one_way.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.pods_one_way.ssl.client.auth=none
listener.name.pods_one_way.sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.pods_one_way.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PEM
ssl.keystore.location=$pki/broker.pem
ssl.truststore.type=PEM
ssl.truststore.location=$pki/c-ca.crt
ssl.principal.mapping.rules=RULE:^CN=([a-zA-Z0-9._-]+)$/\$1/,DEFAULT
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:admin;User:broker
EOF
            ;;
    esac
}

# The client configuration of a cluster's admin, for the command-line tools.
write_admin_config() {
    local file=$KAFKA_RUN/$1/admin.properties
    case $1 in
        a) : >"$file" ;;
        b)
            cat >"$file" <<EOF
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$(password_of admin)";
EOF
            ;;
        c)
            local pki=$KAFKA_RUN/pki
            cat "$pki/admin.key" "$pki/admin.crt" >"$pki/admin.pem"
            cat >"$file" <<EOF
security.protocol=SSL
ssl.keystore.type=PEM
ssl.keystore.location=$pki/admin.pem
ssl.truststore.type=PEM
ssl.truststore.location=$pki/c-ca.crt
EOF
            ;;
    esac
}

# A fixed cluster id per cluster (22 characters of base64 for 16 bytes).
cluster_id_of() {
    printf 'strom-e2e-kafka%s' "$(echo "$1" | tr a-c A-C)" | base64 | tr '+/' '-_' | tr -d '='
}

format_storage() {
    local cluster=$1 dir=$KAFKA_RUN/$1
    local scram=() user
    case $cluster in
        b)
            for user in admin app limited; do
                scram+=(--add-scram "SCRAM-SHA-512=[name=$user,password=$(password_of "$user")]")
                scram+=(--add-scram "SCRAM-SHA-256=[name=$user,password=$(password_of "$user")]")
            done
            ;;
        c)
            for user in admin app limited; do
                scram+=(--add-scram "SCRAM-SHA-512=[name=$user,password=$(password_of "$user" c)]")
            done
            ;;
    esac
    kafka_java kafka.tools.StorageTool format --cluster-id "$(cluster_id_of "$cluster")" \
        --config "$dir/server.properties" "${scram[@]}" >"$dir/format.log" 2>&1
}

# Lets `app` use every topic, group and transactional id, and `limited` those whose
# names start with `limited.`.
grant_rights() {
    local cluster=$1 dir=$KAFKA_RUN/$1
    local common=(--bootstrap-server "127.0.0.1:$(port_of "$cluster")"
        --command-config "$dir/admin.properties" --add --force)
    kafka_java org.apache.kafka.tools.AclCommand "${common[@]}" \
        --allow-principal User:app --operation All \
        --topic '*' --group '*' --transactional-id '*' >>"$dir/acls.log" 2>&1 &
    local app=$!
    kafka_java org.apache.kafka.tools.AclCommand "${common[@]}" \
        --allow-principal User:limited --operation All --resource-pattern-type prefixed \
        --topic limited. --group limited. --transactional-id limited. >>"$dir/acls.log" 2>&1 &
    local limited=$!
    wait $app && wait $limited
}

broker_started() {
    grep -q "Kafka Server started" "$KAFKA_RUN/$1/broker.log" 2>/dev/null
}

service_up() {
    local cluster healthy=0
    for cluster in "${CLUSTERS[@]}"; do
        daemon_running "kafka-$cluster" && port_open "$(port_of "$cluster")" \
            && broker_started "$cluster" && healthy=$((healthy + 1))
    done
    if [ $healthy -eq ${#CLUSTERS[@]} ]; then
        log "Kafka clusters already running"
        return 0
    fi
    service_down
    service_build
    for cluster in "${CLUSTERS[@]}"; do
        local port offset
        port=$(port_of "$cluster")
        for offset in 0 1 2 3 5; do
            require_free_ports "$((port + offset))"
        done
    done
    local start=$SECONDS
    rm -rf "$KAFKA_RUN"
    mkdir -p "$KAFKA_RUN" "$SECRETS"
    write_log_config
    make_certificates
    make_passwords
    for cluster in "${CLUSTERS[@]}"; do
        mkdir -p "$KAFKA_RUN/$cluster"
        write_broker_config "$cluster"
        write_admin_config "$cluster"
    done
    local pids=()
    for cluster in "${CLUSTERS[@]}"; do
        format_storage "$cluster" &
        pids+=($!)
    done
    for cluster in "${!pids[@]}"; do
        wait "${pids[$cluster]}" || { log "formatting storage failed: see $KAFKA_RUN/${CLUSTERS[$cluster]}/format.log"; return 1; }
    done
    for cluster in "${CLUSTERS[@]}"; do
        start_daemon "kafka-$cluster" "$KAFKA_RUN/$cluster/broker.log" \
            java -Xms256m -Xmx768m -XX:+UseG1GC -Djava.awt.headless=true \
            -Dlog4j2.configurationFile="$KAFKA_RUN/log4j2-INFO.properties" \
            -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_RUN/$cluster/server.properties"
    done
    for cluster in "${CLUSTERS[@]}"; do
        wait_until 120 "Kafka cluster $cluster" "$KAFKA_RUN/$cluster/broker.log" \
            broker_started "$cluster"
    done
    grant_rights b &
    local b=$!
    grant_rights c &
    local c=$!
    wait $b || { log "ACLs of cluster B failed: see $KAFKA_RUN/b/acls.log"; return 1; }
    wait $c || { log "ACLs of cluster C failed: see $KAFKA_RUN/c/acls.log"; return 1; }
    log "Kafka clusters A, B and C up in $((SECONDS - start))s"
}

service_down() {
    local cluster pids=()
    for cluster in "${CLUSTERS[@]}"; do
        stop_daemon "kafka-$cluster" &
        pids+=($!)
    done
    wait "${pids[@]}"
}

# The tests' addresses: each listener from this machine, and (POD_) from pods.
service_env() {
    local a b c
    a=$(port_of a) b=$(port_of b) c=$(port_of c)
    echo "export STROM_KAFKA_A_BOOTSTRAP=127.0.0.1:$a"
    echo "export STROM_KAFKA_A_POD_BOOTSTRAP=$NODE_HOST_IP:$((a + 2))"
    echo "export STROM_KAFKA_B_BOOTSTRAP=127.0.0.1:$b"
    echo "export STROM_KAFKA_B_POD_BOOTSTRAP=$NODE_HOST_IP:$((b + 2))"
    echo "export STROM_KAFKA_B_SHA256_BOOTSTRAP=127.0.0.1:$((b + 3))"
    echo "export STROM_KAFKA_B_SHA256_POD_BOOTSTRAP=$NODE_HOST_IP:$((b + 5))"
    echo "export STROM_KAFKA_C_BOOTSTRAP=127.0.0.1:$c"
    echo "export STROM_KAFKA_C_POD_BOOTSTRAP=$NODE_HOST_IP:$((c + 2))"
    echo "export STROM_KAFKA_C_ONE_WAY_BOOTSTRAP=127.0.0.1:$((c + 3))"
    echo "export STROM_KAFKA_C_ONE_WAY_POD_BOOTSTRAP=$NODE_HOST_IP:$((c + 5))"
    echo "export STROM_KAFKA_SECRETS=$SECRETS"
}

service_status() {
    local cluster
    for cluster in "${CLUSTERS[@]}"; do
        if daemon_running "kafka-$cluster"; then
            echo "kafka-$cluster: running on 127.0.0.1:$(port_of "$cluster")"
        else
            echo "kafka-$cluster: stopped"
        fi
    done
}

main_for_service "three Kafka clusters (A plaintext, B SCRAM-SHA-512 and -256, C mTLS and SASL_SSL)" "$@"
