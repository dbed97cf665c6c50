//! Execution of SELECT routes with more than one fragment: fragments run concurrently (the first
//! error cancels the rest), semi-join reduction pushes the small side's join keys into the big
//! side's fragment, first-hit reads a cache before the source of truth, shard merges push the
//! statement (or its partial aggregates) into every shard, and whatever a backend could not take
//! is finished in the router by `switchyard_core::exec`.

use std::collections::{HashMap, HashSet};

use futures::future::{BoxFuture, FutureExt, try_join_all};
use futures::{StreamExt, TryStreamExt};
use switchyard_backend::{BackendError, Capabilities, Fragment, NativeStatement};
use switchyard_core::exec::ops::{self, JoinSpec, Key, Row, SortSpec};
use switchyard_core::exec::{Budget, Layout, accesses_of, agg, map_accesses, rejects_nulls_of};
use switchyard_core::ir::{
    BinaryOp, Expr, ExprKind, Insert, JoinKind, OnConflict, OutputColumn, Select, Statement,
};
use switchyard_core::routing::{
    AccessId, ColumnRef, CompareOp, Input, JoinEdge, MergeNode, MergeOp, RouteRequest,
};
use switchyard_core::{BoundQuery, CoreError, LogicalType, ResultSet, Route, Value};

use crate::{ExplainedFragment, Router, RouterError};

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

    /// The root input is a shard merge over fragments that each hold every table access.
    fn scatter(&self) -> Option<(&MergeNode, Vec<usize>)> {
        let Input::Node(n) = self.route.root else {
            return None;
        };
        let node = self.route.nodes.get(n)?;
        if !matches!(
            node.op,
            MergeOp::UnionAll
                | MergeOp::UnionDistinct
                | MergeOp::TopK { .. }
                | MergeOp::AggregateCombine
        ) {
            return None;
        }
        let all: Vec<usize> = (0..self.select.from.len()).collect();
        let mut fragments = Vec::new();
        for input in &node.inputs {
            let Input::Fragment(f) = input else {
                return None;
            };
            let frag = self.route.fragments.get(*f)?;
            let mut acc = frag.accesses.clone();
            acc.sort_unstable();
            acc.dedup();
            let caps = self.caps(frag.backend);
            if acc != all || caps.needs_key || (all.len() > 1 && !caps.joins) {
                return None;
            }
            fragments.push(*f);
        }
        Some((node, fragments))
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

    // ---- shard merges -------------------------------------------------------------------

    /// The statement each shard runs for a non-aggregate merge: the output plus hidden ORDER BY
    /// keys, sorted, with LIMIT + OFFSET as the limit. `None` when DISTINCT would change meaning.
    fn shard_select(&self) -> Option<Select> {
        let s = self.select;
        let mut projection = s.projection.clone();
        for (i, o) in s.order_by.iter().enumerate() {
            if s.distinct && !s.projection.iter().any(|c| c.expr == o.expr) {
                return None;
            }
            projection.push(OutputColumn {
                name: format!("__sort{i}"),
                expr: o.expr.clone(),
            });
        }
        Some(Select {
            projection,
            limit: s.limit.map(|l| l.saturating_add(s.offset.unwrap_or(0))),
            offset: None,
            ..s.clone()
        })
    }

    fn aggregate_plan(&self, fragments: &[usize]) -> Option<(agg::PartialPlan, Vec<Expr>)> {
        let all_aggregate = fragments.iter().all(|f| {
            self.route
                .fragments
                .get(*f)
                .is_some_and(|fr| self.caps(fr.backend).aggregates)
        });
        if !all_aggregate {
            return None;
        }
        let aggregates = agg::collect_aggregates(self.select);
        agg::partial_plan(self.select, &aggregates).map(|p| (p, aggregates))
    }

    async fn run_scatter(
        &self,
        node: &MergeNode,
        fragments: &[usize],
    ) -> Result<Option<Vec<Row>>, RouterError> {
        self.used(node.op.as_str());
        let s = self.select;
        let backends: Vec<usize> = fragments
            .iter()
            .filter_map(|f| self.route.fragments.get(*f).map(|fr| fr.backend))
            .collect();
        if s.is_aggregate() {
            let Some((plan, aggregates)) = self.aggregate_plan(fragments) else {
                return Ok(None);
            };
            let parts = self.run_everywhere(&backends, &plan.shard).await?;
            let rows = ops::union_all(parts);
            let groups = agg::combine(&rows, &plan, &aggregates, self.budget)?;
            return Ok(Some(switchyard_core::exec::finish_groups(
                s,
                &aggregates,
                groups,
                &self.query.params,
            )?));
        }
        let Some(shard) = self.shard_select() else {
            return Ok(None);
        };
        let width = s.projection.len();
        let parts = self.run_everywhere(&backends, &shard).await?;
        let offset = usize::try_from(s.offset.unwrap_or(0)).unwrap_or(usize::MAX);
        let limit = s
            .limit
            .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
        let keys: Vec<usize> = (width..width + s.order_by.len()).collect();
        let specs: Vec<SortSpec> = switchyard_core::exec::order_specs(s);
        let dedupe = s.distinct || node.op == MergeOp::UnionDistinct;
        let mut rows = if dedupe {
            let mut rows = ops::distinct(ops::union_all(parts), Some(width));
            ops::sort(&mut rows, &keys, &specs);
            rows
        } else if keys.is_empty() {
            ops::union_all(parts)
        } else {
            ops::top_k(parts, &keys, &specs, limit.saturating_add(offset))
        };
        rows = rows.into_iter().skip(offset).take(limit).collect();
        for r in &mut rows {
            r.truncate(width);
        }
        Ok(Some(rows))
    }

    /// Runs `select` on every backend concurrently.
    async fn run_everywhere(
        &self,
        backends: &[usize],
        select: &Select,
    ) -> Result<Vec<Vec<Row>>, RouterError> {
        let q = BoundQuery {
            statement: Statement::Select(select.clone()),
            params: self.query.params.clone(),
        };
        try_join_all(backends.iter().map(|&b| {
            let q = &q;
            async move {
                let rs = self
                    .router
                    .run_on(
                        b,
                        Fragment {
                            query: q,
                            catalog: &self.router.catalog,
                        },
                    )
                    .await?;
                self.budget.charge(&rs.rows)?;
                Ok::<_, RouterError>(rs.rows)
            }
        }))
        .await
    }

    // ---- scans ----------------------------------------------------------------------------

    /// Columns to read of `access`: every column the statement uses, plus the primary key.
    fn needed(&self, access: AccessId, all: bool) -> Vec<usize> {
        let Some(table) = self.table(access) else {
            return Vec::new();
        };
        if all {
            return (0..table.columns.len()).collect();
        }
        let mut cols: Vec<usize> = self
            .request
            .accesses
            .get(access)
            .map(|a| a.columns.clone())
            .unwrap_or_default();
        for k in &table.primary_key {
            if !cols.contains(k) {
                cols.push(*k);
            }
        }
        cols.sort_unstable();
        cols
    }

    /// Whether the accesses of one fragment can be pushed down as one join statement: the
    /// backend joins, and every join among them is INNER with its ON inside the fragment.
    fn pushable_join(&self, accesses: &[AccessId], caps: &Capabilities) -> bool {
        if accesses.len() < 2 {
            return true;
        }
        if !caps.joins || caps.needs_key {
            return false;
        }
        accesses.iter().enumerate().all(|(i, &a)| {
            let inner = a == 0 || self.join_kind(a) == JoinKind::Inner;
            let contained = i == 0
                || self
                    .on(a)
                    .is_some_and(|on| accesses_of(on).iter().all(|x| accesses.contains(x)));
            inner && contained
        })
    }

    /// The scans of fragment `f` (one, or one per access when its join cannot be pushed).
    fn fragment_scans(&self, f: usize, all_columns: bool) -> Result<Vec<Scan>, RouterError> {
        let frag = self
            .route
            .fragments
            .get(f)
            .ok_or_else(|| no_route(format!("fragment {f} does not exist")))?;
        let caps = self.caps(frag.backend);
        let mut accesses = frag.accesses.clone();
        accesses.sort_unstable();
        accesses.dedup();
        if self.pushable_join(&accesses, &caps) {
            Ok(vec![self.scan(frag.backend, &accesses, &caps, all_columns)])
        } else {
            Ok(accesses
                .iter()
                .map(|a| self.scan(frag.backend, &[*a], &caps, all_columns))
                .collect())
        }
    }

    fn scan(
        &self,
        backend: usize,
        accesses: &[AccessId],
        caps: &Capabilities,
        all_columns: bool,
    ) -> Scan {
        let local = |a: usize| accesses.iter().position(|x| *x == a).unwrap_or(usize::MAX);
        let inside = |e: &Expr| {
            let used = accesses_of(e);
            !used.is_empty() && used.iter().all(|a| accesses.contains(a))
        };
        let mut conjuncts: Vec<&Expr> = Vec::new();
        if let Some(f) = &self.select.filter {
            for c in f.conjuncts() {
                let ok = inside(c)
                    && (accesses.len() > 1
                        || self.join_kind(accesses[0]) == JoinKind::Inner
                        || rejects_nulls_of(c, accesses[0], &self.layout, &self.query.params));
                if ok {
                    conjuncts.push(c);
                }
            }
        }
        // ON conditions of the first access that only read it filter it before the join.
        if let Some(on) = self.on(accesses[0]) {
            for c in on.conjuncts() {
                if accesses_of(c) == [accesses[0]] {
                    conjuncts.push(c);
                }
            }
        }
        if caps.needs_key {
            let primary_key = |table: usize, column: usize| {
                self.table(table)
                    .is_some_and(|t| t.primary_key.contains(&column))
            };
            conjuncts.retain(|c| c.is_key_predicate(&primary_key));
        }
        let joins = accesses
            .iter()
            .skip(1)
            .filter_map(|a| self.on(*a))
            .map(|on| switchyard_core::ir::Join {
                kind: JoinKind::Inner,
                on: map_accesses(on, &local),
            })
            .collect();
        let mut projection = Vec::new();
        let mut slots = Vec::new();
        for &a in accesses {
            let Some(table) = self.table(a) else { continue };
            for c in self.needed(a, all_columns) {
                projection.push(OutputColumn {
                    name: format!("c{}", projection.len()),
                    expr: Expr {
                        kind: ExprKind::Column {
                            table: local(a),
                            column: c,
                        },
                        ty: table.columns[c].ty,
                    },
                });
                slots.push((a, c));
            }
        }
        let filter = and_all(
            conjuncts
                .into_iter()
                .map(|c| map_accesses(c, &local))
                .collect(),
        );
        Scan {
            backend,
            accesses: accesses.to_vec(),
            select: Select {
                distinct: false,
                from: accesses
                    .iter()
                    .filter_map(|a| self.select.from.get(*a).cloned())
                    .collect(),
                joins,
                filter,
                group_by: Vec::new(),
                having: None,
                projection,
                order_by: Vec::new(),
                limit: None,
                offset: None,
            },
            slots,
        }
    }

    /// Adds `extra` (over statement accesses) to a scan's filter.
    fn restricted(&self, scan: &Scan, extra: Expr) -> Scan {
        let accesses = scan.accesses.clone();
        let local = move |a: usize| accesses.iter().position(|x| *x == a).unwrap_or(usize::MAX);
        let extra = map_accesses(&extra, &local);
        let mut s = scan.clone();
        s.select.filter = Some(match s.select.filter.take() {
            Some(f) => boolean(ExprKind::Binary {
                op: BinaryOp::And,
                left: Box::new(f),
                right: Box::new(extra),
            }),
            None => extra,
        });
        s
    }

    async fn run_scan(&self, scan: &Scan) -> Result<Relation, RouterError> {
        let q = BoundQuery {
            statement: Statement::Select(scan.select.clone()),
            params: self.query.params.clone(),
        };
        let fragment = Fragment {
            query: &q,
            catalog: &self.router.catalog,
        };
        let rs = match self.router.run_on(scan.backend, fragment).await {
            // Key predicates that do not pin a whole key (a cart's product without its
            // customer): read without them where the store may scan; the router filters.
            Err(RouterError::Backend(BackendError::NeedsKey { .. }))
                if scan.select.filter.is_some() && self.caps(scan.backend).needs_key =>
            {
                let q = BoundQuery {
                    statement: Statement::Select(Select {
                        filter: None,
                        ..scan.select.clone()
                    }),
                    params: self.query.params.clone(),
                };
                let fragment = Fragment {
                    query: &q,
                    catalog: &self.router.catalog,
                };
                self.router.run_on(scan.backend, fragment).await?
            }
            other => other?,
        };
        self.budget.charge(&rs.rows)?;
        let width = self.layout.width();
        let rows = rs
            .rows
            .into_iter()
            .map(|r| {
                let mut wide = vec![Value::Null; width];
                for (v, (a, c)) in r.into_iter().zip(&scan.slots) {
                    if let Some(slot) = self.layout.offsets.get(*a).map(|o| o + c)
                        && let Some(dst) = wide.get_mut(slot)
                    {
                        *dst = v;
                    }
                }
                wide
            })
            .collect();
        Ok(Relation {
            accesses: scan.accesses.clone(),
            rows,
        })
    }

    /// Runs a scan once per batch of `keys` (as `column IN (batch)`), a few batches at a time.
    async fn run_reduced(
        &self,
        scan: &Scan,
        access: AccessId,
        column: usize,
        keys: &[Value],
    ) -> Result<Relation, RouterError> {
        let ty = self
            .table(access)
            .and_then(|t| t.columns.get(column))
            .map_or(LogicalType::Text, |c| c.ty);
        let batch = usize::try_from(self.router.config.execution.semi_join_batch_size)
            .unwrap_or(usize::MAX)
            .max(1);
        let scans: Vec<Scan> = keys
            .chunks(batch)
            .map(|chunk| self.restricted(scan, in_list(access, column, ty, chunk)))
            .collect();
        // A key-value store that cannot take the keys (they do not pin its key) would scan
        // once per batch: probe (no I/O) and scan once instead.
        if let Some(first) = scans.first()
            && self.caps(scan.backend).needs_key
            && let Ok(b) = self.router.backend_by_id(scan.backend)
        {
            let q = BoundQuery {
                statement: Statement::Select(first.select.clone()),
                params: self.query.params.clone(),
            };
            let probe = b.explain(Fragment {
                query: &q,
                catalog: &self.router.catalog,
            });
            if matches!(probe, Err(BackendError::NeedsKey { .. })) {
                return self.run_scan(scan).await;
            }
        }
        let mut runs: Vec<BoxFuture<'_, Result<Relation, RouterError>>> = Vec::new();
        for s in &scans {
            runs.push(self.run_scan(s).boxed());
        }
        let parts: Vec<Relation> = futures::stream::iter(runs)
            .buffer_unordered(4)
            .try_collect()
            .await?;
        Ok(Relation {
            accesses: scan.accesses.clone(),
            rows: ops::union_all(parts.into_iter().map(|p| p.rows).collect()),
        })
    }

    fn run_maybe_reduced<'s>(
        &'s self,
        scan: &'s Scan,
        reduce: Option<&'s Reduce>,
    ) -> BoxFuture<'s, Result<Relation, RouterError>> {
        async move {
            match reduce {
                Some(r) if scan.accesses.contains(&r.access) => {
                    self.run_reduced(scan, r.access, r.column, &r.keys).await
                }
                _ => self.run_scan(scan).await,
            }
        }
        .boxed()
    }

    // ---- the route tree -------------------------------------------------------------------

    fn input_accesses(&self, input: Input) -> Vec<AccessId> {
        match input {
            Input::Fragment(f) => self
                .route
                .fragments
                .get(f)
                .map(|fr| fr.accesses.clone())
                .unwrap_or_default(),
            Input::Node(n) => self
                .route
                .nodes
                .get(n)
                .map(|node| {
                    let mut out: Vec<AccessId> = node
                        .inputs
                        .iter()
                        .flat_map(|i| self.input_accesses(*i))
                        .collect();
                    out.sort_unstable();
                    out.dedup();
                    out
                })
                .unwrap_or_default(),
        }
    }

    /// The fragments an input reads.
    fn fragments_under(&self, input: Input) -> Vec<usize> {
        match input {
            Input::Fragment(f) => vec![f],
            Input::Node(n) => self
                .route
                .nodes
                .get(n)
                .map(|node| {
                    node.inputs
                        .iter()
                        .flat_map(|i| self.fragments_under(*i))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// A guess of the rows an input returns: key lookups know their count; fragments on stores
    /// that need a key are small; anything else is unknown (`None`, treated as large).
    fn estimate(&self, input: Input) -> Option<usize> {
        let keyed = |a: &AccessId| {
            self.request
                .accesses
                .get(*a)
                .and_then(|x| x.key_lookup.as_ref())
                .map(Vec::len)
        };
        match input {
            Input::Fragment(f) => {
                let frag = self.route.fragments.get(f)?;
                let by_key = frag.accesses.iter().filter_map(keyed).min();
                // A key-value read pinned by part of its key (a cart by customer) is small.
                let pinned = frag.accesses.iter().any(|a| {
                    let pk = self
                        .table(*a)
                        .map(|t| t.primary_key.clone())
                        .unwrap_or_default();
                    self.request.accesses.get(*a).is_some_and(|x| {
                        x.predicates.iter().any(|p| {
                            pk.contains(&p.column)
                                && matches!(p.op, CompareOp::Eq | CompareOp::InList)
                        })
                    })
                });
                by_key.or_else(|| (self.caps(frag.backend).needs_key && pinned).then_some(100))
            }
            Input::Node(n) => {
                let node = self.route.nodes.get(n)?;
                match node.op {
                    MergeOp::FirstHit { .. } => node.inputs.first().and_then(|i| self.estimate(*i)),
                    _ => None,
                }
            }
        }
    }

    /// The units of the join group rooted at `input`: hash joins are flattened, every fragment
    /// gives its scans, any other merge node (first-hit, a union of shards) is one unit.
    fn group_units(&self, input: Input, out: &mut Vec<Unit>) -> Result<(), RouterError> {
        match input {
            Input::Fragment(f) => {
                for scan in self.fragment_scans(f, false)? {
                    out.push(Unit::Scan {
                        fragment: f,
                        scan: Box::new(scan),
                    });
                }
            }
            Input::Node(n) => {
                let node = self
                    .route
                    .nodes
                    .get(n)
                    .ok_or_else(|| no_route(format!("node {n} does not exist")))?;
                match node.op {
                    MergeOp::HashJoin { .. } if node.inputs.len() == 2 => {
                        self.group_units(node.inputs[0], out)?;
                        self.group_units(node.inputs[1], out)?;
                    }
                    _ => out.push(Unit::Node(input)),
                }
            }
        }
        Ok(())
    }

    fn unit_accesses(&self, unit: &Unit) -> Vec<AccessId> {
        match unit {
            Unit::Scan { scan, .. } => scan.accesses.clone(),
            Unit::Node(input) => self.input_accesses(*input),
        }
    }

    /// How selective a unit looks before it runs: 0 key lookups (and first-hit), 1 filtered,
    /// 2 a whole table.
    fn rank(&self, unit: &Unit) -> u8 {
        let accesses = self.unit_accesses(unit);
        let pinned = accesses.iter().any(|a| {
            let pk = self
                .table(*a)
                .map(|t| t.primary_key.clone())
                .unwrap_or_default();
            self.request.accesses.get(*a).is_some_and(|x| {
                x.key_lookup.is_some()
                    || x.predicates.iter().any(|p| {
                        pk.contains(&p.column) && matches!(p.op, CompareOp::Eq | CompareOp::InList)
                    })
            })
        });
        let filtered = match unit {
            Unit::Scan { scan, .. } => scan.select.filter.is_some(),
            Unit::Node(_) => accesses.iter().any(|a| {
                self.request
                    .accesses
                    .get(*a)
                    .is_some_and(|x| !x.predicates.is_empty())
            }),
        };
        match unit {
            Unit::Node(input) if self.estimate(*input).is_some() => 0,
            _ if pinned => 0,
            _ if filtered => 1,
            _ => 2,
        }
    }

    /// Whether join keys may be pushed into a unit: scans, and unions of shard fragments.
    fn reducible(&self, unit: &Unit) -> bool {
        match unit {
            Unit::Scan { .. } => true,
            Unit::Node(Input::Node(n)) => self.route.nodes.get(*n).is_some_and(|nd| {
                matches!(nd.op, MergeOp::UnionAll | MergeOp::UnionDistinct)
                    && nd.inputs.iter().all(|i| matches!(i, Input::Fragment(_)))
            }),
            Unit::Node(Input::Fragment(_)) => true,
        }
    }

    /// Whether rows of `to` that match no `from` value can be dropped before the join: always
    /// under an inner join's ON; under a LEFT JOIN only on its nullable (joined) side, never
    /// on the preserved side.
    fn may_reduce(&self, edge: &JoinEdge, from: ColumnRef, to: ColumnRef) -> bool {
        if edge.kind == JoinKind::Inner {
            return true;
        }
        let is_col = |e: &Expr, c: ColumnRef| matches!(e.kind, ExprKind::Column { table, column } if table == c.access && column == c.column);
        to == edge.right
            && self.join_kind(to.access) == JoinKind::Left
            && self.on(to.access).is_some_and(|on| {
                on.conjuncts().iter().any(|c| {
                    matches!(&c.kind, ExprKind::Binary { op: BinaryOp::Eq, left, right }
                        if (is_col(left, from) && is_col(right, to))
                            || (is_col(left, to) && is_col(right, from)))
                })
            })
    }

    /// A join edge from an access already fetched into one of `target`'s.
    fn reducing_edge(&self, done: &[AccessId], target: &[AccessId]) -> Option<Reduction> {
        self.request.joins.iter().find_map(|e| {
            [(e.left, e.right), (e.right, e.left)]
                .into_iter()
                .find(|(from, to)| {
                    done.contains(&from.access)
                        && target.contains(&to.access)
                        && !target.contains(&from.access)
                        && self.may_reduce(e, *from, *to)
                })
                .map(|(from, to)| Reduction { from, to })
        })
    }

    /// When each unit of a join group runs (dynamic filtering): stage by stage, the units of a
    /// stage concurrently. A unit a join edge reaches from a fetched unit runs next, restricted
    /// to the fetched keys; when none is reachable, the most selective-looking units run.
    fn schedule(&self, units: &[Unit]) -> Vec<Vec<(usize, Option<Reduction>)>> {
        if self.router.config.execution.semi_join_max_keys == 0 {
            return vec![(0..units.len()).map(|u| (u, None)).collect()];
        }
        let accesses: Vec<Vec<AccessId>> = units.iter().map(|u| self.unit_accesses(u)).collect();
        let mut done: Vec<AccessId> = Vec::new();
        let mut left: Vec<usize> = (0..units.len()).collect();
        let mut stages = Vec::new();
        while !left.is_empty() {
            let mut stage: Vec<(usize, Option<Reduction>)> = left
                .iter()
                .filter(|u| self.reducible(&units[**u]))
                .filter_map(|&u| {
                    self.reducing_edge(&done, &accesses[u])
                        .map(|r| (u, Some(r)))
                })
                .collect();
            if stage.is_empty() {
                let best = left
                    .iter()
                    .map(|u| self.rank(&units[*u]))
                    .min()
                    .unwrap_or(0);
                stage = left
                    .iter()
                    .filter(|u| self.rank(&units[**u]) == best)
                    .map(|u| (*u, None))
                    .collect();
            }
            left.retain(|u| !stage.iter().any(|(s, _)| s == u));
            for (u, _) in &stage {
                done.extend(accesses[*u].iter().copied());
            }
            stages.push(stage);
        }
        stages
    }

    /// Runs the join group rooted at `input` by its schedule; `incoming` restricts the unit
    /// holding its access when no edge of the group reduces it.
    async fn run_group(
        &self,
        input: Input,
        incoming: Option<Reduce>,
    ) -> Result<Vec<Relation>, RouterError> {
        let mut units = Vec::new();
        self.group_units(input, &mut units)?;
        let max =
            usize::try_from(self.router.config.execution.semi_join_max_keys).unwrap_or(usize::MAX);
        let mut relations: Vec<Relation> = Vec::new();
        for stage in self.schedule(&units) {
            let mut runs: Vec<BoxFuture<'_, Result<Vec<Relation>, RouterError>>> = Vec::new();
            for (u, reduction) in stage {
                let unit = &units[u];
                let accesses = self.unit_accesses(unit);
                let reduce = reduction
                    .and_then(|r| {
                        let keys = self.keys_of(&relations, r.from.access, r.from.column, max)?;
                        tracing::debug!(keys = keys.len(), "semi-join reduction");
                        self.used("semi_join");
                        Some(Reduce {
                            access: r.to.access,
                            column: r.to.column,
                            keys,
                        })
                    })
                    .or_else(|| incoming.clone().filter(|r| accesses.contains(&r.access)));
                runs.push(match unit {
                    Unit::Scan { scan, .. } => async move {
                        Ok(vec![self.run_maybe_reduced(scan, reduce.as_ref()).await?])
                    }
                    .boxed(),
                    Unit::Node(i) => self.eval(*i, reduce),
                });
            }
            for part in try_join_all(runs).await? {
                relations.extend(part);
            }
        }
        Ok(relations)
    }

    /// Distinct non-NULL values of `(access, column)` in relations, up to `max` (None past it).
    fn keys_of(
        &self,
        relations: &[Relation],
        access: AccessId,
        column: usize,
        max: usize,
    ) -> Option<Vec<Value>> {
        let rel = relations.iter().find(|r| r.accesses.contains(&access))?;
        let slot = self.layout.offsets.get(access)? + column;
        let mut seen: HashSet<Key> = HashSet::new();
        let mut out = Vec::new();
        for r in &rel.rows {
            let v = r.get(slot)?;
            if !v.is_null() && seen.insert(ops::key_of(v)) {
                if out.len() >= max {
                    return None;
                }
                out.push(v.clone());
            }
        }
        Some(out)
    }

    /// Evaluates an input of the route into relations (not yet joined with each other).
    /// `reduce` restricts the scans of `(access, column)` to the given keys.
    fn eval(
        &self,
        input: Input,
        reduce: Option<Reduce>,
    ) -> BoxFuture<'_, Result<Vec<Relation>, RouterError>> {
        async move {
            match input {
                Input::Fragment(_) => self.run_group(input, reduce).await,
                Input::Node(n) => {
                    let node = self
                        .route
                        .nodes
                        .get(n)
                        .ok_or_else(|| no_route(format!("node {n} does not exist")))?;
                    if !matches!(node.op, MergeOp::HashJoin { .. }) {
                        self.used(node.op.as_str());
                    }
                    let pass = |i: Input| {
                        reduce
                            .clone()
                            .filter(|r| self.input_accesses(i).contains(&r.access))
                    };
                    match &node.op {
                        MergeOp::HashJoin { .. } if node.inputs.len() == 2 => {
                            self.run_group(input, reduce).await
                        }
                        MergeOp::FirstHit { fill, .. } if node.inputs.len() == 2 => {
                            self.first_hit(node, *fill).await
                        }
                        MergeOp::HashJoin { .. } | MergeOp::FirstHit { .. } => Err(no_route(
                            format!("node {n} ({}) needs two inputs", node.op.as_str()),
                        )),
                        MergeOp::UnionAll
                        | MergeOp::UnionDistinct
                        | MergeOp::TopK { .. }
                        | MergeOp::AggregateCombine => {
                            let parts = try_join_all(
                                node.inputs.iter().map(|i| self.eval(*i, pass(*i))),
                            )
                            .await?;
                            let mut accesses: Option<Vec<AccessId>> = None;
                            let mut inputs = Vec::new();
                            for mut part in parts {
                                let one = match (part.len(), part.pop()) {
                                    (1, Some(r)) => r,
                                    _ => {
                                        return Err(no_route(format!(
                                            "node {n} ({}) merges inputs that are not one table each",
                                            node.op.as_str()
                                        )));
                                    }
                                };
                                let mut acc = one.accesses.clone();
                                acc.sort_unstable();
                                if accesses.get_or_insert_with(|| acc.clone()) != &acc {
                                    return Err(no_route(format!(
                                        "node {n} ({}) merges inputs over different tables",
                                        node.op.as_str()
                                    )));
                                }
                                inputs.push(one.rows);
                            }
                            let mut rows = ops::union_all(inputs);
                            if node.op == MergeOp::UnionDistinct {
                                rows = ops::distinct(rows, None);
                            }
                            Ok(vec![Relation {
                                accesses: accesses.unwrap_or_default(),
                                rows,
                            }])
                        }
                    }
                }
            }
        }
        .boxed()
    }

    /// Cache-aside over one table access: the cache fragment answers the keys it holds; the
    /// source of truth answers the rest, which are written back to the cache when `fill`.
    async fn first_hit(&self, node: &MergeNode, fill: bool) -> Result<Vec<Relation>, RouterError> {
        let Input::Fragment(cf) = node.inputs[0] else {
            return Err(no_route("first-hit reads its cache from a fragment"));
        };
        let source = node.inputs[1];
        let frag = self
            .route
            .fragments
            .get(cf)
            .ok_or_else(|| no_route(format!("fragment {cf} does not exist")))?;
        let [access] = frag.accesses.as_slice() else {
            return Err(no_route("first-hit covers exactly one table"));
        };
        let access = *access;
        let Some(table) = self.table(access) else {
            return Err(no_route("first-hit over an unknown table"));
        };
        let Some(keys) = self
            .request
            .accesses
            .get(access)
            .and_then(|a| a.key_lookup.clone())
        else {
            // Without keys the cache cannot answer: read the source of truth.
            return self.eval(source, None).await;
        };
        let pk = table.primary_key.clone();
        let offset = self.layout.offsets.get(access).copied().unwrap_or(0);
        let row_key = |r: &Row| -> Vec<Key> {
            pk.iter()
                .map(|c| ops::key_of(r.get(offset + c).unwrap_or(&Value::Null)))
                .collect()
        };
        let by_keys = |scan: &Scan, tuples: &[Vec<Value>]| -> Scan {
            let mut s = scan.clone();
            s.select.filter = None;
            for (i, &c) in pk.iter().enumerate() {
                let mut values: Vec<Value> = Vec::new();
                let mut seen = HashSet::new();
                for t in tuples {
                    if let Some(v) = t.get(i)
                        && seen.insert(ops::key_of(v))
                    {
                        values.push(v.clone());
                    }
                }
                s = self.restricted(&s, in_list(access, c, table.columns[c].ty, &values));
            }
            s
        };
        let mut fill = fill;
        let caps = self.caps(frag.backend);
        let cache_scan = by_keys(&self.scan(frag.backend, &[access], &caps, true), &keys);
        // A cache that does not answer within `execution.cache_timeout_ms` is skipped.
        let cache_timeout = self.router.cache_timeout();
        let cached = match tokio::time::timeout(cache_timeout, self.run_scan(&cache_scan)).await {
            Ok(Ok(r)) => r.rows,
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "cache read failed; reading the source of truth");
                Vec::new()
            }
            Err(_) => {
                self.cache_timed_out(frag.backend);
                // The missing keys' versions would hang the same way: no fill this time.
                fill = false;
                Vec::new()
            }
        };
        let hits: HashSet<Vec<Key>> = cached.iter().map(&row_key).collect();
        let missing: Vec<Vec<Value>> = keys
            .into_iter()
            .filter(|k| !hits.contains(&ops::keys_of(k)))
            .collect();
        let lookups = &self.router.metrics.cache_lookups;
        lookups
            .with_label_values(&[table.name.as_str(), "hit"])
            .inc_by(hits.len() as u64);
        lookups
            .with_label_values(&[table.name.as_str(), "miss"])
            .inc_by(missing.len() as u64);
        if missing.is_empty() {
            return Ok(vec![Relation {
                accesses: vec![access],
                rows: cached,
            }]);
        }
        // Versioned caches: the version of each missing key, taken before the source is read,
        // so a write that lands in between makes the fill of its key fail (see VersionedCache).
        let versioned = self
            .router
            .backend_by_id(frag.backend)
            .ok()
            .and_then(|b| b.versioned_cache());
        let tokens: Option<HashMap<Vec<Key>, u64>> = match (fill, versioned) {
            (true, Some(vc)) => {
                match tokio::time::timeout(cache_timeout, vc.tokens(table, &missing)).await {
                    Ok(Ok(t)) => Some(missing.iter().map(|k| ops::keys_of(k)).zip(t).collect()),
                    Ok(Err(BackendError::Unsupported { .. })) => None,
                    Ok(Err(err)) => {
                        tracing::warn!(error = %err, "cache versions unreadable; not filling");
                        fill = false;
                        None
                    }
                    Err(_) => {
                        self.cache_timed_out(frag.backend);
                        fill = false;
                        None
                    }
                }
            }
            _ => None,
        };
        let source_rows = match source {
            Input::Fragment(sf)
                if self
                    .route
                    .fragments
                    .get(sf)
                    .is_some_and(|f| f.accesses == [access]) =>
            {
                let backend = self.route.fragments[sf].backend;
                let caps = self.caps(backend);
                let scan = by_keys(&self.scan(backend, &[access], &caps, true), &missing);
                self.run_scan(&scan).await?.rows
            }
            other => self
                .eval(other, None)
                .await?
                .into_iter()
                .find(|r| r.accesses.contains(&access))
                .map(|r| r.rows)
                .unwrap_or_default(),
        };
        let (rows, filled) = ops::first_hit(cached, source_rows, row_key);
        if fill && !filled.is_empty() {
            lookups
                .with_label_values(&[table.name.as_str(), "fill"])
                .inc_by(filled.len() as u64);
            crate::failpoint::hit(&format!("cache.before_fill.{}", table.name)).await;
            let fill = self.fill_cache(frag.backend, access, table, &filled, tokens.as_ref());
            if tokio::time::timeout(cache_timeout, fill).await.is_err() {
                self.cache_timed_out(frag.backend);
            }
        }
        Ok(vec![Relation {
            accesses: vec![access],
            rows,
        }])
    }

    /// Counts and logs a cache that did not answer within `execution.cache_timeout_ms`.
    fn cache_timed_out(&self, backend: usize) {
        let name = self
            .router
            .backend_name(backend)
            .unwrap_or_default()
            .to_owned();
        self.router
            .metrics
            .backend_errors
            .with_label_values(&[name.as_str(), "cache_timeout"])
            .inc();
        tracing::warn!(backend = %name, "cache did not answer in time; skipped");
    }

    /// Writes rows read from the source of truth into the cache (`INSERT ... ON CONFLICT DO
    /// NOTHING`, so a concurrent fill or write wins). A failure is logged, not returned.
    async fn fill_cache(
        &self,
        backend: usize,
        access: AccessId,
        table: &switchyard_core::Table,
        rows: &[Row],
        tokens: Option<&HashMap<Vec<Key>, u64>>,
    ) {
        let offset = self.layout.offsets.get(access).copied().unwrap_or(0);
        let columns: Vec<usize> = (0..table.columns.len()).collect();
        if let (Some(tokens), Some(vc)) = (
            tokens,
            self.router
                .backend_by_id(backend)
                .ok()
                .and_then(|b| b.versioned_cache()),
        ) {
            // Only rows whose key has a token; each stored only if its version is unchanged.
            let mut entries = Vec::new();
            let mut versions = Vec::new();
            for r in rows {
                let entry: Vec<Value> = columns
                    .iter()
                    .map(|&c| r.get(offset + c).cloned().unwrap_or(Value::Null))
                    .collect();
                let key: Vec<Key> = table
                    .primary_key
                    .iter()
                    .map(|&c| ops::key_of(&entry[c]))
                    .collect();
                if let Some(&t) = tokens.get(&key) {
                    entries.push(entry);
                    versions.push(t);
                }
            }
            match vc.fill(table, &entries, &versions).await {
                Ok(stored) => {
                    tracing::debug!(table = %table.name, stored, offered = entries.len(), "versioned cache fill");
                }
                Err(err) => tracing::warn!(table = %table.name, error = %err, "cache fill failed"),
            }
            return;
        }
        let insert = Insert {
            table: table.name.clone(),
            columns: columns.clone(),
            rows: rows
                .iter()
                .map(|r| {
                    columns
                        .iter()
                        .map(|&c| Expr {
                            kind: ExprKind::Literal(
                                r.get(offset + c).cloned().unwrap_or(Value::Null),
                            ),
                            ty: table.columns[c].ty,
                        })
                        .collect()
                })
                .collect(),
            on_conflict: Some(OnConflict::DoNothing),
        };
        let q = BoundQuery {
            statement: Statement::Insert(insert),
            params: Vec::new(),
        };
        if let Err(err) = self
            .router
            .run_on(
                backend,
                Fragment {
                    query: &q,
                    catalog: &self.router.catalog,
                },
            )
            .await
        {
            tracing::warn!(table = %table.name, error = %err, "cache fill failed");
        }
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

    // ---- explain --------------------------------------------------------------------------

    /// The statements the fragments run, for `explain` (before runtime key lists).
    pub(crate) fn explain(&self) -> Result<Vec<ExplainedFragment>, RouterError> {
        let mut out = Vec::new();
        let scatter = self.scatter();
        // Notes by target: a fragment (all its scans), one scan (fragment, accesses), or a
        // node (the fragments under it).
        let mut notes: Vec<(Input, Option<Vec<AccessId>>, String)> = Vec::new();
        let mut units = Vec::new();
        if scatter.is_none() && self.group_units(self.route.root, &mut units).is_ok() {
            let name = |a: AccessId, c: usize| {
                let t = self.select.from.get(a).map_or("?", |t| t.alias.as_str());
                let col = self
                    .table(a)
                    .and_then(|t| t.columns.get(c))
                    .map_or("?", |c| c.name.as_str());
                format!("{t}.{col}")
            };
            for (u, reduction) in self.schedule(&units).into_iter().flatten() {
                let Some(r) = reduction else { continue };
                let text = format!(
                    "semi-join reduction: runs after its join partner with `{} IN (distinct {})` in batches of {} when there are at most {} keys",
                    name(r.to.access, r.to.column),
                    name(r.from.access, r.from.column),
                    self.router.config.execution.semi_join_batch_size,
                    self.router.config.execution.semi_join_max_keys
                );
                match &units[u] {
                    Unit::Scan { fragment, scan } => notes.push((
                        Input::Fragment(*fragment),
                        Some(scan.accesses.clone()),
                        text,
                    )),
                    Unit::Node(input) => notes.push((*input, None, text)),
                }
            }
        }
        for node in &self.route.nodes {
            if let MergeOp::FirstHit { fill, .. } = node.op
                && let (Some(Input::Fragment(c)), Some(src)) =
                    (node.inputs.first(), node.inputs.get(1))
            {
                notes.push((
                    Input::Fragment(*c),
                    None,
                    "first-hit: reads the cached keys".to_owned(),
                ));
                notes.push((
                    *src,
                    None,
                    format!(
                        "first-hit: reads the keys the cache missed{}",
                        if fill {
                            " and writes them back to the cache"
                        } else {
                            ""
                        }
                    ),
                ));
            }
        }
        for (f, frag) in self.route.fragments.iter().enumerate() {
            let scans: Vec<(usize, Vec<AccessId>, Select)> = match &scatter {
                Some((_, frags)) if frags.contains(&f) => {
                    let select = if self.select.is_aggregate() {
                        self.aggregate_plan(frags).map(|(p, _)| p.shard)
                    } else {
                        self.shard_select()
                    };
                    match select {
                        Some(s) => vec![(frag.backend, frag.accesses.clone(), s)],
                        None => self
                            .fragment_scans(f, false)?
                            .into_iter()
                            .map(|s| (s.backend, s.accesses, s.select))
                            .collect(),
                    }
                }
                _ => self
                    .fragment_scans(f, false)?
                    .into_iter()
                    .map(|s| (s.backend, s.accesses, s.select))
                    .collect(),
            };
            for (backend, accesses, select) in scans {
                let note = notes
                    .iter()
                    .filter(|(i, scan, _)| match i {
                        Input::Fragment(g) => {
                            *g == f && scan.as_ref().is_none_or(|a| *a == accesses)
                        }
                        Input::Node(_) => self.fragments_under(*i).contains(&f),
                    })
                    .map(|(_, _, n)| n.clone())
                    .collect::<Vec<_>>();
                let b = self.router.backend_by_id(backend)?;
                let q = BoundQuery {
                    statement: Statement::Select(select),
                    params: self.query.params.clone(),
                };
                let native: NativeStatement = b.explain(Fragment {
                    query: &q,
                    catalog: &self.router.catalog,
                })?;
                out.push(ExplainedFragment {
                    fragment: f,
                    backend: b.name().to_owned(),
                    backend_kind: b.kind().as_str(),
                    native,
                    note: (!note.is_empty()).then(|| note.join("; ")),
                });
            }
        }
        Ok(out)
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
