#!/usr/bin/env bash
# Renders docs/dashboard.png: the panels of the chart's Grafana dashboard
# (charts/strom-operator/dashboards/strom-jobs.json), computed from the /metrics of
# a real job scraped every two seconds.
#
# The job: page views generated into a topic of the test Kafka cluster A by one
# `strom run` (datagen -> kafka), counted per user in 10-second tumbling windows
# by another (kafka -> kafka, exactly once) at parallelism 2, stopped with a
# savepoint after a minute and resumed from it at parallelism 4 (a rescale, as the
# operator does it), for another minute.
#
#   e2e/infra/stack.sh up && scripts/dashboard-snapshot.sh [out.png]
#
# Needs the binaries built (cargo build) and matplotlib (installed into
# ~/.cache/strom/plot-venv from the Python package registry on first use).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/docs/dashboard.png}
# shellcheck source=/dev/null
source "$HOME/.cache/strom/run/env.sh"
strom=${CARGO_TARGET_DIR:-$HOME/.cache/strom/target}/debug/strom
[ -x "$strom" ] || { echo "build first: cargo build --workspace ($strom missing)" >&2; exit 1; }
venv=$HOME/.cache/strom/plot-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import matplotlib' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet matplotlib
fi

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

stamp=$(date +%s)
topic=dashboard-views-$stamp
counts=dashboard-counts-$stamp
producer_port=18091
job_port=18092

cat > "$work/producer.yaml" <<EOF
apiVersion: strom.dev/v1alpha1
kind: StreamJob
metadata:
  name: dashboard-producer
spec:
  parallelism: 1
  kafkaClusters:
    - name: a
      bootstrapServers: $STROM_KAFKA_A_BOOTSTRAP
  sql: |
    CREATE TABLE generated (user_id BIGINT, url VARCHAR, ts TIMESTAMP(3))
    WITH ('connector' = 'datagen', 'rows-per-second' = '2000',
          'fields.user_id.min' = '1', 'fields.user_id.max' = '5000');
    CREATE TABLE page_views (user_id BIGINT, url VARCHAR, ts TIMESTAMP(3))
    WITH ('connector' = 'kafka', 'cluster' = 'a', 'topic' = '$topic', 'format' = 'json');
    INSERT INTO page_views SELECT user_id, url, ts FROM generated;
  state:
    checkpointInterval: 5s
    storage: file://$work/producer-state
EOF

cat > "$work/job.yaml" <<EOF
apiVersion: strom.dev/v1alpha1
kind: StreamJob
metadata:
  name: views-per-user
spec:
  parallelism: 2
  maxParallelism: 128
  kafkaClusters:
    - name: a
      bootstrapServers: $STROM_KAFKA_A_BOOTSTRAP
  sql: |
    CREATE TABLE page_views (
      user_id BIGINT, url VARCHAR, ts TIMESTAMP(3),
      WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
    ) WITH ('connector' = 'kafka', 'cluster' = 'a', 'topic' = '$topic',
            'format' = 'json', 'scan.startup.mode' = 'earliest-offset');
    CREATE TABLE views_per_user (user_id BIGINT, window_end TIMESTAMP(3), views BIGINT)
    WITH ('connector' = 'kafka', 'cluster' = 'a', 'topic' = '$counts', 'format' = 'json',
          'sink.delivery-guarantee' = 'exactly-once');
    INSERT INTO views_per_user
    SELECT user_id, window_end, COUNT(*)
    FROM TABLE(TUMBLE(TABLE page_views, DESCRIPTOR(ts), INTERVAL '10' SECOND))
    GROUP BY user_id, window_start, window_end;
  state:
    checkpointInterval: 5s
    storage: file://$work/job-state
EOF

kafka_jars=$(ls -d "$HOME"/.cache/strom/bin/kafka-*/ | tail -1)
for name in "$topic" "$counts"; do
    java -cp "$kafka_jars*" org.apache.kafka.tools.TopicCommand --create --topic "$name" \
        --partitions 4 --replication-factor 1 --bootstrap-server "$STROM_KAFKA_A_BOOTSTRAP" \
        > /dev/null
done

echo "producing into $topic (2000 records/s)"
"$strom" run "$work/producer.yaml" --work-dir "$work/producer-local" --log-format json \
    --control-address 127.0.0.1:$producer_port 2> "$work/producer.log" &
pids+=($!)
sleep 5

"$venv/bin/python" "$root/scripts/dashboard_render.py" scrape \
    "http://127.0.0.1:$job_port/metrics" "$work/samples.jsonl" &
scraper=$!
pids+=("$scraper")

echo "views-per-user at parallelism 2 for 60 s, then stop with a savepoint"
"$strom" run "$work/job.yaml" --work-dir "$work/job-local" --log-format json \
    --control-address 127.0.0.1:$job_port --stop-after 60s 2> "$work/job-1.log"
sleep 10
echo "resumed at parallelism 4 for 60 s"
"$strom" run "$work/job.yaml" --work-dir "$work/job-local" --log-format json \
    --control-address 127.0.0.1:$job_port --resume --parallelism 4 --stop-after 60s \
    2> "$work/job-2.log"
kill "$scraper"

"$venv/bin/python" "$root/scripts/dashboard_render.py" render \
    "$work/samples.jsonl" "$root/charts/strom-operator/dashboards/strom-jobs.json" "$out"
echo "wrote $out"
