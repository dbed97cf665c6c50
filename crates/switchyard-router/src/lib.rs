//! The query engine: a validated configuration becomes a catalog and a set of backends; a SQL
//! request becomes a plan, fragments run on backends, and a result set comes back.
//!
//! Invariant: every failure leaves here as a [`RouterError`] with a stable [`ErrorCode`]; nothing
//! on a request path panics. API boundary: [`Router::query`], [`Router::explain`],
//! [`Router::check`], [`Router::seed_table`]; the HTTP server and the CLI call only these.

mod admin;
mod breaker;
mod engine;
mod error;
mod events;
mod exec;
mod explain;
pub mod failpoint;
#[cfg(test)]
pub(crate) mod fake;
mod fragment;
#[cfg(test)]
mod fuzz;
pub mod metrics;
mod query;
mod saga;
mod setup;
mod stats;
mod writes;

pub use saga::{
    SagaState, SagaSummary, TxCompensation, TxFailure, TxOutcome, TxRequest, TxStatement,
};

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use indexmap::IndexMap;
use switchyard_backend::{Backend, BackendError};
use switchyard_config::Config;
use switchyard_core::{Catalog, ErrorCode, ResultColumn, Value};
use switchyard_plugin_host::PluginSet;

pub use breaker::CircuitState;
pub use error::RouterError;
pub use explain::{EngineExplain, Explain, ExplainedFragment, ScanExplain};
use metrics::Metrics;
use stats::BackendStats;

/// The request context (`"context"` of `/v1/query`), handed to placement plugins.
pub type Context = HashMap<String, String>;

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
