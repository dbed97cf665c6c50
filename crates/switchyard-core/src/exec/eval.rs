//! Expression evaluation in the router, with PostgreSQL semantics: three-valued logic, integer
//! division that truncates, exact decimals rounded to the type's scale, errors for division by
//! zero and integer overflow, case-sensitive `LIKE` with `\` escapes.

use std::cmp::Ordering;

use rust_decimal::prelude::{FromPrimitive, ToPrimitive};
use rust_decimal::{Decimal, RoundingStrategy};

use crate::error::CoreError;
use crate::ir::{BinaryOp, Expr, ExprKind, ScalarFunc, UnaryOp};
use crate::{LogicalType, Value};

/// Values of grouping keys and aggregates, when evaluating over groups.
#[derive(Debug, Clone, Copy)]
pub struct GroupScope<'a> {
    /// GROUP BY expressions.
    pub keys: &'a [Expr],
    /// Their values for this group.
    pub key_values: &'a [Value],
    /// The aggregate calls of the statement.
    pub aggregates: &'a [Expr],
    /// Their values for this group.
    pub aggregate_values: &'a [Value],
}

/// Where column values come from: a wide row holding every table access's columns at its offset.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// The row.
    pub row: &'a [Value],
    /// `offsets[access]` is where that access's columns start in `row`.
    pub offsets: &'a [usize],
    /// The statement's parameter values.
    pub params: &'a [Value],
    /// Grouping context, for HAVING, output and ORDER BY of aggregate queries.
    pub group: Option<GroupScope<'a>>,
}

fn data(message: impl Into<String>) -> CoreError {
    CoreError::Data {
        message: message.into(),
    }
}

fn internal(message: impl Into<String>) -> CoreError {
    CoreError::NoRoute {
        reason: message.into(),
    }
}

/// Whether a condition's value lets a row through (only TRUE does).
pub fn is_true(v: &Value) -> bool {
    matches!(v, Value::Bool(true))
}

/// Evaluates `e` over `scope`.
#[recursive::recursive]
pub fn eval(e: &Expr, scope: &Scope<'_>) -> Result<Value, CoreError> {
    if let Some(g) = &scope.group {
        if let Some(i) = g.keys.iter().position(|k| k == e) {
            return Ok(g.key_values.get(i).cloned().unwrap_or(Value::Null));
        }
        if matches!(e.kind, ExprKind::Agg { .. }) {
            return g
                .aggregates
                .iter()
                .position(|a| a == e)
                .and_then(|i| g.aggregate_values.get(i).cloned())
                .ok_or_else(|| internal("an aggregate was not computed"));
        }
    }
    match &e.kind {
        ExprKind::Column { table, column } => {
            let at = scope
                .offsets
                .get(*table)
                .map(|o| o + column)
                .ok_or_else(|| internal("a column of an unknown table access"))?;
            Ok(scope.row.get(at).cloned().unwrap_or(Value::Null))
        }
        ExprKind::Excluded { .. } => Err(internal("EXCLUDED outside ON CONFLICT")),
        ExprKind::Literal(v) => Ok(v.clone()),
        ExprKind::Param(i) => Ok(scope.params.get(*i).cloned().unwrap_or(Value::Null)),
        ExprKind::Agg { .. } => Err(internal("an aggregate outside an aggregate query")),
        ExprKind::Unary { op, expr } => {
            let v = eval(expr, scope)?;
            match (op, v) {
                (_, Value::Null) => Ok(Value::Null),
                (UnaryOp::Not, Value::Bool(b)) => Ok(Value::Bool(!b)),
                (UnaryOp::Neg, Value::Int(i)) => i
                    .checked_neg()
                    .map(Value::Int)
                    .ok_or_else(|| data("integer out of range")),
                (UnaryOp::Neg, Value::Float(f)) => Ok(Value::Float(-f)),
                (UnaryOp::Neg, Value::Decimal(d)) => Ok(Value::Decimal(-d)),
                (_, v) => Err(data(format!("cannot apply {op:?} to {}", v.describe()))),
            }
        }
        ExprKind::Binary { op, left, right } => match op {
            BinaryOp::And => {
                let l = eval(left, scope)?;
                if l == Value::Bool(false) {
                    return Ok(l);
                }
                let r = eval(right, scope)?;
                Ok(match (l, r) {
                    (_, Value::Bool(false)) => Value::Bool(false),
                    (Value::Bool(true), Value::Bool(true)) => Value::Bool(true),
                    _ => Value::Null,
                })
            }
            BinaryOp::Or => {
                let l = eval(left, scope)?;
                if l == Value::Bool(true) {
                    return Ok(l);
                }
                let r = eval(right, scope)?;
                Ok(match (l, r) {
                    (_, Value::Bool(true)) => Value::Bool(true),
                    (Value::Bool(false), Value::Bool(false)) => Value::Bool(false),
                    _ => Value::Null,
                })
            }
            _ => {
                let l = eval(left, scope)?;
                let r = eval(right, scope)?;
                binary(*op, l, r, e.ty)
            }
        },
        ExprKind::IsNull { expr, negated } => {
            Ok(Value::Bool(eval(expr, scope)?.is_null() != *negated))
        }
        ExprKind::InList {
            expr,
            list,
            negated,
        } => {
            let v = eval(expr, scope)?;
            if v.is_null() {
                return Ok(Value::Null);
            }
            let mut saw_null = false;
            for item in list {
                let c = eval(item, scope)?;
                if c.is_null() {
                    saw_null = true;
                } else if sql_cmp(&v, &c) == Ordering::Equal {
                    return Ok(Value::Bool(!negated));
                }
            }
            Ok(if saw_null {
                Value::Null
            } else {
                Value::Bool(*negated)
            })
        }
        ExprKind::Between {
            expr,
            low,
            high,
            negated,
        } => {
            let v = eval(expr, scope)?;
            let lo = eval(low, scope)?;
            let hi = eval(high, scope)?;
            let ge = compare(BinaryOp::GtEq, &v, &lo);
            let le = compare(BinaryOp::LtEq, &v, &hi);
            let both = match (ge, le) {
                (Value::Bool(false), _) | (_, Value::Bool(false)) => Value::Bool(false),
                (Value::Bool(true), Value::Bool(true)) => Value::Bool(true),
                _ => Value::Null,
            };
            Ok(match (both, negated) {
                (Value::Bool(b), true) => Value::Bool(!b),
                (other, _) => other,
            })
        }
        ExprKind::Like {
            expr,
            pattern,
            negated,
        } => match (eval(expr, scope)?, eval(pattern, scope)?) {
            (Value::Text(s), Value::Text(p)) => {
                check_like_pattern(&p)?;
                Ok(Value::Bool(like(&s, &p) != *negated))
            }
            (Value::Null, _) | (_, Value::Null) => Ok(Value::Null),
            (v, _) => Err(data(format!("LIKE needs text, got {}", v.describe()))),
        },
        ExprKind::Func { func, args } => {
            let mut values = Vec::with_capacity(args.len());
            for a in args {
                values.push(eval(a, scope)?);
            }
            function(*func, values, e.ty)
        }
    }
}

