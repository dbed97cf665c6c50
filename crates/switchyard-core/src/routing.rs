//! Routes and route requests: what a placement plugin (or the default planner) sees about a
//! statement, what it answers, and the checks every answer must pass.
//!
//! Tables, columns and backends are referred to by index (into [`Catalog::tables`], a table's
//! columns and [`Catalog::backends`]), so nothing here allocates strings on the routing path.

use std::collections::BTreeSet;

use switchyard_config::Role;

use crate::catalog::Catalog;
use crate::ir::{
    AggFunc, BinaryOp, BoundQuery, Expr, ExprKind, JoinKind, OnConflict, Statement, StatementKind,
};
use crate::value::Value;

/// Index into [`Catalog::backends`].
pub type BackendId = usize;
/// Index into [`Catalog::tables`].
pub type TableId = usize;
/// Index into a table's columns.
pub type ColumnId = usize;
/// Index into [`RouteRequest::accesses`].
pub type AccessId = usize;

/// Which backend runs which part of a statement, and how the parts merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Parts that run on one backend each.
    pub fragments: Vec<RouteFragment>,
    /// Merge operators; a node's inputs refer to fragments or to earlier nodes.
    pub nodes: Vec<MergeNode>,
    /// The fragment or node whose output is the answer.
    pub root: Input,
    /// For INSERT/UPDATE/DELETE: which placements receive the write and which caches are
    /// invalidated.
    pub write: Option<WritePlan>,
}

/// One backend's part: the table accesses pushed into it together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteFragment {
    /// Where it runs.
    pub backend: BackendId,
    /// Which table accesses it covers (pushed down together, joins included).
    pub accesses: Vec<AccessId>,
}

/// An input of a merge node or the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// The output of a fragment.
    Fragment(usize),
    /// The output of a merge node.
    Node(usize),
}

/// A merge operator over its inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeNode {
    /// The operator.
    pub op: MergeOp,
    /// Its inputs, in the operator's order.
    pub inputs: Vec<Input>,
}

/// How partial results combine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeOp {
    /// Concatenate (shards).
    UnionAll,
    /// Concatenate and remove duplicates.
    UnionDistinct,
    /// Join two inputs along join edge `edge` of the request.
    HashJoin {
        /// Index into [`RouteRequest::joins`].
        edge: usize,
    },
    /// Cache-aside: input 0 reads the cache placement, input 1 the source of truth for the keys
    /// the cache missed; with `fill`, misses are written back with `ttl_seconds`.
    FirstHit {
        /// Write missed rows back to the cache.
        fill: bool,
        /// Time to live of filled entries.
        ttl_seconds: Option<u32>,
    },
    /// Combine partial aggregates (COUNT/SUM/MIN/MAX, AVG as SUM and COUNT).
    AggregateCombine,
    /// Merge sorted inputs and keep the first `limit` rows.
    TopK {
        /// Rows kept.
        limit: u64,
    },
}

impl MergeOp {
    /// Lowercase name, a closed set usable as a metrics label.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::UnionAll => "union_all",
            Self::UnionDistinct => "union_distinct",
            Self::HashJoin { .. } => "hash_join",
            Self::FirstHit { .. } => "first_hit",
            Self::AggregateCombine => "aggregate_combine",
            Self::TopK { .. } => "top_k",
        }
    }
}

/// Where a write goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WritePlan {
    /// Backends whose placements receive the write, the primary (or shard) first.
    pub targets: Vec<BackendId>,
    /// Backends whose cache placements drop the written keys.
    pub invalidate: Vec<BackendId>,
}

impl Route {
    /// The whole statement on one backend.
    pub fn single(backend: BackendId, accesses: usize) -> Route {
        Route {
            fragments: vec![RouteFragment {
                backend,
                accesses: (0..accesses).collect(),
            }],
            nodes: Vec::new(),
            root: Input::Fragment(0),
            write: None,
        }
    }

