//! The query engine: a validated configuration becomes a catalog and a set of backends; a SQL
//! request becomes a plan, fragments run on backends, and a result set comes back.
//!
//! Invariant: every failure leaves here as a [`RouterError`] with a stable [`ErrorCode`]; nothing
//! on a request path panics. API boundary: [`Router::query`], [`Router::explain`],
//! [`Router::check`], [`Router::seed_table`]; the HTTP server and the CLI call only these.

mod breaker;
mod engine;
mod events;
mod exec;
mod explain;
pub mod failpoint;
#[cfg(test)]
mod fuzz;
pub mod metrics;
mod saga;
mod stats;

pub use saga::{
    SagaState, SagaSummary, TxCompensation, TxFailure, TxOutcome, TxRequest, TxStatement,
};

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use futures::stream::{BoxStream, StreamExt};
use indexmap::IndexMap;
use switchyard_backend::{Backend, BackendError, Fragment};
use switchyard_backend_mongo::MongoBackend;
use switchyard_backend_redis::RedisBackend;
use switchyard_backend_sql::SqlBackend;
use switchyard_config::{Config, OnPluginError};
use switchyard_core::BackendKind;
use switchyard_core::ir::{Expr, ExprKind, Insert, OnConflict, Statement};
use switchyard_core::{
    BoundQuery, Catalog, CoreError, ErrorCode, Plan, Position, ResultColumn, ResultSet, Route,
    RouteRequest, Value,
};
use switchyard_plugin_host::{
    HostLimits, PluginEngine, PluginError, PluginListing, PluginSet, PluginSpec, ReloadOutcome,
};
use tracing::Instrument;

pub use breaker::CircuitState;
pub use explain::{EngineExplain, Explain, ExplainedFragment, ScanExplain};
use metrics::Metrics;
use stats::BackendStats;

/// The request context (`"context"` of `/v1/query`), handed to placement plugins.
pub type Context = HashMap<String, String>;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// Parsing, binding or planning failed.
    #[error(transparent)]
    Plan(#[from] CoreError),
    /// A backend failed its fragment.
    #[error("fragment failed")]
    Backend(#[from] BackendError),
    /// The placement plugin failed.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// The plugin engine could not start.
    #[error("the plugin engine cannot start: {message}")]
    PluginEngine {
        /// Why.
        message: String,
    },
    /// The whole query took longer than `server.query_timeout_ms`.
    #[error("query did not finish within {after_ms} ms")]
    Timeout {
        /// The timeout.
        after_ms: u64,
    },
    /// A table the request needs is not in the catalog (seeding).
    #[error("table `{table}` is not in the catalog")]
    UnknownTable {
        /// The table.
        table: String,
    },
    /// A multi-statement transaction failed (or was refused).
    #[error("{}", .0.message)]
    Transaction(Box<TxFailure>),
    /// The backend's circuit is open: it failed to answer recently, so statements for it fail
    /// at once.
    #[error(
        "backend `{backend}` is not answering (circuit open after repeated connection failures); retry in {retry_after_ms} ms"
    )]
    CircuitOpen {
        /// The backend.
        backend: String,
        /// When a statement may go through again.
        retry_after_ms: u64,
    },
    /// The router-side engine refused or failed the statement.
    #[error(transparent)]
    Engine(#[from] switchyard_engine::EngineError),
    /// A backend could not be created from its configuration.
    #[error("backend `{backend}` cannot be created")]
    BackendSetup {
        /// The backend.
        backend: String,
        /// Why.
        #[source]
        source: BackendError,
    },
}

impl RouterError {
    /// The client-facing code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Plan(e) => e.code(),
            Self::Engine(e) => e.code(),
            Self::Backend(e) => e.code(),
            Self::Plugin(e) => e.code(),
            Self::PluginEngine { .. } => ErrorCode::Internal,
            Self::Timeout { .. } => ErrorCode::Timeout,
            Self::UnknownTable { .. } => ErrorCode::UnknownTable,
            Self::BackendSetup { .. } | Self::CircuitOpen { .. } => ErrorCode::BackendUnavailable,
            Self::Transaction(f) => f.code,
        }
    }

    /// Where in the SQL text the problem is, when it applies.
    pub fn position(&self) -> Option<Position> {
        match self {
            Self::Plan(e) => e.position(),
            Self::Engine(e) => e.position(),
            _ => None,
        }
    }

    /// The message for clients: the top-level description, plus the store's own message for
    /// statement failures, never connection details.
    pub fn client_message(&self) -> String {
        match self {
            Self::Backend(e) => e.to_string(),
            other => other.to_string(),
        }
    }
}

/// The answer of [`Router::query_stream`]: the first rows, and for a streamed SELECT the
/// batches after them (ending with an error if the store fails midway; dropping it cancels the
/// statement).
pub struct Answer {
    /// Output columns.
    pub columns: Vec<ResultColumn>,
    /// Rows written, for writes.
    pub rows_affected: Option<u64>,
    /// The first rows (all of them when `rest` is `None`).
    pub first: Vec<Vec<Value>>,
    /// The rest of a streamed answer.
    pub rest: Option<BoxStream<'static, Result<Vec<Vec<Value>>, RouterError>>>,
}

/// Who produced a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Planner {
    /// The built-in default planner (no plugin configured for this request, or none loaded).
    Default,
    /// A placement plugin.
    Plugin {
        /// Module name in `[plugins.modules]`.
        module: String,
        /// Plugin name.
        name: String,
        /// Plugin version.
        version: String,
    },
    /// The default planner after the plugin failed (`on_error = "fallback"`).
    Fallback {
        /// Plugin name.
        name: String,
        /// Plugin version.
        version: String,
        /// The failure code.
        error: ErrorCode,
    },
}

