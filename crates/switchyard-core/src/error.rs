//! Errors of the SQL front-end and planner, and the closed set of client-facing error codes.

use std::fmt;

use serde::Serialize;

/// The stable error codes clients see. HTTP statuses are assigned by the server crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorCode {
    /// The request itself is malformed (JSON, field types).
    BadRequest,
    /// The request body is not `application/json`.
    UnsupportedMediaType,
    /// The request body is larger than `server.max_body_bytes`.
    PayloadTooLarge,
    /// No such endpoint.
    NotFound,
    /// An admin call without the configured bearer token.
    Unauthorized,
    /// An admin call from a host that may not make it.
    Forbidden,
    /// The endpoint exists but not for this method.
    MethodNotAllowed,
    /// The SQL text does not parse.
    SqlSyntax,
    /// Valid SQL that Switchyard does not support.
    Unsupported,
    /// A table that the catalog does not declare.
    UnknownTable,
    /// A column that the referenced tables do not have.
    UnknownColumn,
    /// A column name that more than one table in scope has.
    AmbiguousColumn,
    /// Operand types that do not fit the operator or the column.
    TypeMismatch,
    /// A non-aggregated column outside GROUP BY in an aggregate query.
    BadGrouping,
    /// Parameters missing, extra, or of the wrong type.
    BadParams,
    /// No backend (or set of backends) can run this statement.
    NoRoute,
    /// A key-value store was asked to read without the key.
    NeedsKey,
    /// A query would hold more rows than its bound allows.
    QueryTooLarge,
    /// A value made the statement fail while the router evaluated it (division by zero, integer
    /// out of range).
    DataError,
    /// A backend could not be reached.
    BackendUnavailable,
    /// A backend refused or failed the statement.
    BackendError,
    /// The query took longer than its timeout.
    Timeout,
    /// A constraint (primary key, not null) was violated.
    ConstraintViolation,
    /// The placement plugin trapped.
    PluginTrapped,
    /// The placement plugin did not answer before its deadline.
    PluginTimeout,
    /// The placement plugin exceeded its memory cap.
    PluginMemory,
    /// The placement plugin returned a route that fails validation.
    RouteInvalid,
    /// A transaction statement's `expect_rows` did not hold (e.g. a conditional stock decrement
    /// matched no row: not enough stock).
    PreconditionFailed,
    /// A transaction failed and every completed step was compensated: nothing it did remains.
    TransactionAborted,
    /// A transaction failed and a step could not be compensated (or its outcome is unknown):
    /// the saga needs attention (`GET /admin/sagas`).
    TransactionInDoubt,
    /// An idempotency key was reused with a different request, or its first request is still
    /// running.
    IdempotencyConflict,
    /// A bug in Switchyard.
    Internal,
}

