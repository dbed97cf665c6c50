//! After a write: cache invalidation (the written keys, or the whole cache table) and the
//! publishing of change events to the configured stream.

use switchyard_backend::{BackendError, Fragment};
use switchyard_core::ir::{Expr, ExprKind, Statement};
use switchyard_core::{BoundQuery, Value};

use crate::{Router, saga};

impl Router {
    /// Drops the written rows from a cache placement: the keys when the statement pins them, the
    /// whole cache table otherwise. A failure is logged, not returned: the write itself happened.
    pub(crate) async fn invalidate(
        &self,
        query: &BoundQuery,
        cache: usize,
        keys: Option<Vec<Vec<Value>>>,
    ) {
        let table = query
            .statement
            .access_tables()
            .first()
            .map(|t| (*t).to_owned());
        if tokio::time::timeout(self.cache_timeout, self.invalidate_now(query, cache, keys))
            .await
            .is_err()
        {
            self.metrics
                .backend_errors
                .with_label_values(&[
                    self.backends
                        .get_index(cache)
                        .map_or("", |(name, _)| name.as_str()),
                    "cache_timeout",
                ])
                .inc();
            tracing::warn!(table = ?table, "cache invalidation timed out; the entry lives until its TTL");
        }
    }

    async fn invalidate_now(
        &self,
        query: &BoundQuery,
        cache: usize,
        keys: Option<Vec<Vec<Value>>>,
    ) {
        let Some(table_name) = query
            .statement
            .access_tables()
            .first()
            .map(|t| (*t).to_owned())
        else {
            return;
        };
        let Ok(backend) = self.backend_by_id(cache) else {
            return;
        };
        let Some(table) = self.catalog.table(&table_name) else {
            return;
        };
        if let (Some(vc), Some(keys)) = (backend.versioned_cache(), &keys) {
            match vc.invalidate(table, keys).await {
                Ok(()) => return,
                // Not a layout with versions: plain delete below.
                Err(BackendError::Unsupported { .. }) => {}
                Err(err) => {
                    tracing::warn!(backend = backend.name(), table = %table_name, error = %err, "cache invalidation failed");
                    return;
                }
            }
        }
        for statement in invalidation_statements(table, keys) {
            let q = BoundQuery {
                statement,
                params: Vec::new(),
            };
            if let Err(err) = backend
                .execute(Fragment {
                    query: &q,
                    catalog: &self.catalog,
                })
                .await
            {
                tracing::warn!(backend = backend.name(), table = %table_name, error = %err, "cache invalidation failed");
                return;
            }
        }
    }

    /// The primary keys of the rows an UPDATE/DELETE without pinned keys will touch (read from
    /// the primary before the write; `None` when they cannot be read).
    pub(crate) async fn keys_to_write(
        &self,
        query: &BoundQuery,
        target: usize,
    ) -> Option<Vec<Vec<Value>>> {
        let select = saga::rows_to_write(&self.catalog, query, |t| t.primary_key.clone())?;
        let rs = self
            .run_on(
                target,
                Fragment {
                    query: &select,
                    catalog: &self.catalog,
                },
            )
            .await
            .ok()?;
        Some(rs.rows)
    }

    /// Appends change events to the configured stream now (a saga's outbox, before its commit
    /// record). A failure is logged and counted, never returned: the write it describes has
    /// committed.
    pub(crate) async fn publish(&self, events: Vec<switchyard_backend::ChangeEvent>) {
        let Some((id, stream, max_len)) = &self.events else {
            return;
        };
        if events.is_empty() {
            return;
        }
        let Ok(backend) = self.backend_by_id(*id) else {
            return;
        };
        let n = events.len() as u64;
        match backend.publish_changes(stream, *max_len, &events).await {
            Ok(_) => self
                .metrics
                .events_published
                .with_label_values(&["ok"])
                .inc_by(n),
            Err(err) => {
                self.metrics
                    .events_published
                    .with_label_values(&["error"])
                    .inc_by(n);
                tracing::warn!(backend = backend.name(), error = %err, "change events not published");
            }
        }
    }
}

/// Keys per invalidation statement: bounds the statement a keyless write over many rows sends
/// to a SQL cache (and the expression depth of its filter).
const INVALIDATION_BATCH: usize = 1_000;

/// `DELETE FROM table WHERE pk IN (keys)` (composite keys: `pk1 = a AND pk2 = b OR ...` as a
/// balanced tree) in batches of [`INVALIDATION_BATCH`] keys, or the whole table when the keys
/// are unknown.
fn invalidation_statements(
    table: &switchyard_core::Table,
    keys: Option<Vec<Vec<Value>>>,
) -> Vec<Statement> {
    use switchyard_core::LogicalType;
    use switchyard_core::ir::{BinaryOp, Delete};
    let column = |i: usize| Expr {
        kind: ExprKind::Column {
            table: 0,
            column: i,
        },
        ty: table.columns[i].ty,
    };
    let literal = |v: Value, i: usize| Expr {
        kind: ExprKind::Literal(v),
        ty: table.columns[i].ty,
    };
    let delete = |filter| {
        Statement::Delete(Delete {
            table: table.name.clone(),
            filter,
        })
    };
    let Some(keys) = keys.filter(|k| !k.is_empty()) else {
        return vec![delete(None)];
    };
    keys.chunks(INVALIDATION_BATCH)
        .map(|batch| {
            let filter = match table.primary_key.as_slice() {
                [c] => Expr {
                    kind: ExprKind::InList {
                        expr: Box::new(column(*c)),
                        list: batch
                            .iter()
                            .filter_map(|tuple| tuple.first().cloned())
                            .map(|v| literal(v, *c))
                            .collect(),
                        negated: false,
                    },
                    ty: LogicalType::Bool,
                },
                key => Expr::balanced(
                    BinaryOp::Or,
                    batch
                        .iter()
                        .map(|tuple| {
                            Expr::balanced(
                                BinaryOp::And,
                                tuple
                                    .iter()
                                    .zip(key)
                                    .map(|(v, &c)| Expr {
                                        kind: ExprKind::Binary {
                                            op: BinaryOp::Eq,
                                            left: Box::new(column(c)),
                                            right: Box::new(literal(v.clone(), c)),
                                        },
                                        ty: LogicalType::Bool,
                                    })
                                    .collect(),
                            )
                        })
                        .collect(),
                ),
            };
            delete(Some(filter))
        })
        .collect()
}
