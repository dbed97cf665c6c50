//! Execution of SELECT routes with more than one fragment: fragments run concurrently (the first
//! error cancels the rest), semi-join reduction pushes the small side's join keys into the big
//! side's fragment, first-hit reads a cache before the source of truth, shard merges push the
//! statement (or its partial aggregates) into every shard, and whatever a backend could not take
//! is finished in the router by `switchyard_core::exec`.

mod cache;
mod explain;
mod scan;
mod scatter;
mod tree;

use switchyard_backend::Capabilities;
use switchyard_core::exec::ops::{self, JoinSpec, Row};
use switchyard_core::exec::{Budget, Layout, accesses_of};
use switchyard_core::ir::{BinaryOp, Expr, ExprKind, JoinKind, Select};
use switchyard_core::routing::{AccessId, ColumnRef, Input, RouteRequest};
use switchyard_core::{BoundQuery, CoreError, LogicalType, ResultSet, Route, Value};

use crate::{Router, RouterError};

/// Rows over a set of table accesses, as wide rows of the statement's layout.
#[derive(Debug)]
struct Relation {
    accesses: Vec<AccessId>,
    rows: Vec<Row>,
}

/// One statement sent to one backend, and where its output columns land in the wide row.
#[derive(Debug, Clone)]
struct Scan {
    backend: usize,
    accesses: Vec<AccessId>,
    select: Select,
    /// `(access, column)` per output column.
    slots: Vec<(AccessId, usize)>,
}

fn no_route(reason: impl Into<String>) -> RouterError {
    RouterError::Plan(CoreError::NoRoute {
        reason: reason.into(),
    })
}

fn boolean(kind: ExprKind) -> Expr {
    Expr {
        kind,
        ty: LogicalType::Bool,
    }
}

fn and_all(parts: Vec<Expr>) -> Option<Expr> {
    parts.into_iter().reduce(|a, b| {
        boolean(ExprKind::Binary {
            op: BinaryOp::And,
            left: Box::new(a),
            right: Box::new(b),
        })
    })
}

/// `column IN (values)` on a table access.
fn in_list(access: AccessId, column: usize, ty: LogicalType, values: &[Value]) -> Expr {
    let col = Expr {
        kind: ExprKind::Column {
            table: access,
            column,
        },
        ty,
    };
    boolean(ExprKind::InList {
        expr: Box::new(col),
        list: values
            .iter()
            .map(|v| Expr {
                kind: ExprKind::Literal(v.clone()),
                ty,
            })
            .collect(),
        negated: false,
    })
}

/// The multi-fragment executor for one SELECT.
pub(crate) struct Exec<'a> {
    router: &'a Router,
    query: &'a BoundQuery,
    select: &'a Select,
    route: &'a Route,
    request: &'a RouteRequest,
    layout: Layout,
    budget: &'a Budget,
}

