//! Merge operators over rows held in the router: hash join, union, distinct, sort, top-k merge,
//! first-hit. Rows are *wide*: one slot per column of every table access of the statement (at
//! the access's offset), NULL where an access has not joined yet.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use super::Budget;
use super::eval::{Scope, eval, is_true};
use crate::error::CoreError;
use crate::ir::{Expr, JoinKind};
use crate::value::Value;

/// A row of values.
pub type Row = Vec<Value>;

/// A hashable form of a value in which values that SQL calls equal are equal (`1 = 1.00`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Key {
    /// NULL (grouping puts NULLs together; joins never match them).
    Null,
    /// Integers, and decimals or floats with an integral value.
    Int(i64),
    /// Other decimals.
    Dec(Decimal),
    /// Other floats, by bits.
    Float(u64),
    /// Text.
    Text(String),
    /// Booleans.
    Bool(bool),
    /// Timestamps in microseconds.
    Ts(i64),
    /// JSON, by its text.
    Json(String),
}

/// The key of a value.
pub fn key_of(v: &Value) -> Key {
    match v {
        Value::Null => Key::Null,
        Value::Int(i) => Key::Int(*i),
        Value::Decimal(d) => match (d.fract().is_zero(), d.to_i64()) {
            (true, Some(i)) => Key::Int(i),
            _ => Key::Dec(d.normalize()),
        },
        Value::Float(f) => {
            if f.fract() == 0.0 && f.abs() < 9.0e15 {
                Key::Int(*f as i64)
            } else {
                Key::Float(f.to_bits())
            }
        }
        Value::Text(s) => Key::Text(s.clone()),
        Value::Bool(b) => Key::Bool(*b),
        Value::Timestamp(t) => Key::Ts(t.timestamp_micros()),
        Value::Date(d) => Key::Ts(crate::value::date_micros(d)),
        Value::Json(j) => Key::Json(j.to_string()),
    }
}

/// Keys of several values.
pub fn keys_of(values: &[Value]) -> Vec<Key> {
    values.iter().map(key_of).collect()
}

/// How one sort key orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SortSpec {
    /// Descending.
    pub desc: bool,
    /// NULLs before the other values.
    pub nulls_first: bool,
}

/// Compares two tuples of sort-key values.
pub fn order_cmp(a: &[Value], b: &[Value], specs: &[SortSpec]) -> Ordering {
    a.iter()
        .zip(b)
        .zip(specs)
        .map(|((x, y), s)| cmp_one(x, y, *s))
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal)
}

/// Compares two rows on the values at `key_columns`, without copying them.
pub fn cmp_at(a: &Row, b: &Row, key_columns: &[usize], specs: &[SortSpec]) -> Ordering {
    key_columns
        .iter()
        .zip(specs)
        .map(|(&c, s)| {
            let null = Value::Null;
            cmp_one(a.get(c).unwrap_or(&null), b.get(c).unwrap_or(&null), *s)
        })
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal)
}

fn cmp_one(x: &Value, y: &Value, s: SortSpec) -> Ordering {
    {
        match (x.is_null(), y.is_null()) {
            (true, true) => Ordering::Equal,
            (true, false) => {
                if s.nulls_first {
                    Ordering::Less
                } else {
                    Ordering::Greater
                }
            }
            (false, true) => {
                if s.nulls_first {
                    Ordering::Greater
                } else {
                    Ordering::Less
                }
            }
            (false, false) => {
                let o = super::eval::sql_cmp(x, y);
                if s.desc { o.reverse() } else { o }
            }
        }
    }
}

/// Which slots of a wide row an input fills: `(start, end)` ranges.
pub type Slots = [(usize, usize)];

fn merged(left: &Row, right: &Row, right_slots: &Slots) -> Row {
    let mut out = left.clone();
    for &(s, e) in right_slots {
        if let (Some(dst), Some(src)) = (out.get_mut(s..e), right.get(s..e)) {
            dst.clone_from_slice(src);
        }
    }
    out
}

