//! Aggregation in the router: grouping rows (local aggregation), and combining the partial
//! aggregates shards computed (COUNT/SUM/MIN/MAX pushed down, AVG as SUM and COUNT,
//! COUNT(DISTINCT x) by pushing `x` into the shards' grouping and counting distinct values here).

use std::collections::{HashMap, HashSet};

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};

use super::Budget;
use super::eval::{Scope, eval};
use super::ops::{Key, Row, key_of, keys_of};
use crate::error::CoreError;
use crate::ir::{AggFunc, Expr, ExprKind, OutputColumn, Select};
use crate::{LogicalType, Value};

/// A group: its key values and one value per aggregate.
pub type Group = (Vec<Value>, Vec<Value>);

/// The distinct aggregate calls of a SELECT (output, HAVING, ORDER BY), in order of appearance.
pub fn collect_aggregates(select: &Select) -> Vec<Expr> {
    let mut out: Vec<Expr> = Vec::new();
    let mut sources: Vec<&Expr> = select.projection.iter().map(|c| &c.expr).collect();
    sources.extend(select.having.iter());
    sources.extend(select.order_by.iter().map(|o| &o.expr));
    for e in sources {
        e.walk(&mut |x| {
            if matches!(x.kind, ExprKind::Agg { .. }) && !out.contains(x) {
                out.push(x.clone());
            }
        });
    }
    out
}

#[derive(Debug, Clone)]
enum State {
    Count(i64),
    Sum(Option<Value>),
    Min(Option<Value>),
    Max(Option<Value>),
    Avg(Option<Value>, i64),
}

/// The running state of one aggregate over one group.
#[derive(Debug, Clone)]
struct Acc {
    state: State,
    seen: Option<HashSet<Key>>,
    ty: LogicalType,
}

fn add(a: Value, b: Value) -> Result<Value, CoreError> {
    let overflow = || CoreError::Data {
        message: "value out of range in SUM".to_owned(),
    };
    Ok(match (a, b) {
        (Value::Int(x), Value::Int(y)) => Value::Int(x.checked_add(y).ok_or_else(overflow)?),
        (Value::Float(x), y) => Value::Float(x + y_f64(&y)),
        (x, Value::Float(y)) => Value::Float(y_f64(&x) + y),
        (x, y) => Value::Decimal(to_dec(&x).checked_add(to_dec(&y)).ok_or_else(overflow)?),
    })
}

fn y_f64(v: &Value) -> f64 {
    match v {
        Value::Int(i) => *i as f64,
        Value::Float(f) => *f,
        Value::Decimal(d) => d.to_f64().unwrap_or(f64::NAN),
        _ => f64::NAN,
    }
}

fn to_dec(v: &Value) -> Decimal {
    match v {
        Value::Int(i) => Decimal::from(*i),
        Value::Decimal(d) => *d,
        _ => Decimal::ZERO,
    }
}

impl Acc {
    fn new(func: AggFunc, distinct: bool, ty: LogicalType) -> Acc {
        let state = match func {
            AggFunc::Count => State::Count(0),
            AggFunc::Sum => State::Sum(None),
            AggFunc::Min => State::Min(None),
            AggFunc::Max => State::Max(None),
            AggFunc::Avg => State::Avg(None, 0),
        };
        Acc {
            state,
            seen: distinct.then(HashSet::new),
            ty,
        }
    }

    /// One input value (`None` for `COUNT(*)`).
    fn update(&mut self, v: Option<Value>) -> Result<(), CoreError> {
        let Some(v) = v else {
            if let State::Count(n) = &mut self.state {
                *n += 1;
            }
            return Ok(());
        };
        if v.is_null() {
            return Ok(());
        }
        if let Some(seen) = &mut self.seen
            && !seen.insert(key_of(&v))
        {
            return Ok(());
        }
        self.state = match std::mem::replace(&mut self.state, State::Count(0)) {
            State::Count(n) => State::Count(n + 1),
            State::Sum(s) => State::Sum(Some(match s {
                None => v,
                Some(s) => add(s, v)?,
            })),
            State::Min(m) => State::Min(Some(match m {
                Some(m) if super::eval::sql_cmp(&m, &v).is_le() => m,
                _ => v,
            })),
            State::Max(m) => State::Max(Some(match m {
                Some(m) if super::eval::sql_cmp(&m, &v).is_ge() => m,
                _ => v,
            })),
            State::Avg(s, n) => State::Avg(
                Some(match s {
                    None => v,
                    Some(s) => add(s, v)?,
                }),
                n + 1,
            ),
        };
        Ok(())
    }

