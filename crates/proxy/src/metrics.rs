//! [`Metrics`]: the proxy's Prometheus metrics (prometheus-client), served on `/metrics`.
//!
//! Per entity type, service and command: counts by outcome, latency histograms and in-flight
//! commands (the autoscaler's concurrency signal); per store operation: latency and failures;
//! in passthrough mode, connections and requests per detected protocol.

use std::sync::Arc;
use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Identifies a command kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CommandLabels {
    /// `event_sourced`, `value_entity` or `action`.
    pub entity_type: String,
    /// The gRPC service.
    pub service: String,
    /// The method.
    pub command: String,
}

/// A command kind and how it ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `event_sourced`, `value_entity` or `action`.
    pub entity_type: String,
    /// The gRPC service.
    pub service: String,
    /// The method.
    pub command: String,
    /// `ok` or `failed`.
    pub outcome: &'static str,
}

/// A store operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabels {
    /// `append`, `load`, `get_value`, `update_value`, `delete_value`.
    pub operation: &'static str,
    /// `ok` or the error's kind.
    pub outcome: &'static str,
}

/// A passthrough protocol.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProtocolLabels {
    /// `http1`, `http2` or `tcp`.
    pub protocol: &'static str,
}

/// A passthrough request's protocol and status class.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `http1` or `http2`.
    pub protocol: &'static str,
    /// `2xx`, `4xx`, `5xx`, ... or `error` when the user port failed.
    pub status: &'static str,
}

fn latency_histogram() -> Histogram {
    // 50 µs to ~26 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 20))
}

/// Every metric, shared by the whole proxy.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    commands: Family<OutcomeLabels, Counter>,
    command_seconds: Family<CommandLabels, Histogram, fn() -> Histogram>,
    in_flight: Family<CommandLabels, Gauge>,
    active_entities: Family<ProtocolLabels, Gauge>,
    store_seconds: Family<StoreLabels, Histogram, fn() -> Histogram>,
    connections: Family<ProtocolLabels, Counter>,
    open_connections: Family<ProtocolLabels, Gauge>,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<ProtocolLabels, Histogram, fn() -> Histogram>,
    requests_in_flight: Family<ProtocolLabels, Gauge>,
}

impl Metrics {
    /// Registers every metric under the `stead_proxy` prefix.
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("stead_proxy");
        let commands = Family::<OutcomeLabels, Counter>::default();
        let command_seconds = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        let in_flight = Family::<CommandLabels, Gauge>::default();
        let active_entities = Family::<ProtocolLabels, Gauge>::default();
        let store_seconds = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        let connections = Family::<ProtocolLabels, Counter>::default();
        let open_connections = Family::<ProtocolLabels, Gauge>::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let request_seconds = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        let requests_in_flight = Family::<ProtocolLabels, Gauge>::default();
        registry.register("commands", "Client commands by outcome", commands.clone());
        registry.register("command_duration_seconds", "Client command latency", command_seconds.clone());
        registry.register("commands_in_flight", "Client commands being handled", in_flight.clone());
        registry.register(
            "active_entities",
            "Entities with an open user-function stream (label: entity type)",
            active_entities.clone(),
        );
        registry.register("store_duration_seconds", "Store operation latency", store_seconds.clone());
        registry.register("connections", "Passthrough connections accepted", connections.clone());
        registry.register("open_connections", "Passthrough connections open", open_connections.clone());
        registry.register("requests", "Passthrough HTTP requests", requests.clone());
        registry.register("request_duration_seconds", "Passthrough HTTP latency", request_seconds.clone());
        registry.register("requests_in_flight", "Passthrough HTTP requests open", requests_in_flight.clone());
        Arc::new(Self {
            registry,
            commands,
            command_seconds,
            in_flight,
            active_entities,
            store_seconds,
            connections,
            open_connections,
            requests,
            request_seconds,
            requests_in_flight,
        })
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Starts timing a command; the guard records it (as failed unless [`CommandTimer::ok`]).
    pub fn command(self: &Arc<Self>, entity_type: &str, service: &str, command: &str) -> CommandTimer {
        let labels = CommandLabels {
            entity_type: entity_type.to_string(),
            service: service.to_string(),
            command: command.to_string(),
        };
        self.in_flight.get_or_create(&labels).inc();
        CommandTimer { metrics: self.clone(), labels, start: Instant::now(), ok: false }
    }

    /// Records a store operation's latency.
    pub fn store(&self, operation: &'static str, outcome: &'static str, start: Instant) {
        self.store_seconds
            .get_or_create(&StoreLabels { operation, outcome })
            .observe(start.elapsed().as_secs_f64());
    }

    /// Counts an entity becoming active; the guard counts it passivated.
    pub fn entity_active(self: &Arc<Self>, entity_type: &'static str) -> GaugeGuard {
        let gauge = self.active_entities.get_or_create(&ProtocolLabels { protocol: entity_type }).clone();
        gauge.inc();
        GaugeGuard(gauge)
    }

    /// Counts a passthrough connection; the guard counts it closed.
    pub fn connection(&self, protocol: &'static str) -> GaugeGuard {
        self.connections.get_or_create(&ProtocolLabels { protocol }).inc();
        let gauge = self.open_connections.get_or_create(&ProtocolLabels { protocol }).clone();
        gauge.inc();
        GaugeGuard(gauge)
    }

    /// Starts timing a passthrough request.
    pub fn request(self: &Arc<Self>, protocol: &'static str) -> RequestTimer {
        let gauge = self.requests_in_flight.get_or_create(&ProtocolLabels { protocol }).clone();
        gauge.inc();
        RequestTimer { metrics: self.clone(), protocol, start: Instant::now(), _in_flight: GaugeGuard(gauge) }
    }
}

/// Decrements its gauge when dropped.
#[derive(Debug)]
pub struct GaugeGuard(Gauge);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Times one client command.
#[derive(Debug)]
pub struct CommandTimer {
    metrics: Arc<Metrics>,
    labels: CommandLabels,
    start: Instant,
    ok: bool,
}

impl CommandTimer {
    /// The command succeeded.
    pub fn ok(mut self) {
        self.ok = true;
    }
}

impl Drop for CommandTimer {
    fn drop(&mut self) {
        let m = &self.metrics;
        m.in_flight.get_or_create(&self.labels).dec();
        m.command_seconds.get_or_create(&self.labels).observe(self.start.elapsed().as_secs_f64());
        let CommandLabels { entity_type, service, command } = self.labels.clone();
        let outcome = if self.ok { "ok" } else { "failed" };
        m.commands.get_or_create(&OutcomeLabels { entity_type, service, command, outcome }).inc();
    }
}

/// Times one passthrough request.
#[derive(Debug)]
pub struct RequestTimer {
    metrics: Arc<Metrics>,
    protocol: &'static str,
    start: Instant,
    _in_flight: GaugeGuard,
}

impl RequestTimer {
    /// The request ended with `status` (`None`: the user port failed).
    pub fn finish(self, status: Option<u16>) {
        let status = match status {
            Some(100..=199) => "1xx",
            Some(200..=299) => "2xx",
            Some(300..=399) => "3xx",
            Some(400..=499) => "4xx",
            Some(_) => "5xx",
            None => "error",
        };
        let protocol = self.protocol;
        self.metrics.requests.get_or_create(&RequestLabels { protocol, status }).inc();
        self.metrics
            .request_seconds
            .get_or_create(&ProtocolLabels { protocol })
            .observe(self.start.elapsed().as_secs_f64());
    }
}
