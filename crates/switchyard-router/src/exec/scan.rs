//! Scans: the statement each fragment sends to its backend (pushed-down joins, filters and the
//! columns the statement needs), run and widened into the statement's layout, optionally
//! restricted to the keys of semi-join reduction.

use futures::future::{BoxFuture, FutureExt};
use futures::{StreamExt, TryStreamExt};
use switchyard_backend::{BackendError, Capabilities, Fragment};
use switchyard_core::exec::ops;
use switchyard_core::exec::{accesses_of, map_accesses, rejects_nulls_of};
use switchyard_core::ir::{BinaryOp, Expr, ExprKind, JoinKind, OutputColumn, Select, Statement};
use switchyard_core::routing::AccessId;
use switchyard_core::{BoundQuery, LogicalType, Value};

use super::{Exec, Reduce, Relation, Scan, and_all, boolean, in_list, no_route};
use crate::RouterError;

impl Exec<'_> {
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
    pub(super) fn fragment_scans(
        &self,
        f: usize,
        all_columns: bool,
    ) -> Result<Vec<Scan>, RouterError> {
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

    pub(super) fn scan(
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
    pub(super) fn restricted(&self, scan: &Scan, extra: Expr) -> Scan {
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

    pub(super) async fn run_scan(&self, scan: &Scan) -> Result<Relation, RouterError> {
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

    pub(super) fn run_maybe_reduced<'s>(
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
}