    /// Partial results of a shard: `[count]`, `[sum]`, `[min]`, `[max]` or `[sum, count]`.
    fn merge(&mut self, partial: &[Value]) -> Result<(), CoreError> {
        let first = partial.first().cloned().unwrap_or(Value::Null);
        match &mut self.state {
            State::Count(n) => {
                if let Value::Int(c) = first {
                    *n += c;
                }
            }
            State::Avg(s, n) => {
                if let Some(Value::Int(c)) = partial.get(1) {
                    *n += c;
                }
                if !first.is_null() {
                    *s = Some(match s.take() {
                        None => first,
                        Some(x) => add(x, first)?,
                    });
                }
            }
            _ => {
                // SUM, MIN and MAX combine like their inputs.
                let seen = self.seen.take();
                let r = self.update(Some(first));
                self.seen = seen;
                r?;
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<Value, CoreError> {
        let v = match self.state {
            State::Count(n) => Value::Int(n),
            State::Sum(s) | State::Min(s) | State::Max(s) => s.unwrap_or(Value::Null),
            State::Avg(None, _) | State::Avg(_, 0) => Value::Null,
            State::Avg(Some(s), n) => match self.ty {
                LogicalType::Decimal { scale, .. } => {
                    Value::Decimal((to_dec(&s) / Decimal::from(n)).round_dp_with_strategy(
                        u32::from(scale),
                        RoundingStrategy::MidpointAwayFromZero,
                    ))
                }
                _ => Value::Float(y_f64(&s) / n as f64),
            },
        };
        v.coerce(self.ty)
            .map_err(|message| CoreError::Data { message })
    }
}

fn agg_parts(e: &Expr) -> (AggFunc, bool, Option<&Expr>) {
    match &e.kind {
        ExprKind::Agg {
            func,
            arg,
            distinct,
        } => (*func, *distinct, arg.as_deref()),
        _ => (AggFunc::Count, false, None),
    }
}

/// Empty accumulators, one per aggregate.
fn fresh(aggregates: &[Expr]) -> Vec<Acc> {
    aggregates
        .iter()
        .map(|a| {
            let (f, d, _) = agg_parts(a);
            Acc::new(f, d, a.ty)
        })
        .collect()
}

struct Groups {
    index: HashMap<Vec<Key>, usize>,
    groups: Vec<(Vec<Value>, Vec<Acc>)>,
}

impl Groups {
    fn new() -> Groups {
        Groups {
            index: HashMap::new(),
            groups: Vec::new(),
        }
    }

    fn slot(
        &mut self,
        key_values: Vec<Value>,
        aggregates: &[Expr],
        budget: &Budget,
    ) -> Result<&mut Vec<Acc>, CoreError> {
        let keys = keys_of(&key_values);
        let i = match self.index.get(&keys) {
            Some(i) => *i,
            None => {
                budget.charge(std::slice::from_ref(&key_values))?;
                self.groups.push((key_values, fresh(aggregates)));
                self.index.insert(keys, self.groups.len() - 1);
                self.groups.len() - 1
            }
        };
        Ok(&mut self.groups[i].1)
    }

    fn finish(mut self, no_keys: bool, aggregates: &[Expr]) -> Result<Vec<Group>, CoreError> {
        if no_keys && self.groups.is_empty() {
            self.groups.push((Vec::new(), fresh(aggregates)));
        }
        self.groups
            .into_iter()
            .map(|(k, accs)| {
                let vals = accs
                    .into_iter()
                    .map(Acc::finish)
                    .collect::<Result<_, _>>()?;
                Ok((k, vals))
            })
            .collect()
    }
}

/// Groups wide rows by `group_by` and computes `aggregates` per group. Without GROUP BY there is
/// exactly one group, also over no rows.
pub fn aggregate(
    rows: &[Row],
    group_by: &[Expr],
    aggregates: &[Expr],
    offsets: &[usize],
    params: &[Value],
    budget: &Budget,
) -> Result<Vec<Group>, CoreError> {
    let mut groups = Groups::new();
    for row in rows {
        let scope = Scope {
            row,
            offsets,
            params,
            group: None,
        };
        let key_values = group_by
            .iter()
            .map(|g| eval(g, &scope))
            .collect::<Result<Vec<_>, _>>()?;
        let mut inputs = Vec::with_capacity(aggregates.len());
        for a in aggregates {
            let (_, _, arg) = agg_parts(a);
            inputs.push(match arg {
                Some(e) => Some(eval(e, &scope)?),
                None => None,
            });
        }
        let accs = groups.slot(key_values, aggregates, budget)?;
        for (acc, v) in accs.iter_mut().zip(inputs) {
            acc.update(v)?;
        }
    }
    groups.finish(group_by.is_empty(), aggregates)
}

/// The statement each shard runs for partial aggregation, and how to read its rows.
#[derive(Debug, Clone, PartialEq)]
pub struct PartialPlan {
    /// The shard statement: grouping keys, then per aggregate its partial columns, then the
    /// DISTINCT argument (when there is one), grouped by the keys and that argument.
    pub shard: Select,
    /// GROUP BY width.
    pub keys: usize,
    /// Per aggregate: first partial column and how many (2 for AVG) — or `None` for a DISTINCT
    /// aggregate, which reads the DISTINCT argument column.
    pub partials: Vec<Option<(usize, usize)>>,
    /// The column of the DISTINCT argument.
    pub distinct_column: Option<usize>,
}

/// Rewrites an aggregate SELECT into its per-shard partial form. `None` when it cannot be split
/// (DISTINCT aggregates over more than one argument).
pub fn partial_plan(select: &Select, aggregates: &[Expr]) -> Option<PartialPlan> {
    let mut distinct_arg: Option<&Expr> = None;
    for a in aggregates {
        let (_, d, arg) = agg_parts(a);
        if d {
            match (distinct_arg, arg) {
                (None, Some(x)) => distinct_arg = Some(x),
                (Some(prev), Some(x)) if prev == x => {}
                _ => return None,
            }
        }
    }
    let mut projection: Vec<OutputColumn> = select
        .group_by
        .iter()
        .enumerate()
        .map(|(i, g)| OutputColumn {
            name: format!("k{i}"),
            expr: g.clone(),
        })
        .collect();
    let agg = |func: AggFunc, arg: Option<&Expr>, ty: LogicalType| Expr {
        kind: ExprKind::Agg {
            func,
            arg: arg.map(|a| Box::new(a.clone())),
            distinct: false,
        },
        ty,
    };
    let mut partials = Vec::new();
    for a in aggregates {
        let (func, d, arg) = agg_parts(a);
        if d {
            partials.push(None);
            continue;
        }
        let start = projection.len();
        let mut push = |e: Expr| {
            let n = projection.len();
            projection.push(OutputColumn {
                name: format!("p{n}"),
                expr: e,
            });
        };
        match func {
            AggFunc::Avg => {
                let arg_ty = arg.map_or(LogicalType::Int, |x| x.ty);
                let sum_ty = match arg_ty {
                    LogicalType::Decimal { scale, .. } => LogicalType::Decimal {
                        precision: 28,
                        scale,
                    },
                    t => t,
                };
                push(agg(AggFunc::Sum, arg, sum_ty));
                push(agg(AggFunc::Count, arg, LogicalType::Int));
            }
            _ => push(agg(func, arg, a.ty)),
        }
        partials.push(Some((start, projection.len() - start)));
    }
    let mut group_by = select.group_by.clone();
    let distinct_column = distinct_arg.map(|x| {
        projection.push(OutputColumn {
            name: "d".to_owned(),
            expr: x.clone(),
        });
        group_by.push(x.clone());
        projection.len() - 1
    });
    Some(PartialPlan {
        shard: Select {
            distinct: false,
            from: select.from.clone(),
            joins: select.joins.clone(),
            filter: select.filter.clone(),
            group_by,
            having: None,
            projection,
            order_by: Vec::new(),
            limit: None,
            offset: None,
        },
        keys: select.group_by.len(),
        partials,
        distinct_column,
    })
}

/// Combines the shards' partial rows into final groups.
pub fn combine(
    rows: &[Row],
    plan: &PartialPlan,
    aggregates: &[Expr],
    budget: &Budget,
) -> Result<Vec<Group>, CoreError> {
    let mut groups = Groups::new();
    for row in rows {
        let key_values = row
            .get(..plan.keys)
            .map(<[Value]>::to_vec)
            .unwrap_or_default();
        let accs = groups.slot(key_values, aggregates, budget)?;
        for (acc, p) in accs.iter_mut().zip(&plan.partials) {
            match p {
                Some((start, n)) => acc.merge(row.get(*start..start + n).unwrap_or(&[]))?,
                None => {
                    let v = plan
                        .distinct_column
                        .and_then(|c| row.get(c).cloned())
                        .unwrap_or(Value::Null);
                    acc.update(Some(v))?;
                }
            }
        }
    }
    groups.finish(plan.keys == 0, aggregates)
}
