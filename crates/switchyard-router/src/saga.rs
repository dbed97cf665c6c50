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
mod recovery;

pub(crate) use compensation::rows_to_write;
use compensation::{before_image, check_compensable, compensation_for, written_keys};

/// One statement of a transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxStatement {
    /// SQL text over logical tables.
    pub sql: String,
    /// Values of `$1`, `$2`, ...
    #[serde(default)]
    pub params: Vec<serde_json::Value>,
    /// Rows the statement must affect (writes) or return (SELECT); otherwise the transaction
    /// fails with `PRECONDITION_FAILED` and is rolled back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect_rows: Option<u64>,
    /// The statement that undoes this one, replacing the derived compensation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compensation: Option<TxCompensation>,
}

/// An explicit compensation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxCompensation {
    /// SQL text.
    pub sql: String,
    /// Its parameters.
    #[serde(default)]
    pub params: Vec<serde_json::Value>,
}

/// The body of `POST /v1/transaction`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TxRequest {
    /// The statements, run in order.
    pub statements: Vec<TxStatement>,
    /// Replays the stored outcome when a saga with this key exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Handed to placement plugins with every statement.
    #[serde(default)]
    pub context: Context,
}

/// A committed transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct TxOutcome {
    /// The saga id.
    pub saga_id: String,
    /// One `{columns, rows, rows_affected}` per statement.
    pub results: Vec<serde_json::Value>,
    /// The outcome was stored by an earlier request with the same idempotency key.
    pub replayed: bool,
}

/// Why a transaction failed, as clients see it (`RouterError::Transaction`).
#[derive(Debug, Clone, PartialEq)]
pub struct TxFailure {
    /// `TRANSACTION_ABORTED`, `TRANSACTION_IN_DOUBT`, `IDEMPOTENCY_CONFLICT`, or the code of a
    /// statement refused before anything ran.
    pub code: ErrorCode,
    /// Description.
    pub message: String,
    /// The saga, once one was logged.
    pub saga_id: Option<String>,
    /// The statement (0-based) that failed.
    pub statement: Option<usize>,
    /// The failure of that statement: (code, message).
    pub cause: Option<(String, String)>,
}

impl TxFailure {
    /// The extra members of the error object (`saga_id`, `statement`, `cause`).
    pub fn details(&self) -> serde_json::Value {
        let mut d = serde_json::Map::new();
        if let Some(id) = &self.saga_id {
            d.insert("saga_id".into(), json!(id));
        }
        if let Some(s) = self.statement {
            d.insert("statement".into(), json!(s));
        }
        if let Some((code, message)) = &self.cause {
            d.insert("cause".into(), json!({ "code": code, "message": message }));
        }
        serde_json::Value::Object(d)
    }

    fn to_json(&self) -> serde_json::Value {
        let mut e = self.details();
        e["code"] = json!(self.code.as_str());
        e["message"] = json!(self.message);
        json!({ "error": e })
    }

    fn from_json(v: &serde_json::Value) -> Option<TxFailure> {
        let e = v.get("error")?;
        let code = ErrorCode::ALL
            .into_iter()
            .find(|c| Some(c.as_str()) == e.get("code").and_then(|c| c.as_str()))?;
        Some(TxFailure {
            code,
            message: e.get("message")?.as_str()?.to_owned(),
            saga_id: e.get("saga_id").and_then(|s| s.as_str()).map(str::to_owned),
            statement: e
                .get("statement")
                .and_then(serde_json::Value::as_u64)
                .and_then(|s| usize::try_from(s).ok()),
            cause: e.get("cause").and_then(|c| {
                Some((
                    c.get("code")?.as_str()?.to_owned(),
                    c.get("message")?.as_str()?.to_owned(),
                ))
            }),
        })
    }
}

/// Where a saga stands, as the log records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SagaState {
    /// Steps are running.
    Running,
    /// Undoing completed steps.
    Compensating,
    /// Every step done (final).
    Committed,
    /// Every completed step undone (final).
    Aborted,
    /// Could not be undone: needs an operator (final).
    InDoubt,
}

