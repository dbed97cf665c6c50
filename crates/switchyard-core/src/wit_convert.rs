//! Conversions between the core's routing types and WIT bindings, as a macro: the host
//! (wasmtime bindings) and the plugin SDK's test helpers (wit-bindgen bindings) generate
//! different Rust types from the same WIT, and both expand this one definition.

/// Expands conversion functions between core routing types and WIT types. Invoke it in a module
/// where `w` names the generated `switchyard:router/types` module:
/// `use bindings::switchyard::router::types as w; switchyard_core::wit_conversions!();`
#[macro_export]
macro_rules! wit_conversions {
    () => {
        fn id(n: usize) -> u32 {
            u32::try_from(n).unwrap_or(u32::MAX)
        }

        fn ix(n: u32) -> usize {
            n as usize
        }

        /// The catalog as plugins see it (handed over once per instance by `configure`).
        pub fn catalog(c: &$crate::Catalog) -> w::Catalog {
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
                                $crate::Role::Primary => w::Role::Primary,
                                $crate::Role::Replica => w::Role::Replica,
                                $crate::Role::Cache => w::Role::Cache,
                                $crate::Role::Shard => w::Role::Shard,
                            },
                            ttl_seconds: p
                                .ttl_seconds
                                .map(|t| u32::try_from(t).unwrap_or(u32::MAX)),
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
                        $crate::BackendKind::Postgres => w::BackendKind::Postgres,
                        $crate::BackendKind::Mysql => w::BackendKind::Mysql,
                        $crate::BackendKind::Sqlite => w::BackendKind::Sqlite,
                        $crate::BackendKind::Mongodb => w::BackendKind::Mongodb,
                        $crate::BackendKind::Redis => w::BackendKind::Redis,
                    },
                })
                .collect();
            w::Catalog { tables, backends }
        }

        fn scalar(v: &$crate::Value) -> w::Scalar {
            match v {
                $crate::Value::Null => w::Scalar::Null,
                $crate::Value::Int(i) => w::Scalar::Integer(*i),
                $crate::Value::Float(f) => w::Scalar::Float(*f),
                $crate::Value::Decimal(d) => w::Scalar::Decimal(d.to_string()),
                $crate::Value::Text(s) => w::Scalar::Text(s.clone()),
                $crate::Value::Bool(b) => w::Scalar::Boolean(*b),
                $crate::Value::Timestamp(t) => w::Scalar::Timestamp(t.timestamp_micros()),
                // Contract 0.1 has no date: a plugin sees the instant at midnight UTC.
                $crate::Value::Date(d) => w::Scalar::Timestamp($crate::value::date_micros(d)),
                $crate::Value::Json(j) => w::Scalar::Json(j.to_string()),
            }
        }

        fn column_ref(c: $crate::routing::ColumnRef) -> w::ColumnRef {
            w::ColumnRef {
                access: id(c.access),
                column: id(c.column),
            }
        }

        /// A route request in WIT form.
        pub fn request(q: &$crate::routing::RouteRequest) -> w::Request {
            w::Request {
                kind: match q.kind {
                    $crate::ir::StatementKind::Select => w::StatementKind::Select,
                    $crate::ir::StatementKind::Insert => w::StatementKind::Insert,
                    $crate::ir::StatementKind::Update => w::StatementKind::Update,
                    $crate::ir::StatementKind::Delete => w::StatementKind::Delete,
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
                                    $crate::routing::CompareOp::Eq => w::CompareOp::Eq,
                                    $crate::routing::CompareOp::NotEq => w::CompareOp::NotEq,
                                    $crate::routing::CompareOp::Lt => w::CompareOp::Lt,
                                    $crate::routing::CompareOp::LtEq => w::CompareOp::LtEq,
                                    $crate::routing::CompareOp::Gt => w::CompareOp::Gt,
                                    $crate::routing::CompareOp::GtEq => w::CompareOp::GtEq,
                                    $crate::routing::CompareOp::InList => w::CompareOp::InList,
                                    $crate::routing::CompareOp::Between => w::CompareOp::Between,
                                    $crate::routing::CompareOp::Like => w::CompareOp::Like,
                                    $crate::routing::CompareOp::IsNull => w::CompareOp::IsNull,
                                    $crate::routing::CompareOp::IsNotNull => {
                                        w::CompareOp::IsNotNull
                                    }
                                },
                                values: p.values.iter().map(scalar).collect(),
                            })
                            .collect(),
                        key_lookup: a.key_lookup.as_ref().map(|keys| {
                            keys.iter()
                                .map(|k| k.iter().map(scalar).collect())
                                .collect()
                        }),
                        columns: a.columns.iter().map(|c| id(*c)).collect(),
                    })
                    .collect(),
                joins: q
                    .joins
                    .iter()
                    .map(|j| w::JoinEdge {
                        kind: match j.kind {
                            $crate::ir::JoinKind::Inner => w::JoinKind::Inner,
                            $crate::ir::JoinKind::Left => w::JoinKind::Left,
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
                            $crate::ir::AggFunc::Count => w::AggregateFunc::Count,
                            $crate::ir::AggFunc::Sum => w::AggregateFunc::Sum,
                            $crate::ir::AggFunc::Avg => w::AggregateFunc::Avg,
                            $crate::ir::AggFunc::Min => w::AggregateFunc::Min,
                            $crate::ir::AggFunc::Max => w::AggregateFunc::Max,
                        },
                        distinct: a.distinct,
                        column: a.column.map(column_ref),
                    })
                    .collect(),
                order_by: q
                    .order_by
                    .iter()
                    .map(|o| w::OrderKey {
                        column: o.column.map(column_ref),
                        descending: o.descending,
                        nulls_first: o.nulls_first,
                    })
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

        fn input_to_wit(i: $crate::routing::Input) -> w::Input {
            match i {
                $crate::routing::Input::Fragment(f) => w::Input::Fragment(id(f)),
                $crate::routing::Input::Node(n) => w::Input::Node(id(n)),
            }
        }

        fn input_from_wit(i: w::Input) -> $crate::routing::Input {
            match i {
                w::Input::Fragment(f) => $crate::routing::Input::Fragment(ix(f)),
                w::Input::Node(n) => $crate::routing::Input::Node(ix(n)),
            }
        }

        /// A core route in WIT form.
        pub fn route_to_wit(route: &$crate::routing::Route) -> w::Route {
            w::Route {
                fragments: route
                    .fragments
                    .iter()
                    .map(|f| w::Fragment {
                        backend: id(f.backend),
                        accesses: f.accesses.iter().map(|a| id(*a)).collect(),
                    })
                    .collect(),
                nodes: route
                    .nodes
                    .iter()
                    .map(|n| w::MergeNode {
                        op: match &n.op {
                            $crate::routing::MergeOp::UnionAll => w::MergeOp::UnionAll,
                            $crate::routing::MergeOp::UnionDistinct => w::MergeOp::UnionDistinct,
                            $crate::routing::MergeOp::HashJoin { edge } => {
                                w::MergeOp::HashJoin(id(*edge))
                            }
                            $crate::routing::MergeOp::FirstHit { fill, ttl_seconds } => {
                                w::MergeOp::FirstHit(w::FirstHit {
                                    fill: *fill,
                                    ttl_seconds: *ttl_seconds,
                                })
                            }
                            $crate::routing::MergeOp::AggregateCombine => {
                                w::MergeOp::AggregateCombine
                            }
                            $crate::routing::MergeOp::TopK { limit } => w::MergeOp::TopK(*limit),
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
        pub fn route_from_wit(route: &w::Route) -> $crate::routing::Route {
            $crate::routing::Route {
                fragments: route
                    .fragments
                    .iter()
                    .map(|f| $crate::routing::RouteFragment {
                        backend: ix(f.backend),
                        accesses: f.accesses.iter().map(|a| ix(*a)).collect(),
                    })
                    .collect(),
                nodes: route
                    .nodes
                    .iter()
                    .map(|n| $crate::routing::MergeNode {
                        op: match &n.op {
                            w::MergeOp::UnionAll => $crate::routing::MergeOp::UnionAll,
                            w::MergeOp::UnionDistinct => $crate::routing::MergeOp::UnionDistinct,
                            w::MergeOp::HashJoin(edge) => {
                                $crate::routing::MergeOp::HashJoin { edge: ix(*edge) }
                            }
                            w::MergeOp::FirstHit(f) => $crate::routing::MergeOp::FirstHit {
                                fill: f.fill,
                                ttl_seconds: f.ttl_seconds,
                            },
                            w::MergeOp::AggregateCombine => {
                                $crate::routing::MergeOp::AggregateCombine
                            }
                            w::MergeOp::TopK(limit) => {
                                $crate::routing::MergeOp::TopK { limit: *limit }
                            }
                        },
                        inputs: n.inputs.iter().map(|i| input_from_wit(*i)).collect(),
                    })
                    .collect(),
                root: input_from_wit(route.root),
                write: route.write.as_ref().map(|wp| $crate::routing::WritePlan {
                    targets: wp.targets.iter().map(|t| ix(*t)).collect(),
                    invalidate: wp.invalidate.iter().map(|t| ix(*t)).collect(),
                }),
            }
        }
    };
}
