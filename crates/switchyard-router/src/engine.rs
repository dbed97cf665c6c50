//! SELECTs the fast path refuses as `UNSUPPORTED` run on the router-side engine
//! (`switchyard-engine`, DataFusion): it plans the statement and names single-table scans; each
//! scan runs here through the same routing as any statement (placement plugin, caches,
//! replicas, shards, circuit breakers), concurrently, within the `[execution]` budget and the
//! query timeout; the engine computes the rest from the rows.

use std::time::Instant;

use std::collections::HashMap;

use futures::StreamExt;
use futures::future::try_join_all;
use futures::stream::BoxStream;
use switchyard_backend::NativeStatement;
use switchyard_core::exec::Budget;
use switchyard_core::{CoreError, LogicalType, ResultColumn, Value};
use switchyard_engine::{Engine, EngineError, EngineLimits, PhysicalTable, Planned, Scan};

use switchyard_core::routing::{Input, Route};

use crate::{
    Answer, Context, EngineExplain, Explain, ExplainedFragment, Planner, QueryTrace, Router,
    RouterError, ScanExplain,
};

/// Text cells of a pushed-down statement as values of the answer's types.
fn typed(rows: Vec<Vec<Value>>, types: &[LogicalType]) -> Result<Vec<Vec<Value>>, RouterError> {
    rows.into_iter()
        .map(|row| {
            row.into_iter()
                .zip(types)
                .map(|(v, ty)| from_text(v, *ty))
                .collect()
        })
        .collect()
}