    /// The backend, when the whole statement runs on one backend without merges.
    pub fn as_single(&self) -> Option<BackendId> {
        match (self.fragments.as_slice(), self.nodes.is_empty(), self.root) {
            ([only], true, Input::Fragment(0)) => Some(only.backend),
            _ => None,
        }
    }
}

/// Comparison operators of pushed-down predicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// `=`
    Eq,
    /// `<>`
    NotEq,
    /// `<`
    Lt,
    /// `<=`
    LtEq,
    /// `>`
    Gt,
    /// `>=`
    GtEq,
    /// `IN (...)`
    InList,
    /// `BETWEEN a AND b`
    Between,
    /// `LIKE`
    Like,
    /// `IS NULL`
    IsNull,
    /// `IS NOT NULL`
    IsNotNull,
}

/// `column op values` on one table access, with parameters already substituted.
#[derive(Debug, Clone, PartialEq)]
pub struct Predicate {
    /// The column.
    pub column: ColumnId,
    /// The operator.
    pub op: CompareOp,
    /// Its operands (none for IS NULL, two for BETWEEN, any number for IN).
    pub values: Vec<Value>,
}

/// One table reference of the statement.
#[derive(Debug, Clone, PartialEq)]
pub struct TableAccess {
    /// The table.
    pub table: TableId,
    /// Conjuncts of WHERE that constrain only this table, in simple form.
    pub predicates: Vec<Predicate>,
    /// Primary-key tuples when the statement pins the whole key (point lookups, IN lists,
    /// inserted rows, updates and deletes by key).
    pub key_lookup: Option<Vec<Vec<Value>>>,
    /// Columns the statement uses from this table.
    pub columns: Vec<ColumnId>,
}

/// `left = right` in a join condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinEdge {
    /// Inner or left.
    pub kind: JoinKind,
    /// A column of an earlier access.
    pub left: ColumnRef,
    /// A column of the joined access.
    pub right: ColumnRef,
}

/// A column of a table access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnRef {
    /// The access.
    pub access: AccessId,
    /// The column.
    pub column: ColumnId,
}

/// An aggregate of the statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AggregateRef {
    /// Function.
    pub func: AggFunc,
    /// `DISTINCT` inside the call.
    pub distinct: bool,
    /// Its column, when the argument is a plain column.
    pub column: Option<ColumnRef>,
}

/// One ORDER BY key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderKey {
    /// The column, when the key is a plain column.
    pub column: Option<ColumnRef>,
    /// Descending.
    pub descending: bool,
    /// NULLs first.
    pub nulls_first: bool,
}

/// Live state of one backend as the router measures it.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BackendStatus {
    /// Answered its last health check / statement.
    pub healthy: bool,
    /// Median statement latency.
    pub p50_micros: u32,
    /// 99th percentile statement latency.
    pub p99_micros: u32,
    /// Statements running now.
    pub in_flight: u32,
    /// Share of recent statements that failed (0..1).
    pub error_rate: f32,
}

/// What a placement plugin is asked.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteRequest {
    /// The statement kind.
    pub kind: StatementKind,
    /// One entry per table reference (FROM order; the target of a write).
    pub accesses: Vec<TableAccess>,
    /// Equi-join edges.
    pub joins: Vec<JoinEdge>,
    /// GROUP BY keys that are plain columns.
    pub group_by: Vec<ColumnRef>,
    /// Aggregates in the output, HAVING and ORDER BY.
    pub aggregates: Vec<AggregateRef>,
    /// ORDER BY keys.
    pub order_by: Vec<OrderKey>,
    /// LIMIT.
    pub limit: Option<u64>,
    /// OFFSET.
    pub offset: Option<u64>,
    /// The request's `context` map.
    pub context: Vec<(String, String)>,
    /// Status of every backend, by [`BackendId`].
    pub status: Vec<BackendStatus>,
    /// The route the core computed on its own.
    pub default_route: Route,
}