/// What a hash join needs besides its inputs.
#[derive(Debug, Clone, Copy)]
pub struct JoinSpec<'a> {
    /// Inner or left (the left input is preserved).
    pub kind: JoinKind,
    /// Equi-join key expressions over the left input's slots.
    pub left_keys: &'a [Expr],
    /// The matching key expressions over the right input's slots.
    pub right_keys: &'a [Expr],
    /// The slots the right input fills.
    pub right_slots: &'a Slots,
    /// The whole ON condition, checked on every candidate pair.
    pub condition: Option<&'a Expr>,
    /// Offsets of the wide row.
    pub offsets: &'a [usize],
    /// Statement parameters.
    pub params: &'a [Value],
}

fn join_key(row: &Row, exprs: &[Expr], spec: &JoinSpec<'_>) -> Result<Option<Vec<Key>>, CoreError> {
    let scope = Scope {
        row,
        offsets: spec.offsets,
        params: spec.params,
        group: None,
    };
    let mut out = Vec::with_capacity(exprs.len());
    for e in exprs {
        let v = eval(e, &scope)?;
        if v.is_null() {
            return Ok(None);
        }
        out.push(key_of(&v));
    }
    Ok(Some(out))
}

fn passes(row: &Row, spec: &JoinSpec<'_>) -> Result<bool, CoreError> {
    match spec.condition {
        None => Ok(true),
        Some(c) => Ok(is_true(&eval(
            c,
            &Scope {
                row,
                offsets: spec.offsets,
                params: spec.params,
                group: None,
            },
        )?)),
    }
}

/// Hash join of two inputs; builds its table on the smaller one. NULL keys never match. For a
/// LEFT join, left rows without a match come out once with the right slots NULL.
pub fn hash_join(
    left: Vec<Row>,
    right: Vec<Row>,
    spec: &JoinSpec<'_>,
    budget: &Budget,
) -> Result<Vec<Row>, CoreError> {
    let mut out = Vec::new();
    let emit = |row: Row, out: &mut Vec<Row>| -> Result<(), CoreError> {
        budget.charge(std::slice::from_ref(&row))?;
        out.push(row);
        Ok(())
    };
    if right.len() <= left.len() {
        let mut table: HashMap<Vec<Key>, Vec<usize>> = HashMap::with_capacity(right.len());
        for (i, r) in right.iter().enumerate() {
            if let Some(k) = join_key(r, spec.right_keys, spec)? {
                table.entry(k).or_default().push(i);
            }
        }
        for l in &left {
            let mut matched = false;
            if let Some(k) = join_key(l, spec.left_keys, spec)?
                && let Some(candidates) = table.get(&k)
            {
                for &i in candidates {
                    let row = merged(l, &right[i], spec.right_slots);
                    if passes(&row, spec)? {
                        matched = true;
                        emit(row, &mut out)?;
                    }
                }
            }
            if !matched && spec.kind == JoinKind::Left {
                emit(l.clone(), &mut out)?;
            }
        }
    } else {
        let mut table: HashMap<Vec<Key>, Vec<usize>> = HashMap::with_capacity(left.len());
        for (i, l) in left.iter().enumerate() {
            if let Some(k) = join_key(l, spec.left_keys, spec)? {
                table.entry(k).or_default().push(i);
            }
        }
        let mut matched = vec![false; left.len()];
        for r in &right {
            if let Some(k) = join_key(r, spec.right_keys, spec)?
                && let Some(candidates) = table.get(&k)
            {
                for &i in candidates {
                    let row = merged(&left[i], r, spec.right_slots);
                    if passes(&row, spec)? {
                        matched[i] = true;
                        emit(row, &mut out)?;
                    }
                }
            }
        }
        if spec.kind == JoinKind::Left {
            for (l, m) in left.into_iter().zip(matched) {
                if !m {
                    emit(l, &mut out)?;
                }
            }
        }
    }
    Ok(out)
}

/// Concatenates inputs (shards).
pub fn union_all(inputs: Vec<Vec<Row>>) -> Vec<Row> {
    let mut out = Vec::with_capacity(inputs.iter().map(Vec::len).sum());
    for i in inputs {
        out.extend(i);
    }
    out
}