fn from_text(v: Value, ty: LogicalType) -> Result<Value, RouterError> {
    let bad = |s: &str| {
        RouterError::Engine(EngineError::Data(format!(
            "the store answered `{s}` for a {} column",
            ty.name()
        )))
    };
    match (v, ty) {
        (Value::Text(s), LogicalType::Int) => match s.parse::<i64>() {
            Ok(i) => Ok(Value::Int(i)),
            // An integral numeric (`EXTRACT` answers numeric in PostgreSQL).
            Err(_) => match s.parse::<f64>() {
                Ok(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Value::Int(f as i64)),
                _ => Err(bad(&s)),
            },
        },
        (Value::Text(s), LogicalType::Float) => match s.as_str() {
            "Infinity" => Ok(Value::Float(f64::INFINITY)),
            "-Infinity" => Ok(Value::Float(f64::NEG_INFINITY)),
            other => other.parse::<f64>().map(Value::Float).map_err(|_| bad(&s)),
        },
        (Value::Text(s), LogicalType::Bool) if s == "true" || s == "false" => {
            Ok(Value::Bool(s == "true"))
        }
        (v, ty) => v
            .coerce(ty)
            .map_err(|m| RouterError::Engine(EngineError::Data(m))),
    }
}

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
                Err(EngineError::NotAQuery(_)) => return Err(refused.into()),
                Err(e) => return Err(RouterError::Engine(e)),
            };
            trace.kind = "select";
            trace.planner = "engine".to_owned();
            let (columns, mut rows) = match self.whole_statement(&planned, context).await? {
                Some((id, sql)) => {
                    trace.route = format!(
                        "{}[whole statement]",
                        self.backends.get_index(id).map_or("?", |(n, _)| n.as_str())
                    );
                    self.stream_whole(id, sql, &planned).await?
                }
                None => {
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
                    let rows: BoxStream<'static, Result<Vec<Vec<Value>>, RouterError>> =
                        answer.rows.map(|b| b.map_err(RouterError::Engine)).boxed();
                    (answer.columns, rows)
                }
            };
            // The first batch is computed before the answer starts, so a failure (a cast, a
            // division by zero) still gets its status.
            let first = match rows.next().await {
                Some(batch) => batch?,
                None => Vec::new(),
            };
            Ok::<_, RouterError>((columns, first, rows))
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
                Ok(Some(batch)) => Some((batch, Some(rows))),
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

    /// `explain` of a statement the engine runs: its plan, and each scan's route and native
    /// statements.
    pub(crate) async fn engine_explain(
        &self,
        sql: &str,
        params: &[serde_json::Value],
        context: &Context,
        refused: CoreError,
    ) -> Result<Explain, RouterError> {
        let planned = match self.engine()?.plan(sql, params).await {
            Ok(p) => p,
            Err(EngineError::NotAQuery(_)) => return Err(refused.into()),
            Err(e) => return Err(RouterError::Engine(e)),
        };
        let mut scans = Vec::with_capacity(planned.scans().len());
        for scan in planned.scans() {
            let explain = self
                .explain_routed(&scan.sql, &scan.params, context)
                .await?;
            scans.push(ScanExplain {
                table: scan.table.clone(),
                sql: scan.sql.clone(),
                params: scan.params.clone(),
                explain,
            });
        }
        let planner = scans
            .first()
            .map_or(Planner::Default, |s| s.explain.planner.clone());
        let fragments = match self.whole_statement(&planned, context).await? {
            // The store runs it all: one statement, the scans' routes only chose the store.
            Some((id, pushed)) => {
                let backend = self.backend_by_id(id)?;
                vec![ExplainedFragment {
                    fragment: 0,
                    note: Some("whole statement (every table it reads is on this store)".into()),
                    backend: backend.name().to_owned(),
                    backend_kind: backend.kind().as_str(),
                    native: NativeStatement {
                        language: "sql",
                        text: pushed,
                        params: planned.params().to_vec(),
                    },
                }]
            }
            None => scans
                .iter()
                .enumerate()
                .flat_map(|(i, s)| {
                    s.explain.fragments.iter().map(move |f| ExplainedFragment {
                        fragment: i,
                        note: Some(match &f.note {
                            Some(n) => format!("engine scan of `{}`; {n}", s.table),
                            None => format!("engine scan of `{}`", s.table),
                        }),
                        ..f.clone()
                    })
                })
                .collect(),
        };
        Ok(Explain {
            route: Route {
                fragments: Vec::new(),
                nodes: Vec::new(),
                root: Input::Fragment(0),
                write: None,
            },
            planner,
            fragments,
            logical: planned.display(),
            engine: Some(EngineExplain {
                plan: planned.display(),
                scans,
            }),
        })
    }

    /// When the route of every scan is one and the same store that runs PostgreSQL's SQL, that
    /// store runs the whole statement: the backend and the statement over its physical tables.
    /// The placement plugin decides as for any read (it routes each scan).
    async fn whole_statement(
        &self,
        planned: &Planned,
        context: &Context,
    ) -> Result<Option<(usize, String)>, RouterError> {
        let mut backend = None;
        for scan in planned.scans() {
            let (plan, _, _) = self.routed(&scan.sql, &scan.params, context).await?;
            let Some(id) = plan.route.as_single() else {
                return Ok(None);
            };
            if plan.route.write.is_some() || backend.is_some_and(|b| b != id) {
                return Ok(None);
            }
            backend = Some(id);
        }
        let Some(id) = backend else {
            return Ok(None);
        };
        let Some((name, store)) = self.backends.get_index(id) else {
            return Ok(None);
        };
        if !store.capabilities().postgres_sql {
            return Ok(None);
        }
        let mut tables = HashMap::new();
        for scan in planned.scans() {
            let Some(table) = self.catalog.tables.get(&scan.table) else {
                return Ok(None);
            };
            let Some(placement) = table.placement_on(name) else {
                return Ok(None);
            };
            tables.insert(
                scan.table.clone(),
                PhysicalTable {
                    name: placement.physical_name.clone(),
                    columns: placement
                        .physical_columns
                        .iter()
                        .cloned()
                        .zip(table.columns.iter().map(|c| c.name.clone()))
                        .collect(),
                },
            );
        }
        Ok(planned.postgres_statement(&tables).map(|sql| (id, sql)))
    }

    /// Runs a whole statement on one store; its text cells become the answer's types.
    async fn stream_whole(
        &self,
        id: usize,
        sql: String,
        planned: &Planned,
    ) -> Result<
        (
            Vec<ResultColumn>,
            BoxStream<'static, Result<Vec<Vec<Value>>, RouterError>>,
        ),
        RouterError,
    > {
        let backend = self.backend_by_id(id)?.clone();
        self.admit(id)?;
        let columns = planned.columns().to_vec();
        let types: Vec<LogicalType> = columns.iter().map(|c| c.ty).collect();
        let started = Instant::now();
        let in_flight = self.stats[id].start();
        let streamed = backend
            .stream_sql(sql, planned.params().to_vec(), columns.len())
            .await;
        self.record_fragment(
            id,
            started.elapsed(),
            streamed.as_ref().map(|s| s.first.len()),
        );
        let stream = streamed?;
        let first = typed(stream.first, &types);
        let rest = stream.rest.map(|rx| {
            futures::stream::unfold((rx, in_flight), |(mut rx, in_flight)| async move {
                rx.recv().await.map(|batch| (batch, (rx, in_flight)))
            })
            .map(move |batch| {
                batch
                    .map_err(RouterError::from)
                    .and_then(|rows| typed(rows, &types))
            })
        });
        let rows = futures::stream::once(async move { first })
            .chain(futures::stream::iter(rest).flatten())
            .boxed();
        Ok((columns, rows))
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

#[cfg(test)]
mod tests {
    use super::*;
    use indexmap::IndexMap;
    use switchyard_core::ErrorCode;

    /// The shop catalog with no backend: statements that read no table still run.
    fn router(query_timeout_ms: u64) -> Router {
        let text = include_str!("../../../router.toml");
        let mut config = switchyard_config::parse_str(text, "router.toml", &|_| None)
            .expect("router.toml is valid");
        config.server.query_timeout_ms = query_timeout_ms;
        Router::with_backends(config, IndexMap::new())
    }

    async fn code(router: &Router, sql: &str) -> Result<Vec<Vec<Value>>, ErrorCode> {
        router
            .query(sql, &[], &Context::new())
            .await
            .map(|r| r.rows)
            .map_err(|e| e.code())
    }

    #[tokio::test]
    async fn engine_failures_have_their_codes() {
        let r = router(30_000);
        assert_eq!(
            code(&r, "SELECT 'abc'::int").await,
            Err(ErrorCode::DataError)
        );
        assert_eq!(
            code(&r, "SELECT (SELECT * FROM (VALUES (1), (2)) v(x)) AS y").await,
            Err(ErrorCode::DataError)
        );
        assert_eq!(
            code(
                &r,
                "SELECT x / (row_number() OVER (ORDER BY x) - 1) FROM (VALUES (1), (2)) v(x)"
            )
            .await,
            Err(ErrorCode::DataError)
        );
        assert_eq!(
            code(&r, "SELECT 1 + 1 AS two").await,
            Ok(vec![vec![Value::Int(2)]])
        );
        // Writes stay the fast path's, with its refusal.
        assert_eq!(
            code(&r, "INSERT INTO customers (customer_id) SELECT 'x'").await,
            Err(ErrorCode::Unsupported)
        );
    }

    #[tokio::test]
    async fn a_recursive_query_that_never_ends_stops_at_the_query_timeout() {
        let r = router(300);
        let started = Instant::now();
        assert_eq!(
            code(
                &r,
                "WITH RECURSIVE t(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM t) SELECT COUNT(*) FROM t"
            )
            .await,
            Err(ErrorCode::Timeout)
        );
        assert!(started.elapsed().as_secs() < 10, "{:?}", started.elapsed());
    }
}
