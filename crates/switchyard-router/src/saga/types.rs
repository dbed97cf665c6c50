//! The types of sagas: the request and outcome of `POST /v1/transaction`, its failures, the
//! saga states and summaries shown to operators, and the steps (with their compensations and
//! change events) as the saga log stores them.

use super::*;

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

    pub(super) fn to_json(&self) -> serde_json::Value {
        let mut e = self.details();
        e["code"] = json!(self.code.as_str());
        e["message"] = json!(self.message);
        json!({ "error": e })
    }

    pub(super) fn from_json(v: &serde_json::Value) -> Option<TxFailure> {
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
pub(super) enum StepState {
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
pub(super) struct CompStmt {
    pub(super) sql: String,
    pub(super) params: Vec<serde_json::Value>,
    /// Running it twice leaves the same data as once (DELETE by key, before-image restore).
    pub(super) idempotent: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Step {
    pub(super) backend: String,
    pub(super) statements: Vec<usize>,
    /// Runs in one local transaction of `backend`.
    pub(super) atomic: bool,
    pub(super) state: StepState,
    /// Applied in order to undo the step (the statements' compensations, last statement first).
    #[serde(default)]
    pub(super) compensation: Vec<CompStmt>,
    /// The change events of its writes, recorded with `done` (the outbox): published once every
    /// step is done, by the router running the saga or, after a crash, by recovery.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) events: Vec<StepEvent>,
}

/// A change event waiting in the saga log (its version is assigned when published).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct StepEvent {
    table: String,
    key: String,
    op: String,
}

impl StepEvent {
    pub(super) fn of(e: ChangeEvent) -> StepEvent {
        StepEvent {
            table: e.table,
            key: e.key,
            op: e.operation.to_owned(),
        }
    }

    pub(super) fn to_change(&self, saga_id: &str) -> ChangeEvent {
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
pub(super) struct Prepared {
    pub(super) plan: Plan,
    pub(super) request: RouteRequest,
    /// The backend that runs it alone (write target or single read fragment).
    pub(super) target: Option<usize>,
    /// `target` runs local transactions.
    pub(super) transactional: bool,
}

pub(super) fn aborted(message: String, saga_id: Option<String>) -> RouterError {
    RouterError::Transaction(Box::new(TxFailure {
        code: ErrorCode::TransactionAborted,
        message,
        saga_id,
        statement: None,
        cause: None,
    }))
}

/// A refusal before any step ran: the statement's own code, its index in the message.
pub(super) fn refused(statement: usize, code: ErrorCode, message: String) -> RouterError {
    RouterError::Transaction(Box::new(TxFailure {
        code,
        message: format!("statement {statement}: {message}"),
        saga_id: None,
        statement: Some(statement),
        cause: None,
    }))
}

pub(super) fn no_target() -> RouterError {
    RouterError::Plan(CoreError::NoRoute {
        reason: "the statement has no single target store".to_owned(),
    })
}
