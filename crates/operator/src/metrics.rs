//! Prometheus metrics: reconcile runs, failures by reason, reconcile duration.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::time::Instant;

/// The failure label: a bounded set (see `Error::metric_label`), never an object name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub reason: String,
}

/// The operator's metrics, registered under the `stead_operator` prefix.
pub struct Metrics {
    registry: Registry,
    pub reconciles: Counter,
    pub failures: Family<FailureLabels, Counter>,
    pub duration: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("stead_operator");
        let reconciles = Counter::default();
        let failures = Family::<FailureLabels, Counter>::default();
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 14));
        registry.register("reconciles", "reconciles started", reconciles.clone());
        registry.register("reconcile_failures", "reconciles that failed, by reason", failures.clone());
        registry.register("reconcile_duration_seconds", "time spent in one reconcile", duration.clone());
        Self { registry, reconciles, failures, duration }
    }
}

impl Metrics {
    /// Counts a reconcile and times it until the returned guard drops.
    pub fn measure(&self) -> Measure<'_> {
        self.reconciles.inc();
        Measure { metrics: self, start: Instant::now() }
    }

    pub fn failure(&self, reason: &str) {
        self.failures.get_or_create(&FailureLabels { reason: reason.to_owned() }).inc();
    }

    /// The failures counted under `reason` so far.
    pub fn failures_for(&self, reason: &str) -> u64 {
        self.failures.get_or_create(&FailureLabels { reason: reason.to_owned() }).get()
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Records a reconcile's duration when dropped (so early returns and errors are timed too).
pub struct Measure<'a> {
    metrics: &'a Metrics,
    start: Instant,
}

impl Drop for Measure<'_> {
    fn drop(&mut self) {
        self.metrics.duration.observe(self.start.elapsed().as_secs_f64());
    }
}
