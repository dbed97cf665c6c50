//! Operating a router: backend health and details, the metrics exposition, and seeding.

use std::time::Instant;

use futures::future::join_all;
use switchyard_backend::Fragment;
use switchyard_core::ir::{Expr, ExprKind, Insert, OnConflict, Statement};
use switchyard_core::{BoundQuery, CoreError, Value};

use crate::metrics::{self, Metrics};
use crate::{BackendDetail, BackendHealth, CircuitState, Router, RouterError};

impl Router {
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