impl<'a> Exec<'a> {
    pub(crate) fn new(
        router: &'a Router,
        query: &'a BoundQuery,
        select: &'a Select,
        route: &'a Route,
        request: &'a RouteRequest,
        budget: &'a Budget,
    ) -> Exec<'a> {
        Exec {
            router,
            query,
            select,
            route,
            request,
            layout: Layout::of(select, &router.catalog),
            budget,
        }
    }

    /// Counts a merge operator run in the router.
    fn used(&self, operator: &str) {
        self.router
            .metrics
            .merge_operators
            .with_label_values(&[operator])
            .inc();
    }

    fn caps(&self, backend: usize) -> Capabilities {
        self.router
            .backends
            .get_index(backend)
            .map(|(_, b)| b.capabilities())
            .unwrap_or(Capabilities {
                full_sql: false,
                joins: false,
                aggregates: false,
                sort_limit: false,
                needs_key: true,
                transactions: false,
                postgres_sql: false,
            })
    }

    fn table(&self, access: AccessId) -> Option<&switchyard_core::Table> {
        self.select
            .from
            .get(access)
            .and_then(|t| self.router.catalog.table(&t.table))
    }

    fn join_kind(&self, access: AccessId) -> JoinKind {
        match access.checked_sub(1).and_then(|j| self.select.joins.get(j)) {
            Some(j) => j.kind,
            None => JoinKind::Inner,
        }
    }

    fn on(&self, access: AccessId) -> Option<&Expr> {
        access
            .checked_sub(1)
            .and_then(|j| self.select.joins.get(j))
            .map(|j| &j.on)
    }

    /// Runs the route.
    pub(crate) async fn run(&self) -> Result<ResultSet, RouterError> {
        let columns = self.query.statement.result_columns();
        if let Some((node, fragments)) = self.scatter()
            && let Some(rows) = self.run_scatter(node, &fragments).await?
        {
            return Ok(ResultSet {
                columns,
                rows,
                rows_affected: None,
            });
        }
        let relations = self.eval(self.route.root, None).await?;
        let rows = self.join_all(relations)?;
        let rows = switchyard_core::exec::finish_select(
            self.select,
            rows,
            &self.layout,
            &self.query.params,
            self.budget,
        )?;
        Ok(ResultSet {
            columns,
            rows,
            rows_affected: None,
        })
    }

    /// Joins the relations in FROM order with each access's ON condition and join kind, so the
    /// answer is the one a single database gives whatever order the fragments ran in.
    fn join_all(&self, mut relations: Vec<Relation>) -> Result<Vec<Row>, RouterError> {
        let Some(first) = relations.iter().position(|r| r.accesses.contains(&0)) else {
            return Err(no_route("the route does not read the first table"));
        };
        let mut current = relations.swap_remove(first);
        let mut joined = current.accesses.clone();
        for access in 1..self.select.from.len() {
            if joined.contains(&access) {
                continue;
            }
            let Some(pos) = relations.iter().position(|r| r.accesses.contains(&access)) else {
                return Err(no_route(format!("table access {access} is not read")));
            };
            let right = relations.swap_remove(pos);
            let on = self.on(access);
            let mut left_keys = Vec::new();
            let mut right_keys = Vec::new();
            if let Some(on) = on {
                for c in on.conjuncts() {
                    if let ExprKind::Binary {
                        op: BinaryOp::Eq,
                        left,
                        right: r,
                    } = &c.kind
                    {
                        let side = |e: &Expr| {
                            let used = accesses_of(e);
                            if used.is_empty() {
                                0
                            } else if used.iter().all(|a| joined.contains(a)) {
                                1
                            } else if used.iter().all(|a| right.accesses.contains(a)) {
                                2
                            } else {
                                0
                            }
                        };
                        match (side(left), side(r)) {
                            (1, 2) => {
                                left_keys.push((**left).clone());
                                right_keys.push((**r).clone());
                            }
                            (2, 1) => {
                                left_keys.push((**r).clone());
                                right_keys.push((**left).clone());
                            }
                            _ => {}
                        }
                    }
                }
            }
            let slots: Vec<(usize, usize)> = right
                .accesses
                .iter()
                .map(|a| self.layout.slots(*a))
                .collect();
            let spec = JoinSpec {
                kind: self.join_kind(access),
                left_keys: &left_keys,
                right_keys: &right_keys,
                right_slots: &slots,
                condition: on,
                offsets: &self.layout.offsets,
                params: &self.query.params,
            };
            self.used("hash_join");
            current.rows = ops::hash_join(current.rows, right.rows, &spec, self.budget)?;
            joined.extend(right.accesses.iter().copied());
        }
        Ok(current.rows)
    }
}

/// Keys pushed into a scan by semi-join reduction.
#[derive(Debug, Clone)]
struct Reduce {
    access: AccessId,
    column: usize,
    keys: Vec<Value>,
}

/// A join edge used for semi-join reduction: `to` is restricted to the values of `from`.
#[derive(Debug, Clone, Copy)]
struct Reduction {
    from: ColumnRef,
    to: ColumnRef,
}

/// One unit of a join group.
enum Unit {
    /// A statement of a fragment.
    Scan { fragment: usize, scan: Box<Scan> },
    /// A merge node evaluated whole (first-hit, a union of shards).
    Node(Input),
}
