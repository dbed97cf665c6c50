//! Multi-statement, multi-store transactions (`POST /v1/transaction`) as durable sagas.
//!
//! Statements are grouped into *steps*: consecutive statements on the same store that has local
//! transactions run in one local ACID transaction; any other statement is a step of its own.
//! Before the first step the saga's intent (statements, steps) is written to the saga log, a
//! table on a SQL backend (`[transactions]`). Each step records its *compensation* (the
//! statements that undo it: DELETE by key for an INSERT, the before-image for UPDATE and DELETE,
//! the opposite increment for `x = x ± n`, or the statement's explicit compensation) and its
//! completion. A step on the log's own store commits its log record in the same local
//! transaction, so its outcome is never in doubt. On failure the completed steps are compensated
//! in reverse order. A router that dies mid-saga leaves the row `running`; when its lease
//! expires, any router's recovery compensates it (or records it committed when every step was
//! done). Change events are recorded with each step's `done` record and published once every
//! step is done, before the commit record (recovery publishes them again: at least once).

use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use switchyard_backend::{BackendError, ChangeEvent, Fragment, LocalTransaction};
use switchyard_core::ir::{BinaryOp, ExprKind, OutputColumn, Select, TableRef};
use switchyard_core::{
    BackendInfo, BoundQuery, Catalog, Column, CoreError, ErrorCode, LogicalType, Placement, Plan,
    ResultSet, Role, RouteRequest, Statement, Table, Value,
};

use crate::{Context, Router, RouterError, failpoint};

mod compensation;
mod log;
mod outbox;
mod recovery;
mod types;

pub(crate) use compensation::rows_to_write;
use compensation::{before_image, check_compensable, compensation_for, written_keys};
pub(crate) use log::SagaLog;
use log::{LOG, SUMMARY_COLUMNS, now_ms, now_text, random_id};
pub(crate) use outbox::change_events;
use types::{CompStmt, Prepared, Step, StepEvent, StepState, aborted, no_target, refused};
pub use types::{
    SagaState, SagaSummary, TxCompensation, TxFailure, TxOutcome, TxRequest, TxStatement,
};

