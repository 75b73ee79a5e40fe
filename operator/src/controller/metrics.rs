//! Prometheus metrics. Labels are bounded: kinds, static error categories, and Logging
//! names (cluster-scoped, few); never Flow names or error text.

use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

pub struct Metrics {
    registry: Registry,
    reconciles: Family<Labels, Counter>,
    reconcile_duration: Family<Labels, Histogram>,
    errors: Family<Labels, Counter>,
    writes: Family<Labels, Counter>,
    certificate_not_after: Family<Labels, Gauge>,
    config_bytes: Family<Labels, Gauge>,
    edit_to_config: Histogram,
    status_pending: Gauge,
    config_rollouts: Family<Labels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sluice");
        let reconciles = Family::<Labels, Counter>::default();
        let reconcile_duration = Family::<Labels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 14))
        });
        let errors = Family::<Labels, Counter>::default();
        let writes = Family::<Labels, Counter>::default();
        let certificate_not_after = Family::<Labels, Gauge>::default();
        let config_bytes = Family::<Labels, Gauge>::default();
        // 5 ms .. ~82 s: the latency budget is 0.5 s, a burst at 10,000 flows takes longer.
        let edit_to_config = Histogram::new(exponential_buckets(0.005, 2.0, 15));
        let status_pending = Gauge::default();
        let config_rollouts = Family::<Labels, Counter>::default();
        registry.register(
            "config_rollouts",
            "Configuration revisions the data plane judged, by component and outcome (promoted, rejected)",
            config_rollouts.clone(),
        );
        registry.register(
            "reconciles",
            "Reconciles started, by kind",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of finished reconciles, by kind and outcome (changed, unchanged, error)",
            reconcile_duration.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Failed reconciles, by kind and error category",
            errors.clone(),
        );
        registry.register(
            "writes",
            "Writes to the API server, by verb and kind",
            writes.clone(),
        );
        registry.register(
            "certificate_not_after_seconds",
            "Expiry (Unix seconds) of each certificate of a Logging",
            certificate_not_after.clone(),
        );
        registry.register(
            "config_bytes",
            "Size of the rendered configuration of a Logging, by component",
            config_bytes.clone(),
        );
        registry.register(
            "edit_to_config_seconds",
            "From a change arriving on a watch to the configuration applied by the reconcile that picked it up",
            edit_to_config.clone(),
        );
        registry.register(
            "status_writes_pending",
            "Object statuses known to differ and not yet written",
            status_pending.clone(),
        );
        Self {
            registry,
            reconciles,
            reconcile_duration,
            errors,
            writes,
            certificate_not_after,
            config_bytes,
            edit_to_config,
            status_pending,
            config_rollouts,
        }
    }

    pub fn reconcile_started(&self, kind: &str) {
        self.reconciles
            .get_or_create(&labels(&[("kind", kind)]))
            .inc();
    }

    /// `outcome` is one of a fixed few words (changed, unchanged, error).
    pub fn reconciled(&self, kind: &str, outcome: &'static str, duration: Duration) {
        self.reconcile_duration
            .get_or_create(&labels(&[("kind", kind), ("outcome", outcome)]))
            .observe(duration.as_secs_f64());
    }

    /// `outcome`: promoted or rejected.
    pub fn config_rollout(&self, component: &str, outcome: &'static str) {
        self.config_rollouts
            .get_or_create(&labels(&[("component", component), ("outcome", outcome)]))
            .inc();
    }

    pub fn edit_to_config(&self, latency: Duration) {
        self.edit_to_config.observe(latency.as_secs_f64());
    }

    pub fn status_pending(&self, pending: usize) {
        self.status_pending
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
    }

    pub fn status_written(&self) {
        self.status_pending.dec();
    }

    pub fn failed(&self, kind: &str, category: &str) {
        self.errors
            .get_or_create(&labels(&[("kind", kind), ("category", category)]))
            .inc();
    }

    pub fn wrote(&self, verb: &str, kind: &str) {
        self.writes
            .get_or_create(&labels(&[("verb", verb), ("kind", kind)]))
            .inc();
    }

    pub fn certificate(&self, logging: &str, certificate: &str, not_after: jiff::Timestamp) {
        self.certificate_not_after
            .get_or_create(&labels(&[
                ("logging", logging),
                ("certificate", certificate),
            ]))
            .set(not_after.as_second());
    }

    pub fn config(&self, logging: &str, component: &str, bytes: usize) {
        self.config_bytes
            .get_or_create(&labels(&[("logging", logging), ("component", component)]))
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        if encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_reconciles_and_errors() {
        let metrics = Metrics::new();
        metrics.reconcile_started("Logging");
        metrics.reconcile_started("Logging");
        metrics.reconciled("Logging", "changed", Duration::from_millis(20));
        metrics.reconciled("Logging", "error", Duration::from_millis(20));
        metrics.failed("Logging", "ApplyFailed");
        let text = metrics.encode();
        assert!(
            text.contains("sluice_reconciles_total{kind=\"Logging\"} 2"),
            "{text}"
        );
        assert!(
            text.contains(
                "sluice_reconcile_duration_seconds_count{kind=\"Logging\",outcome=\"changed\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "sluice_reconcile_duration_seconds_count{kind=\"Logging\",outcome=\"error\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "sluice_reconcile_errors_total{kind=\"Logging\",category=\"ApplyFailed\"} 1"
            ),
            "{text}"
        );
    }

    #[test]
    fn exposes_edit_to_config_latency_and_pending_status_writes() {
        let metrics = Metrics::new();
        metrics.edit_to_config(Duration::from_millis(30));
        metrics.edit_to_config(Duration::from_millis(300));
        metrics.status_pending(5);
        metrics.status_written();
        let text = metrics.encode();
        assert!(
            text.contains("sluice_edit_to_config_seconds_count 2"),
            "{text}"
        );
        assert!(
            text.contains("sluice_edit_to_config_seconds_bucket{le=\"0.32\"} 2"),
            "{text}"
        );
        // 30 ms is past the 20 ms bucket, inside the 40 ms one.
        assert!(
            text.contains("sluice_edit_to_config_seconds_bucket{le=\"0.02\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("sluice_edit_to_config_seconds_bucket{le=\"0.04\"} 1"),
            "{text}"
        );
        assert!(text.contains("sluice_status_writes_pending 4"), "{text}");
    }
}
