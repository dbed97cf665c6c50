//! Logical values: what flows between backends, merge operators and clients.

use std::cmp::Ordering;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, SecondsFormat, Utc};
use rust_decimal::prelude::{FromPrimitive, ToPrimitive};
use rust_decimal::{Decimal, RoundingStrategy};

use crate::LogicalType;

/// One value of a logical type, or NULL.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// `int`.
    Int(i64),
    /// `float`.
    Float(f64),
    /// `decimal`.
    Decimal(Decimal),
    /// `text`.
    Text(String),
    /// `bool`.
    Bool(bool),
    /// `timestamp` (UTC).
    Timestamp(DateTime<Utc>),
    /// `date`.
    Date(NaiveDate),
    /// `json`.
    Json(serde_json::Value),
}

impl Value {
    /// Whether this is NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, Self::Null)
    }

    /// The JSON form sent to clients for a value of type `ty`: decimals as strings with exactly
    /// the type's scale, timestamps as RFC 3339, JSON nested.
    pub fn to_json(&self, ty: LogicalType) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Self::Null => J::Null,
            Self::Int(i) => J::from(*i),
            Self::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Self::Decimal(d) => J::String(format_decimal(*d, ty)),
            Self::Text(s) => J::String(s.clone()),
            Self::Bool(b) => J::Bool(*b),
            Self::Timestamp(t) => J::String(format_timestamp(t)),
            Self::Date(d) => J::String(format_date(d)),
            Self::Json(j) => j.clone(),
        }
    }

    /// Converts this value to type `ty` where the conversion is exact or standard (int -> float,
    /// int -> decimal, text -> timestamp, ...). Used for literals next to typed columns and for
    /// decoding what a store returns into the declared type.
    pub fn coerce(self, ty: LogicalType) -> Result<Value, String> {
        use LogicalType as T;
        let fail = |v: &Value| format!("cannot use {} as {}", v.describe(), ty.name());
        Ok(match (self, ty) {
            (Self::Null, _) => Self::Null,
            (v @ Self::Int(_), T::Int) => v,
            (Self::Int(i), T::Float) => Self::Float(i as f64),
            (Self::Int(i), T::Decimal { .. }) => Self::Decimal(Decimal::from(i)),
            (Self::Int(i), T::Bool) if i == 0 || i == 1 => Self::Bool(i == 1),
            (v @ Self::Float(_), T::Float) => v,
            (Self::Float(f), T::Decimal { scale, .. }) => Decimal::from_f64(f)
                .map(|d| {
                    Self::Decimal(d.round_dp_with_strategy(
                        u32::from(scale),
                        RoundingStrategy::MidpointAwayFromZero,
                    ))
                })
                .ok_or_else(|| format!("{f} does not fit a decimal"))?,
            (Self::Float(f), T::Int) if f.fract() == 0.0 && f.abs() < 9.0e15 => Self::Int(f as i64),
            (Self::Decimal(d), T::Decimal { scale, .. }) => Self::Decimal(
                d.round_dp_with_strategy(u32::from(scale), RoundingStrategy::MidpointAwayFromZero),
            ),
            (Self::Decimal(d), T::Float) => Self::Float(
                d.to_f64()
                    .ok_or_else(|| format!("{d} does not fit a float"))?,
            ),
            (Self::Decimal(d), T::Int) if d.fract().is_zero() => Self::Int(
                d.to_i64()
                    .ok_or_else(|| format!("{d} does not fit an int"))?,
            ),
            (v @ Self::Text(_), T::Text) => v,
            (Self::Text(s), T::Timestamp) => Self::Timestamp(
                parse_timestamp(&s)
                    .ok_or_else(|| format!("`{s}` is not a timestamp (RFC 3339 expected)"))?,
            ),
            (Self::Text(s), T::Decimal { scale, .. }) => Self::Decimal(
                Decimal::from_str(s.trim())
                    .map_err(|_| format!("`{s}` is not a decimal number"))?
                    .round_dp_with_strategy(
                        u32::from(scale),
                        RoundingStrategy::MidpointAwayFromZero,
                    ),
            ),
            (Self::Text(s), T::Json) => {
                Self::Json(serde_json::from_str(&s).map_err(|e| format!("`{s}` is not JSON: {e}"))?)
            }
            (Self::Text(s), T::Bool) => match s.as_str() {
                "true" | "t" | "1" => Self::Bool(true),
                "false" | "f" | "0" => Self::Bool(false),
                _ => return Err(format!("`{s}` is not a boolean")),
            },
            (v @ Self::Bool(_), T::Bool) => v,
            (v @ Self::Timestamp(_), T::Timestamp) => v,
            (Self::Text(s), T::Date) => Self::Date(
                parse_date(&s)
                    .ok_or_else(|| format!("`{s}` is not a date (YYYY-MM-DD expected)"))?,
            ),
            (v @ Self::Date(_), T::Date) => v,
            (Self::Date(d), T::Timestamp) => Self::Timestamp(d.and_time(NaiveTime::MIN).and_utc()),
            (Self::Timestamp(t), T::Date) => Self::Date(t.date_naive()),
            (v @ Self::Json(_), T::Json) => v,
            (v, T::Json) => Self::Json(v.to_json(ty)),
            (v, _) => return Err(fail(&v)),
        })
    }

    /// Converts a JSON request parameter to a value of type `ty`.
    pub fn from_param(json: &serde_json::Value, ty: LogicalType) -> Result<Value, String> {
        use LogicalType as T;
        use serde_json::Value as J;
        let v = match (json, ty) {
            (J::Null, _) => Self::Null,
            (j, T::Json) => Self::Json(j.clone()),
            (J::Bool(b), T::Bool) => Self::Bool(*b),
            (J::Number(n), T::Int) => Self::Int(
                n.as_i64()
                    .ok_or_else(|| format!("{n} is not a 64-bit integer"))?,
            ),
            (J::Number(n), T::Float) => {
                Self::Float(n.as_f64().ok_or_else(|| format!("{n} is not a number"))?)
            }
            (J::Number(n), T::Decimal { .. }) => Self::Text(n.to_string()).coerce(ty)?,
            (J::String(s), T::Text) => Self::Text(s.clone()),
            (J::String(s), T::Decimal { .. } | T::Timestamp | T::Date) => {
                Self::Text(s.clone()).coerce(ty)?
            }
            (j, _) => return Err(format!("expected {}, got {}", ty.name(), json_kind(j))),
        };
        v.check_storable(ty)?;
        Ok(v)
    }

    /// Refuses a value no store can keep as it is in a column of `ty`: text with a NUL
    /// character (PostgreSQL refuses it, the others would keep it: the same value must read the
    /// same everywhere), a decimal with more integer digits than `decimal(p, s)` holds
    /// (PostgreSQL's "numeric field overflow").
    pub fn check_storable(&self, ty: LogicalType) -> Result<(), String> {
        use LogicalType as T;
        match (self, ty) {
            (Self::Text(s), _) if s.contains('\0') => {
                Err("text values cannot contain the NUL character (\\u0000)".to_owned())
            }
            (Self::Decimal(d), T::Decimal { precision, scale }) => {
                let integer_digits = d.trunc().abs().to_string().trim_start_matches('0').len();
                if integer_digits > usize::from(precision.saturating_sub(scale)) {
                    Err(format!(
                        "numeric field overflow: {d} does not fit decimal({precision},{scale})"
                    ))
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    /// The value a JSON parameter has when nothing in the statement gives it a type.
    pub fn from_untyped_param(json: &serde_json::Value) -> (Value, LogicalType) {
        use serde_json::Value as J;
        match json {
            J::Null => (Self::Null, LogicalType::Text),
            J::Bool(b) => (Self::Bool(*b), LogicalType::Bool),
            J::Number(n) => match n.as_i64() {
                Some(i) => (Self::Int(i), LogicalType::Int),
                None => (
                    Self::Float(n.as_f64().unwrap_or(f64::NAN)),
                    LogicalType::Float,
                ),
            },
            J::String(s) => (Self::Text(s.clone()), LogicalType::Text),
            other => (Self::Json(other.clone()), LogicalType::Json),
        }
    }

    /// Whether this is a number equal to zero.
    pub fn is_zero_number(&self) -> bool {
        match self {
            Self::Int(i) => *i == 0,
            Self::Float(f) => *f == 0.0,
            Self::Decimal(d) => d.is_zero(),
            _ => false,
        }
    }

    /// A short description for error messages.
    pub fn describe(&self) -> String {
        match self {
            Self::Null => "NULL".to_owned(),
            Self::Int(i) => format!("int {i}"),
            Self::Float(f) => format!("float {f}"),
            Self::Decimal(d) => format!("decimal {d}"),
            Self::Text(s) => format!("text '{s}'"),
            Self::Bool(b) => format!("bool {b}"),
            Self::Timestamp(t) => format!("timestamp {}", format_timestamp(t)),
            Self::Date(d) => format!("date {}", format_date(d)),
            Self::Json(_) => "json".to_owned(),
        }
    }

    /// Total order used by merge operators and tests: NULLs compare equal to each other and,
    /// as in PostgreSQL, greater than every other value; numbers compare across int/float/decimal.
    pub fn total_cmp(&self, other: &Value) -> Ordering {
        use Value as V;
        match (self, other) {
            (V::Null, V::Null) => Ordering::Equal,
            (V::Null, _) => Ordering::Greater,
            (_, V::Null) => Ordering::Less,
            (V::Int(a), V::Int(b)) => a.cmp(b),
            (V::Decimal(a), V::Decimal(b)) => a.cmp(b),
            (V::Text(a), V::Text(b)) => a.cmp(b),
            (V::Bool(a), V::Bool(b)) => a.cmp(b),
            (V::Timestamp(a), V::Timestamp(b)) => a.cmp(b),
            (V::Date(a), V::Date(b)) => a.cmp(b),
            (V::Date(a), V::Timestamp(b)) => a.and_time(NaiveTime::MIN).and_utc().cmp(b),
            (V::Timestamp(a), V::Date(b)) => a.cmp(&b.and_time(NaiveTime::MIN).and_utc()),
            (a, b) => match (a.as_f64(), b.as_f64()) {
                (Some(x), Some(y)) => x.total_cmp(&y),
                _ => a.describe().cmp(&b.describe()),
            },
        }
    }

    fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Int(i) => Some(*i as f64),
            Self::Float(f) => Some(*f),
            Self::Decimal(d) => d.to_f64(),
            _ => None,
        }
    }
}

fn json_kind(j: &serde_json::Value) -> &'static str {
    match j {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// A value serialized exactly as [`Value::to_json`] renders it, without building the JSON tree:
/// answers are written straight into the response buffer.
#[derive(Debug, Clone, Copy)]
pub struct JsonCell<'a>(pub &'a Value, pub LogicalType);

impl serde::Serialize for JsonCell<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Null => s.serialize_unit(),
            Value::Int(i) => s.serialize_i64(*i),
            Value::Float(f) if f.is_finite() => s.serialize_f64(*f),
            Value::Float(_) => s.serialize_unit(),
            Value::Decimal(d) => s.collect_str(&at_scale(*d, self.1)),
            Value::Text(t) => s.serialize_str(t),
            Value::Bool(b) => s.serialize_bool(*b),
            Value::Timestamp(t) => s.serialize_str(&format_timestamp(t)),
            Value::Date(d) => s.collect_str(&d.format("%Y-%m-%d")),
            Value::Json(j) => j.serialize(s),
        }
    }
}