impl ErrorCode {
    /// The code as sent to clients, e.g. `SQL_SYNTAX`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "BAD_REQUEST",
            Self::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            Self::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Self::NotFound => "NOT_FOUND",
            Self::Unauthorized => "UNAUTHORIZED",
            Self::Forbidden => "FORBIDDEN",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::SqlSyntax => "SQL_SYNTAX",
            Self::Unsupported => "UNSUPPORTED",
            Self::UnknownTable => "UNKNOWN_TABLE",
            Self::UnknownColumn => "UNKNOWN_COLUMN",
            Self::AmbiguousColumn => "AMBIGUOUS_COLUMN",
            Self::TypeMismatch => "TYPE_MISMATCH",
            Self::BadGrouping => "BAD_GROUPING",
            Self::BadParams => "BAD_PARAMS",
            Self::NoRoute => "NO_ROUTE",
            Self::NeedsKey => "NEEDS_KEY",
            Self::QueryTooLarge => "QUERY_TOO_LARGE",
            Self::DataError => "DATA_ERROR",
            Self::BackendUnavailable => "BACKEND_UNAVAILABLE",
            Self::BackendError => "BACKEND_ERROR",
            Self::Timeout => "TIMEOUT",
            Self::ConstraintViolation => "CONSTRAINT_VIOLATION",
            Self::PluginTrapped => "PLUGIN_TRAPPED",
            Self::PluginTimeout => "PLUGIN_TIMEOUT",
            Self::PluginMemory => "PLUGIN_MEMORY",
            Self::RouteInvalid => "ROUTE_INVALID",
            Self::PreconditionFailed => "PRECONDITION_FAILED",
            Self::TransactionAborted => "TRANSACTION_ABORTED",
            Self::TransactionInDoubt => "TRANSACTION_IN_DOUBT",
            Self::IdempotencyConflict => "IDEMPOTENCY_CONFLICT",
            Self::Internal => "INTERNAL",
        }
    }

    /// Every code, for documentation and tests.
    pub const ALL: [ErrorCode; 32] = [
        Self::BadRequest,
        Self::UnsupportedMediaType,
        Self::PayloadTooLarge,
        Self::NotFound,
        Self::Unauthorized,
        Self::Forbidden,
        Self::MethodNotAllowed,
        Self::SqlSyntax,
        Self::Unsupported,
        Self::UnknownTable,
        Self::UnknownColumn,
        Self::AmbiguousColumn,
        Self::TypeMismatch,
        Self::BadGrouping,
        Self::BadParams,
        Self::NoRoute,
        Self::NeedsKey,
        Self::QueryTooLarge,
        Self::DataError,
        Self::BackendUnavailable,
        Self::BackendError,
        Self::Timeout,
        Self::ConstraintViolation,
        Self::PluginTrapped,
        Self::PluginTimeout,
        Self::PluginMemory,
        Self::RouteInvalid,
        Self::PreconditionFailed,
        Self::TransactionAborted,
        Self::TransactionInDoubt,
        Self::IdempotencyConflict,
        Self::Internal,
    ];
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A 1-based line and column in the SQL text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Position {
    /// Line, from 1.
    pub line: u64,
    /// Column, from 1.
    pub column: u64,
}

impl Position {
    /// A position from a sqlparser span start, `None` for empty spans (line 0).
    pub fn from_span(span: sqlparser::tokenizer::Span) -> Option<Self> {
        (span.start.line > 0).then_some(Self {
            line: span.start.line,
            column: span.start.column,
        })
    }
}