/// Describes a bound statement for routing.
pub fn build_request(
    query: &BoundQuery,
    catalog: &Catalog,
    default_route: Route,
    context: Vec<(String, String)>,
    status: Vec<BackendStatus>,
) -> RouteRequest {
    let table_ids: Vec<TableId> = query
        .statement
        .access_tables()
        .iter()
        .map(|t| catalog.tables.get_index_of(*t).unwrap_or(usize::MAX))
        .collect();
    let mut accesses: Vec<TableAccess> = table_ids
        .iter()
        .map(|&table| TableAccess {
            table,
            predicates: Vec::new(),
            key_lookup: None,
            columns: Vec::new(),
        })
        .collect();
    let mut used: Vec<BTreeSet<ColumnId>> = vec![BTreeSet::new(); accesses.len()];
    let note_columns = |e: &Expr, used: &mut Vec<BTreeSet<ColumnId>>| {
        e.walk(&mut |x| {
            if let ExprKind::Column { table, column } = x.kind
                && let Some(set) = used.get_mut(table)
            {
                set.insert(column);
            }
        });
    };
    let params = &query.params;
    let mut request = RouteRequest {
        kind: query.statement.kind(),
        accesses: Vec::new(),
        joins: Vec::new(),
        group_by: Vec::new(),
        aggregates: Vec::new(),
        order_by: Vec::new(),
        limit: None,
        offset: None,
        context,
        status,
        default_route,
    };
    let filter = match &query.statement {
        Statement::Select(s) => {
            for c in &s.projection {
                note_columns(&c.expr, &mut used);
            }
            for (i, j) in s.joins.iter().enumerate() {
                note_columns(&j.on, &mut used);
                for conjunct in j.on.conjuncts() {
                    if let ExprKind::Binary {
                        op: BinaryOp::Eq,
                        left,
                        right,
                    } = &conjunct.kind
                        && let (Some(l), Some(r)) = (column_ref(left), column_ref(right))
                        && l.access != r.access
                    {
                        let (left, right) = if r.access == i + 1 { (l, r) } else { (r, l) };
                        request.joins.push(JoinEdge {
                            kind: j.kind,
                            left,
                            right,
                        });
                    }
                }
            }
            for g in &s.group_by {
                note_columns(g, &mut used);
                if let Some(c) = column_ref(g) {
                    request.group_by.push(c);
                }
            }
            let mut aggregate_sources: Vec<&Expr> = s.projection.iter().map(|c| &c.expr).collect();
            aggregate_sources.extend(s.having.iter());
            aggregate_sources.extend(s.order_by.iter().map(|o| &o.expr));
            for e in aggregate_sources {
                e.walk(&mut |x| {
                    if let ExprKind::Agg {
                        func,
                        arg,
                        distinct,
                    } = &x.kind
                    {
                        let agg = AggregateRef {
                            func: *func,
                            distinct: *distinct,
                            column: arg.as_deref().and_then(column_ref),
                        };
                        if !request.aggregates.contains(&agg) {
                            request.aggregates.push(agg);
                        }
                    }
                });
            }
            if let Some(h) = &s.having {
                note_columns(h, &mut used);
            }
            for o in &s.order_by {
                note_columns(&o.expr, &mut used);
                request.order_by.push(OrderKey {
                    column: column_ref(&o.expr),
                    descending: o.desc,
                    nulls_first: o.nulls_first,
                });
            }
            request.limit = s.limit;
            request.offset = s.offset;
            s.filter.as_ref()
        }
        Statement::Insert(ins) => {
            if let Some(access) = accesses.first_mut() {
                access.columns = ins.columns.clone();
                access.key_lookup = inserted_keys(
                    ins,
                    catalog.tables.get_index(access.table).map(|(_, t)| t),
                    params,
                );
                if let Some(OnConflict::DoUpdate(a)) = &ins.on_conflict {
                    for assignment in a {
                        note_columns(&assignment.value, &mut used);
                    }
                }
            }
            None
        }
        Statement::Update(u) => {
            for a in &u.assignments {
                used[0].insert(a.column);
                note_columns(&a.value, &mut used);
            }
            u.filter.as_ref()
        }
        Statement::Delete(d) => d.filter.as_ref(),
    };
    if let Some(f) = filter {
        note_columns(f, &mut used);
        for conjunct in f.conjuncts() {
            if let Some((access, predicate)) = simple_predicate(conjunct, params)
                && let Some(a) = accesses.get_mut(access)
            {
                a.predicates.push(predicate);
            }
        }
    }
    for (i, access) in accesses.iter_mut().enumerate() {
        let extra: Vec<ColumnId> = used[i]
            .iter()
            .copied()
            .filter(|c| !access.columns.contains(c))
            .collect();
        access.columns.extend(extra);
        if access.key_lookup.is_none()
            && let Some((_, table)) = catalog.tables.get_index(access.table)
        {
            access.key_lookup = pinned_keys(&access.predicates, &table.primary_key);
        }
    }
    request.accesses = accesses;
    request
}