fn function(func: ScalarFunc, args: Vec<Value>, ty: LogicalType) -> Result<Value, CoreError> {
    if func == ScalarFunc::Coalesce {
        return match args.into_iter().find(|v| !v.is_null()) {
            Some(v) => v.coerce(ty).map_err(data),
            None => Ok(Value::Null),
        };
    }
    let Some(arg) = args.into_iter().next() else {
        return Err(internal("a function without its argument"));
    };
    Ok(match (func, arg) {
        (_, Value::Null) => Value::Null,
        (ScalarFunc::Lower, Value::Text(s)) => Value::Text(s.to_lowercase()),
        (ScalarFunc::Upper, Value::Text(s)) => Value::Text(s.to_uppercase()),
        (ScalarFunc::Length, Value::Text(s)) => {
            Value::Int(i64::try_from(s.chars().count()).unwrap_or(i64::MAX))
        }
        (ScalarFunc::Abs, Value::Int(i)) => Value::Int(
            i.checked_abs()
                .ok_or_else(|| data("integer out of range"))?,
        ),
        (ScalarFunc::Abs, Value::Float(f)) => Value::Float(f.abs()),
        (ScalarFunc::Abs, Value::Decimal(d)) => Value::Decimal(d.abs()),
        (f, v) => {
            return Err(data(format!(
                "{}() cannot take {}",
                f.as_str(),
                v.describe()
            )));
        }
    })
}

/// SQL comparison of two non-NULL values (numbers across types, text by bytes).
pub fn sql_cmp(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Int(x), Value::Decimal(y)) => Decimal::from(*x).cmp(y),
        (Value::Decimal(x), Value::Int(y)) => x.cmp(&Decimal::from(*y)),
        (Value::Json(x), Value::Json(y)) => x.to_string().cmp(&y.to_string()),
        _ => a.total_cmp(b),
    }
}

fn compare(op: BinaryOp, l: &Value, r: &Value) -> Value {
    if l.is_null() || r.is_null() {
        return Value::Null;
    }
    let o = sql_cmp(l, r);
    Value::Bool(match op {
        BinaryOp::Eq => o == Ordering::Equal,
        BinaryOp::NotEq => o != Ordering::Equal,
        BinaryOp::Lt => o == Ordering::Less,
        BinaryOp::LtEq => o != Ordering::Greater,
        BinaryOp::Gt => o == Ordering::Greater,
        _ => o != Ordering::Less,
    })
}

