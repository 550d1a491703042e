//! What the operator checks in a spec before it deploys anything: the job's SQL
//! compiles and names only the job's Kafka clusters. It uses the runtime's own
//! compiler, so a spec the operator accepts is one the pods can run, and a
//! mistake shows as condition `SpecValid=False` (construct, line and column)
//! instead of a crash-looping pod.

use strom_crds::StreamJobSpec;

/// Why `spec` cannot run as written, if it cannot.
pub fn spec_error(spec: &StreamJobSpec) -> Option<String> {
    strom_runtime::sql::compile_spec(spec)
        .err()
        .map(|error| format!("spec.sql: {error}"))
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
        assert_eq!(spec_error(&spec(&sql)), None);
    }

    #[test]
    fn unsupported_sql_is_named_with_its_line_and_column() {
        let sql = format!("{TABLES}INSERT INTO sink\nSELECT user_id FROM clickz;");
        assert_eq!(
            spec_error(&spec(&sql)).as_deref(),
            Some(
                "spec.sql: SQL error at line 5, column 21: no table or view named clickz; the script creates: clicks, sink"
            )
        );
    }

    #[test]
    fn a_cluster_the_job_does_not_have_is_named() {
        let sql = TABLES.replace("'cluster' = 'a'", "'cluster' = 'b'")
            + "INSERT INTO sink SELECT user_id FROM clicks;";
        let error = spec_error(&spec(&sql)).unwrap();
        assert!(
            error.contains("'cluster' = 'b', which is not in spec.kafkaClusters (it has: a)"),
            "{error}"
        );
    }

    #[test]
    fn a_job_without_sql_is_not_checked_here() {
        let mut spec = spec("");
        spec.sql = None;
        assert_eq!(spec_error(&spec), None);
    }
}