impl SagaState {
    /// Every state.
    pub const ALL: [SagaState; 5] = [
        Self::Running,
        Self::Compensating,
        Self::Committed,
        Self::Aborted,
        Self::InDoubt,
    ];

    /// As stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Compensating => "compensating",
            Self::Committed => "committed",
            Self::Aborted => "aborted",
            Self::InDoubt => "in_doubt",
        }
    }

    /// The state named `s`.
    pub fn parse(s: &str) -> Option<SagaState> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }
}

/// A saga as `GET /admin/sagas` lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct SagaSummary {
    /// Id.
    pub saga_id: String,
    /// `running`, `compensating`, `committed`, `aborted`, `in_doubt`.
    pub state: String,
    /// The idempotency key, if the client gave one.
    pub idempotency_key: Option<String>,
    /// Steps with their backend, statements, state and compensation.
    pub steps: serde_json::Value,
    /// The stored outcome (results or error).
    pub outcome: serde_json::Value,
    /// The statements and context.
    pub request: serde_json::Value,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum StepState {
    /// Not started (or its local transaction rolled back).
    Pending,
    /// Its compensation is logged; whether it ran is unknown until `Done`.
    Prepared,
    /// Ran (committed).
    Done,
    /// Undone.
    Compensated,
}

/// One statement of a compensation, stored in the log so recovery can run it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CompStmt {
    sql: String,
    params: Vec<serde_json::Value>,
    /// Running it twice leaves the same data as once (DELETE by key, before-image restore).
    idempotent: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Step {
    backend: String,
    statements: Vec<usize>,
    /// Runs in one local transaction of `backend`.
    atomic: bool,
    state: StepState,
    /// Applied in order to undo the step (the statements' compensations, last statement first).
    #[serde(default)]
    compensation: Vec<CompStmt>,
    /// The change events of its writes, recorded with `done` (the outbox): published once every
    /// step is done, by the router running the saga or, after a crash, by recovery.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    events: Vec<StepEvent>,
}

/// A change event waiting in the saga log (its version is assigned when published).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StepEvent {
    table: String,
    key: String,
    op: String,
}

impl StepEvent {
    fn of(e: ChangeEvent) -> StepEvent {
        StepEvent {
            table: e.table,
            key: e.key,
            op: e.operation.to_owned(),
        }
    }

    fn to_change(&self, saga_id: &str) -> ChangeEvent {
        ChangeEvent {
            table: self.table.clone(),
            key: self.key.clone(),
            operation: match self.op.as_str() {
                "insert" => "insert",
                "update" => "update",
                _ => "delete",
            },
            saga_id: Some(saga_id.to_owned()),
        }
    }
}

/// A statement planned and routed.
struct Prepared {
    plan: Plan,
    request: RouteRequest,
    /// The backend that runs it alone (write target or single read fragment).
    target: Option<usize>,
    /// `target` runs local transactions.
    transactional: bool,
}

/// The saga log: a table on a SQL backend, in its own catalog (applications never see it).
#[derive(Debug)]
pub(crate) struct SagaLog {
    backend: usize,
    catalog: Catalog,
    ensured: tokio::sync::OnceCell<()>,
    owner: String,
    lease: Duration,
}