fn to_decimal(v: &Value) -> Option<Decimal> {
    match v {
        Value::Int(i) => Some(Decimal::from(*i)),
        Value::Decimal(d) => Some(*d),
        Value::Float(f) => Decimal::from_f64(*f),
        _ => None,
    }
}

fn to_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        Value::Decimal(d) => d.to_f64(),
        _ => None,
    }
}

fn text_of(v: &Value) -> String {
    match v {
        Value::Text(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Decimal(d) => d.to_string(),
        Value::Bool(b) => if *b { "true" } else { "false" }.to_owned(),
        Value::Timestamp(t) => crate::value::format_timestamp(t),
        Value::Date(d) => crate::value::format_date(d),
        Value::Json(j) => j.to_string(),
        Value::Null => String::new(),
    }
}

fn binary(op: BinaryOp, l: Value, r: Value, ty: LogicalType) -> Result<Value, CoreError> {
    if op.is_comparison() {
        return Ok(compare(op, &l, &r));
    }
    if l.is_null() || r.is_null() {
        return Ok(Value::Null);
    }
    if op == BinaryOp::Concat {
        return Ok(Value::Text(text_of(&l) + &text_of(&r)));
    }
    let overflow = || data("integer out of range");
    let zero = || data("division by zero");
    match ty {
        LogicalType::Int => {
            let (Value::Int(a), Value::Int(b)) = (&l, &r) else {
                return Err(data(format!(
                    "cannot compute {} {op:?} {}",
                    l.describe(),
                    r.describe()
                )));
            };
            let (a, b) = (*a, *b);
            let out = match op {
                BinaryOp::Plus => a.checked_add(b).ok_or_else(overflow)?,
                BinaryOp::Minus => a.checked_sub(b).ok_or_else(overflow)?,
                BinaryOp::Multiply => a.checked_mul(b).ok_or_else(overflow)?,
                BinaryOp::Divide if b == 0 => return Err(zero()),
                BinaryOp::Divide => a.checked_div(b).ok_or_else(overflow)?,
                BinaryOp::Modulo if b == 0 => return Err(zero()),
                BinaryOp::Modulo => a.checked_rem(b).unwrap_or(0),
                _ => return Err(internal("not an arithmetic operator")),
            };
            Ok(Value::Int(out))
        }
        LogicalType::Float => {
            let (Some(a), Some(b)) = (to_f64(&l), to_f64(&r)) else {
                return Err(data("arithmetic needs numbers"));
            };
            let out = match op {
                BinaryOp::Plus => a + b,
                BinaryOp::Minus => a - b,
                BinaryOp::Multiply => a * b,
                BinaryOp::Divide if b == 0.0 => return Err(zero()),
                BinaryOp::Divide => a / b,
                BinaryOp::Modulo if b == 0.0 => return Err(zero()),
                BinaryOp::Modulo => a % b,
                _ => return Err(internal("not an arithmetic operator")),
            };
            Ok(Value::Float(out))
        }
        LogicalType::Decimal { scale, .. } => {
            let (Some(a), Some(b)) = (to_decimal(&l), to_decimal(&r)) else {
                return Err(data("arithmetic needs numbers"));
            };
            let out = match op {
                BinaryOp::Plus => a.checked_add(b),
                BinaryOp::Minus => a.checked_sub(b),
                BinaryOp::Multiply => a.checked_mul(b),
                BinaryOp::Divide if b.is_zero() => return Err(zero()),
                BinaryOp::Divide => a.checked_div(b),
                BinaryOp::Modulo if b.is_zero() => return Err(zero()),
                BinaryOp::Modulo => a.checked_rem(b),
                _ => return Err(internal("not an arithmetic operator")),
            }
            .ok_or_else(|| data("numeric value out of range"))?;
            Ok(Value::Decimal(out.round_dp_with_strategy(
                u32::from(scale),
                RoundingStrategy::MidpointAwayFromZero,
            )))
        }
        other => Err(data(format!(
            "arithmetic on {} is not supported",
            other.name()
        ))),
    }
}

/// Refuses a LIKE pattern that ends in its escape character, as PostgreSQL does (SQLSTATE
/// 22025): the stores would each read it differently.
pub fn check_like_pattern(pattern: &str) -> Result<(), CoreError> {
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c == '\\' && chars.next().is_none() {
            return Err(data("LIKE pattern must not end with escape character"));
        }
    }
    Ok(())
}

