//! The router's error type: every failure of a request leaves as a [`RouterError`] with a
//! stable [`ErrorCode`].

use switchyard_backend::BackendError;
use switchyard_core::{CoreError, ErrorCode, Position};
use switchyard_plugin_host::PluginError;

use crate::TxFailure;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// Parsing, binding or planning failed.
    #[error(transparent)]
    Plan(#[from] CoreError),
    /// A backend failed its fragment.
    #[error("fragment failed")]
    Backend(#[from] BackendError),
    /// The placement plugin failed.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// The plugin engine could not start.
    #[error("the plugin engine cannot start: {message}")]
    PluginEngine {
        /// Why.
        message: String,
    },
    /// The whole query took longer than `server.query_timeout_ms`.
    #[error("query did not finish within {after_ms} ms")]
    Timeout {
        /// The timeout.
        after_ms: u64,
    },
    /// A table the request needs is not in the catalog (seeding).
    #[error("table `{table}` is not in the catalog")]
    UnknownTable {
        /// The table.
        table: String,
    },
    /// A multi-statement transaction failed (or was refused).
    #[error("{}", .0.message)]
    Transaction(Box<TxFailure>),
    /// The backend's circuit is open: it failed to answer recently, so statements for it fail
    /// at once.
    #[error(
        "backend `{backend}` is not answering (circuit open after repeated connection failures); retry in {retry_after_ms} ms"
    )]
    CircuitOpen {
        /// The backend.
        backend: String,
        /// When a statement may go through again.
        retry_after_ms: u64,
    },
    /// The router-side engine refused or failed the statement.
    #[error(transparent)]
    Engine(#[from] switchyard_engine::EngineError),
    /// A backend could not be created from its configuration.
    #[error("backend `{backend}` cannot be created")]
    BackendSetup {
        /// The backend.
        backend: String,
        /// Why.
        #[source]
        source: BackendError,
    },
}

impl RouterError {
    /// The client-facing code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Plan(e) => e.code(),
            Self::Engine(e) => e.code(),
            Self::Backend(e) => e.code(),
            Self::Plugin(e) => e.code(),
            Self::PluginEngine { .. } => ErrorCode::Internal,
            Self::Timeout { .. } => ErrorCode::Timeout,
            Self::UnknownTable { .. } => ErrorCode::UnknownTable,
            Self::BackendSetup { .. } | Self::CircuitOpen { .. } => ErrorCode::BackendUnavailable,
            Self::Transaction(f) => f.code,
        }
    }

    /// Where in the SQL text the problem is, when it applies.
    pub fn position(&self) -> Option<Position> {
        match self {
            Self::Plan(e) => e.position(),
            Self::Engine(e) => e.position(),
            _ => None,
        }
    }

    /// The message for clients: the top-level description, plus the store's own message for
    /// statement failures, never connection details.
    pub fn client_message(&self) -> String {
        match self {
            Self::Backend(e) => e.to_string(),
            other => other.to_string(),
        }
    }
}