/// The longest idempotency key accepted (it is stored in the saga log).
const MAX_IDEMPOTENCY_KEY_BYTES: usize = 255;
const LOG: &str = "saga_log";
const LOG_COLUMNS: [(&str, LogicalType); 11] = [
    ("saga_id", LogicalType::Text),
    ("idempotency_key", LogicalType::Text),
    ("request_hash", LogicalType::Text),
    ("state", LogicalType::Text),
    ("request", LogicalType::Json),
    ("steps", LogicalType::Json),
    ("outcome", LogicalType::Json),
    ("created_at", LogicalType::Timestamp),
    ("updated_at", LogicalType::Timestamp),
    ("lease_until", LogicalType::Int),
    ("owner", LogicalType::Text),
];
const SUMMARY_COLUMNS: &str =
    "saga_id, state, idempotency_key, steps, outcome, request, created_at, updated_at";

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn now_text() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// 128 random bits as hex (std's `RandomState` is seeded randomly per instance).
fn random_id() -> String {
    (0..2u64)
        .map(|i| {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(i);
            format!("{:016x}", h.finish())
        })
        .collect()
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn aborted(message: String, saga_id: Option<String>) -> RouterError {
    RouterError::Transaction(Box::new(TxFailure {
        code: ErrorCode::TransactionAborted,
        message,
        saga_id,
        statement: None,
        cause: None,
    }))
}

/// A refusal before any step ran: the statement's own code, its index in the message.
fn refused(statement: usize, code: ErrorCode, message: String) -> RouterError {
    RouterError::Transaction(Box::new(TxFailure {
        code,
        message: format!("statement {statement}: {message}"),
        saga_id: None,
        statement: Some(statement),
        cause: None,
    }))
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

impl SagaLog {
    pub(crate) fn new(
        backend: usize,
        backend_name: &str,
        kind: switchyard_core::BackendKind,
        physical: &str,
        lease: Duration,
    ) -> SagaLog {
        let columns: Vec<Column> = LOG_COLUMNS
            .iter()
            .map(|(name, ty)| Column {
                name: (*name).to_owned(),
                ty: *ty,
            })
            .collect();
        let table = Table {
            name: LOG.to_owned(),
            primary_key: vec![0],
            placements: vec![Placement {
                backend: backend_name.to_owned(),
                role: Role::Primary,
                physical_name: physical.to_owned(),
                physical_columns: columns.iter().map(|c| c.name.clone()).collect(),
                key_pattern: None,
                mode: None,
                ttl_seconds: None,
                scan_max_rows: None,
            }],
            columns,
            shard_key: None,
        };
        let mut catalog = Catalog::default();
        catalog.tables.insert(LOG.to_owned(), table);
        catalog.backends.insert(
            backend_name.to_owned(),
            BackendInfo {
                name: backend_name.to_owned(),
                kind,
            },
        );
        SagaLog {
            backend,
            catalog,
            ensured: tokio::sync::OnceCell::new(),
            owner: format!("{}-{}", std::process::id(), &random_id()[..8]),
            lease,
        }
    }

    /// A log statement, bound against the log's catalog.
    fn query(&self, sql: &str, params: &[serde_json::Value]) -> Result<BoundQuery, RouterError> {
        Ok(switchyard_core::plan(sql, params, &self.catalog)?.query)
    }

    fn lease_until(&self) -> i64 {
        now_ms() + i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX / 2)
    }

    /// The statement that records `steps` and `state` (and renews the lease).
    fn progress(
        &self,
        saga_id: &str,
        state: SagaState,
        steps: &[Step],
    ) -> Result<BoundQuery, RouterError> {
        self.query(
            &format!(
                "UPDATE {LOG} SET state = $2, steps = $3, updated_at = $4, lease_until = $5 \
                 WHERE saga_id = $1"
            ),
            &[
                json!(saga_id),
                json!(state.as_str()),
                serde_json::to_value(steps).unwrap_or_default(),
                json!(now_text()),
                json!(self.lease_until()),
            ],
        )
    }
}

impl Router {
    fn saga_log(&self) -> Result<&SagaLog, RouterError> {
        self.saga.as_ref().ok_or_else(|| {
            RouterError::Plan(CoreError::NoRoute {
                reason:
                    "transactions need a SQL backend for the saga log ([transactions] log_backend)"
                        .to_owned(),
            })
        })
    }

    /// Creates the log table on first use.
    async fn saga_ready(&self) -> Result<&SagaLog, RouterError> {
        let log = self.saga_log()?;
        log.ensured
            .get_or_try_init(|| async {
                let backend = self.backend_by_id(log.backend)?;
                let table = log
                    .catalog
                    .table(LOG)
                    .ok_or_else(|| RouterError::UnknownTable {
                        table: LOG.to_owned(),
                    })?;
                backend.ensure_table(table).await.map_err(RouterError::from)
            })
            .await?;
        Ok(log)
    }

    /// Runs a log statement on its own.
    async fn log_run(&self, log: &SagaLog, q: &BoundQuery) -> Result<ResultSet, RouterError> {
        let backend = self.backend_by_id(log.backend)?;
        Ok(backend
            .execute(Fragment {
                query: q,
                catalog: &log.catalog,
            })
            .await?)
    }

    async fn log_progress(
        &self,
        log: &SagaLog,
        saga_id: &str,
        state: SagaState,
        steps: &[Step],
    ) -> Result<(), RouterError> {
        let q = log.progress(saga_id, state, steps)?;
        self.log_run(log, &q).await.map(|_| ())
    }

    async fn log_finish(
        &self,
        log: &SagaLog,
        saga_id: &str,
        state: SagaState,
        steps: &[Step],
        outcome: &serde_json::Value,
    ) -> Result<(), RouterError> {
        let q = log.query(
            &format!(
                "UPDATE {LOG} SET state = $2, steps = $3, outcome = $4, updated_at = $5 \
                 WHERE saga_id = $1"
            ),
            &[
                json!(saga_id),
                json!(state.as_str()),
                serde_json::to_value(steps).unwrap_or_default(),
                outcome.clone(),
                json!(now_text()),
            ],
        )?;
        self.log_run(log, &q).await.map(|_| ())
    }

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

    /// The state of step `k` as the log has it.
    async fn step_state(&self, log: &SagaLog, saga_id: &str, k: usize) -> Option<StepState> {
        let q = log
            .query(
                &format!("SELECT steps FROM {LOG} WHERE saga_id = $1"),
                &[json!(saga_id)],
            )
            .ok()?;
        let rs = self.log_run(log, &q).await.ok()?;
        let Value::Json(steps) = rs.rows.first()?.first()? else {
            return None;
        };
        let steps: Vec<Step> = serde_json::from_value(steps.clone()).ok()?;
        steps.get(k).map(|s| s.state)
    }

    /// Undoes the done (and, in recovery, prepared) steps, last first. Stops at the first step
    /// that cannot be undone safely or whose compensation fails.
    async fn compensate(
        &self,
        log: &SagaLog,
        saga_id: &str,
        context: &Context,
        steps: &mut [Step],
    ) -> Result<(), RouterError> {
        self.log_progress(log, saga_id, SagaState::Compensating, steps)
            .await?;
        for k in (0..steps.len()).rev() {
            let run = match steps[k].state {
                StepState::Done => true,
                StepState::Prepared => {
                    // Unknown whether it ran: only an idempotent undo is safe.
                    if !steps[k].compensation.iter().all(|c| c.idempotent) {
                        return Err(RouterError::Transaction(Box::new(TxFailure {
                            code: ErrorCode::TransactionInDoubt,
                            message: format!(
                                "step {k} on `{}` may or may not have run and its compensation is not idempotent",
                                steps[k].backend
                            ),
                            saga_id: Some(saga_id.to_owned()),
                            statement: steps[k].statements.first().copied(),
                            cause: None,
                        })));
                    }
                    true
                }
                StepState::Pending | StepState::Compensated => false,
            };
            if !run {
                continue;
            }
            failpoint::hit(&format!("saga.before_compensate.{k}")).await;
            self.compensate_step(log, saga_id, context, steps, k)
                .await?;
        }
        Ok(())
    }

    async fn compensate_step(
        &self,
        log: &SagaLog,
        saga_id: &str,
        context: &Context,
        steps: &mut [Step],
        k: usize,
    ) -> Result<(), RouterError> {
        let comps = steps[k].compensation.clone();
        let mut plans = Vec::with_capacity(comps.len());
        for c in &comps {
            plans.push(self.prepare(&c.sql, &c.params, context).await?);
        }
        let on_log = self
            .backends
            .get_index_of(steps[k].backend.as_str())
            .is_some_and(|b| b == log.backend);
        if steps[k].atomic {
            let target = self
                .backends
                .get_index_of(steps[k].backend.as_str())
                .ok_or_else(no_target)?;
            let mut tx = self.backend_by_id(target)?.begin().await?;
            for p in &plans {
                if p.target != Some(target) {
                    return Err(RouterError::Plan(CoreError::NoRoute {
                        reason: format!(
                            "a compensation of step {k} does not route to `{}`",
                            steps[k].backend
                        ),
                    }));
                }
                self.tx_run(&mut tx, target, &p.plan.query).await?;
            }
            steps[k].state = StepState::Compensated;
            if on_log {
                let record = log.progress(saga_id, SagaState::Compensating, steps)?;
                tx.execute(Fragment {
                    query: &record,
                    catalog: &log.catalog,
                })
                .await?;
                tx.commit().await?;
            } else {
                tx.commit().await?;
                self.log_progress(log, saga_id, SagaState::Compensating, steps)
                    .await?;
            }
        } else {
            for p in &plans {
                self.execute(&p.plan.query, &p.plan.route, &p.request, false)
                    .await?;
            }
            steps[k].state = StepState::Compensated;
            self.log_progress(log, saga_id, SagaState::Compensating, steps)
                .await?;
        }
        for (c, p) in comps.iter().zip(&plans) {
            tracing::debug!(saga = saga_id, step = k, sql = %c.sql, "compensated");
            let keys = written_keys(&self.catalog, p, None);
            self.invalidate_written(p, &keys).await;
        }
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

    /// The change events of a step's writes (`written`: statement, keys), when a change stream
    /// is configured.
    fn step_events(
        &self,
        prepared: &[Prepared],
        written: &[(usize, Vec<Vec<Value>>)],
    ) -> Vec<StepEvent> {
        if self.events.is_none() {
            return Vec::new();
        }
        written
            .iter()
            .flat_map(|(i, keys)| change_events(&prepared[*i].plan.query, keys, None))
            .map(StepEvent::of)
            .collect()
    }

    /// Publishes the events recorded with the steps (every step done).
    async fn publish_step_events(&self, saga_id: &str, steps: &[Step]) {
        let events = steps
            .iter()
            .flat_map(|s| &s.events)
            .map(|e| e.to_change(saga_id))
            .collect();
        self.publish(events).await;
    }
}

fn no_target() -> RouterError {
    RouterError::Plan(CoreError::NoRoute {
        reason: "the statement has no single target store".to_owned(),
    })
}

/// The `key` of a change event: one key column's text as is; several columns' texts with a
/// backslash before each `\` and `:` in them, joined by `:`, so distinct keys stay distinct
/// (`("a:b", "c")` is `a\:b:c`, `("a", "b:c")` is `a:b\:c`): the rule of Redis key patterns.
pub(crate) fn event_key(key: &[Value]) -> String {
    let parts = key
        .iter()
        .map(|v| switchyard_backend_redis::encode(v).unwrap_or_default());
    if key.len() == 1 {
        return parts.collect();
    }
    parts
        .map(|p| p.replace('\\', "\\\\").replace(':', "\\:"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
#[test]
fn event_keys_of_several_columns_stay_distinct() {
    let text = |s: &str| Value::Text(s.to_owned());
    assert_eq!(event_key(&[text("a:b")]), "a:b");
    assert_eq!(event_key(&[text("a:b"), text("c")]), "a\\:b:c");
    assert_eq!(event_key(&[text("a"), text("b:c")]), "a:b\\:c");
    assert_eq!(event_key(&[text("a\\"), text(":")]), "a\\\\:\\:");
    assert_eq!(event_key(&[Value::Int(7), text("x")]), "7:x");
}

/// Change events of a committed write (one per key; `*` when the keys are unknown).
pub(crate) fn change_events(
    query: &BoundQuery,
    keys: &[Vec<Value>],
    saga_id: Option<&str>,
) -> Vec<ChangeEvent> {
    let operation = match query.statement {
        Statement::Select(_) => return Vec::new(),
        Statement::Insert(_) => "insert",
        Statement::Update(_) => "update",
        Statement::Delete(_) => "delete",
    };
    let table = query
        .statement
        .access_tables()
        .first()
        .map(|t| (*t).to_owned())
        .unwrap_or_default();
    let keys: Vec<String> = if keys.is_empty() {
        vec!["*".to_owned()]
    } else {
        keys.iter().map(|k| event_key(k)).collect()
    };
    keys.into_iter()
        .map(|key| ChangeEvent {
            table: table.clone(),
            key,
            operation,
            saga_id: saga_id.map(str::to_owned),
        })
        .collect()
}