/// Drops repeated rows, keeping the first of each (compared on `width` leading values, or all).
pub fn distinct(rows: Vec<Row>, width: Option<usize>) -> Vec<Row> {
    let mut seen: HashSet<Vec<Key>> = HashSet::with_capacity(rows.len());
    rows.into_iter()
        .filter(|r| {
            let end = width.unwrap_or(r.len()).min(r.len());
            seen.insert(keys_of(&r[..end]))
        })
        .collect()
}

/// Merges inputs that are each sorted on the values at `key_columns` and keeps the first
/// `limit` rows (k-way merge; only the heads of the inputs are compared).
pub fn top_k(
    mut inputs: Vec<Vec<Row>>,
    key_columns: &[usize],
    specs: &[SortSpec],
    limit: usize,
) -> Vec<Row> {
    let mut pos = vec![0usize; inputs.len()];
    let mut out = Vec::with_capacity(limit.min(1024));
    while out.len() < limit {
        let mut best: Option<(usize, &Row)> = None;
        for (i, input) in inputs.iter().enumerate() {
            let Some(head) = input.get(pos[i]) else {
                continue;
            };
            if best.is_none_or(|(_, b)| cmp_at(head, b, key_columns, specs) == Ordering::Less) {
                best = Some((i, head));
            }
        }
        let Some((i, _)) = best else { break };
        out.push(std::mem::take(&mut inputs[i][pos[i]]));
        pos[i] += 1;
    }
    out
}

/// Sorts rows stably by the values at `key_columns`.
pub fn sort(rows: &mut [Row], key_columns: &[usize], specs: &[SortSpec]) {
    rows.sort_by(|a, b| cmp_at(a, b, key_columns, specs));
}

