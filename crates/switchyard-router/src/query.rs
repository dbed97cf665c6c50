//! A statement's way through the router: planning and routing (with the placement plugin),
//! the streamed single-store SELECT, the routed run under the query timeout, and the latency
//! metrics and slow-query log around it.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use futures::stream::StreamExt;
use switchyard_backend::{BackendError, Fragment};
use switchyard_config::OnPluginError;
use switchyard_core::ir::Statement;
use switchyard_core::{ErrorCode, Plan, ResultSet, Route, RouteRequest};
use tracing::Instrument;

use crate::{Answer, Context, FRAGMENT_TIMES, Planner, QueryTrace, Router, RouterError, metrics};

impl Router {
    /// Plans `sql` without executing it, with the default planner only.
    pub fn plan(&self, sql: &str, params: &[serde_json::Value]) -> Result<Plan, RouterError> {
        Ok(switchyard_core::plan(sql, params, &self.catalog)?)
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
    pub(crate) async fn routed(
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

    pub(crate) async fn stream_inner(
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
}
