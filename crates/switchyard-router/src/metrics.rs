//! Every metric Switchyard exposes, defined in one place. Names follow
//! `switchyard_<subsystem>_<name>_<unit>[_total]` in base units (seconds, rows); label values come
//! from closed sets only: endpoint and statement kinds, outcomes, error codes, and names from
//! `router.toml` (backends, tables, plugin modules) — never SQL text, ids or error messages.
//!
//! Each router owns its registry (tests run several routers in one process); `GET /metrics`
//! renders it with [`Metrics::render`] after refreshing the gauges that are read, not counted.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use switchyard_backend::BackendError;

/// Latency buckets for queries and fragments: 50 µs to 10 s.
const QUERY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// Latency buckets for plugin route calls: 5 µs to 100 ms (the deadline is milliseconds).
const PLUGIN_BUCKETS: &[f64] = &[
    0.000_005, 0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005,
    0.01, 0.025, 0.05, 0.1,
];

/// The metric families of one router.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// `switchyard_http_requests_total{endpoint, status_class}`.
    pub http_requests: IntCounterVec,
    /// `switchyard_query_duration_seconds{statement, outcome}`: until the answer starts
    /// (streamed answers keep flowing after).
    pub query_duration: HistogramVec,
    /// `switchyard_query_errors_total{code}`: failed statements by client error code.
    pub query_errors: IntCounterVec,
    /// `switchyard_query_in_flight`.
    pub queries_in_flight: IntGauge,
    /// `switchyard_backend_fragment_duration_seconds{backend, backend_kind, outcome}`.
    pub fragment_duration: HistogramVec,
    /// `switchyard_backend_fragments_total{backend, backend_kind, outcome}`.
    pub fragments: IntCounterVec,
    /// `switchyard_backend_rows_fetched_total{backend, backend_kind}`.
    pub rows_fetched: IntCounterVec,
    /// `switchyard_backend_errors_total{backend, kind}`: unavailable, interrupted, timeout,
    /// constraint, data, stalled, rejected, decode, needs_key, too_large, unsupported, and the
    /// router's circuit_open (failed fast) and cache_timeout (a cache skipped).
    pub backend_errors: IntCounterVec,
    /// `switchyard_backend_up{backend, backend_kind}`: 1 when the last statement or health
    /// check reached it.
    pub backend_up: IntGaugeVec,
    /// `switchyard_backend_pool_connections{backend, state}`: `idle` / `active`, pooled stores.
    pub pool_connections: IntGaugeVec,
    /// `switchyard_backend_circuit_state{backend}`: 0 closed, 1 open, 2 half open.
    pub circuit_state: IntGaugeVec,
    /// `switchyard_backend_circuit_opened_total{backend}`: times the circuit opened.
    pub circuit_opened: IntCounterVec,
    /// `switchyard_plugin_route_duration_seconds{plugin, version}`.
    pub plugin_route_duration: HistogramVec,
    /// `switchyard_plugin_failures_total{plugin, version, kind}`: trap, timeout, memory,
    /// invalid_route, refused, fallback (the default route answered instead).
    pub plugin_failures: IntCounterVec,
    /// `switchyard_plugin_reloads_total{module, outcome}`: loaded / failed (start, watcher,
    /// admin endpoint, SIGHUP).
    pub plugin_reloads: IntCounterVec,
    /// `switchyard_plugin_info{module, plugin, version, contract}`: 1 per loaded module.
    pub plugin_info: IntGaugeVec,
    /// `switchyard_cache_lookups_total{table, result}`: hit, miss, fill.
    pub cache_lookups: IntCounterVec,
    /// `switchyard_merge_operator_uses_total{operator}`.
    pub merge_operators: IntCounterVec,
    /// `switchyard_build_info{version}`: 1.
    pub build_info: IntGaugeVec,
    /// `switchyard_saga_transactions_total{outcome}`: started, committed, aborted, in_doubt,
    /// replayed, recovered_committed, recovered_aborted.
    pub sagas: IntCounterVec,
    /// `switchyard_saga_duration_seconds{outcome}`: a whole transaction.
    pub saga_duration: HistogramVec,
    /// `switchyard_saga_step_duration_seconds{backend, outcome}`: one step (its local
    /// transaction, or its statement with the before-image and log records).
    pub saga_step_duration: HistogramVec,
    /// `switchyard_events_published_total{outcome}`: change events appended (ok) or lost
    /// (error: the stream was unreachable; the write itself stands).
    pub events_published: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every family in a fresh registry.
    #[allow(clippy::expect_used)] // static, valid definitions: a failure is a programming error
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter");
            registry.register(Box::new(c.clone())).expect("unique");
            c
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid gauge");
            registry.register(Box::new(g.clone())).expect("unique");
            g
        };
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: &[f64]| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(buckets.to_vec()),
                labels,
            )
            .expect("valid histogram");
            registry.register(Box::new(h.clone())).expect("unique");
            h
        };
        let queries_in_flight =
            IntGauge::new("switchyard_query_in_flight", "Statements being executed.")
                .expect("valid gauge");
        registry
            .register(Box::new(queries_in_flight.clone()))
            .expect("unique");
        let m = Metrics {
            http_requests: counter(
                "switchyard_http_requests_total",
                "HTTP requests by endpoint and status class.",
                &["endpoint", "status_class"],
            ),
            query_duration: histogram(
                "switchyard_query_duration_seconds",
                "Statement latency until the answer starts, by statement kind and outcome.",
                &["statement", "outcome"],
                QUERY_BUCKETS,
            ),
            query_errors: counter(
                "switchyard_query_errors_total",
                "Failed statements by error code.",
                &["code"],
            ),
            queries_in_flight,
            fragment_duration: histogram(
                "switchyard_backend_fragment_duration_seconds",
                "Latency of statements sent to a backend.",
                &["backend", "backend_kind", "outcome"],
                QUERY_BUCKETS,
            ),
            fragments: counter(
                "switchyard_backend_fragments_total",
                "Statements sent to a backend.",
                &["backend", "backend_kind", "outcome"],
            ),
            rows_fetched: counter(
                "switchyard_backend_rows_fetched_total",
                "Rows read from a backend.",
                &["backend", "backend_kind"],
            ),
            backend_errors: counter(
                "switchyard_backend_errors_total",
                "Backend failures by kind.",
                &["backend", "kind"],
            ),
            backend_up: gauge(
                "switchyard_backend_up",
                "1 when the backend answered its last statement or health check.",
                &["backend", "backend_kind"],
            ),
            pool_connections: gauge(
                "switchyard_backend_pool_connections",
                "Pooled connections by state.",
                &["backend", "state"],
            ),
            circuit_state: gauge(
                "switchyard_backend_circuit_state",
                "Circuit breaker of the backend: 0 closed, 1 open (failing fast), 2 half open.",
                &["backend"],
            ),
            circuit_opened: counter(
                "switchyard_backend_circuit_opened_total",
                "Times the backend's circuit opened after repeated connection failures.",
                &["backend"],
            ),
            plugin_route_duration: histogram(
                "switchyard_plugin_route_duration_seconds",
                "Placement plugin route-call latency.",
                &["plugin", "version"],
                PLUGIN_BUCKETS,
            ),
            plugin_failures: counter(
                "switchyard_plugin_failures_total",
                "Placement plugin failures by kind.",
                &["plugin", "version", "kind"],
            ),
            plugin_reloads: counter(
                "switchyard_plugin_reloads_total",
                "Plugin module loads by outcome.",
                &["module", "outcome"],
            ),
            plugin_info: gauge(
                "switchyard_plugin_info",
                "Loaded plugin modules (value 1).",
                &["module", "plugin", "version", "contract"],
            ),
            cache_lookups: counter(
                "switchyard_cache_lookups_total",
                "Cache-aside key lookups by table and result.",
                &["table", "result"],
            ),
            merge_operators: counter(
                "switchyard_merge_operator_uses_total",
                "Merge operators run in the router.",
                &["operator"],
            ),
            build_info: gauge(
                "switchyard_build_info",
                "Build information (value 1).",
                &["version"],
            ),
            sagas: counter(
                "switchyard_saga_transactions_total",
                "Multi-store transactions by outcome.",
                &["outcome"],
            ),
            saga_duration: histogram(
                "switchyard_saga_duration_seconds",
                "Latency of a whole transaction, by outcome.",
                &["outcome"],
                QUERY_BUCKETS,
            ),
            saga_step_duration: histogram(
                "switchyard_saga_step_duration_seconds",
                "Latency of one saga step (local transaction or single statement with its log records).",
                &["backend", "outcome"],
                QUERY_BUCKETS,
            ),
            events_published: counter(
                "switchyard_events_published_total",
                "Change events appended to the stream (ok) or lost (error).",
                &["outcome"],
            ),
            registry,
        };
        m.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        m
    }

    /// Every family's current values.
    pub fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.registry.gather()
    }

    /// The text exposition format of every family.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec only fails on invalid metric families, which `new` rules out.
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .is_err()
        {
            tracing::error!("metrics encoding failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The `kind` label of a backend failure.
pub(crate) fn backend_error_kind(e: &BackendError) -> &'static str {
    match e {
        BackendError::Unavailable { .. } => "unavailable",
        BackendError::Interrupted { .. } => "interrupted",
        BackendError::Timeout { .. } => "timeout",
        BackendError::Constraint { .. } => "constraint",
        BackendError::Data { .. } => "data",
        BackendError::Stalled { .. } => "stalled",
        BackendError::Rejected { .. } => "rejected",
        BackendError::Decode { .. } => "decode",
        BackendError::NeedsKey { .. } => "needs_key",
        BackendError::TooLarge { .. } => "too_large",
        BackendError::Unsupported { .. } => "unsupported",
    }
}

/// The `outcome` label.
pub(crate) fn outcome<T, E>(r: &Result<T, E>) -> &'static str {
    if r.is_ok() { "ok" } else { "error" }
}

/// Holds `switchyard_query_in_flight` up while a statement runs.
pub(crate) struct InFlight(IntGauge);

impl InFlight {
    pub(crate) fn new(gauge: &IntGauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Raises a counter to a monotonic total kept elsewhere.
pub(crate) fn catch_up(counter: &prometheus::IntCounter, total: u64) {
    let current = counter.get();
    if total > current {
        counter.inc_by(total - current);
    }
}