/// Cache-aside: the rows the cache answered plus, for every wanted key the cache missed, the
/// rows of the source of truth. Returns the rows and the source rows that should be written
/// back to the cache.
pub fn first_hit<K: Eq + Hash>(
    cached: Vec<Row>,
    source: Vec<Row>,
    key: impl Fn(&Row) -> K,
) -> (Vec<Row>, Vec<Row>) {
    let hits: HashSet<K> = cached.iter().map(&key).collect();
    let fill: Vec<Row> = source
        .into_iter()
        .filter(|r| !hits.contains(&key(r)))
        .collect();
    let mut out = cached;
    out.extend(fill.iter().cloned());
    (out, fill)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LogicalType;
    use crate::ir::ExprKind;

    fn col(table: usize, column: usize) -> Expr {
        Expr {
            kind: ExprKind::Column { table, column },
            ty: LogicalType::Int,
        }
    }

    fn int(i: i64) -> Value {
        Value::Int(i)
    }

    fn join(kind: JoinKind, left: Vec<Row>, right: Vec<Row>) -> Vec<Row> {
        // Wide rows: access 0 = [id, name], access 1 = [owner, x].
        let lk = [col(0, 0)];
        let rk = [col(1, 0)];
        let spec = JoinSpec {
            kind,
            left_keys: &lk,
            right_keys: &rk,
            right_slots: &[(2, 4)],
            condition: None,
            offsets: &[0, 2],
            params: &[],
        };
        let mut out = hash_join(left, right, &spec, &Budget::unlimited()).expect("joins");
        out.sort_by(|a, b| {
            order_cmp(
                a,
                b,
                &[SortSpec {
                    desc: false,
                    nulls_first: false,
                }; 4],
            )
        });
        out
    }

    fn l(id: Value, name: &str) -> Row {
        vec![id, Value::Text(name.into()), Value::Null, Value::Null]
    }
    fn r(owner: Value, x: i64) -> Row {
        vec![Value::Null, Value::Null, owner, int(x)]
    }

    #[test]
    fn inner_and_left_joins_on_either_build_side() {
        let left = vec![l(int(1), "a"), l(int(2), "b"), l(Value::Null, "n")];
        let right_small = vec![r(int(1), 10), r(int(1), 11), r(Value::Null, 12)];
        let right_big = vec![
            r(int(1), 10),
            r(int(1), 11),
            r(Value::Null, 12),
            r(int(3), 13),
            r(int(4), 14),
        ];
        for right in [right_small, right_big] {
            let inner = join(JoinKind::Inner, left.clone(), right.clone());
            assert_eq!(inner.len(), 2, "{inner:?}");
            assert!(inner.iter().all(|row| row[0] == int(1)));
            let outer = join(JoinKind::Left, left.clone(), right);
            assert_eq!(outer.len(), 4, "{outer:?}");
            assert_eq!(outer.iter().filter(|row| row[3].is_null()).count(), 2);
        }
        // 1 = 1.00 across types.
        let dec = join(
            JoinKind::Inner,
            vec![l(Value::Decimal(Decimal::new(100, 2)), "d")],
            vec![r(int(1), 5)],
        );
        assert_eq!(dec.len(), 1);
    }

    #[test]
    fn join_condition_beyond_keys_is_checked() {
        let cond = Expr {
            kind: ExprKind::Binary {
                op: crate::ir::BinaryOp::Gt,
                left: Box::new(col(1, 1)),
                right: Box::new(Expr {
                    kind: ExprKind::Literal(int(10)),
                    ty: LogicalType::Int,
                }),
            },
            ty: LogicalType::Bool,
        };
        let lk = [col(0, 0)];
        let rk = [col(1, 0)];
        let spec = JoinSpec {
            kind: JoinKind::Left,
            left_keys: &lk,
            right_keys: &rk,
            right_slots: &[(2, 4)],
            condition: Some(&cond),
            offsets: &[0, 2],
            params: &[],
        };
        let out = hash_join(
            vec![l(int(1), "a")],
            vec![r(int(1), 10), r(int(1), 11)],
            &spec,
            &Budget::unlimited(),
        )
        .expect("joins");
        assert_eq!(
            out,
            vec![vec![int(1), Value::Text("a".into()), int(1), int(11)]]
        );
    }

    #[test]
    fn top_k_merges_sorted_shards() {
        let asc = [SortSpec {
            desc: true,
            nulls_first: true,
        }];
        let a = vec![vec![Value::Null], vec![int(9)], vec![int(4)], vec![int(1)]];
        let b = vec![vec![int(8)], vec![int(7)], vec![int(2)]];
        let out = top_k(vec![a, b, Vec::new()], &[0], &asc, 4);
        assert_eq!(
            out,
            vec![vec![Value::Null], vec![int(9)], vec![int(8)], vec![int(7)]]
        );
        assert_eq!(top_k(vec![vec![vec![int(1)]]], &[0], &asc, 10).len(), 1);
    }

    #[test]
    fn distinct_and_union() {
        let rows = union_all(vec![vec![vec![int(1)], vec![int(2)]], vec![vec![int(1)]]]);
        assert_eq!(rows.len(), 3);
        assert_eq!(distinct(rows, None), vec![vec![int(1)], vec![int(2)]]);
    }

    #[test]
    fn first_hit_reads_misses_from_the_source() {
        let cached = vec![vec![Value::Text("p1".into()), int(1)]];
        let source = vec![
            vec![Value::Text("p1".into()), int(100)],
            vec![Value::Text("p2".into()), int(2)],
        ];
        let (rows, fill) = first_hit(cached, source, |r| key_of(&r[0]));
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0][1], int(1), "the cache answer wins for its keys");
        assert_eq!(fill, vec![vec![Value::Text("p2".into()), int(2)]]);
    }

    #[test]
    fn budget_stops_growth() {
        let b = Budget::new(2, u64::MAX);
        assert!(b.charge(&[vec![int(1)], vec![int(2)]]).is_ok());
        let err = b.charge(&[vec![int(3)]]);
        assert!(matches!(
            err,
            Err(CoreError::QueryTooLarge { what: "rows", .. })
        ));
        let b = Budget::new(u64::MAX, 100);
        let err = b.charge(&[vec![Value::Text("x".repeat(200))]]);
        assert!(matches!(
            err,
            Err(CoreError::QueryTooLarge { what: "bytes", .. })
        ));
    }
}
