//! The stand-in for store kinds whose adapter has not landed yet (MongoDB, Redis): accepted by
//! the configuration, reported by `check`, and answering every fragment with a clear error.

use async_trait::async_trait;
use switchyard_backend::{Backend, BackendError, Capabilities, Fragment, NativeStatement};
use switchyard_core::{BackendKind, ResultSet, Table};

/// A backend whose adapter is not available in this build.
#[derive(Debug)]
pub struct PendingBackend {
    name: String,
    kind: BackendKind,
}

impl PendingBackend {
    /// A stand-in for backend `name` of `kind`.
    pub fn new(name: &str, kind: BackendKind) -> Self {
        Self {
            name: name.to_owned(),
            kind,
        }
    }

    fn error(&self) -> BackendError {
        BackendError::Unsupported {
            backend: self.name.clone(),
            what: format!(
                "the {} adapter is not available in this build (run `switchyard serve --embedded` to use SQLite for every backend)",
                self.kind.as_str()
            ),
        }
    }
}

#[async_trait]
impl Backend for PendingBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> BackendKind {
        self.kind
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            full_sql: false,
            joins: false,
            aggregates: false,
            sort_limit: false,
            needs_key: true,
            transactions: false,
        }
    }

    fn explain(&self, _: Fragment<'_>) -> Result<NativeStatement, BackendError> {
        Err(self.error())
    }

    async fn execute(&self, _: Fragment<'_>) -> Result<ResultSet, BackendError> {
        Err(self.error())
    }

    async fn health(&self) -> Result<(), BackendError> {
        Err(self.error())
    }

    async fn ensure_table(&self, _: &Table) -> Result<(), BackendError> {
        Err(self.error())
    }
}
