//! The operator's Prometheus metrics: reconciles, their failures by error kind, and
//! how long they take.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of the failure counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The error kind ([`crate::Error::metric_label`]).
    pub error: String,
}

/// The operator's metrics and their registry.
#[derive(Debug)]
pub struct Metrics {
    /// Reconciles run.
    pub reconciles: Counter,
    /// Reconciles that failed, by error kind.
    pub failures: Family<ErrorLabels, Counter>,
    /// Seconds per reconcile.
    pub duration: Histogram,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let reconciles = Counter::default();
        let failures = Family::<ErrorLabels, Counter>::default();
        let duration = Histogram::new(exponential_buckets(0.005, 2.0, 12));
        let mut registry = Registry::with_prefix("strom_operator");
        registry.register("reconciles", "StreamJob reconciles run", reconciles.clone());
        registry.register(
            "reconcile_failures",
            "StreamJob reconciles that failed, by error kind",
            failures.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "How long a StreamJob reconcile took",
            duration.clone(),
        );
        Self {
            reconciles,
            failures,
            duration,
            registry,
        }
    }
}

impl Metrics {
    /// Counts a failed reconcile.
    pub fn failed(&self, error: &crate::Error) {
        self.failures
            .get_or_create(&ErrorLabels {
                error: error.metric_label().to_owned(),
            })
            .inc();
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_counted_by_error_kind() {
        let metrics = Metrics::default();
        metrics.reconciles.inc();
        metrics.failed(&crate::Error::MissingMetadata("a namespace"));
        let text = metrics.encode();
        assert!(text.contains("strom_operator_reconciles_total 1"), "{text}");
        assert!(
            text.contains("strom_operator_reconcile_failures_total{error=\"invalid_object\"} 1"),
            "{text}"
        );
    }
}
