//! Running fragments: a routed statement on its backends (writes with their cache
//! invalidation and change events; multi-fragment SELECTs through `exec`), and every statement
//! sent to a backend behind its circuit breaker, counted in the backend's stats and metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchyard_backend::{Backend, BackendError, Fragment};
use switchyard_core::ir::Statement;
use switchyard_core::{BoundQuery, CoreError, ResultSet, Route, RouteRequest};
use tracing::Instrument;

use crate::{FRAGMENT_TIMES, Router, RouterError, exec, metrics, saga};

impl Router {
    pub(crate) fn timeout_ms(&self) -> u64 {
        u64::try_from(self.query_timeout.as_millis()).unwrap_or(u64::MAX)
    }

    pub(crate) fn backend_by_id(&self, id: usize) -> Result<&Arc<dyn Backend>, RouterError> {
        self.backends.get_index(id).map(|(_, b)| b).ok_or_else(|| {
            RouterError::Plan(CoreError::NoRoute {
                reason: format!("backend {id} is not configured"),
            })
        })
    }

    /// Runs a routed statement: reads on their single backend, writes on every target, then
    /// cache invalidation.
    pub(crate) async fn execute(
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
    pub(crate) fn budget(&self) -> switchyard_core::exec::Budget {
        switchyard_core::exec::Budget::new(
            self.config.execution.max_query_rows,
            self.config.execution.max_query_bytes,
        )
    }

    /// Whether a statement may go to backend `id` now (its circuit breaker).
    pub(crate) fn admit(&self, id: usize) -> Result<(), RouterError> {
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
    pub(crate) async fn run_on(
        &self,
        id: usize,
        fragment: Fragment<'_>,
    ) -> Result<ResultSet, RouterError> {
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
    pub(crate) fn record_fragment(
        &self,
        id: usize,
        elapsed: Duration,
        result: Result<usize, &BackendError>,
    ) {
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
    pub(crate) fn circuit_opened(&self, name: &str) {
        self.metrics.circuit_opened.with_label_values(&[name]).inc();
        tracing::warn!(backend = %name, "backend unreachable: circuit open");
    }
}
