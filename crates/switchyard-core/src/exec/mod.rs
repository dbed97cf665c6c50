//! Execution in the router, pure: expression evaluation, merge operators and the residual
//! SELECT pipeline (filter, grouping, HAVING, projection, DISTINCT, ORDER BY, OFFSET/LIMIT) over
//! rows that fragments returned. The router crate feeds it rows; nothing here does I/O.

pub mod agg;
pub mod eval;
pub mod ops;

use std::sync::atomic::{AtomicU64, Ordering};

use crate::catalog::Catalog;
use crate::error::CoreError;
use crate::ir::{Expr, ExprKind, Select};
use crate::value::Value;
use eval::{GroupScope, Scope, eval, is_true};
use ops::{Row, SortSpec};

/// The per-query memory guard: rows and (estimated) bytes held in the router. Counted as rows
/// arrive and are produced, never released during the query, so the figure is an upper bound.
#[derive(Debug)]
pub struct Budget {
    max_rows: u64,
    max_bytes: u64,
    rows: AtomicU64,
    bytes: AtomicU64,
}

impl Budget {
    /// A budget of `max_rows` rows and `max_bytes` bytes.
    pub fn new(max_rows: u64, max_bytes: u64) -> Budget {
        Budget {
            max_rows,
            max_bytes,
            rows: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    /// No limit (tests, tools).
    pub fn unlimited() -> Budget {
        Budget::new(u64::MAX, u64::MAX)
    }

    /// Counts `rows`; fails with `QUERY_TOO_LARGE` past the budget.
    pub fn charge(&self, rows: &[Row]) -> Result<(), CoreError> {
        let n = rows.len() as u64;
        let b: u64 = rows
            .iter()
            .map(|r| r.iter().map(value_size).sum::<u64>() + 24)
            .sum();
        let total_rows = self.rows.fetch_add(n, Ordering::Relaxed).saturating_add(n);
        if total_rows > self.max_rows {
            return Err(CoreError::QueryTooLarge {
                what: "rows",
                limit: self.max_rows,
            });
        }
        let total_bytes = self.bytes.fetch_add(b, Ordering::Relaxed).saturating_add(b);
        if total_bytes > self.max_bytes {
            return Err(CoreError::QueryTooLarge {
                what: "bytes",
                limit: self.max_bytes,
            });
        }
        Ok(())
    }

    /// Rows and bytes counted so far.
    pub fn used(&self) -> (u64, u64) {
        (
            self.rows.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

/// Estimated bytes a value occupies.
pub fn value_size(v: &Value) -> u64 {
    32 + match v {
        Value::Text(s) => s.len() as u64,
        Value::Json(j) => json_size(j),
        _ => 0,
    }
}

fn json_size(j: &serde_json::Value) -> u64 {
    match j {
        serde_json::Value::String(s) => 32 + s.len() as u64,
        serde_json::Value::Array(a) => 32 + a.iter().map(json_size).sum::<u64>(),
        serde_json::Value::Object(o) => {
            32 + o
                .iter()
                .map(|(k, v)| k.len() as u64 + json_size(v))
                .sum::<u64>()
        }
        _ => 32,
    }
}

/// Where each table access of a SELECT starts in a wide row, and the row's width.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// `offsets[access]`.
    pub offsets: Vec<usize>,
    /// Columns per access.
    pub widths: Vec<usize>,
}

impl Layout {
    /// The layout of `select` over `catalog`.
    pub fn of(select: &Select, catalog: &Catalog) -> Layout {
        let widths: Vec<usize> = select
            .from
            .iter()
            .map(|t| catalog.table(&t.table).map_or(0, |t| t.columns.len()))
            .collect();
        let mut offsets = Vec::with_capacity(widths.len());
        let mut at = 0;
        for w in &widths {
            offsets.push(at);
            at += w;
        }
        Layout { offsets, widths }
    }

    /// Total width.
    pub fn width(&self) -> usize {
        self.widths.iter().sum()
    }

    /// The slot range of `access`.
    pub fn slots(&self, access: usize) -> (usize, usize) {
        let start = self.offsets.get(access).copied().unwrap_or(0);
        (start, start + self.widths.get(access).copied().unwrap_or(0))
    }
}

/// Copies `e` with every column's table access renamed by `map`.
#[recursive::recursive]
pub fn map_accesses(e: &Expr, map: &dyn Fn(usize) -> usize) -> Expr {
    let mut out = e.clone();
    remap(&mut out, map);
    out
}

fn remap(e: &mut Expr, map: &dyn Fn(usize) -> usize) {
    match &mut e.kind {
        ExprKind::Column { table, .. } => *table = map(*table),
        ExprKind::Excluded { .. } | ExprKind::Literal(_) | ExprKind::Param(_) => {}
        ExprKind::Unary { expr, .. } | ExprKind::IsNull { expr, .. } => remap(expr, map),
        ExprKind::Binary { left, right, .. } => {
            remap(left, map);
            remap(right, map);
        }
        ExprKind::InList { expr, list, .. } => {
            remap(expr, map);
            list.iter_mut().for_each(|x| remap(x, map));
        }
        ExprKind::Between {
            expr, low, high, ..
        } => {
            remap(expr, map);
            remap(low, map);
            remap(high, map);
        }
        ExprKind::Like { expr, pattern, .. } => {
            remap(expr, map);
            remap(pattern, map);
        }
        ExprKind::Func { args, .. } => args.iter_mut().for_each(|x| remap(x, map)),
        ExprKind::Agg { arg, .. } => {
            if let Some(a) = arg {
                remap(a, map);
            }
        }
    }
}

/// The table accesses an expression reads.
pub fn accesses_of(e: &Expr) -> Vec<usize> {
    let mut out = Vec::new();
    e.walk(&mut |x| {
        if let ExprKind::Column { table, .. } = x.kind
            && !out.contains(&table)
        {
            out.push(table);
        }
    });
    out
}

/// Whether condition `e` is not TRUE when every column of `access` is NULL (so pushing it below
/// a LEFT JOIN that NULL-extends `access` keeps the answer the same).
#[recursive::recursive]
pub fn rejects_nulls_of(e: &Expr, access: usize, layout: &Layout, params: &[Value]) -> bool {
    let row = vec![Value::Null; layout.width()];
    let scope = Scope {
        row: &row,
        offsets: &layout.offsets,
        params,
        group: None,
    };
    let others = accesses_of(e).into_iter().any(|a| a != access);
    !others && !matches!(eval(e, &scope), Ok(Value::Bool(true)))
}

fn specs(select: &Select) -> Vec<SortSpec> {
    select
        .order_by
        .iter()
        .map(|o| SortSpec {
            desc: o.desc,
            nulls_first: o.nulls_first,
        })
        .collect()
}

/// The residual pipeline: `rows` are wide rows after every join; applies WHERE, grouping,
/// HAVING, the output, DISTINCT, ORDER BY and OFFSET/LIMIT. Returns the output rows.
pub fn finish_select(
    select: &Select,
    rows: Vec<Row>,
    layout: &Layout,
    params: &[Value],
    budget: &Budget,
) -> Result<Vec<Row>, CoreError> {
    let mut kept = Vec::with_capacity(rows.len());
    for row in rows {
        let ok = match &select.filter {
            None => true,
            Some(f) => is_true(&eval(
                f,
                &Scope {
                    row: &row,
                    offsets: &layout.offsets,
                    params,
                    group: None,
                },
            )?),
        };
        if ok {
            kept.push(row);
        }
    }
    if select.is_aggregate() {
        let aggregates = agg::collect_aggregates(select);
        let groups = agg::aggregate(
            &kept,
            &select.group_by,
            &aggregates,
            &layout.offsets,
            params,
            budget,
        )?;
        return finish_groups(select, &aggregates, groups, params);
    }
    let mut items = Vec::with_capacity(kept.len());
    for row in &kept {
        let scope = Scope {
            row,
            offsets: &layout.offsets,
            params,
            group: None,
        };
        items.push(output_of(select, &scope)?);
    }
    finalize(select, items)
}

/// HAVING, output, DISTINCT, ORDER BY and OFFSET/LIMIT over computed groups.
pub fn finish_groups(
    select: &Select,
    aggregates: &[Expr],
    groups: Vec<agg::Group>,
    params: &[Value],
) -> Result<Vec<Row>, CoreError> {
    let mut items = Vec::with_capacity(groups.len());
    for (keys, values) in &groups {
        let scope = Scope {
            row: &[],
            offsets: &[],
            params,
            group: Some(GroupScope {
                keys: &select.group_by,
                key_values: keys,
                aggregates,
                aggregate_values: values,
            }),
        };
        if let Some(h) = &select.having
            && !is_true(&eval(h, &scope)?)
        {
            continue;
        }
        items.push(output_of(select, &scope)?);
    }
    finalize(select, items)
}

/// One output row and its sort keys.
fn output_of(select: &Select, scope: &Scope<'_>) -> Result<(Row, Row), CoreError> {
    let mut out = Vec::with_capacity(select.projection.len());
    for c in &select.projection {
        let v = eval(&c.expr, scope)?;
        out.push(
            v.coerce(c.expr.ty)
                .map_err(|message| CoreError::Data { message })?,
        );
    }
    let mut keys = Vec::with_capacity(select.order_by.len());
    for o in &select.order_by {
        keys.push(eval(&o.expr, scope)?);
    }
    Ok((out, keys))
}

fn finalize(select: &Select, items: Vec<(Row, Row)>) -> Result<Vec<Row>, CoreError> {
    let width = select.projection.len();
    let mut rows: Vec<Row> = items
        .into_iter()
        .map(|(mut out, keys)| {
            out.extend(keys);
            out
        })
        .collect();
    if select.distinct {
        rows = ops::distinct(rows, Some(width));
    }
    let key_columns: Vec<usize> = (width..width + select.order_by.len()).collect();
    if !key_columns.is_empty() {
        ops::sort(&mut rows, &key_columns, &specs(select));
    }
    let offset = usize::try_from(select.offset.unwrap_or(0)).unwrap_or(usize::MAX);
    let limit = select
        .limit
        .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    Ok(rows
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|mut r| {
            r.truncate(width);
            r
        })
        .collect())
}

/// Sort specifications of a SELECT's ORDER BY.
pub fn order_specs(select: &Select) -> Vec<SortSpec> {
    specs(select)
}
