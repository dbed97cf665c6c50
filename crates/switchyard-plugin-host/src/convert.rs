//! Conversions between the core's routing types and the generated WIT types.

use switchyard_core::{BackendKind, Role};
use switchyard_core::ir::{AggFunc, JoinKind, StatementKind};
use switchyard_core::routing::{
    self as r, CompareOp, Input, MergeOp, Route, RouteFragment, RouteRequest, WritePlan,
};
use switchyard_core::{Catalog, Value};

use crate::bindings::switchyard::router::types as w;

fn id(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn ix(n: u32) -> usize {
    n as usize
}

/// The catalog as plugins see it (handed over once per instance by `configure`).
pub(crate) fn catalog(c: &Catalog) -> w::Catalog {
    let backend_id = |name: &str| id(c.backends.get_index_of(name).unwrap_or(usize::MAX));
    let tables = c
        .tables
        .values()
        .map(|t| w::TableInfo {
            name: t.name.clone(),
            columns: t.columns.iter().map(|col| col.name.clone()).collect(),
            primary_key: t.primary_key.iter().map(|k| id(*k)).collect(),
            placements: t
                .placements
                .iter()
                .map(|p| w::Placement {
                    backend: backend_id(&p.backend),
                    role: match p.role {
                        Role::Primary => w::Role::Primary,
                        Role::Replica => w::Role::Replica,
                        Role::Cache => w::Role::Cache,
                        Role::Shard => w::Role::Shard,
                    },
                    ttl_seconds: p.ttl_seconds.map(|t| u32::try_from(t).unwrap_or(u32::MAX)),
                })
                .collect(),
            shard_rule: t.shard_key.map(|column| w::ShardRule {
                column: id(column),
                backends: t.shards().map(|p| backend_id(&p.backend)).collect(),
            }),
        })
        .collect();
    let backends = c
        .backends
        .values()
        .map(|b| w::BackendInfo {
            name: b.name.clone(),
            kind: match b.kind {
                BackendKind::Postgres => w::BackendKind::Postgres,
                BackendKind::Mysql => w::BackendKind::Mysql,
                BackendKind::Sqlite => w::BackendKind::Sqlite,
                BackendKind::Mongodb => w::BackendKind::Mongodb,
                BackendKind::Redis => w::BackendKind::Redis,
            },
        })
        .collect();
    w::Catalog { tables, backends }
}

fn scalar(v: &Value) -> w::Scalar {
    match v {
        Value::Null => w::Scalar::Null,
        Value::Int(i) => w::Scalar::Integer(*i),
        Value::Float(f) => w::Scalar::Float(*f),
        Value::Decimal(d) => w::Scalar::Decimal(d.to_string()),
        Value::Text(s) => w::Scalar::Text(s.clone()),
        Value::Bool(b) => w::Scalar::Boolean(*b),
        Value::Timestamp(t) => w::Scalar::Timestamp(t.timestamp_micros()),
        Value::Json(j) => w::Scalar::Json(j.to_string()),
    }
}

fn column_ref(c: r::ColumnRef) -> w::ColumnRef {
    w::ColumnRef { access: id(c.access), column: id(c.column) }
}

/// A route request in WIT form.
pub(crate) fn request(q: &RouteRequest) -> w::Request {
    w::Request {
        kind: match q.kind {
            StatementKind::Select => w::StatementKind::Select,
            StatementKind::Insert => w::StatementKind::Insert,
            StatementKind::Update => w::StatementKind::Update,
            StatementKind::Delete => w::StatementKind::Delete,
        },
        accesses: q
            .accesses
            .iter()
            .map(|a| w::TableAccess {
                table: id(a.table),
                predicates: a
                    .predicates
                    .iter()
                    .map(|p| w::Predicate {
                        column: id(p.column),
                        op: match p.op {
                            CompareOp::Eq => w::CompareOp::Eq,
                            CompareOp::NotEq => w::CompareOp::NotEq,
                            CompareOp::Lt => w::CompareOp::Lt,
                            CompareOp::LtEq => w::CompareOp::LtEq,
                            CompareOp::Gt => w::CompareOp::Gt,
                            CompareOp::GtEq => w::CompareOp::GtEq,
                            CompareOp::InList => w::CompareOp::InList,
                            CompareOp::Between => w::CompareOp::Between,
                            CompareOp::Like => w::CompareOp::Like,
                            CompareOp::IsNull => w::CompareOp::IsNull,
                            CompareOp::IsNotNull => w::CompareOp::IsNotNull,
                        },
                        values: p.values.iter().map(scalar).collect(),
                    })
                    .collect(),
                key_lookup: a.key_lookup.as_ref().map(|keys| keys.iter().map(|k| k.iter().map(scalar).collect()).collect()),
                columns: a.columns.iter().map(|c| id(*c)).collect(),
            })
            .collect(),
        joins: q
            .joins
            .iter()
            .map(|j| w::JoinEdge {
                kind: match j.kind {
                    JoinKind::Inner => w::JoinKind::Inner,
                    JoinKind::Left => w::JoinKind::Left,
                },
                left: column_ref(j.left),
                right: column_ref(j.right),
            })
            .collect(),
        group_by: q.group_by.iter().map(|c| column_ref(*c)).collect(),
        aggregates: q
            .aggregates
            .iter()
            .map(|a| w::Aggregate {
                function: match a.func {
                    AggFunc::Count => w::AggregateFunc::Count,
                    AggFunc::Sum => w::AggregateFunc::Sum,
                    AggFunc::Avg => w::AggregateFunc::Avg,
                    AggFunc::Min => w::AggregateFunc::Min,
                    AggFunc::Max => w::AggregateFunc::Max,
                },
                distinct: a.distinct,
                column: a.column.map(column_ref),
            })
            .collect(),
        order_by: q
            .order_by
            .iter()
            .map(|o| w::OrderKey { column: o.column.map(column_ref), descending: o.descending, nulls_first: o.nulls_first })
            .collect(),
        limit: q.limit,
        offset: q.offset,
        context: q.context.clone(),
        status: q
            .status
            .iter()
            .map(|s| w::BackendStatus {
                healthy: s.healthy,
                p50_micros: s.p50_micros,
                p99_micros: s.p99_micros,
                in_flight: s.in_flight,
                error_rate: s.error_rate,
            })
            .collect(),
        default_route: route_to_wit(&q.default_route),
    }
}

fn input_to_wit(i: Input) -> w::Input {
    match i {
        Input::Fragment(f) => w::Input::Fragment(id(f)),
        Input::Node(n) => w::Input::Node(id(n)),
    }
}

fn input_from_wit(i: w::Input) -> Input {
    match i {
        w::Input::Fragment(f) => Input::Fragment(ix(f)),
        w::Input::Node(n) => Input::Node(ix(n)),
    }
}

/// A core route in WIT form.
pub(crate) fn route_to_wit(route: &Route) -> w::Route {
    w::Route {
        fragments: route
            .fragments
            .iter()
            .map(|f| w::Fragment { backend: id(f.backend), accesses: f.accesses.iter().map(|a| id(*a)).collect() })
            .collect(),
        nodes: route
            .nodes
            .iter()
            .map(|n| w::MergeNode {
                op: match &n.op {
                    MergeOp::UnionAll => w::MergeOp::UnionAll,
                    MergeOp::UnionDistinct => w::MergeOp::UnionDistinct,
                    MergeOp::HashJoin { edge } => w::MergeOp::HashJoin(id(*edge)),
                    MergeOp::FirstHit { fill, ttl_seconds } => {
                        w::MergeOp::FirstHit(w::FirstHit { fill: *fill, ttl_seconds: *ttl_seconds })
                    }
                    MergeOp::AggregateCombine => w::MergeOp::AggregateCombine,
                    MergeOp::TopK { limit } => w::MergeOp::TopK(*limit),
                },
                inputs: n.inputs.iter().map(|i| input_to_wit(*i)).collect(),
            })
            .collect(),
        root: input_to_wit(route.root),
        write: route.write.as_ref().map(|wp| w::WritePlan {
            targets: wp.targets.iter().map(|t| id(*t)).collect(),
            invalidate: wp.invalidate.iter().map(|t| id(*t)).collect(),
        }),
    }
}

/// A WIT route in core form (validated by the caller).
pub(crate) fn route_from_wit(route: &w::Route) -> Route {
    Route {
        fragments: route
            .fragments
            .iter()
            .map(|f| RouteFragment { backend: ix(f.backend), accesses: f.accesses.iter().map(|a| ix(*a)).collect() })
            .collect(),
        nodes: route
            .nodes
            .iter()
            .map(|n| r::MergeNode {
                op: match &n.op {
                    w::MergeOp::UnionAll => MergeOp::UnionAll,
                    w::MergeOp::UnionDistinct => MergeOp::UnionDistinct,
                    w::MergeOp::HashJoin(edge) => MergeOp::HashJoin { edge: ix(*edge) },
                    w::MergeOp::FirstHit(f) => MergeOp::FirstHit { fill: f.fill, ttl_seconds: f.ttl_seconds },
                    w::MergeOp::AggregateCombine => MergeOp::AggregateCombine,
                    w::MergeOp::TopK(limit) => MergeOp::TopK { limit: *limit },
                },
                inputs: n.inputs.iter().map(|i| input_from_wit(*i)).collect(),
            })
            .collect(),
        root: input_from_wit(route.root),
        write: route.write.as_ref().map(|wp| WritePlan {
            targets: wp.targets.iter().map(|t| ix(*t)).collect(),
            invalidate: wp.invalidate.iter().map(|t| ix(*t)).collect(),
        }),
    }
}
