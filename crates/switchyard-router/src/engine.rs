//! SELECTs the fast path refuses as `UNSUPPORTED` run on the router-side engine
//! (`switchyard-engine`, DataFusion): it plans the statement and names single-table scans; each
//! scan runs here through the same routing as any statement (placement plugin, caches,
//! replicas, shards, circuit breakers), concurrently, within the `[execution]` budget and the
//! query timeout; the engine computes the rest from the rows.

use std::time::Instant;

use futures::StreamExt;
use futures::future::try_join_all;
use switchyard_core::exec::Budget;
use switchyard_core::{CoreError, ErrorCode, Value};
use switchyard_engine::{Engine, EngineError, EngineLimits, Scan};

use crate::{Answer, Context, QueryTrace, Router, RouterError};

/// Rows per batch inside the engine.
const ENGINE_BATCH_ROWS: usize = 4096;

impl Router {
    /// The engine, created on first use (most deployments' traffic never needs it).
    fn engine(&self) -> Result<&Engine, RouterError> {
        if let Some(engine) = self.engine.get() {
            return Ok(engine);
        }
        let engine = Engine::new(
            std::sync::Arc::new(self.catalog.clone()),
            EngineLimits {
                memory_bytes: usize::try_from(self.config.execution.max_query_bytes)
                    .unwrap_or(usize::MAX),
                batch_size: ENGINE_BATCH_ROWS,
            },
        )?;
        // Another request may have won the race; either engine is the same.
        let _ = self.engine.set(engine);
        self.engine
            .get()
            .ok_or_else(|| RouterError::Engine(EngineError::Internal("engine not set".into())))
    }

    /// Runs `sql` on the engine; `refused` is the fast path's refusal, answered when the
    /// engine does not run the statement either (it names the construct and its position).
    pub(crate) async fn engine_query(
        &self,
        sql: &str,
        params: &[serde_json::Value],
        context: &Context,
        trace: &mut QueryTrace,
        refused: CoreError,
    ) -> Result<Answer, RouterError> {
        let deadline = tokio::time::Instant::now() + self.query_timeout;
        let work = async {
            let planned = match self.engine()?.plan(sql, params).await {
                Ok(p) => p,
                Err(e) if e.code() == ErrorCode::Unsupported => return Err(refused.into()),
                Err(e) => return Err(RouterError::Engine(e)),
            };
            trace.kind = "select";
            trace.planner = "engine".to_owned();
            trace.route = planned
                .scans()
                .iter()
                .map(|s| format!("scan[{}]", s.table))
                .collect::<Vec<_>>()
                .join(" ");
            let budget = Budget::new(
                self.config.execution.max_query_rows,
                self.config.execution.max_query_bytes,
            );
            let fetched = try_join_all(
                planned
                    .scans()
                    .iter()
                    .map(|s| self.fetch_scan(s, context, &budget)),
            )
            .await?;
            let answer = planned.execute(fetched).await?;
            let mut rows = answer.rows;
            // The first batch is computed before the answer starts, so a failure (a cast, a
            // division by zero) still gets its status.
            let first = match rows.next().await {
                Some(batch) => batch?,
                None => Vec::new(),
            };
            Ok::<_, RouterError>((answer.columns, first, rows))
        };
        let (columns, first, rows) =
            tokio::time::timeout_at(deadline, work)
                .await
                .map_err(|_| RouterError::Timeout {
                    after_ms: self.timeout_ms(),
                })??;
        let after_ms = self.timeout_ms();
        let rest = futures::stream::unfold(Some(rows), move |rows| async move {
            let mut rows = rows?;
            match tokio::time::timeout_at(deadline, rows.next()).await {
                Ok(Some(batch)) => Some((batch.map_err(RouterError::Engine), Some(rows))),
                Ok(None) => None,
                Err(_) => Some((Err(RouterError::Timeout { after_ms }), None)),
            }
        })
        .boxed();
        Ok(Answer {
            columns,
            rows_affected: None,
            first,
            rest: Some(rest),
        })
    }

    /// One scan, through the fast path (never back into the engine), every row counted
    /// against the statement's budget.
    async fn fetch_scan(
        &self,
        scan: &Scan,
        context: &Context,
        budget: &Budget,
    ) -> Result<Vec<Vec<Value>>, RouterError> {
        let started = Instant::now();
        let mut trace = QueryTrace::default();
        let answer = self
            .stream_inner(&scan.sql, &scan.params, context, &mut trace)
            .await?;
        budget.charge(&answer.first)?;
        let mut rows = answer.first;
        if let Some(mut rest) = answer.rest {
            while let Some(batch) = rest.next().await {
                let batch = batch?;
                budget.charge(&batch)?;
                rows.extend(batch);
            }
        }
        tracing::debug!(
            table = %scan.table,
            rows = rows.len(),
            elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            "engine scan fetched"
        );
        Ok(rows)
    }
}
