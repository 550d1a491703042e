//! What the operator checks in a spec before it deploys anything: its
//! `podTemplate` merges with the operator's pod (nothing the job needs is
//! overridden), and the job's SQL compiles and names only the job's Kafka
//! clusters. The SQL check uses the runtime's own
//! compiler, so a spec the operator accepts is one the pods can run, and a
//! mistake shows as condition `SpecValid=False` (construct, line and column)
//! instead of a crash-looping pod.
//!
//! Compiling is CPU work on user input: it runs off the async runtime, on a
//! thread with a large stack (deeply nested SQL recurses deeply), and a panic in
//! it is reported as the spec's error instead of taking the operator down (a
//! crash on a stored spec would repeat at every restart and block every job).
//! Results are cached by what they depend on: the SQL and the cluster names.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use strom_crds::StreamJobSpec;

/// The stack of the thread that compiles.
const COMPILE_STACK_BYTES: usize = 256 * 1024 * 1024;

/// Cached results kept before the cache starts over.
const CACHED_RESULTS: usize = 256;

/// Why `spec` cannot run as written, if it cannot.
pub async fn spec_error(spec: &StreamJobSpec) -> Option<String> {
    if let Some(error) = crate::resources::pod_template_error(spec) {
        return Some(error);
    }
    spec.sql.as_ref()?;
    let key = cache_key(spec);
    if let Some(cached) = cache().lock().expect("not poisoned").get(&key) {
        return cached.clone();
    }
    let owned = spec.clone();
    let error = tokio::task::spawn_blocking(move || check_on_own_thread(owned))
        .await
        .unwrap_or_else(|error| Some(format!("spec.sql: the check did not finish: {error}")));
    let mut cache = cache().lock().expect("not poisoned");
    if cache.len() >= CACHED_RESULTS {
        cache.clear();
    }
    cache.insert(key, error.clone());
    error
}

/// Why `spec` cannot run, checked on a thread of its own.
fn check_on_own_thread(spec: StreamJobSpec) -> Option<String> {
    let checked = std::thread::Builder::new()
        .name("sql-check".into())
        .stack_size(COMPILE_STACK_BYTES)
        .spawn(move || check(&spec));
    match checked.map(|thread| thread.join()) {
        Ok(Ok(error)) => error,
        Ok(Err(panic)) => {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown");
            Some(format!("spec.sql: the SQL compiler failed on it: {what}"))
        }
        Err(error) => Some(format!("spec.sql: cannot start the check: {error}")),
    }
}

/// Why `spec` cannot run, if it cannot.
fn check(spec: &StreamJobSpec) -> Option<String> {
    strom_runtime::sql::compile_spec(spec)
        .err()
        .map(|error| format!("spec.sql: {error}"))
}

/// What a check's result depends on.
fn cache_key(spec: &StreamJobSpec) -> (String, Vec<String>) {
    let clusters = spec.kafka_clusters.iter().map(|c| c.name.clone()).collect();
    (spec.sql.clone().unwrap_or_default(), clusters)
}

type Cache = Mutex<HashMap<(String, Vec<String>), Option<String>>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(Mutex::default)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(sql: &str) -> StreamJobSpec {
        serde_json::from_value(serde_json::json!({
            "parallelism": 2,
            "sql": sql,
            "kafkaClusters": [{"name": "a", "bootstrapServers": "kafka-a:9092"}],
            "state": {"storage": "s3://bucket/jobs"},
        }))
        .unwrap()
    }

    const TABLES: &str = "CREATE TABLE clicks (user_id STRING, url STRING)
    WITH ('connector' = 'kafka', 'cluster' = 'a', 'topic' = 'clicks', 'format' = 'json');
CREATE TABLE sink (user_id STRING) WITH ('connector' = 'blackhole');
";

    #[test]
    fn sql_that_compiles_is_valid() {
        let sql = format!("{TABLES}INSERT INTO sink SELECT user_id FROM clicks;");
        assert_eq!(check(&spec(&sql)), None);
    }

    #[test]
    fn unsupported_sql_is_named_with_its_line_and_column() {
        let sql = format!("{TABLES}INSERT INTO sink\nSELECT user_id FROM clickz;");
        assert_eq!(
            check(&spec(&sql)).as_deref(),
            Some(
                "spec.sql: SQL error at line 5, column 21: no table or view named clickz; the script creates: clicks, sink"
            )
        );
    }

    #[test]
    fn a_cluster_the_job_does_not_have_is_named() {
        let sql = TABLES.replace("'cluster' = 'a'", "'cluster' = 'b'")
            + "INSERT INTO sink SELECT user_id FROM clicks;";
        let error = check(&spec(&sql)).unwrap();
        assert!(
            error.contains("'cluster' = 'b', which is not in spec.kafkaClusters (it has: a)"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_job_without_sql_is_not_checked_here() {
        let mut spec = spec("");
        spec.sql = None;
        assert_eq!(spec_error(&spec).await, None);
    }

    #[tokio::test]
    async fn a_pod_template_overriding_the_operator_is_refused_naming_the_fields() {
        let mut spec = spec(&format!(
            "{TABLES}INSERT INTO sink SELECT user_id FROM clicks;"
        ));
        spec.kafka_clusters[0].authentication = serde_json::from_value(serde_json::json!({
            "type": "scram-sha-512",
            "username": "reader",
            "passwordSecret": {"secretName": "reader", "password": "password"},
        }))
        .unwrap();
        let template = |pod: serde_json::Value| serde_json::from_value(pod).unwrap();
        spec.pod_template = Some(template(serde_json::json!({
            "spec": {
                "volumes": [{"name": "kafka-a", "emptyDir": {}}, {"name": "x", "emptyDir": {}}],
                "containers": [{
                    "name": "runtime",
                    "volumeMounts": [{"name": "x", "mountPath": "/etc/strom/secrets/a"}],
                }],
                "affinity": {},
            },
        })));
        assert_eq!(
            spec_error(&spec).await.as_deref(),
            Some(
                "podTemplate.spec.containers[runtime].volumeMounts: /etc/strom/secrets/a is \
                 where the operator mounts kafka-a; podTemplate.spec.volumes[kafka-a]: the \
                 name is taken by a volume of the operator"
            )
        );
        // The same cluster without Secrets has no such volume or mount.
        spec.kafka_clusters[0].authentication = None;
        assert_eq!(spec_error(&spec).await, None);
    }

    #[tokio::test]
    async fn deeply_nested_sql_is_an_error_not_a_crash_and_results_are_cached() {
        let nested = format!("{}1{}", "(".repeat(20_000), ")".repeat(20_000));
        let sql = format!("{TABLES}INSERT INTO sink SELECT CAST({nested} AS STRING) FROM clicks;");
        let spec = spec(&sql);
        let error = spec_error(&spec).await.expect("refused");
        assert!(error.starts_with("spec.sql: "), "{error}");
        assert_eq!(spec_error(&spec).await, Some(error));
    }
}