/// `LIKE` matching: `%` any run, `_` one character, `\` escapes the next character;
/// case-sensitive.
pub fn like(text: &str, pattern: &str) -> bool {
    enum Tok {
        Any,
        One,
        Lit(char),
    }
    let mut toks = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        toks.push(match c {
            '%' => Tok::Any,
            '_' => Tok::One,
            '\\' => Tok::Lit(chars.next().unwrap_or('\\')),
            c => Tok::Lit(c),
        });
    }
    let s: Vec<char> = text.chars().collect();
    let (mut si, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        match toks.get(ti) {
            Some(Tok::Any) => {
                star = Some((ti, si));
                ti += 1;
            }
            Some(Tok::One) => {
                si += 1;
                ti += 1;
            }
            Some(Tok::Lit(c)) if *c == s[si] => {
                si += 1;
                ti += 1;
            }
            _ => match star {
                Some((st, ss)) => {
                    ti = st + 1;
                    si = ss + 1;
                    star = Some((st, ss + 1));
                }
                None => return false,
            },
        }
    }
    toks[ti..].iter().all(|t| matches!(t, Tok::Any))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(v: Value, ty: LogicalType) -> Expr {
        Expr {
            kind: ExprKind::Literal(v),
            ty,
        }
    }

    fn bin(op: BinaryOp, l: Expr, r: Expr, ty: LogicalType) -> Expr {
        Expr {
            kind: ExprKind::Binary {
                op,
                left: Box::new(l),
                right: Box::new(r),
            },
            ty,
        }
    }

    fn run(e: &Expr) -> Result<Value, CoreError> {
        eval(
            e,
            &Scope {
                row: &[],
                offsets: &[],
                params: &[],
                group: None,
            },
        )
    }

    #[test]
    fn three_valued_logic() {
        let t = lit(Value::Bool(true), LogicalType::Bool);
        let f = lit(Value::Bool(false), LogicalType::Bool);
        let n = lit(Value::Null, LogicalType::Bool);
        let and = |a: &Expr, b: &Expr| bin(BinaryOp::And, a.clone(), b.clone(), LogicalType::Bool);
        let or = |a: &Expr, b: &Expr| bin(BinaryOp::Or, a.clone(), b.clone(), LogicalType::Bool);
        assert_eq!(run(&and(&n, &f)).ok(), Some(Value::Bool(false)));
        assert_eq!(run(&and(&n, &t)).ok(), Some(Value::Null));
        assert_eq!(run(&or(&n, &t)).ok(), Some(Value::Bool(true)));
        assert_eq!(run(&or(&n, &f)).ok(), Some(Value::Null));
        let in_list = Expr {
            kind: ExprKind::InList {
                expr: Box::new(lit(Value::Int(3), LogicalType::Int)),
                list: vec![
                    lit(Value::Int(1), LogicalType::Int),
                    lit(Value::Null, LogicalType::Int),
                ],
                negated: true,
            },
            ty: LogicalType::Bool,
        };
        assert_eq!(run(&in_list).ok(), Some(Value::Null));
    }

    #[test]
    fn arithmetic_follows_postgresql() {
        let i = |v| lit(Value::Int(v), LogicalType::Int);
        assert_eq!(
            run(&bin(BinaryOp::Divide, i(-7), i(2), LogicalType::Int)).ok(),
            Some(Value::Int(-3))
        );
        assert_eq!(
            run(&bin(BinaryOp::Modulo, i(-7), i(2), LogicalType::Int)).ok(),
            Some(Value::Int(-1))
        );
        let err = run(&bin(BinaryOp::Divide, i(1), i(0), LogicalType::Int));
        assert!(matches!(err, Err(CoreError::Data { .. })), "{err:?}");
        let err = run(&bin(BinaryOp::Plus, i(i64::MAX), i(1), LogicalType::Int));
        assert!(matches!(err, Err(CoreError::Data { .. })), "{err:?}");
        let ten = lit(
            Value::Decimal(Decimal::new(1000, 2)),
            LogicalType::Decimal {
                precision: 12,
                scale: 2,
            },
        );
        let q = bin(
            BinaryOp::Divide,
            ten,
            i(3),
            LogicalType::Decimal {
                precision: 28,
                scale: 6,
            },
        );
        assert_eq!(
            run(&q).ok(),
            Some(Value::Decimal(Decimal::new(3_333_333, 6)))
        );
    }

    #[test]
    fn like_patterns() {
        assert!(like("hello", "h%o"));
        assert!(like("hello", "_ello"));
        assert!(!like("Hello", "h%"));
        assert!(like("50%", "50\\%"));
        assert!(!like("500", "50\\%"));
        assert!(like("abcabc", "%abc"));
        assert!(like("", "%"));
        assert!(!like("", "_"));
        assert!(like("a_b", "a\\_b"));
    }
}
