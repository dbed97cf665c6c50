//! Building a router: backends from the configuration, the placement plugins, the background
//! tasks (plugin watcher, saga recovery), and the accessors of what was built.

use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use switchyard_backend::Backend;
use switchyard_backend_mongo::MongoBackend;
use switchyard_backend_redis::RedisBackend;
use switchyard_backend_sql::SqlBackend;
use switchyard_config::Config;
use switchyard_core::{BackendKind, Catalog, CoreError};
use switchyard_plugin_host::{
    HostLimits, PluginEngine, PluginListing, PluginSet, PluginSpec, ReloadOutcome,
};

use crate::metrics::Metrics;
use crate::stats::BackendStats;
use crate::{Router, RouterError, events, saga};

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

    pub(crate) fn backend(&self, name: &str) -> Result<&Arc<dyn Backend>, RouterError> {
        self.backends.get(name).ok_or_else(|| {
            RouterError::Plan(CoreError::NoRoute {
                reason: format!("backend `{name}` is not configured"),
            })
        })
    }

    /// Live status of every backend, by backend index.
    pub fn backend_status(&self) -> Vec<switchyard_core::routing::BackendStatus> {
        self.stats.iter().map(|s| s.status()).collect()
    }
}
