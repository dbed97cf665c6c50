//! The engine's errors, with the client code each one answers.

use datafusion::arrow::error::ArrowError;
use datafusion::common::{DataFusionError, SchemaError};
use switchyard_core::{ErrorCode, Position};

/// Why the engine refused or failed a statement.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The SQL text does not parse.
    #[error("syntax error: {message}")]
    Syntax {
        /// What the parser said.
        message: String,
        /// Where, when known.
        position: Option<Position>,
    },
    /// Valid SQL the engine does not run.
    #[error("not supported: {0}")]
    Unsupported(String),
    /// Not a query (writes and session statements are the fast path's).
    #[error("not supported: {0}")]
    NotAQuery(String),
    /// A table the catalog does not declare.
    #[error("{0}")]
    UnknownTable(String),
    /// A column no table in scope has.
    #[error("{0}")]
    UnknownColumn(String),
    /// A column name several tables in scope have.
    #[error("{0}")]
    AmbiguousColumn(String),
    /// Operand types that do not fit.
    #[error("{0}")]
    TypeMismatch(String),
    /// Parameters missing, extra or of the wrong type.
    #[error("{0}")]
    BadParams(String),
    /// A value made the statement fail (a failed cast, division by zero, a scalar subquery
    /// with more than one row).
    #[error("{0}")]
    Data(String),
    /// The statement needs more memory than `execution.max_query_bytes`.
    #[error("the query needs more memory than execution.max_query_bytes allows: {0}")]
    TooLarge(String),
    /// A bug.
    #[error("internal engine error: {0}")]
    Internal(String),
}

impl EngineError {
    /// The client code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Syntax { .. } => ErrorCode::SqlSyntax,
            Self::Unsupported(_) | Self::NotAQuery(_) => ErrorCode::Unsupported,
            Self::UnknownTable(_) => ErrorCode::UnknownTable,
            Self::UnknownColumn(_) => ErrorCode::UnknownColumn,
            Self::AmbiguousColumn(_) => ErrorCode::AmbiguousColumn,
            Self::TypeMismatch(_) => ErrorCode::TypeMismatch,
            Self::BadParams(_) => ErrorCode::BadParams,
            Self::Data(_) => ErrorCode::DataError,
            Self::TooLarge(_) => ErrorCode::QueryTooLarge,
            Self::Internal(_) => ErrorCode::Internal,
        }
    }

    /// Where in the SQL text, when known.
    pub fn position(&self) -> Option<Position> {
        match self {
            Self::Syntax { position, .. } => *position,
            _ => None,
        }
    }
}

impl From<DataFusionError> for EngineError {
    fn from(e: DataFusionError) -> Self {
        classify(e.find_root())
    }
}

fn classify(e: &DataFusionError) -> EngineError {
    let message = e.message().trim().to_owned();
    match e {
        DataFusionError::SQL(parse, _) => {
            let text = parse.to_string();
            EngineError::Syntax {
                position: position_in(&text),
                message: strip_position(&text),
            }
        }
        DataFusionError::SchemaError(schema, _) => match schema.as_ref() {
            SchemaError::FieldNotFound { .. } => EngineError::UnknownColumn(message),
            SchemaError::AmbiguousReference { .. } => EngineError::AmbiguousColumn(message),
            _ => EngineError::Unsupported(message),
        },
        DataFusionError::Plan(m) => {
            let lower = m.to_lowercase();
            if lower.contains("table '") && lower.contains("not found") {
                EngineError::UnknownTable(message)
            } else if lower.contains("no field named") {
                EngineError::UnknownColumn(message)
            } else if lower.contains("placeholder") || lower.contains("parameter") {
                EngineError::BadParams(message)
            } else if lower.contains("cannot infer common")
                || lower.contains("cannot coerce")
                || lower.contains("coercion")
                || lower.contains("type")
            {
                EngineError::TypeMismatch(message)
            } else {
                EngineError::Unsupported(message)
            }
        }
        DataFusionError::NotImplemented(_) => EngineError::Unsupported(message),
        DataFusionError::ResourcesExhausted(_) => EngineError::TooLarge(message),
        DataFusionError::ArrowError(arrow, _) => match arrow.as_ref() {
            ArrowError::DivideByZero => EngineError::Data("division by zero".to_owned()),
            ArrowError::CastError(_)
            | ArrowError::ParseError(_)
            | ArrowError::ComputeError(_)
            | ArrowError::ArithmeticOverflow(_)
            | ArrowError::InvalidArgumentError(_) => EngineError::Data(message),
            _ => EngineError::Internal(message),
        },
        DataFusionError::Execution(_) => EngineError::Data(message),
        DataFusionError::External(inner) => match inner.downcast_ref::<EngineError>() {
            Some(mine) => mine.clone_shallow(),
            None => EngineError::Internal(message),
        },
        _ => EngineError::Internal(message),
    }
}

impl EngineError {
    /// The same error (for errors that crossed DataFusion inside an `External`).
    fn clone_shallow(&self) -> Self {
        match self {
            Self::Syntax { message, position } => Self::Syntax {
                message: message.clone(),
                position: *position,
            },
            Self::Unsupported(m) => Self::Unsupported(m.clone()),
            Self::NotAQuery(m) => Self::NotAQuery(m.clone()),
            Self::UnknownTable(m) => Self::UnknownTable(m.clone()),
            Self::UnknownColumn(m) => Self::UnknownColumn(m.clone()),
            Self::AmbiguousColumn(m) => Self::AmbiguousColumn(m.clone()),
            Self::TypeMismatch(m) => Self::TypeMismatch(m.clone()),
            Self::BadParams(m) => Self::BadParams(m.clone()),
            Self::Data(m) => Self::Data(m.clone()),
            Self::TooLarge(m) => Self::TooLarge(m.clone()),
            Self::Internal(m) => Self::Internal(m.clone()),
        }
    }
}

/// sqlparser ends its messages with ` at Line: L, Column: C`.
fn position_in(text: &str) -> Option<Position> {
    let at = text.rfind(" at Line: ")?;
    let rest = &text[at + " at Line: ".len()..];
    let (line, column) = rest.split_once(", Column: ")?;
    let column: String = column.chars().take_while(char::is_ascii_digit).collect();
    Some(Position {
        line: line.trim().parse().ok()?,
        column: column.parse().ok()?,
    })
}

fn strip_position(text: &str) -> String {
    let text = text.strip_prefix("sql parser error: ").unwrap_or(text);
    match text.rfind(" at Line: ") {
        Some(at) => text[..at].to_owned(),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parser_positions_are_read_from_the_message() {
        let text = "sql parser error: Expected: an expression, found: FROM at Line: 2, Column: 8";
        assert_eq!(position_in(text), Some(Position { line: 2, column: 8 }));
        assert_eq!(strip_position(text), "Expected: an expression, found: FROM");
        assert_eq!(position_in("no position"), None);
    }

    #[test]
    fn arrow_failures_are_data_errors() {
        let e = DataFusionError::ArrowError(Box::new(ArrowError::DivideByZero), None);
        assert_eq!(EngineError::from(e).code(), ErrorCode::DataError);
        let e = DataFusionError::ResourcesExhausted("pool".into());
        assert_eq!(EngineError::from(e).code(), ErrorCode::QueryTooLarge);
    }
}
