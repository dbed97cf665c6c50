//! The default planner: where a bound statement runs when no plugin decides otherwise.
//!
//! A statement runs whole on the one backend that holds every table it touches (the shared primary
//! for writes and for reads when there is one, else any backend with a primary or replica of each
//! table). Writes go to the primary and invalidate the table's cache placements. Statements that
//! need several backends get [`CoreError::NoRoute`] until cross-store merges land.

use switchyard_config::Role;

use crate::catalog::Catalog;
use crate::error::CoreError;
use crate::ir::{BoundQuery, Statement, StatementKind};
use crate::routing::{Route, WritePlan};

/// A bound statement and its route.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The statement with its parameter values.
    pub query: BoundQuery,
    /// Where it runs.
    pub route: Route,
}

/// SQL text + parameters + catalog -> plan with the default route. Pure and synchronous.
pub fn plan(sql: &str, params: &[serde_json::Value], catalog: &Catalog) -> Result<Plan, CoreError> {
    let query = crate::sql::bind(sql, params, catalog)?;
    let route = default_route(catalog, &query.statement)?;
    Ok(Plan { query, route })
}

/// The default route of a bound statement.
pub fn default_route(catalog: &Catalog, statement: &Statement) -> Result<Route, CoreError> {
    let accesses = statement.access_tables();
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
                        "table `{}` is sharded; a placement plugin must choose the shards (scatter-gather is not available yet)",
                        t.name
                    ),
                });
            }
        }
    }
    let backend_id = |name: &str| catalog.backends.get_index_of(name);
    let shared = primaries
        .first()
        .map(|(_, b)| *b)
        .filter(|first| primaries.iter().all(|(_, b)| b == first));
    let chosen = match shared {
        Some(b) => backend_id(b),
        None if !write => catalog.backends.keys().position(|b| {
            tables.iter().all(|t| {
                t.placements
                    .iter()
                    .any(|p| &p.backend == b && matches!(p.role, Role::Primary | Role::Replica))
            })
        }),
        None => None,
    };
    let Some(backend) = chosen else {
        let placed: Vec<String> = primaries
            .iter()
            .map(|(t, b)| format!("{t} on {b}"))
            .collect();
        return Err(CoreError::NoRoute {
            reason: format!(
                "the tables live on different backends ({}) and cross-store execution is not available yet",
                placed.join(", ")
            ),
        });
    };
    let mut route = Route::single(backend, accesses.len());
    if write && let Some(table) = tables.first() {
        route.write = Some(WritePlan {
            targets: vec![backend],
            invalidate: table
                .placements
                .iter()
                .filter(|p| p.role == Role::Cache)
                .filter_map(|p| backend_id(&p.backend))
                .collect(),
        });
    }
    Ok(route)
}