impl Planner {
    /// One-line description (`plugin ecommerce 1.0.0`).
    pub fn describe(&self) -> String {
        match self {
            Self::Default => "default".to_owned(),
            Self::Plugin { name, version, .. } => format!("plugin {name} {version}"),
            Self::Fallback {
                name,
                version,
                error,
            } => format!("default (fallback after plugin {name} {version} failed with {error})"),
        }
    }
}

/// The health of one backend, as `check` and `/readyz` report it.
#[derive(Debug)]
pub struct BackendHealth {
    /// Backend name.
    pub backend: String,
    /// Kind.
    pub kind: &'static str,
    /// `Ok` when the backend answered.
    pub result: Result<Duration, BackendError>,
}

tokio::task_local! {
    /// The statements of the running query with their latency (backend, microseconds).
    static FRAGMENT_TIMES: RefCell<Vec<(String, u64)>>;
}

/// What the slow-query log says of a statement besides its timings.
#[derive(Debug)]
struct QueryTrace {
    kind: &'static str,
    planner: String,
    route: String,
}

impl Default for QueryTrace {
    fn default() -> Self {
        Self {
            kind: "unknown",
            planner: String::new(),
            route: String::new(),
        }
    }
}

/// A backend as `GET /admin/backends` shows it.
#[derive(Debug, Clone)]
pub struct BackendDetail {
    /// Backend name.
    pub backend: String,
    /// Kind.
    pub kind: &'static str,
    /// Health and latency of recent statements.
    pub status: switchyard_core::routing::BackendStatus,
    /// Its circuit breaker.
    pub circuit: CircuitState,
    /// Pool connections, for pooled stores.
    pub pool: Option<switchyard_backend::PoolState>,
    /// Rows read from it since start.
    pub rows_fetched: u64,
}

/// The engine.
#[derive(Debug)]
pub struct Router {
    config: Config,
    catalog: Catalog,
    backends: IndexMap<String, Arc<dyn Backend>>,
    stats: Vec<BackendStats>,
    metrics: Metrics,
    plugins: Option<Arc<PluginSet>>,
    watcher: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    recovery: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    query_timeout: Duration,
    saga: Option<saga::SagaLog>,
    /// The change stream: backend index, stream key, length cap.
    events: Option<(usize, String, u64)>,
    /// The queue `/v1/query` writes publish their events through.
    event_queue: Option<events::EventQueue>,
    /// `execution.cache_timeout_ms`.
    cache_timeout: Duration,
    /// The router-side engine for what the fast path refuses, created on first use.
    engine: std::sync::OnceLock<switchyard_engine::Engine>,
}

impl Router {
    /// Builds the catalog and one backend per `[backends.NAME]` (connecting lazily), and loads
    /// the placement plugins of `[plugins]`.
    pub async fn from_config(config: Config) -> Result<Router, RouterError> {
        let mut backends: IndexMap<String, Arc<dyn Backend>> = IndexMap::new();
        for (name, b) in &config.backends {
            let timeout = config.server.query_timeout_ms;
            let setup = |source| RouterError::BackendSetup {
                backend: name.clone(),
                source,
            };
            let backend: Arc<dyn Backend> = match b.kind {
                BackendKind::Postgres | BackendKind::Mysql | BackendKind::Sqlite => {
                    Arc::new(SqlBackend::connect_lazy(name, b, timeout).map_err(setup)?)
                }
                BackendKind::Mongodb => Arc::new(
                    MongoBackend::connect_lazy(name, b, timeout)
                        .await
                        .map_err(setup)?,
                ),
                BackendKind::Redis => {
                    Arc::new(RedisBackend::connect_lazy(name, b, timeout).map_err(setup)?)
                }
            };
            backends.insert(name.clone(), backend);
        }
        let mut router = Self::with_backends(config, backends);
        router.plugins = router.start_plugins().await?;
        Ok(router)
    }

    /// Builds the plugin set of `[plugins]` and loads every module (blocking: compiles). A module
    /// that fails to load is reported and leaves its requests to the default planner.
    async fn start_plugins(&self) -> Result<Option<Arc<PluginSet>>, RouterError> {
        let p = &self.config.plugins;
        if p.modules.is_empty() {
            return Ok(None);
        }
        let limits = HostLimits {
            call_timeout: Duration::from_millis(p.call_timeout_ms),
            max_memory_bytes: usize::try_from(p.max_memory_bytes).unwrap_or(usize::MAX),
            ..HostLimits::default()
        };
        let engine = PluginEngine::new(limits).map_err(|e| RouterError::PluginEngine {
            message: e.to_string(),
        })?;
        let specs = p
            .modules
            .iter()
            .map(|(name, m)| PluginSpec {
                name: name.clone(),
                path: m.path.clone().into(),
            })
            .collect();
        let tenants = p
            .tenants
            .iter()
            .map(|(t, m)| (t.clone(), m.clone()))
            .collect();
        let set = PluginSet::new(
            engine,
            self.catalog.clone(),
            specs,
            p.active.clone(),
            tenants,
            p.tenant_context_key.clone(),
        );
        for outcome in set.load_all().await {
            if let Err(message) = outcome.result {
                tracing::error!(module = %outcome.module, error = %message, "plugin not loaded; its requests use the default planner");
            }
        }
        Ok(Some(Arc::new(set)))
    }

