//! The default planner: which backend runs a bound statement.
//!
//! This slice pushes a statement down whole when one backend holds every table it touches;
//! statements that need several backends get [`CoreError::NoRoute`] until cross-store merges land.

use switchyard_config::Role;

use crate::catalog::Catalog;
use crate::error::CoreError;
use crate::ir::{BoundQuery, Statement, StatementKind};

/// Where a statement runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The whole statement runs on one backend.
    Single {
        /// Backend name.
        backend: String,
    },
}

/// A bound statement and its route.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The statement with its parameter values.
    pub query: BoundQuery,
    /// Where it runs.
    pub route: Route,
}

/// SQL text + parameters + catalog -> plan. Pure and synchronous.
pub fn plan(sql: &str, params: &[serde_json::Value], catalog: &Catalog) -> Result<Plan, CoreError> {
    let query = crate::sql::bind(sql, params, catalog)?;
    let route = default_route(catalog, &query.statement)?;
    Ok(Plan { query, route })
}

/// Chooses the backend for a statement: writes go to the primary; reads go to the primary
/// backend shared by all tables, else to the first backend (in configuration order) that holds
/// a primary or replica of every table.
pub fn default_route(catalog: &Catalog, statement: &Statement) -> Result<Route, CoreError> {
    let tables: Vec<&crate::Table> = statement
        .tables()
        .iter()
        .filter_map(|t| catalog.table(t))
        .collect();
    let write = statement.kind() != StatementKind::Select;
    let mut primaries = Vec::new();
    for t in &tables {
        match t.primary() {
            Some(p) => primaries.push((t.name.as_str(), p.backend.as_str())),
            None => {
                return Err(CoreError::NoRoute {
                    reason: format!(
                        "table `{}` is sharded; scatter-gather is not available yet",
                        t.name
                    ),
                });
            }
        }
    }
    if let Some((_, first)) = primaries.first()
        && primaries.iter().all(|(_, b)| b == first)
    {
        return Ok(Route::Single {
            backend: (*first).to_owned(),
        });
    }
    if !write {
        let readable = |backend: &str| {
            tables.iter().all(|t| {
                t.placements.iter().any(|p| {
                    p.backend == backend && matches!(p.role, Role::Primary | Role::Replica)
                })
            })
        };
        if let Some(backend) = catalog.backends.keys().find(|b| readable(b)) {
            return Ok(Route::Single {
                backend: backend.clone(),
            });
        }
    }
    let placed: Vec<String> = primaries
        .iter()
        .map(|(t, b)| format!("{t} on {b}"))
        .collect();
    Err(CoreError::NoRoute {
        reason: format!(
            "the tables live on different backends ({}) and cross-store execution is not available yet",
            placed.join(", ")
        ),
    })
}
