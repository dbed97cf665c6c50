//! The default planner: where a bound statement runs when no plugin decides otherwise.
//!
//! - A statement whose tables share one backend runs whole there (the shared primary; for reads
//!   also any backend with a primary or replica of every table).
//! - A SELECT over tables on several backends becomes one fragment per backend, hash-joined along
//!   the statement's join edges (left-deep, in FROM order).
//! - A SELECT of one sharded table scatters to every shard: union-all, top-k for ORDER BY ...
//!   LIMIT, aggregate-combine for aggregates.
//! - Writes go to the primary (an INSERT into a sharded table to the shard its key hashes to,
//!   UPDATE/DELETE to every shard) and invalidate the table's cache placements.

use switchyard_config::Role;

use crate::catalog::{Catalog, Table};
use crate::error::CoreError;
use crate::ir::{BoundQuery, Statement, StatementKind};
use crate::routing::{
    BackendStatus, Input, MergeNode, MergeOp, Route, RouteFragment, RouteRequest, WritePlan,
    build_request, shard_of,
};

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
    plan_with_request(sql, params, catalog, Vec::new(), Vec::new()).map(|(plan, _)| plan)
}

/// [`plan`], also returning the route request a placement plugin is asked (its default route
/// is the plan's route).
pub fn plan_with_request(
    sql: &str,
    params: &[serde_json::Value],
    catalog: &Catalog,
    context: Vec<(String, String)>,
    status: Vec<BackendStatus>,
) -> Result<(Plan, RouteRequest), CoreError> {
    let query = crate::sql::bind(sql, params, catalog)?;
    let placeholder = Route::single(0, 0);
    let mut request = build_request(&query, catalog, placeholder, context, status);
    let route = default_route(catalog, &query.statement, &request)?;
    request.default_route = route.clone();
    Ok((Plan { query, route }, request))
}

fn no_route(reason: String) -> CoreError {
    CoreError::NoRoute { reason }
}

/// The default route of a bound statement (see the module documentation).
pub fn default_route(
    catalog: &Catalog,
    statement: &Statement,
    request: &RouteRequest,
) -> Result<Route, CoreError> {
    let access_tables: Vec<&Table> = statement
        .access_tables()
        .iter()
        .filter_map(|t| catalog.table(t))
        .collect();
    let backend_id = |name: &str| catalog.backends.get_index_of(name);
    let caches = |t: &Table| -> Vec<usize> {
        t.placements
            .iter()
            .filter(|p| p.role == Role::Cache)
            .filter_map(|p| backend_id(&p.backend))
            .collect()
    };
    if statement.kind() != StatementKind::Select {
        let Some(table) = access_tables.first() else {
            return Err(no_route("the statement names no table".to_owned()));
        };
        let targets = write_targets(catalog, table, request)?;
        let mut route = Route::single(targets[0], 1);
        route.write = Some(WritePlan {
            targets,
            invalidate: caches(table),
        });
        return Ok(route);
    }
    let any_sharded = access_tables.iter().any(|t| t.primary().is_none());
    if any_sharded && access_tables.len() == 1 {
        return Ok(scatter(catalog, access_tables[0], request));
    }
    // One backend for everything, if there is one.
    let primaries: Vec<&str> = access_tables
        .iter()
        .filter_map(|t| t.primary().map(|p| p.backend.as_str()))
        .collect();
    let shared = primaries
        .first()
        .copied()
        .filter(|first| primaries.iter().all(|b| b == first));
    let readable = |b: &String| {
        access_tables.iter().all(|t| {
            t.placements
                .iter()
                .any(|p| &p.backend == b && matches!(p.role, Role::Primary | Role::Replica))
        })
    };
    let single = shared
        .filter(|_| !any_sharded)
        .and_then(backend_id)
        .or_else(|| catalog.backends.keys().position(readable));
    if let Some(backend) = single {
        return Ok(Route::single(backend, access_tables.len()));
    }
    // One fragment per primary backend (a sharded table: one per shard under a union),
    // hash-joined along the join edges.
    let mut fragments: Vec<RouteFragment> = Vec::new();
    let mut nodes = Vec::new();
    // (accesses, input) per unit to join, in FROM order of their first access.
    let mut units: Vec<(Vec<usize>, Input)> = Vec::new();
    let mut by_backend: Vec<(usize, usize)> = Vec::new();
    for (access, table) in access_tables.iter().enumerate() {
        match table.primary() {
            Some(p) => {
                let id = backend_id(&p.backend).ok_or_else(|| {
                    no_route(format!("backend `{}` is not configured", p.backend))
                })?;
                match by_backend.iter().find(|(b, _)| *b == id).map(|(_, k)| *k) {
                    Some(k) => {
                        fragments[k].accesses.push(access);
                        if let Some(unit) = units.iter_mut().find(|(_, i)| *i == Input::Fragment(k))
                        {
                            unit.0.push(access);
                        }
                    }
                    None => {
                        fragments.push(RouteFragment {
                            backend: id,
                            accesses: vec![access],
                        });
                        by_backend.push((id, fragments.len() - 1));
                        units.push((vec![access], Input::Fragment(fragments.len() - 1)));
                    }
                }
            }
            None => {
                let first = fragments.len();
                for p in table.shards() {
                    let id = backend_id(&p.backend).ok_or_else(|| {
                        no_route(format!("backend `{}` is not configured", p.backend))
                    })?;
                    fragments.push(RouteFragment {
                        backend: id,
                        accesses: vec![access],
                    });
                }
                nodes.push(MergeNode {
                    op: MergeOp::UnionAll,
                    inputs: (first..fragments.len()).map(Input::Fragment).collect(),
                });
                units.push((vec![access], Input::Node(nodes.len() - 1)));
            }
        }
    }
    let mut joined: Vec<usize> = units[0].0.clone();
    let mut current = units[0].1;
    for (accesses, input) in units.iter().skip(1) {
        let edge = request.joins.iter().position(|e| {
            (joined.contains(&e.left.access) && accesses.contains(&e.right.access))
                || (joined.contains(&e.right.access) && accesses.contains(&e.left.access))
        });
        let Some(edge) = edge else {
            let names: Vec<&str> = accesses
                .iter()
                .map(|a| access_tables[*a].name.as_str())
                .collect();
            return Err(no_route(format!(
                "no equality join condition connects {} with the tables before it",
                names.join(", ")
            )));
        };
        nodes.push(MergeNode {
            op: MergeOp::HashJoin { edge },
            inputs: vec![current, *input],
        });
        current = Input::Node(nodes.len() - 1);
        joined.extend(accesses.iter().copied());
    }
    Ok(Route {
        fragments,
        nodes,
        root: current,
        write: None,
    })
}