    /// Starts the plugin file watcher (when `plugins.watch`) and saga recovery (at once, then
    /// every `transactions.recovery_interval_ms`); idempotent. Needs a tokio runtime.
    pub fn start_background_tasks(self: &Arc<Self>) {
        if self.saga.is_some()
            && let Ok(mut r) = self.recovery.lock()
            && r.is_none()
        {
            let router = Arc::downgrade(self);
            let every = Duration::from_millis(self.config.transactions.recovery_interval_ms);
            *r = Some(tokio::spawn(async move {
                loop {
                    let Some(router) = router.upgrade() else {
                        return;
                    };
                    match router.recover_sagas().await {
                        Ok(0) => {}
                        Ok(n) => {
                            tracing::info!(sagas = n, "saga recovery took over unfinished sagas")
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "saga recovery failed; retrying later")
                        }
                    }
                    drop(router);
                    if every.is_zero() {
                        return;
                    }
                    tokio::time::sleep(every).await;
                }
            }));
        }
        let (Some(set), true) = (&self.plugins, self.config.plugins.watch) else {
            return;
        };
        if let Ok(mut w) = self.watcher.lock()
            && w.is_none()
        {
            *w = Some(
                set.spawn_watcher(Duration::from_millis(self.config.plugins.watch_interval_ms)),
            );
        }
    }

    /// Reloads every plugin module from disk (admin endpoint, SIGHUP). Compiles on the blocking
    /// pool; the old versions serve until each new one is ready.
    pub async fn reload_plugins(&self) -> Vec<ReloadOutcome> {
        match &self.plugins {
            Some(set) => set.load_all().await,
            None => Vec::new(),
        }
    }

    /// Every plugin module with its version, counters and last error.
    pub fn plugin_listing(&self) -> Vec<PluginListing> {
        self.plugins.as_ref().map(|s| s.list()).unwrap_or_default()
    }

    /// Builds a router over given backends (tests swap in fakes here).
    pub fn with_backends(config: Config, backends: IndexMap<String, Arc<dyn Backend>>) -> Router {
        let catalog = Catalog::from_config(&config);
        let query_timeout = Duration::from_millis(config.server.query_timeout_ms);
        let stats = backends
            .keys()
            .map(|name| {
                let b = config.backends.get(name);
                BackendStats::new(
                    b.map_or(switchyard_config::defaults::CIRCUIT_FAILURES, |b| {
                        b.circuit_failures
                    }),
                    Duration::from_millis(
                        b.map_or(switchyard_config::defaults::CIRCUIT_OPEN_MS, |b| {
                            b.circuit_open_ms
                        }),
                    ),
                )
            })
            .collect();
        let log_backend = config.transactions.log_backend.clone().or_else(|| {
            config
                .backends
                .iter()
                .find(|(_, b)| b.kind.is_sql())
                .map(|(n, _)| n.clone())
        });
        let saga = log_backend.and_then(|name| {
            let (id, _, b) = backends.get_full(&name)?;
            Some(saga::SagaLog::new(
                id,
                &name,
                b.kind(),
                &config.transactions.log_table,
                Duration::from_millis(config.transactions.lease_ms),
            ))
        });
        let events = config.events.backend.as_ref().and_then(|name| {
            Some((
                backends.get_index_of(name)?,
                config.events.stream.clone(),
                config.events.max_len,
            ))
        });
        let metrics = Metrics::new();
        let event_queue = events.as_ref().and_then(|(id, stream, max_len)| {
            let backend = backends.get_index(*id)?.1.clone();
            Some(events::EventQueue::new(
                backend,
                stream.clone(),
                *max_len,
                config.events.queue_capacity,
                Duration::from_millis(config.events.publish_wait_ms),
                metrics.events_published.clone(),
            ))
        });
        let cache_timeout = Duration::from_millis(config.execution.cache_timeout_ms);
        Router {
            config,
            catalog,
            backends,
            stats,
            metrics,
            plugins: None,
            watcher: std::sync::Mutex::new(None),
            recovery: std::sync::Mutex::new(None),
            query_timeout,
            saga,
            events,
            event_queue,
            cache_timeout,
            engine: std::sync::OnceLock::new(),
        }
    }

    /// The configuration this router was built from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    fn backend(&self, name: &str) -> Result<&Arc<dyn Backend>, RouterError> {
        self.backends.get(name).ok_or_else(|| {
            RouterError::Plan(CoreError::NoRoute {
                reason: format!("backend `{name}` is not configured"),
            })
        })
    }

    /// Plans `sql` without executing it, with the default planner only.
    pub fn plan(&self, sql: &str, params: &[serde_json::Value]) -> Result<Plan, RouterError> {
        Ok(switchyard_core::plan(sql, params, &self.catalog)?)
    }

    /// Live status of every backend, by backend index.
    pub fn backend_status(&self) -> Vec<switchyard_core::routing::BackendStatus> {
        self.stats.iter().map(|s| s.status()).collect()
    }

    /// Rows each backend has returned since start, by backend name.
    pub fn rows_fetched(&self) -> Vec<(&str, u64)> {
        self.backends
            .iter()
            .map(|(name, b)| (name.as_str(), self.fetched_from(name, b.kind().as_str())))
            .collect()
    }

    /// `switchyard_backend_rows_fetched_total` of one backend.
    fn fetched_from(&self, name: &str, kind: &str) -> u64 {
        self.metrics
            .rows_fetched
            .with_label_values(&[name, kind])
            .get()
    }

    /// Plans `sql` and asks the placement plugin serving `context` (if any) for the route.
    pub async fn route(
        &self,
        sql: &str,
        params: &[serde_json::Value],
        context: &Context,
    ) -> Result<(Plan, Planner), RouterError> {
        let (plan, planner, _) = self.routed(sql, params, context).await?;
        Ok((plan, planner))
    }

    /// [`Router::route`], also returning the route request (table accesses, key lookups, join
    /// edges) that execution reuses.
    async fn routed(
        &self,
        sql: &str,
        params: &[serde_json::Value],
        context: &Context,
    ) -> Result<(Plan, Planner, RouteRequest), RouterError> {
        let mut ctx: Vec<(String, String)> = context
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        ctx.sort();
        let (mut plan, request) = switchyard_core::plan_with_request(
            sql,
            params,
            &self.catalog,
            ctx,
            self.backend_status(),
        )?;
        let Some((module, plugin)) = self.plugins.as_ref().and_then(|s| s.select(context)) else {
            return Ok((plan, Planner::Default, request));
        };
        let call_started = Instant::now();
        let routed = {
            let _span = tracing::debug_span!(
                "plugin_route",
                plugin = %plugin.info.name,
                version = %plugin.info.version
            )
            .entered();
            plugin.route(&request)
        };
        let (name, version) = (plugin.info.name.as_str(), plugin.info.version.as_str());
        self.metrics
            .plugin_route_duration
            .with_label_values(&[name, version])
            .observe(call_started.elapsed().as_secs_f64());
        if let Err(e) = &routed {
            self.metrics
                .plugin_failures
                .with_label_values(&[name, version, e.kind()])
                .inc();
        }
        match routed {
            Ok(route) => {
                plan.route = route;
                let planner = Planner::Plugin {
                    module: module.to_owned(),
                    name: plugin.info.name.clone(),
                    version: plugin.info.version.clone(),
                };
                Ok((plan, planner, request))
            }
            Err(err) if self.config.plugins.on_error == OnPluginError::Fallback => {
                plugin
                    .stats
                    .fallbacks
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.metrics
                    .plugin_failures
                    .with_label_values(&[name, version, "fallback"])
                    .inc();
                tracing::warn!(plugin = %plugin.info.name, version = %plugin.info.version, error = %err, "plugin failed; using the default route");
                Ok((
                    plan,
                    Planner::Fallback {
                        name: plugin.info.name.clone(),
                        version: plugin.info.version.clone(),
                        error: err.code(),
                    },
                    request,
                ))
            }
            Err(err) => Err(err.into()),
        }
    }

    /// Runs one statement; a SELECT on one SQL store streams its rows as the store sends them
    /// (see [`RowStream`]), everything else is answered whole.
    pub async fn query_stream(
        &self,
        sql: &str,
        params: &[serde_json::Value],
        context: &Context,
    ) -> Result<Answer, RouterError> {
        let _in_flight = metrics::InFlight::new(&self.metrics.queries_in_flight);
        let started = Instant::now();
        let mut trace = QueryTrace::default();
        let (result, fragments) = FRAGMENT_TIMES
            .scope(RefCell::new(Vec::new()), async {
                let result = match self.stream_inner(sql, params, context, &mut trace).await {
                    // What the fast path does not handle goes to the engine (SELECTs only;
                    // anything else keeps this refusal).
                    Err(RouterError::Plan(refused)) if refused.code() == ErrorCode::Unsupported => {
                        self.engine_query(sql, params, context, &mut trace, refused)
                            .await
                    }
                    other => other,
                };
                (result, FRAGMENT_TIMES.with(RefCell::take))
            })
            .await;
        self.observe_query(&trace, sql, started, &fragments, result.as_ref().err());
        result
    }

    /// Statement latency, outcome and error code; the slow-query log.
    fn observe_query(
        &self,
        trace: &QueryTrace,
        sql: &str,
        started: Instant,
        fragments: &[(String, u64)],
        error: Option<&RouterError>,
    ) {
        let elapsed = started.elapsed();
        let outcome = if error.is_some() { "error" } else { "ok" };
        self.metrics
            .query_duration
            .with_label_values(&[trace.kind, outcome])
            .observe(elapsed.as_secs_f64());
        if let Some(e) = error {
            self.metrics
                .query_errors
                .with_label_values(&[e.code().as_str()])
                .inc();
        }
        let threshold = self.config.server.slow_query_ms;
        if threshold > 0 && elapsed >= Duration::from_millis(threshold) {
            let timings: Vec<String> = fragments
                .iter()
                .map(|(backend, us)| format!("{backend}:{us}us"))
                .collect();
            // The text as sent, never the bound parameter values.
            let mut text: String = sql.chars().take(1000).collect();
            if text.len() < sql.len() {
                text.push_str("...");
            }
            tracing::warn!(
                statement = trace.kind,
                outcome,
                code = error.map(|e| e.code().as_str()),
                elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
                planner = %trace.planner,
                route = %trace.route,
                fragments = %timings.join(" "),
                sql = %text,
                "slow query"
            );
        }
    }

    /// A route in one line for logs: `backend[tables]` per fragment, then the merges.
    fn route_summary(&self, route: &Route, request: &RouteRequest) -> String {
        let mut parts: Vec<String> = route
            .fragments
            .iter()
            .map(|f| {
                let backend = self
                    .backends
                    .get_index(f.backend)
                    .map_or("?", |(n, _)| n.as_str());
                let tables: Vec<&str> = f
                    .accesses
                    .iter()
                    .filter_map(|a| request.accesses.get(*a))
                    .filter_map(|x| {
                        self.catalog
                            .tables
                            .get_index(x.table)
                            .map(|(n, _)| n.as_str())
                    })
                    .collect();
                format!("{backend}[{}]", tables.join(","))
            })
            .collect();
        let merges: Vec<&str> = route.nodes.iter().map(|n| n.op.as_str()).collect();
        if !merges.is_empty() {
            parts.push(format!("merge:{}", merges.join(",")));
        }
        parts.join(" ")
    }

    async fn stream_inner(
        &self,
        sql: &str,
        params: &[serde_json::Value],
        context: &Context,
        trace: &mut QueryTrace,
    ) -> Result<Answer, RouterError> {
        let (plan, planner, request) = self.routed(sql, params, context).await?;
        trace.kind = plan.query.statement.kind().as_str();
        trace.planner = planner.describe();
        trace.route = self.route_summary(&plan.route, &request);
        if plan.route.write.is_none()
            && let (Some(id), Statement::Select(_)) =
                (plan.route.as_single(), &plan.query.statement)
        {
            let backend = self.backend_by_id(id)?;
            self.admit(id)?;
            let fragment = Fragment {
                query: &plan.query,
                catalog: &self.catalog,
            };
            let started = Instant::now();
            // In flight until the last batch is read, not only until the first arrives.
            let in_flight = self.stats[id].start();
            let streamed = {
                tokio::time::timeout(self.query_timeout, backend.stream(fragment))
                    .await
                    .unwrap_or_else(|_| {
                        Err(BackendError::Timeout {
                            backend: backend.name().to_owned(),
                            after_ms: self.timeout_ms(),
                        })
                    })
            };
            self.record_fragment(
                id,
                started.elapsed(),
                streamed.as_ref().map(|s| s.first.len()),
            );
            match streamed {
                Ok(stream) => {
                    let rows_fetched = self
                        .metrics
                        .rows_fetched
                        .with_label_values(&[backend.name(), backend.kind().as_str()]);
                    let rest = stream.rest.map(|mut rx| {
                        // In flight while the store is read, however long the client takes
                        // to read what was queued.
                        if let Some(done) = rx.producer_done() {
                            tokio::spawn(async move {
                                done.await;
                                drop(in_flight);
                            });
                        }
                        futures::stream::unfold(rx, |mut rx| async move {
                            rx.recv().await.map(|batch| (batch, rx))
                        })
                        .map(move |batch| {
                            if let Ok(rows) = &batch {
                                rows_fetched.inc_by(rows.len() as u64);
                            }
                            batch.map_err(RouterError::from)
                        })
                        .boxed()
                    });
                    return Ok(Answer {
                        columns: stream.columns,
                        rows_affected: None,
                        first: stream.first,
                        rest,
                    });
                }
                // Read what the store can and finish in the router (below).
                Err(BackendError::Unsupported { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let result = self.run_routed(&plan, &planner, &request).await?;
        Ok(Answer {
            columns: result.columns,
            rows_affected: result.rows_affected,
            first: result.rows,
            rest: None,
        })
    }

    /// Runs one statement and returns its result.
    pub async fn query(
        &self,
        sql: &str,
        params: &[serde_json::Value],
        context: &Context,
    ) -> Result<ResultSet, RouterError> {
        let answer = self.query_stream(sql, params, context).await?;
        let mut rows = answer.first;
        if let Some(mut rest) = answer.rest {
            while let Some(batch) = rest.next().await {
                rows.extend(batch?);
            }
        }
        Ok(ResultSet {
            columns: answer.columns,
            rows,
            rows_affected: answer.rows_affected,
        })
    }

    async fn run_routed(
        &self,
        plan: &Plan,
        planner: &Planner,
        request: &RouteRequest,
    ) -> Result<ResultSet, RouterError> {
        let kind = plan.query.statement.kind().as_str();
        let span = tracing::info_span!("query", statement = kind, planner = %planner.describe());
        let started = Instant::now();
        let result = tokio::time::timeout(
            self.query_timeout,
            self.execute(&plan.query, &plan.route, request, true),
        )
        .instrument(span)
        .await
        .unwrap_or_else(|_| {
            Err(RouterError::Timeout {
                after_ms: self.timeout_ms(),
            })
        });
        match &result {
            Ok(rs) => tracing::debug!(
                statement = kind,
                rows = rs.rows.len(),
                elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                "query finished"
            ),
            Err(err) => tracing::info!(statement = kind, code = %err.code(), "query failed"),
        }
        result
    }

    fn timeout_ms(&self) -> u64 {
        u64::try_from(self.query_timeout.as_millis()).unwrap_or(u64::MAX)
    }

    fn backend_by_id(&self, id: usize) -> Result<&Arc<dyn Backend>, RouterError> {
        self.backends.get_index(id).map(|(_, b)| b).ok_or_else(|| {
            RouterError::Plan(CoreError::NoRoute {
                reason: format!("backend {id} is not configured"),
            })
        })
    }

    /// Runs a routed statement: reads on their single backend, writes on every target, then
    /// cache invalidation.
    async fn execute(
        &self,
        query: &BoundQuery,
        route: &Route,
        request: &RouteRequest,
        publish: bool,
    ) -> Result<ResultSet, RouterError> {
        let fragment = Fragment {
            query,
            catalog: &self.catalog,
        };
        if let Some(write) = &route.write {
            let mut keys = request.accesses.first().and_then(|a| a.key_lookup.clone());
            if keys.is_none()
                && (!write.invalidate.is_empty() || (publish && self.events.is_some()))
                && let Some(&target) = write.targets.first()
            {
                // The statement does not pin its keys: read which rows it will touch, so their
                // cache entries are dropped and their events carry keys.
                keys = self.keys_to_write(query, target).await;
            }
            let mut result = None;
            for &target in &write.targets {
                let rs = self.run_on(target, fragment).await?;
                result.get_or_insert(rs);
            }
            for &cache in &write.invalidate {
                self.invalidate(query, cache, keys.clone()).await;
            }
            if publish
                && !matches!(query.statement, Statement::Select(_))
                && let Some(queue) = &self.event_queue
            {
                queue
                    .publish(saga::change_events(
                        query,
                        keys.as_deref().unwrap_or_default(),
                        None,
                    ))
                    .await;
            }
            return result.ok_or_else(|| {
                RouterError::Plan(CoreError::NoRoute {
                    reason: "the write plan has no target".to_owned(),
                })
            });
        }
        match (route.as_single(), &query.statement) {
            (Some(backend), Statement::Select(select)) => {
                match self.run_on(backend, fragment).await {
                    // The store cannot take the whole statement (a key-value store asked for a
                    // filter, sort or aggregate): read what it can and finish in the router.
                    Err(RouterError::Backend(BackendError::Unsupported { .. })) => {
                        let budget = self.budget();
                        exec::Exec::new(self, query, select, route, request, &budget)
                            .run()
                            .await
                    }
                    other => other,
                }
            }
            (Some(backend), _) => self.run_on(backend, fragment).await,
            (None, Statement::Select(select)) => {
                let budget = self.budget();
                let result = exec::Exec::new(self, query, select, route, request, &budget)
                    .run()
                    .await;
                let (rows, bytes) = budget.used();
                tracing::debug!(rows, bytes, "cross-store query memory");
                result
            }
            (None, _) => Err(RouterError::Plan(CoreError::NoRoute {
                reason: "a write needs a write plan".to_owned(),
            })),
        }
    }

    /// The name of backend `id`.
    pub(crate) fn backend_name(&self, id: usize) -> Option<&str> {
        self.backends.get_index(id).map(|(name, _)| name.as_str())
    }

    /// `execution.cache_timeout_ms`.
    pub(crate) fn cache_timeout(&self) -> Duration {
        self.cache_timeout
    }

    /// The memory guard of one query, from `[execution]`.
    fn budget(&self) -> switchyard_core::exec::Budget {
        switchyard_core::exec::Budget::new(
            self.config.execution.max_query_rows,
            self.config.execution.max_query_bytes,
        )
    }

    /// Whether a statement may go to backend `id` now (its circuit breaker).
    fn admit(&self, id: usize) -> Result<(), RouterError> {
        let Some(((name, backend), stats)) = self.backends.get_index(id).zip(self.stats.get(id))
        else {
            return Ok(());
        };
        stats.breaker.admit().map_err(|retry_after| {
            self.metrics
                .backend_errors
                .with_label_values(&[name, "circuit_open"])
                .inc();
            tracing::debug!(backend = %name, kind = backend.kind().as_str(), "circuit open");
            RouterError::CircuitOpen {
                backend: name.clone(),
                retry_after_ms: u64::try_from(retry_after.as_millis()).unwrap_or(u64::MAX),
            }
        })
    }

    /// Runs a fragment on backend `id`, recording its latency, failures and reachability.
    async fn run_on(&self, id: usize, fragment: Fragment<'_>) -> Result<ResultSet, RouterError> {
        let backend = self.backend_by_id(id)?;
        self.admit(id)?;
        let stats = &self.stats[id];
        let _in_flight = stats.start();
        let started = Instant::now();
        let span = tracing::debug_span!(
            "fragment",
            backend = backend.name(),
            kind = backend.kind().as_str()
        );
        let result = backend.execute(fragment).instrument(span).await;
        self.record_fragment(
            id,
            started.elapsed(),
            result.as_ref().map(|rs| rs.rows.len()),
        );
        Ok(result?)
    }

    /// Records one statement sent to backend `id`: health, latency, rows, failures.
    fn record_fragment(&self, id: usize, elapsed: Duration, result: Result<usize, &BackendError>) {
        let Some(((name, backend), stats)) = self.backends.get_index(id).zip(self.stats.get(id))
        else {
            return;
        };
        let unreachable = matches!(
            result,
            Err(BackendError::Unavailable { .. } | BackendError::Interrupted { .. })
        );
        if stats.record(elapsed, result.is_err(), !unreachable) {
            self.circuit_opened(name);
        }
        // Per-query timings for the slow-query log (outside a query, e.g. seeding: none).
        let _ = FRAGMENT_TIMES.try_with(|t| {
            t.borrow_mut().push((
                name.clone(),
                u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            ));
        });
        let kind = backend.kind().as_str();
        let outcome = metrics::outcome(&result);
        let m = &self.metrics;
        m.fragments.with_label_values(&[name, kind, outcome]).inc();
        m.fragment_duration
            .with_label_values(&[name, kind, outcome])
            .observe(elapsed.as_secs_f64());
        match result {
            Ok(rows) => {
                m.rows_fetched
                    .with_label_values(&[name, kind])
                    .inc_by(rows as u64);
            }
            Err(e) => m
                .backend_errors
                .with_label_values(&[name, metrics::backend_error_kind(e)])
                .inc(),
        }
    }

    /// Counts and logs a circuit that just opened.
    fn circuit_opened(&self, name: &str) {
        self.metrics.circuit_opened.with_label_values(&[name]).inc();
        tracing::warn!(backend = %name, "backend unreachable: circuit open");
    }

    /// Every backend with its recent status, pool and rows fetched (`GET /admin/backends`).
    pub fn backend_details(&self) -> Vec<BackendDetail> {
        self.backends
            .iter()
            .zip(&self.stats)
            .map(|((name, b), stats)| BackendDetail {
                backend: name.clone(),
                kind: b.kind().as_str(),
                status: stats.status(),
                circuit: stats.breaker.state(),
                pool: b.pool_state(),
                rows_fetched: self.fetched_from(name, b.kind().as_str()),
            })
            .collect()
    }

    /// The metric families of this router.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// `GET /metrics`: refreshes the read gauges (backend health, pools, loaded plugins,
    /// reload totals) and renders every family in the text exposition format.
    pub fn render_metrics(&self) -> String {
        let m = &self.metrics;
        for ((name, backend), stats) in self.backends.iter().zip(&self.stats) {
            m.backend_up
                .with_label_values(&[name, backend.kind().as_str()])
                .set(i64::from(stats.status().healthy));
            m.circuit_state
                .with_label_values(&[name])
                .set(match stats.breaker.state() {
                    CircuitState::Closed => 0,
                    CircuitState::Open => 1,
                    CircuitState::HalfOpen => 2,
                });
            if let Some(pool) = backend.pool_state() {
                m.pool_connections
                    .with_label_values(&[name, "idle"])
                    .set(i64::from(pool.idle));
                m.pool_connections
                    .with_label_values(&[name, "active"])
                    .set(i64::from(pool.size.saturating_sub(pool.idle)));
            }
        }
        m.plugin_info.reset();
        for p in self.plugin_listing() {
            if let Some(l) = &p.loaded {
                m.plugin_info
                    .with_label_values(&[&p.module, &l.name, &l.version, &l.contract])
                    .set(1);
            }
            metrics::catch_up(
                &m.plugin_reloads.with_label_values(&[&p.module, "loaded"]),
                p.reloads_ok,
            );
            metrics::catch_up(
                &m.plugin_reloads.with_label_values(&[&p.module, "failed"]),
                p.reloads_failed,
            );
        }
        m.render()
    }

    /// Drops the written rows from a cache placement: the keys when the statement pins them, the
    /// whole cache table otherwise. A failure is logged, not returned: the write itself happened.
    async fn invalidate(&self, query: &BoundQuery, cache: usize, keys: Option<Vec<Vec<Value>>>) {
        let table = query
            .statement
            .access_tables()
            .first()
            .map(|t| (*t).to_owned());
        if tokio::time::timeout(self.cache_timeout, self.invalidate_now(query, cache, keys))
            .await
            .is_err()
        {
            self.metrics
                .backend_errors
                .with_label_values(&[
                    self.backends
                        .get_index(cache)
                        .map_or("", |(name, _)| name.as_str()),
                    "cache_timeout",
                ])
                .inc();
            tracing::warn!(table = ?table, "cache invalidation timed out; the entry lives until its TTL");
        }
    }

    async fn invalidate_now(
        &self,
        query: &BoundQuery,
        cache: usize,
        keys: Option<Vec<Vec<Value>>>,
    ) {
        let Some(table_name) = query
            .statement
            .access_tables()
            .first()
            .map(|t| (*t).to_owned())
        else {
            return;
        };
        let Ok(backend) = self.backend_by_id(cache) else {
            return;
        };
        let Some(table) = self.catalog.table(&table_name) else {
            return;
        };
        if let (Some(vc), Some(keys)) = (backend.versioned_cache(), &keys) {
            match vc.invalidate(table, keys).await {
                Ok(()) => return,
                // Not a layout with versions: plain delete below.
                Err(BackendError::Unsupported { .. }) => {}
                Err(err) => {
                    tracing::warn!(backend = backend.name(), table = %table_name, error = %err, "cache invalidation failed");
                    return;
                }
            }
        }
        for statement in invalidation_statements(table, keys) {
            let q = BoundQuery {
                statement,
                params: Vec::new(),
            };
            if let Err(err) = backend
                .execute(Fragment {
                    query: &q,
                    catalog: &self.catalog,
                })
                .await
            {
                tracing::warn!(backend = backend.name(), table = %table_name, error = %err, "cache invalidation failed");
                return;
            }
        }
    }

    /// The primary keys of the rows an UPDATE/DELETE without pinned keys will touch (read from
    /// the primary before the write; `None` when they cannot be read).
    async fn keys_to_write(&self, query: &BoundQuery, target: usize) -> Option<Vec<Vec<Value>>> {
        let select = saga::rows_to_write(&self.catalog, query, |t| t.primary_key.clone())?;
        let rs = self
            .run_on(
                target,
                Fragment {
                    query: &select,
                    catalog: &self.catalog,
                },
            )
            .await
            .ok()?;
        Some(rs.rows)
    }

    /// Appends change events to the configured stream now (a saga's outbox, before its commit
    /// record). A failure is logged and counted, never returned: the write it describes has
    /// committed.
    async fn publish(&self, events: Vec<switchyard_backend::ChangeEvent>) {
        let Some((id, stream, max_len)) = &self.events else {
            return;
        };
        if events.is_empty() {
            return;
        }
        let Ok(backend) = self.backend_by_id(*id) else {
            return;
        };
        let n = events.len() as u64;
        match backend.publish_changes(stream, *max_len, &events).await {
            Ok(_) => self
                .metrics
                .events_published
                .with_label_values(&["ok"])
                .inc_by(n),
            Err(err) => {
                self.metrics
                    .events_published
                    .with_label_values(&["error"])
                    .inc_by(n);
                tracing::warn!(backend = backend.name(), error = %err, "change events not published");
            }
        }
    }

    /// Health of every backend, checked concurrently.
    pub async fn check(&self) -> Vec<BackendHealth> {
        join_all(
            self.backends
                .iter()
                .enumerate()
                .map(|(i, (name, b))| async move {
                    let started = Instant::now();
                    let result = b.health().await.map(|()| started.elapsed());
                    if let Some(stats) = self.stats.get(i)
                        && stats.set_healthy(result.is_ok())
                    {
                        self.circuit_opened(name);
                    }
                    BackendHealth {
                        backend: name.clone(),
                        kind: b.kind().as_str(),
                        result,
                    }
                }),
        )
        .await
    }

    /// Loads rows into `table` on its primary backend, creating the physical table if missing.
    /// Rows whose primary key exists are left alone, so seeding twice does not duplicate.
    /// `columns` names the columns of `rows`; returns the rows inserted.
    pub async fn seed_table(
        &self,
        table: &str,
        columns: &[&str],
        rows: Vec<Vec<Value>>,
        batch: usize,
        progress: &(dyn Fn(usize) + Sync),
    ) -> Result<u64, RouterError> {
        let t = self
            .catalog
            .table(table)
            .ok_or_else(|| RouterError::UnknownTable {
                table: table.to_owned(),
            })?;
        let primary = t.primary().ok_or_else(|| {
            RouterError::Plan(CoreError::NoRoute {
                reason: format!("table `{table}` has no primary placement"),
            })
        })?;
        let backend = self.backend(&primary.backend)?;
        backend.ensure_table(t).await?;
        let mut indices = Vec::new();
        for c in columns {
            indices.push(t.column_index(c).ok_or_else(|| {
                RouterError::Plan(CoreError::UnknownColumn {
                    name: (*c).to_owned(),
                    candidates: t.columns.iter().map(|c| c.name.clone()).collect(),
                    position: None,
                })
            })?);
        }
        let mut inserted = 0;
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            let chunk: Vec<Vec<Expr>> = rows
                .by_ref()
                .take(batch.max(1))
                .map(|row| {
                    row.into_iter()
                        .zip(&indices)
                        .map(|(v, &i)| Expr {
                            kind: ExprKind::Literal(v),
                            ty: t.columns[i].ty,
                        })
                        .collect()
                })
                .collect();
            let n = chunk.len();
            let query = BoundQuery {
                statement: Statement::Insert(Insert {
                    table: table.to_owned(),
                    columns: indices.clone(),
                    rows: chunk,
                    on_conflict: Some(OnConflict::DoNothing),
                }),
                params: Vec::new(),
            };
            let rs = backend
                .execute(Fragment {
                    query: &query,
                    catalog: &self.catalog,
                })
                .await?;
            inserted += rs.rows_affected.unwrap_or(0);
            progress(n);
        }
        Ok(inserted)
    }
}

/// Keys per invalidation statement: bounds the statement a keyless write over many rows sends
/// to a SQL cache (and the expression depth of its filter).
const INVALIDATION_BATCH: usize = 1_000;

/// `DELETE FROM table WHERE pk IN (keys)` (composite keys: `pk1 = a AND pk2 = b OR ...` as a
/// balanced tree) in batches of [`INVALIDATION_BATCH`] keys, or the whole table when the keys
/// are unknown.
fn invalidation_statements(
    table: &switchyard_core::Table,
    keys: Option<Vec<Vec<Value>>>,
) -> Vec<Statement> {
    use switchyard_core::LogicalType;
    use switchyard_core::ir::{BinaryOp, Delete};
    let column = |i: usize| Expr {
        kind: ExprKind::Column {
            table: 0,
            column: i,
        },
        ty: table.columns[i].ty,
    };
    let literal = |v: Value, i: usize| Expr {
        kind: ExprKind::Literal(v),
        ty: table.columns[i].ty,
    };
    let delete = |filter| {
        Statement::Delete(Delete {
            table: table.name.clone(),
            filter,
        })
    };
    let Some(keys) = keys.filter(|k| !k.is_empty()) else {
        return vec![delete(None)];
    };
    keys.chunks(INVALIDATION_BATCH)
        .map(|batch| {
            let filter = match table.primary_key.as_slice() {
                [c] => Expr {
                    kind: ExprKind::InList {
                        expr: Box::new(column(*c)),
                        list: batch
                            .iter()
                            .filter_map(|tuple| tuple.first().cloned())
                            .map(|v| literal(v, *c))
                            .collect(),
                        negated: false,
                    },
                    ty: LogicalType::Bool,
                },
                key => Expr::balanced(
                    BinaryOp::Or,
                    batch
                        .iter()
                        .map(|tuple| {
                            Expr::balanced(
                                BinaryOp::And,
                                tuple
                                    .iter()
                                    .zip(key)
                                    .map(|(v, &c)| Expr {
                                        kind: ExprKind::Binary {
                                            op: BinaryOp::Eq,
                                            left: Box::new(column(c)),
                                            right: Box::new(literal(v.clone(), c)),
                                        },
                                        ty: LogicalType::Bool,
                                    })
                                    .collect(),
                            )
                        })
                        .collect(),
                ),
            };
            delete(Some(filter))
        })
        .collect()
}