fn column_ref(e: &Expr) -> Option<ColumnRef> {
    match e.kind {
        ExprKind::Column { table, column } => Some(ColumnRef {
            access: table,
            column,
        }),
        _ => None,
    }
}

/// `column op constants` (either side), as a predicate on one access.
fn simple_predicate(e: &Expr, params: &[Value]) -> Option<(AccessId, Predicate)> {
    let mk = |c: ColumnRef, op, values| {
        Some((
            c.access,
            Predicate {
                column: c.column,
                op,
                values,
            },
        ))
    };
    match &e.kind {
        ExprKind::Binary { op, left, right } if op.is_comparison() => {
            let (c, v, flipped) = match (column_ref(left), column_ref(right)) {
                (Some(c), None) => (c, right.constant(params)?, false),
                (None, Some(c)) => (c, left.constant(params)?, true),
                _ => return None,
            };
            let op = match (op, flipped) {
                (BinaryOp::Eq, _) => CompareOp::Eq,
                (BinaryOp::NotEq, _) => CompareOp::NotEq,
                (BinaryOp::Lt, false) | (BinaryOp::Gt, true) => CompareOp::Lt,
                (BinaryOp::LtEq, false) | (BinaryOp::GtEq, true) => CompareOp::LtEq,
                (BinaryOp::Gt, false) | (BinaryOp::Lt, true) => CompareOp::Gt,
                (BinaryOp::GtEq, false) | (BinaryOp::LtEq, true) => CompareOp::GtEq,
                _ => return None,
            };
            mk(c, op, vec![v])
        }
        ExprKind::InList {
            expr,
            list,
            negated: false,
        } => {
            let values: Option<Vec<Value>> = list.iter().map(|x| x.constant(params)).collect();
            mk(column_ref(expr)?, CompareOp::InList, values?)
        }
        ExprKind::Between {
            expr,
            low,
            high,
            negated: false,
        } => mk(
            column_ref(expr)?,
            CompareOp::Between,
            vec![low.constant(params)?, high.constant(params)?],
        ),
        ExprKind::Like {
            expr,
            pattern,
            negated: false,
        } => mk(
            column_ref(expr)?,
            CompareOp::Like,
            vec![pattern.constant(params)?],
        ),
        ExprKind::IsNull { expr, negated } => mk(
            column_ref(expr)?,
            if *negated {
                CompareOp::IsNotNull
            } else {
                CompareOp::IsNull
            },
            Vec::new(),
        ),
        _ => None,
    }
}

/// Key tuples when equality or IN pins every primary-key column (the cross product of the
/// candidates, up to 1,000 tuples).
fn pinned_keys(predicates: &[Predicate], primary_key: &[ColumnId]) -> Option<Vec<Vec<Value>>> {
    let mut tuples: Vec<Vec<Value>> = vec![Vec::new()];
    for k in primary_key {
        let candidates: &[Value] = predicates
            .iter()
            .find(|p| p.column == *k && matches!(p.op, CompareOp::Eq | CompareOp::InList))
            .map(|p| p.values.as_slice())?;
        if tuples.len() * candidates.len() > 1000 {
            return None;
        }
        tuples = tuples
            .iter()
            .flat_map(|t| {
                candidates.iter().map(move |v| {
                    let mut next = t.clone();
                    next.push(v.clone());
                    next
                })
            })
            .collect();
    }
    Some(tuples)
}