/// A row serialized as a JSON array of [`JsonCell`]s (`types` in column order).
#[derive(Debug, Clone, Copy)]
pub struct JsonRow<'a>(pub &'a [Value], pub &'a [LogicalType]);

impl serde::Serialize for JsonRow<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let cells = self.0.len().min(self.1.len());
        let mut seq = s.serialize_seq(Some(cells))?;
        for (v, t) in self.0.iter().zip(self.1) {
            seq.serialize_element(&JsonCell(v, *t))?;
        }
        seq.end()
    }
}

/// Formats a decimal with exactly the scale of `ty` (or its own scale for other types).
pub fn format_decimal(d: Decimal, ty: LogicalType) -> String {
    at_scale(d, ty).to_string()
}

/// `d` rounded and rescaled to exactly the scale of `ty` (unchanged for other types).
fn at_scale(d: Decimal, ty: LogicalType) -> Decimal {
    match ty {
        LogicalType::Decimal { scale, .. } => {
            let mut d =
                d.round_dp_with_strategy(u32::from(scale), RoundingStrategy::MidpointAwayFromZero);
            d.rescale(u32::from(scale));
            d
        }
        _ => d,
    }
}

/// RFC 3339 with microseconds and `Z`, the one format Switchyard emits (and SQLite stores: it
/// sorts lexicographically in time order).
pub fn format_timestamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// `YYYY-MM-DD`, the one date format Switchyard emits and stores as text (it sorts in time order).
pub fn format_date(d: &NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

/// Microseconds since the Unix epoch of midnight UTC on `d`.
pub fn date_micros(d: &NaiveDate) -> i64 {
    d.and_time(NaiveTime::MIN).and_utc().timestamp_micros()
}

/// Parses `YYYY-MM-DD`; an RFC 3339 instant at midnight UTC is accepted as its date.
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    let s = s.trim();
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().or_else(|| {
        parse_timestamp(s)
            .filter(|t| t.time() == NaiveTime::MIN)
            .map(|t| t.date_naive())
    })
}