/// The longest idempotency key accepted (it is stored in the saga log).
const MAX_IDEMPOTENCY_KEY_BYTES: usize = 255;

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Router {
    /// Plans and routes one statement of a transaction (or a compensation).
    async fn prepare(
        &self,
        sql: &str,
        params: &[serde_json::Value],
        context: &Context,
    ) -> Result<Prepared, RouterError> {
        let (plan, _, request) = self.routed(sql, params, context).await?;
        let target = match (&plan.route.write, plan.route.as_single()) {
            (Some(w), _) => w.targets.first().copied(),
            (None, single) => single,
        };
        let single_target = plan
            .route
            .write
            .as_ref()
            .is_none_or(|w| w.targets.len() == 1);
        let transactional = single_target
            && target
                .and_then(|t| self.backends.get_index(t))
                .is_some_and(|(_, b)| b.capabilities().transactions);
        Ok(Prepared {
            plan,
            request,
            target,
            transactional,
        })
    }

    /// `POST /v1/transaction`.
    pub async fn transaction(&self, req: &TxRequest) -> Result<TxOutcome, RouterError> {
        if req.statements.is_empty() {
            return Err(RouterError::Transaction(Box::new(TxFailure {
                code: ErrorCode::BadRequest,
                message: "a transaction needs at least one statement".to_owned(),
                saga_id: None,
                statement: None,
                cause: None,
            })));
        }
        if let Some(key) = &req.idempotency_key
            && (key.is_empty() || key.len() > MAX_IDEMPOTENCY_KEY_BYTES || key.contains('\0'))
        {
            return Err(RouterError::Transaction(Box::new(TxFailure {
                code: ErrorCode::BadRequest,
                message: format!(
                    "an idempotency key is 1 to {MAX_IDEMPOTENCY_KEY_BYTES} bytes of text without NUL characters"
                ),
                saga_id: None,
                statement: None,
                cause: None,
            })));
        }
        let log = self.saga_ready().await?;
        let mut prepared = Vec::with_capacity(req.statements.len());
        for (i, st) in req.statements.iter().enumerate() {
            let p = self
                .prepare(&st.sql, &st.params, &req.context)
                .await
                .map_err(|e| refused(i, e.code(), e.client_message()))?;
            check_compensable(i, st, &p, &self.catalog)?;
            if p.target.is_none() {
                return Err(refused(
                    i,
                    ErrorCode::Unsupported,
                    "a statement that spans several stores cannot run in a transaction; \
                     read across stores with /v1/query"
                        .to_owned(),
                ));
            }
            prepared.push(p);
        }
        let steps = self.group_steps(&prepared);
        let mut canonical_context: Vec<(&String, &String)> = req.context.iter().collect();
        canonical_context.sort();
        let request_hash = sha256_hex(
            &json!({ "statements": req.statements, "context": canonical_context }).to_string(),
        );
        let saga_id = match &req.idempotency_key {
            Some(key) => format!("idem-{}", &sha256_hex(key)[..32]),
            None => format!("saga-{}", random_id()),
        };
        let intent = log.query(
            &format!(
                "INSERT INTO {LOG} (saga_id, idempotency_key, request_hash, state, request, steps, \
                 outcome, created_at, updated_at, lease_until, owner) \
                 VALUES ($1, $2, $3, 'running', $4, $5, NULL, $6, $6, $7, $8) ON CONFLICT DO NOTHING"
            ),
            &[
                json!(saga_id),
                json!(req.idempotency_key),
                json!(request_hash),
                serde_json::to_value(req).unwrap_or_default(),
                serde_json::to_value(&steps).unwrap_or_default(),
                json!(now_text()),
                json!(log.lease_until()),
                json!(log.owner),
            ],
        )?;
        let inserted = self.log_run(log, &intent).await?;
        if inserted.rows_affected == Some(0) {
            return self.replay(log, &saga_id, &request_hash).await;
        }
        self.metrics.sagas.with_label_values(&["started"]).inc();
        let started = Instant::now();
        let outcome = self.run_saga(log, &saga_id, req, &prepared, steps).await;
        let label = match &outcome {
            Ok(_) => "committed",
            Err(RouterError::Transaction(f)) if f.code == ErrorCode::TransactionAborted => {
                "aborted"
            }
            Err(_) => "in_doubt",
        };
        self.metrics.sagas.with_label_values(&[label]).inc();
        self.metrics
            .saga_duration
            .with_label_values(&[label])
            .observe(started.elapsed().as_secs_f64());
        outcome
    }

    /// Consecutive statements on the same transactional store form one step.
    fn group_steps(&self, prepared: &[Prepared]) -> Vec<Step> {
        let mut steps: Vec<Step> = Vec::new();
        for (i, p) in prepared.iter().enumerate() {
            let backend = p
                .target
                .and_then(|t| self.backends.get_index(t))
                .map(|(n, _)| n.clone())
                .unwrap_or_default();
            if let Some(last) = steps.last_mut()
                && p.transactional
                && last.atomic
                && last.backend == backend
            {
                last.statements.push(i);
                continue;
            }
            steps.push(Step {
                backend,
                statements: vec![i],
                atomic: p.transactional,
                state: StepState::Pending,
                compensation: Vec::new(),
                events: Vec::new(),
            });
        }
        steps
    }

    /// The stored outcome of the saga an idempotency key names.
    async fn replay(
        &self,
        log: &SagaLog,
        saga_id: &str,
        request_hash: &str,
    ) -> Result<TxOutcome, RouterError> {
        let q = log.query(
            &format!("SELECT state, request_hash, outcome FROM {LOG} WHERE saga_id = $1"),
            &[json!(saga_id)],
        )?;
        let rs = self.log_run(log, &q).await?;
        let conflict = |message: String| {
            RouterError::Transaction(Box::new(TxFailure {
                code: ErrorCode::IdempotencyConflict,
                message,
                saga_id: Some(saga_id.to_owned()),
                statement: None,
                cause: None,
            }))
        };
        let Some(row) = rs.rows.first() else {
            return Err(conflict(
                "the saga of this idempotency key vanished from the log".to_owned(),
            ));
        };
        let text = |v: &Value| match v {
            Value::Text(s) => s.clone(),
            _ => String::new(),
        };
        if text(&row[1]) != request_hash {
            return Err(conflict(
                "this idempotency key was used with a different request".to_owned(),
            ));
        }
        self.metrics.sagas.with_label_values(&["replayed"]).inc();
        let state = text(&row[0]);
        let outcome = match &row[2] {
            Value::Json(j) => j.clone(),
            _ => serde_json::Value::Null,
        };
        match state.as_str() {
            "committed" => Ok(TxOutcome {
                saga_id: saga_id.to_owned(),
                results: outcome
                    .get("results")
                    .and_then(|r| r.as_array())
                    .cloned()
                    .unwrap_or_default(),
                replayed: true,
            }),
            "aborted" | "in_doubt" => Err(TxFailure::from_json(&outcome).map_or_else(
                || {
                    aborted(
                        "the transaction was rolled back".to_owned(),
                        Some(saga_id.to_owned()),
                    )
                },
                |f| RouterError::Transaction(Box::new(f)),
            )),
            other => Err(conflict(format!(
                "the first request with this idempotency key is still {other}; retry later"
            ))),
        }
    }

    async fn run_saga(
        &self,
        log: &SagaLog,
        saga_id: &str,
        req: &TxRequest,
        prepared: &[Prepared],
        mut steps: Vec<Step>,
    ) -> Result<TxOutcome, RouterError> {
        let mut results: Vec<Option<ResultSet>> = vec![None; prepared.len()];
        let mut failure = None;
        for k in 0..steps.len() {
            failpoint::hit(&format!("saga.before_step.{k}")).await;
            let step_started = Instant::now();
            let run = if steps[k].atomic {
                self.run_atomic_step(log, saga_id, req, prepared, &mut steps, k, &mut results)
                    .await
            } else {
                self.run_single_step(log, saga_id, req, prepared, &mut steps, k, &mut results)
                    .await
            };
            self.metrics
                .saga_step_duration
                .with_label_values(&[
                    steps[k].backend.as_str(),
                    if run.is_ok() { "ok" } else { "error" },
                ])
                .observe(step_started.elapsed().as_secs_f64());
            if let Err(e) = run {
                failure = Some(e);
                break;
            }
        }
        if failure.is_none() {
            failpoint::hit(&format!("saga.before_step.{}", steps.len())).await;
        }
        let Some((statement, cause)) = failure else {
            let results: Vec<serde_json::Value> = results
                .iter()
                .map(|r| {
                    r.as_ref()
                        .map_or(serde_json::Value::Null, ResultSet::to_json)
                })
                .collect();
            let outcome = json!({ "results": results });
            // Every step is done, so the saga commits whatever happens next: its events go out
            // before the commit record (a crash in between: recovery publishes them again, at
            // least once) and never after it (a crash there would lose them).
            self.publish_step_events(saga_id, &steps).await;
            failpoint::hit("saga.before_commit").await;
            if let Err(e) = self
                .log_finish(log, saga_id, SagaState::Committed, &steps, &outcome)
                .await
            {
                // Every step is durable; recovery will record the commit.
                tracing::warn!(saga = saga_id, error = %e, "commit record not written; recovery will write it");
            }
            return Ok(TxOutcome {
                saga_id: saga_id.to_owned(),
                results,
                replayed: false,
            });
        };
        let cause_pair = (cause.code().as_str().to_owned(), cause.client_message());
        tracing::info!(saga = saga_id, statement, code = %cause.code(), "saga step failed; compensating");
        let compensated = self
            .compensate(log, saga_id, &req.context, &mut steps)
            .await;
        let failure = match compensated {
            Ok(()) => TxFailure {
                code: ErrorCode::TransactionAborted,
                message: format!(
                    "statement {statement} failed ({}); every completed step was rolled back",
                    cause_pair.0
                ),
                saga_id: Some(saga_id.to_owned()),
                statement: Some(statement),
                cause: Some(cause_pair),
            },
            Err(e) => TxFailure {
                code: ErrorCode::TransactionInDoubt,
                message: format!(
                    "statement {statement} failed ({}) and compensation failed ({}): saga {saga_id} needs attention",
                    cause_pair.0,
                    e.client_message()
                ),
                saga_id: Some(saga_id.to_owned()),
                statement: Some(statement),
                cause: Some(cause_pair),
            },
        };
        let state = if failure.code == ErrorCode::TransactionAborted {
            SagaState::Aborted
        } else {
            SagaState::InDoubt
        };
        // When the log itself failed, this fails too and recovery finishes the saga later.
        if let Err(e) = self
            .log_finish(log, saga_id, state, &steps, &failure.to_json())
            .await
        {
            tracing::warn!(saga = saga_id, error = %e, "saga outcome not recorded");
        }
        Err(RouterError::Transaction(Box::new(failure)))
    }

    /// Checks `expect_rows` of statement `i`.
    fn expectation(i: usize, st: &TxStatement, rs: &ResultSet) -> Result<(), RouterError> {
        let Some(expected) = st.expect_rows else {
            return Ok(());
        };
        let got = rs.rows_affected.unwrap_or(rs.rows.len() as u64);
        if got == expected {
            return Ok(());
        }
        let verb = if rs.rows_affected.is_some() {
            "affected"
        } else {
            "returned"
        };
        Err(RouterError::Transaction(Box::new(TxFailure {
            code: ErrorCode::PreconditionFailed,
            message: format!("statement {i} {verb} {got} rows, expected {expected}"),
            saga_id: None,
            statement: Some(i),
            cause: None,
        })))
    }

    /// Runs a step's statements in one local transaction; its completion and compensation are
    /// recorded in that transaction when the store holds the log, else as `prepared` before the
    /// commit and `done` after; its change events are recorded with `done`.
    #[allow(clippy::too_many_arguments)]
    async fn run_atomic_step(
        &self,
        log: &SagaLog,
        saga_id: &str,
        req: &TxRequest,
        prepared: &[Prepared],
        steps: &mut [Step],
        k: usize,
        results: &mut [Option<ResultSet>],
    ) -> Result<(), (usize, RouterError)> {
        let first = steps[k].statements.first().copied().unwrap_or(0);
        let Some(target) = prepared[first].target else {
            return Err((first, no_target()));
        };
        let backend = self.backend_by_id(target).map_err(|e| (first, e))?;
        let mut tx = backend
            .begin()
            .await
            .map_err(|e| (first, RouterError::from(e)))?;
        let mut compensation = Vec::new();
        let mut written = Vec::new();
        for &i in &steps[k].statements.clone() {
            let p = &prepared[i];
            let st = &req.statements[i];
            let before = match before_image(&self.catalog, p) {
                Some(q) => Some(
                    self.tx_run(&mut tx, target, &q)
                        .await
                        .map_err(|e| (i, e))?
                        .rows,
                ),
                None => None,
            };
            let rs = self
                .tx_run(&mut tx, target, &p.plan.query)
                .await
                .map_err(|e| (i, e))?;
            Self::expectation(i, st, &rs).map_err(|e| (i, e))?;
            if let (Some(before), Some(n)) = (&before, rs.rows_affected)
                && before.len() as u64 != n
            {
                return Err((
                    i,
                    RouterError::Backend(BackendError::Rejected {
                        backend: backend.name().to_owned(),
                        message: format!(
                            "the rows changed while the statement ran ({} read, {n} written); retry",
                            before.len()
                        ),
                    }),
                ));
            }
            let undo = compensation_for(&self.catalog, p, st, before.as_deref());
            compensation.splice(0..0, undo);
            written.push((i, written_keys(&self.catalog, p, before.as_deref())));
            results[i] = Some(rs);
        }
        steps[k].compensation = compensation;
        steps[k].events = self.step_events(prepared, &written);
        steps[k].state = StepState::Done;
        if target == log.backend {
            let record = log
                .progress(saga_id, SagaState::Running, steps)
                .map_err(|e| (first, e))?;
            tx.execute(Fragment {
                query: &record,
                catalog: &log.catalog,
            })
            .await
            .map_err(|e| (first, RouterError::from(e)))?;
            if let Err(e) = tx.commit().await {
                // Did the commit land? The log row, written in the same transaction, says.
                if self.step_state(log, saga_id, k).await != Some(StepState::Done) {
                    steps[k].state = StepState::Pending;
                    return Err((first, e.into()));
                }
            }
        } else {
            steps[k].state = StepState::Prepared;
            self.log_progress(log, saga_id, SagaState::Running, steps)
                .await
                .map_err(|e| (first, e))?;
            if let Err(e) = tx.commit().await {
                // A COMMIT whose answer was lost may have landed: the step stays prepared.
                if !e.maybe_applied() {
                    steps[k].state = StepState::Pending;
                }
                return Err((first, e.into()));
            }
            steps[k].state = StepState::Done;
            failpoint::hit(&format!("saga.after_execute.{k}")).await;
            self.log_progress(log, saga_id, SagaState::Running, steps)
                .await
                .map_err(|e| (first, e))?;
        }
        // Committed: drop the written keys from cache placements.
        for (i, keys) in &written {
            self.invalidate_written(&prepared[*i], keys).await;
        }
        Ok(())
    }

    /// Runs a fragment inside a local transaction, counted like any fragment.
    async fn tx_run(
        &self,
        tx: &mut Box<dyn LocalTransaction>,
        target: usize,
        q: &BoundQuery,
    ) -> Result<ResultSet, RouterError> {
        let started = Instant::now();
        let result = tx
            .execute(Fragment {
                query: q,
                catalog: &self.catalog,
            })
            .await;
        self.record_fragment(
            target,
            started.elapsed(),
            result.as_ref().map(|rs| rs.rows.len()),
        );
        Ok(result?)
    }

    /// A step of one statement on a store without local transactions (or several targets):
    /// before-image, `prepared` record with the compensation, the statement, `done` record.
    #[allow(clippy::too_many_arguments)]
    async fn run_single_step(
        &self,
        log: &SagaLog,
        saga_id: &str,
        req: &TxRequest,
        prepared: &[Prepared],
        steps: &mut [Step],
        k: usize,
        results: &mut [Option<ResultSet>],
    ) -> Result<(), (usize, RouterError)> {
        let i = steps[k].statements.first().copied().unwrap_or(0);
        let p = &prepared[i];
        let st = &req.statements[i];
        let Some(target) = p.target else {
            return Err((i, no_target()));
        };
        if matches!(p.plan.query.statement, Statement::Select(_)) {
            // A read changes nothing: no compensation, no log records.
            let rs = self
                .execute(&p.plan.query, &p.plan.route, &p.request, false)
                .await
                .map_err(|e| (i, e))?;
            Self::expectation(i, st, &rs).map_err(|e| (i, e))?;
            steps[k].state = StepState::Done;
            results[i] = Some(rs);
            return Ok(());
        }
        let before = match before_image(&self.catalog, p) {
            Some(q) => Some(
                self.run_on(
                    target,
                    Fragment {
                        query: &q,
                        catalog: &self.catalog,
                    },
                )
                .await
                .map_err(|e| (i, e))?
                .rows,
            ),
            None => None,
        };
        steps[k].compensation = compensation_for(&self.catalog, p, st, before.as_deref());
        steps[k].state = StepState::Prepared;
        self.log_progress(log, saga_id, SagaState::Running, steps)
            .await
            .map_err(|e| (i, e))?;
        let rs = match self
            .execute(&p.plan.query, &p.plan.route, &p.request, false)
            .await
        {
            Ok(rs) => rs,
            Err(e) => {
                // The store answered with an error: the statement did not apply (undoing it
                // would touch rows that are not ours, e.g. the existing row of a duplicate key).
                // A timeout or a connection lost with the write in flight leaves it unknown: the
                // step stays prepared, and only an idempotent compensation will run for it.
                if !matches!(&e, RouterError::Backend(b) if b.maybe_applied()) {
                    steps[k].state = StepState::Pending;
                }
                return Err((i, e));
            }
        };
        let keys = written_keys(&self.catalog, p, before.as_deref());
        steps[k].events = self.step_events(prepared, &[(i, keys)]);
        steps[k].state = StepState::Done;
        failpoint::hit(&format!("saga.after_execute.{k}")).await;
        self.log_progress(log, saga_id, SagaState::Running, steps)
            .await
            .map_err(|e| (i, e))?;
        Self::expectation(i, st, &rs).map_err(|e| (i, e))?;
        results[i] = Some(rs);
        Ok(())
    }

    /// Cache invalidation of a committed write (`keys`: the primary keys it touched).
    async fn invalidate_written(&self, p: &Prepared, keys: &[Vec<Value>]) {
        let Some(w) = &p.plan.route.write else {
            return;
        };
        for &cache in &w.invalidate {
            self.invalidate(&p.plan.query, cache, Some(keys.to_vec()))
                .await;
        }
    }
}