fn inserted_keys(
    ins: &crate::ir::Insert,
    table: Option<&crate::Table>,
    params: &[Value],
) -> Option<Vec<Vec<Value>>> {
    let table = table?;
    let positions: Option<Vec<usize>> = table
        .primary_key
        .iter()
        .map(|k| ins.columns.iter().position(|c| c == k))
        .collect();
    let positions = positions?;
    ins.rows
        .iter()
        .map(|row| {
            positions
                .iter()
                .map(|&p| row.get(p).and_then(|e| e.constant(params)))
                .collect()
        })
        .collect()
}

/// Why a route was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidRoute(pub String);

/// Checks a route against the request and the catalog: every table access covered, every backend
/// exists and holds the placement it is asked to read or write, merge inputs valid and acyclic,
/// every fragment used, caches read only through first-hit, writes carry a valid write plan.
pub fn validate(
    route: &Route,
    request: &RouteRequest,
    catalog: &Catalog,
) -> Result<(), InvalidRoute> {
    let bad = |m: String| Err(InvalidRoute(m));
    let placement_role = |backend: BackendId, access: AccessId| -> Option<Role> {
        let table = request
            .accesses
            .get(access)
            .and_then(|a| catalog.tables.get_index(a.table))
            .map(|(_, t)| t)?;
        let (name, _) = catalog.backends.get_index(backend)?;
        table.placement_on(name).map(|p| p.role)
    };
    if route.fragments.is_empty() {
        return bad("the route has no fragments".to_owned());
    }
    let mut covered = vec![false; request.accesses.len()];
    for (i, f) in route.fragments.iter().enumerate() {
        if f.backend >= catalog.backends.len() {
            return bad(format!(
                "fragment {i} names backend {} but there are {}",
                f.backend,
                catalog.backends.len()
            ));
        }
        if f.accesses.is_empty() {
            return bad(format!("fragment {i} covers no table"));
        }
        for &a in &f.accesses {
            if a >= request.accesses.len() {
                return bad(format!(
                    "fragment {i} names table access {a} but the statement has {}",
                    request.accesses.len()
                ));
            }
            if placement_role(f.backend, a).is_none() {
                let backend = catalog
                    .backends
                    .get_index(f.backend)
                    .map_or("?", |(n, _)| n.as_str());
                let table = catalog
                    .tables
                    .get_index(request.accesses[a].table)
                    .map_or("?", |(n, _)| n.as_str());
                return bad(format!(
                    "fragment {i}: backend `{backend}` holds no placement of table `{table}`"
                ));
            }
            covered[a] = true;
        }
    }
    if let Some(a) = covered.iter().position(|c| !c) {
        return bad(format!("table access {a} is not covered by any fragment"));
    }
    let check_input = |input: Input, limit_nodes: usize, what: &str| -> Result<(), InvalidRoute> {
        match input {
            Input::Fragment(f) if f >= route.fragments.len() => Err(InvalidRoute(format!(
                "{what} refers to fragment {f} but there are {}",
                route.fragments.len()
            ))),
            Input::Node(n) if n >= limit_nodes => Err(InvalidRoute(format!(
                "{what} refers to node {n}, which is not an earlier node"
            ))),
            _ => Ok(()),
        }
    };
    let mut first_hit_caches = BTreeSet::new();
    for (i, node) in route.nodes.iter().enumerate() {
        let what = format!("node {i} ({})", node.op.as_str());
        for &input in &node.inputs {
            check_input(input, i, &what)?;
        }
        let arity_ok = match &node.op {
            MergeOp::HashJoin { edge } => {
                if *edge >= request.joins.len() {
                    return bad(format!(
                        "{what} names join edge {edge} but the statement has {}",
                        request.joins.len()
                    ));
                }
                node.inputs.len() == 2
            }
            MergeOp::FirstHit { .. } => {
                if let Some(Input::Fragment(f)) = node.inputs.first() {
                    first_hit_caches.insert(*f);
                }
                node.inputs.len() == 2 && matches!(node.inputs[0], Input::Fragment(_))
            }
            MergeOp::TopK { .. }
            | MergeOp::UnionAll
            | MergeOp::UnionDistinct
            | MergeOp::AggregateCombine => !node.inputs.is_empty(),
        };
        if !arity_ok {
            return bad(format!(
                "{what} has the wrong inputs ({} given)",
                node.inputs.len()
            ));
        }
    }
    check_input(route.root, route.nodes.len(), "the root")?;
    // Every fragment must feed the answer.
    let mut used = vec![false; route.fragments.len()];
    let mut stack = vec![route.root];
    while let Some(input) = stack.pop() {
        match input {
            Input::Fragment(f) => used[f] = true,
            Input::Node(n) => stack.extend(route.nodes[n].inputs.iter().copied()),
        }
    }
    if let Some(f) = used.iter().position(|u| !u) {
        return bad(format!("fragment {f} does not feed the answer"));
    }
    for (i, f) in route.fragments.iter().enumerate() {
        let reads_cache = f
            .accesses
            .iter()
            .any(|&a| placement_role(f.backend, a) == Some(Role::Cache));
        if reads_cache && !first_hit_caches.contains(&i) && request.kind == StatementKind::Select {
            return bad(format!(
                "fragment {i} reads a cache placement outside first-hit"
            ));
        }
    }
    match (request.kind, &route.write) {
        (StatementKind::Select, None) => Ok(()),
        (StatementKind::Select, Some(_)) => bad("a SELECT route carries a write plan".to_owned()),
        (_, None) => bad("a write route needs a write plan".to_owned()),
        (_, Some(w)) => {
            if w.targets.is_empty() {
                return bad("the write plan has no target".to_owned());
            }
            for &t in &w.targets {
                match placement_role(t, 0) {
                    None => {
                        return bad(format!("write target {t} holds no placement of the table"));
                    }
                    Some(Role::Cache) => {
                        return bad(format!(
                            "write target {t} is a cache (invalidate it instead)"
                        ));
                    }
                    Some(_) => {}
                }
            }
            let first = placement_role(w.targets[0], 0);
            if !matches!(first, Some(Role::Primary | Role::Shard)) {
                return bad("the first write target must be the primary (or a shard)".to_owned());
            }
            for &c in &w.invalidate {
                if placement_role(c, 0) != Some(Role::Cache) {
                    return bad(format!(
                        "invalidated backend {c} holds no cache placement of the table"
                    ));
                }
            }
            Ok(())
        }
    }
}

/// The shard (of `shards`) a key value belongs to: FNV-1a 64 over the value's canonical bytes
/// (integers in decimal, text as UTF-8, other types as their text form), modulo `shards`. The
/// plugin SDK's `shard_of` computes the same function.
pub fn shard_of(value: &Value, shards: usize) -> usize {
    let text;
    let bytes: &[u8] = match value {
        Value::Text(s) => s.as_bytes(),
        Value::Int(i) => {
            text = i.to_string();
            text.as_bytes()
        }
        Value::Null => b"",
        other => {
            text = match other {
                Value::Decimal(d) => d.to_string(),
                Value::Bool(b) => b.to_string(),
                Value::Float(f) => f.to_string(),
                Value::Timestamp(t) => t.timestamp_micros().to_string(),
                Value::Date(d) => crate::value::format_date(d),
                Value::Json(j) => j.to_string(),
                _ => String::new(),
            };
            text.as_bytes()
        }
    };
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (hash % shards.max(1) as u64) as usize
}