/// Every shard of a sharded table, merged by the operator the statement needs.
fn scatter(catalog: &Catalog, table: &Table, request: &RouteRequest) -> Route {
    let fragments: Vec<RouteFragment> = table
        .shards()
        .filter_map(|p| catalog.backends.get_index_of(&p.backend))
        .map(|backend| RouteFragment {
            backend,
            accesses: vec![0],
        })
        .collect();
    let inputs = (0..fragments.len()).map(Input::Fragment).collect();
    let op = if !request.aggregates.is_empty() || !request.group_by.is_empty() {
        MergeOp::AggregateCombine
    } else if let (Some(limit), false) = (request.limit, request.order_by.is_empty()) {
        MergeOp::TopK {
            limit: limit + request.offset.unwrap_or(0),
        }
    } else {
        MergeOp::UnionAll
    };
    Route {
        fragments,
        nodes: vec![MergeNode { op, inputs }],
        root: Input::Node(0),
        write: None,
    }
}

/// Where a write to `table` goes: the primary; for a sharded table, the shard of the inserted
/// keys (INSERT) or every shard (UPDATE, DELETE).
fn write_targets(
    catalog: &Catalog,
    table: &Table,
    request: &RouteRequest,
) -> Result<Vec<usize>, CoreError> {
    let backend_id = |name: &str| {
        catalog
            .backends
            .get_index_of(name)
            .ok_or_else(|| no_route(format!("backend `{name}` is not configured")))
    };
    if let Some(p) = table.primary() {
        return Ok(vec![backend_id(&p.backend)?]);
    }
    let shards: Vec<usize> = table
        .shards()
        .map(|p| backend_id(&p.backend))
        .collect::<Result<_, _>>()?;
    if shards.is_empty() {
        return Err(no_route(format!(
            "table `{}` has no primary and no shards",
            table.name
        )));
    }
    if request.kind != StatementKind::Insert {
        return Ok(shards);
    }
    let (Some(key_col), Some(access)) = (table.shard_key, request.accesses.first()) else {
        return Err(no_route(format!(
            "table `{}` has shards but no shard_key",
            table.name
        )));
    };
    let pk_pos = table.primary_key.iter().position(|c| *c == key_col);
    let keys = access.key_lookup.as_ref().zip(pk_pos).map(|(keys, pos)| {
        keys.iter()
            .filter_map(|k| k.get(pos))
            .map(|v| shard_of(v, shards.len()))
            .collect::<Vec<_>>()
    });
    match keys.as_deref() {
        Some([first, rest @ ..]) if rest.iter().all(|s| s == first) => Ok(vec![shards[*first]]),
        Some([_, ..]) => Err(no_route(format!(
            "the rows of this INSERT belong to different shards of `{}`; insert them separately",
            table.name
        ))),
        _ => Err(no_route(format!(
            "an INSERT into sharded table `{}` must give its shard key as part of the primary key",
            table.name
        ))),
    }
}