/// Parses RFC 3339, or a naive `YYYY-MM-DD[ HH:MM:SS[.f]]` taken as UTC.
pub fn parse_timestamp(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f%#z",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc());
        }
    }
    if let Ok(t) = DateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f%#z") {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_render_with_exact_scale() {
        let ty = LogicalType::Decimal {
            precision: 18,
            scale: 2,
        };
        let d = Decimal::from_str("12.5").unwrap();
        assert_eq!(Value::Decimal(d).to_json(ty), serde_json::json!("12.50"));
        let v = Value::from_param(&serde_json::json!(0.1), ty).unwrap();
        assert_eq!(v.to_json(ty), serde_json::json!("0.10"));
        let v = Value::from_param(&serde_json::json!("123456789012.345"), ty).unwrap();
        assert_eq!(v.to_json(ty), serde_json::json!("123456789012.35"));
    }

    #[test]
    fn params_are_type_checked() {
        assert!(Value::from_param(&serde_json::json!("x"), LogicalType::Int).is_err());
        assert!(Value::from_param(&serde_json::json!(1.5), LogicalType::Int).is_err());
        assert!(
            Value::from_param(&serde_json::json!("2024-13-01"), LogicalType::Timestamp).is_err()
        );
        let t = Value::from_param(
            &serde_json::json!("2024-01-02T03:04:05+02:00"),
            LogicalType::Timestamp,
        );
        assert_eq!(
            t.map(|v| v.to_json(LogicalType::Timestamp)),
            Ok(serde_json::json!("2024-01-02T01:04:05.000000Z"))
        );
    }

    #[test]
    fn dates_parse_render_and_compare_with_instants() {
        let d = Value::from_param(&serde_json::json!("1998-12-01"), LogicalType::Date).unwrap();
        assert_eq!(
            d.to_json(LogicalType::Date),
            serde_json::json!("1998-12-01")
        );
        assert!(Value::from_param(&serde_json::json!("1998-02-30"), LogicalType::Date).is_err());
        assert!(Value::from_param(&serde_json::json!(19981201), LogicalType::Date).is_err());
        let noon = Value::Timestamp(parse_timestamp("1998-12-01T12:00:00Z").unwrap());
        assert_eq!(d.total_cmp(&noon), Ordering::Less);
        assert_eq!(
            noon.clone().coerce(LogicalType::Date),
            Ok(d.clone()),
            "an instant's date is its UTC day"
        );
        assert_eq!(
            d.coerce(LogicalType::Timestamp)
                .map(|v| v.to_json(LogicalType::Timestamp)),
            Ok(serde_json::json!("1998-12-01T00:00:00.000000Z"))
        );
    }

    #[test]
    fn cells_serialize_as_their_json_form() {
        let dec = LogicalType::Decimal {
            precision: 18,
            scale: 2,
        };
        let cases = [
            (Value::Null, LogicalType::Int),
            (Value::Int(i64::MIN), LogicalType::Int),
            (Value::Float(0.1), LogicalType::Float),
            (Value::Float(1e300), LogicalType::Float),
            (Value::Float(-0.0), LogicalType::Float),
            (Value::Float(f64::NAN), LogicalType::Float),
            (Value::Float(f64::INFINITY), LogicalType::Float),
            (Value::Float(3.0), LogicalType::Float),
            (Value::Decimal(Decimal::from_str("-12.345").unwrap()), dec),
            (Value::Decimal(Decimal::from_str("7").unwrap()), dec),
            (
                Value::Decimal(Decimal::from_str("1.50").unwrap()),
                LogicalType::Float,
            ),
            (
                Value::Text("a\"b\\c\n\u{1}é😀".to_owned()),
                LogicalType::Text,
            ),
            (Value::Bool(true), LogicalType::Bool),
            (
                Value::Timestamp(parse_timestamp("2024-01-02T03:04:05.5+02:00").unwrap()),
                LogicalType::Timestamp,
            ),
            (
                Value::Date(NaiveDate::from_ymd_opt(1998, 12, 1).unwrap()),
                LogicalType::Date,
            ),
            (
                Value::Json(serde_json::json!({"b": [1, 2.5, null, "x"], "a": {}})),
                LogicalType::Json,
            ),
        ];
        for (v, t) in &cases {
            let direct = serde_json::to_string(&JsonCell(v, *t)).unwrap();
            assert_eq!(direct, v.to_json(*t).to_string(), "{v:?}");
        }
        let values: Vec<Value> = cases.iter().map(|(v, _)| v.clone()).collect();
        let types: Vec<LogicalType> = cases.iter().map(|(_, t)| *t).collect();
        let tree: Vec<serde_json::Value> = cases.iter().map(|(v, t)| v.to_json(*t)).collect();
        assert_eq!(
            serde_json::to_string(&JsonRow(&values, &types)).unwrap(),
            serde_json::Value::Array(tree).to_string()
        );
    }

    #[test]
    fn nulls_sort_last_and_numbers_compare_across_types() {
        let mut v = [Value::Null, Value::Float(1.5), Value::Int(1), Value::Int(2)];
        v.sort_by(Value::total_cmp);
        assert_eq!(
            v,
            [Value::Int(1), Value::Float(1.5), Value::Int(2), Value::Null]
        );
    }
}