/// An error found while parsing, binding or planning a statement.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CoreError {
    /// The SQL text does not parse.
    #[error("syntax error: {message}")]
    Syntax {
        /// What the parser expected.
        message: String,
        /// Where, when known.
        position: Option<Position>,
    },
    /// A construct Switchyard does not support.
    #[error("not supported: {construct}")]
    Unsupported {
        /// The construct, e.g. `RIGHT JOIN`.
        construct: String,
        /// Where.
        position: Option<Position>,
    },
    /// A table that is not in the catalog.
    #[error("unknown table `{name}`{}", hint(candidates))]
    UnknownTable {
        /// The name as written.
        name: String,
        /// Known tables (or aliases in scope).
        candidates: Vec<String>,
        /// Where.
        position: Option<Position>,
    },
    /// A column that no table in scope has.
    #[error("unknown column `{name}`{}", hint(candidates))]
    UnknownColumn {
        /// The name as written.
        name: String,
        /// Columns of the tables in scope.
        candidates: Vec<String>,
        /// Where.
        position: Option<Position>,
    },
    /// A column name that several tables in scope have.
    #[error("column `{name}` is ambiguous, qualify it with one of: {}", tables.join(", "))]
    AmbiguousColumn {
        /// The name as written.
        name: String,
        /// Table aliases that have it.
        tables: Vec<String>,
        /// Where.
        position: Option<Position>,
    },
    /// Types that do not fit.
    #[error("{message}")]
    TypeMismatch {
        /// What was expected and what was found.
        message: String,
        /// Where.
        position: Option<Position>,
    },
    /// A column used outside GROUP BY in an aggregate query.
    #[error("column `{name}` must appear in GROUP BY or be used in an aggregate function")]
    BadGrouping {
        /// The column.
        name: String,
        /// Where.
        position: Option<Position>,
    },
    /// Parameters that do not fit the statement.
    #[error("{message}")]
    BadParams {
        /// What is wrong.
        message: String,
        /// Where the parameter is used, when it applies.
        position: Option<Position>,
    },
    /// No placement choice can run the statement.
    #[error("no route: {reason}")]
    NoRoute {
        /// Why.
        reason: String,
    },
    /// The query would hold more than its budget in the router.
    #[error(
        "the query holds more than {limit} {what} in the router (execution.max_query_{what}); add filters or a LIMIT"
    )]
    QueryTooLarge {
        /// `rows` or `bytes`.
        what: &'static str,
        /// The budget.
        limit: u64,
    },
    /// An expression nests deeper than `execution.max_expr_depth`.
    #[error(
        "the statement nests expressions more than {limit} levels deep (execution.max_expr_depth); simplify it"
    )]
    TooDeep {
        /// The limit.
        limit: usize,
        /// The expression that crossed it.
        position: Option<Position>,
    },
    /// Parentheses, function calls or casts nested deeper than the parser goes.
    #[error(
        "the statement nests parentheses, function calls or casts more than {limit} levels deep; simplify it"
    )]
    TooNested {
        /// The parser's recursion limit.
        limit: usize,
    },
    /// A statement wider than every store accepts.
    #[error("the statement has more than {limit} {what}")]
    TooWide {
        /// What there are too many of, e.g. `output columns`.
        what: &'static str,
        /// The limit.
        limit: usize,
        /// Where.
        position: Option<Position>,
    },
    /// A value made evaluation in the router fail.
    #[error("{message}")]
    Data {
        /// What went wrong, e.g. `division by zero`.
        message: String,
    },
}

fn hint(candidates: &[String]) -> String {
    if candidates.is_empty() {
        String::new()
    } else {
        format!(", expected one of: {}", candidates.join(", "))
    }
}

impl CoreError {
    /// The client-facing code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Syntax { .. } => ErrorCode::SqlSyntax,
            Self::Unsupported { .. } => ErrorCode::Unsupported,
            Self::UnknownTable { .. } => ErrorCode::UnknownTable,
            Self::UnknownColumn { .. } => ErrorCode::UnknownColumn,
            Self::AmbiguousColumn { .. } => ErrorCode::AmbiguousColumn,
            Self::TypeMismatch { .. } => ErrorCode::TypeMismatch,
            Self::BadGrouping { .. } => ErrorCode::BadGrouping,
            Self::BadParams { .. } => ErrorCode::BadParams,
            Self::NoRoute { .. } => ErrorCode::NoRoute,
            Self::QueryTooLarge { .. }
            | Self::TooDeep { .. }
            | Self::TooNested { .. }
            | Self::TooWide { .. } => ErrorCode::QueryTooLarge,
            Self::Data { .. } => ErrorCode::DataError,
        }
    }

    /// Where in the SQL text the problem is, when it applies.
    pub fn position(&self) -> Option<Position> {
        match self {
            Self::Syntax { position, .. }
            | Self::Unsupported { position, .. }
            | Self::UnknownTable { position, .. }
            | Self::UnknownColumn { position, .. }
            | Self::AmbiguousColumn { position, .. }
            | Self::TypeMismatch { position, .. }
            | Self::BadGrouping { position, .. }
            | Self::BadParams { position, .. }
            | Self::TooDeep { position, .. }
            | Self::TooWide { position, .. } => *position,
            Self::NoRoute { .. }
            | Self::QueryTooLarge { .. }
            | Self::TooNested { .. }
            | Self::Data { .. } => None,
        }
    }
}
