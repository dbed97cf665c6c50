//! Values and logical types to Arrow and back: the rows stores return become record batches
//! DataFusion computes on, and its answer becomes rows of [`Value`]s with a logical type per
//! column.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Date32Builder, Decimal128Builder, Float64Builder,
    Int64Builder, RecordBatch, RecordBatchOptions, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Date64Type, Decimal128Type, DurationMicrosecondType,
    DurationMillisecondType, DurationNanosecondType, DurationSecondType, Field, Float16Type,
    Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, IntervalDayTimeType,
    IntervalMonthDayNanoType, IntervalUnit, IntervalYearMonthType, Schema, SchemaRef, TimeUnit,
    TimestampMicrosecondType, TimestampMillisecondType, TimestampNanosecondType,
    TimestampSecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type,
};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use rust_decimal::Decimal;
use switchyard_config::LogicalType;
use switchyard_core::catalog::Table;
use switchyard_core::value::Value;

use crate::EngineError;
use crate::pgtime::interval_text;

/// The time zone every timestamp is computed in (PostgreSQL sessions of the router are UTC).
pub(crate) const UTC: &str = "+00:00";

/// The Arrow type a logical column has inside the engine.
pub(crate) fn arrow_type(ty: LogicalType) -> DataType {
    match ty {
        LogicalType::Int => DataType::Int64,
        LogicalType::Float => DataType::Float64,
        LogicalType::Decimal { precision, scale } => {
            DataType::Decimal128(precision, i8::try_from(scale).unwrap_or(i8::MAX))
        }
        LogicalType::Text | LogicalType::Json => DataType::Utf8,
        LogicalType::Bool => DataType::Boolean,
        LogicalType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some(UTC.into())),
        LogicalType::Date => DataType::Date32,
    }
}

/// The Arrow schema of a logical table (every column nullable: stores decide NOT NULL).
pub(crate) fn table_schema(table: &Table) -> SchemaRef {
    Arc::new(Schema::new(
        table
            .columns
            .iter()
            .map(|c| Field::new(&c.name, arrow_type(c.ty), true))
            .collect::<Vec<_>>(),
    ))
}

/// Rows (one value per column of `schema`, in order) as one record batch.
pub(crate) fn rows_to_batch(
    schema: &SchemaRef,
    types: &[LogicalType],
    rows: &[Vec<Value>],
) -> Result<RecordBatch, EngineError> {
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(types.len());
    for (i, ty) in types.iter().enumerate() {
        let cells = rows.iter().map(|r| r.get(i).unwrap_or(&Value::Null));
        columns.push(column_array(*ty, cells, rows.len())?);
    }
    let options = RecordBatchOptions::new().with_row_count(Some(rows.len()));
    RecordBatch::try_new_with_options(schema.clone(), columns, &options)
        .map_err(|e| EngineError::Internal(format!("building a batch: {e}")))
}

fn column_array<'a>(
    ty: LogicalType,
    cells: impl Iterator<Item = &'a Value>,
    len: usize,
) -> Result<ArrayRef, EngineError> {
    let mismatch =
        |v: &Value| EngineError::Internal(format!("a {} column holds {}", ty.name(), v.describe()));
    Ok(match ty {
        LogicalType::Int => {
            let mut b = Int64Builder::with_capacity(len);
            for v in cells {
                match v {
                    Value::Null => b.append_null(),
                    Value::Int(i) => b.append_value(*i),
                    other => return Err(mismatch(other)),
                }
            }
            Arc::new(b.finish())
        }
        LogicalType::Float => {
            let mut b = Float64Builder::with_capacity(len);
            for v in cells {
                match v {
                    Value::Null => b.append_null(),
                    Value::Float(f) => b.append_value(*f),
                    Value::Int(i) => b.append_value(*i as f64),
                    other => return Err(mismatch(other)),
                }
            }
            Arc::new(b.finish())
        }
        LogicalType::Decimal { precision, scale } => {
            let mut b = Decimal128Builder::with_capacity(len);
            for v in cells {
                match v {
                    Value::Null => b.append_null(),
                    Value::Decimal(d) => b.append_value(mantissa_at(*d, scale)),
                    Value::Int(i) => b.append_value(mantissa_at(Decimal::from(*i), scale)),
                    other => return Err(mismatch(other)),
                }
            }
            let array = b
                .finish()
                .with_precision_and_scale(precision, i8::try_from(scale).unwrap_or(i8::MAX))
                .map_err(|e| EngineError::Internal(format!("decimal column: {e}")))?;
            Arc::new(array)
        }
        LogicalType::Text | LogicalType::Json => {
            let mut b = StringBuilder::with_capacity(len, len * 8);
            for v in cells {
                match v {
                    Value::Null => b.append_null(),
                    Value::Text(s) => b.append_value(s),
                    Value::Json(j) => b.append_value(j.to_string()),
                    other => return Err(mismatch(other)),
                }
            }
            Arc::new(b.finish())
        }
        LogicalType::Bool => {
            let mut b = BooleanBuilder::with_capacity(len);
            for v in cells {
                match v {
                    Value::Null => b.append_null(),
                    Value::Bool(x) => b.append_value(*x),
                    other => return Err(mismatch(other)),
                }
            }
            Arc::new(b.finish())
        }
        LogicalType::Timestamp => {
            let mut b = TimestampMicrosecondBuilder::with_capacity(len).with_timezone(UTC);
            for v in cells {
                match v {
                    Value::Null => b.append_null(),
                    Value::Timestamp(t) => b.append_value(t.timestamp_micros()),
                    other => return Err(mismatch(other)),
                }
            }
            Arc::new(b.finish())
        }
        LogicalType::Date => {
            let mut b = Date32Builder::with_capacity(len);
            for v in cells {
                match v {
                    Value::Null => b.append_null(),
                    Value::Date(d) => b.append_value(Date32Type::from_naive_date(*d)),
                    other => return Err(mismatch(other)),
                }
            }
            Arc::new(b.finish())
        }
    })
}

/// The unscaled integer of `d` at `scale` fraction digits (rounded half away from zero, as
/// PostgreSQL rounds numerics).
fn mantissa_at(d: Decimal, scale: u8) -> i128 {
    let mut d = d.round_dp_with_strategy(
        u32::from(scale),
        rust_decimal::RoundingStrategy::MidpointAwayFromZero,
    );
    d.rescale(u32::from(scale));
    d.mantissa()
}

/// The logical type a result column of Arrow type `ty` is answered as. Types without a logical
/// counterpart (intervals, lists) are answered as their text.
pub(crate) fn logical_type(ty: &DataType) -> LogicalType {
    match ty {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => LogicalType::Int,
        DataType::Float16 | DataType::Float32 | DataType::Float64 => LogicalType::Float,
        DataType::Decimal128(p, s) => LogicalType::Decimal {
            precision: *p,
            scale: u8::try_from(*s).unwrap_or(0),
        },
        DataType::Boolean => LogicalType::Bool,
        DataType::Timestamp(_, _) => LogicalType::Timestamp,
        DataType::Date32 | DataType::Date64 => LogicalType::Date,
        // The JSON functions' union of JSON kinds (`->`).
        DataType::Union(_, _) => LogicalType::Json,
        _ => LogicalType::Text,
    }
}

/// A text column whose values are JSON documents (the JSON functions mark them with Arrow's
/// JSON extension type): answered as `json`.
pub(crate) fn is_json_text(field: &Field) -> bool {
    matches!(
        field.data_type(),
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
    ) && field
        .metadata()
        .get("ARROW:extension:name")
        .is_some_and(|n| n == "arrow.json")
}

/// One column of a result batch as values of `logical_type(array.data_type())`.
pub(crate) fn array_values(array: &dyn Array) -> Result<Vec<Value>, EngineError> {
    let n = array.len();
    let mut out = Vec::with_capacity(n);
    macro_rules! ints {
        ($t:ty) => {{
            let a = array.as_primitive::<$t>();
            for i in 0..n {
                out.push(if a.is_null(i) {
                    Value::Null
                } else {
                    Value::Int(i64::from(a.value(i)))
                });
            }
        }};
    }
    macro_rules! floats {
        ($t:ty) => {{
            let a = array.as_primitive::<$t>();
            for i in 0..n {
                out.push(if a.is_null(i) {
                    Value::Null
                } else {
                    Value::Float(f64::from(a.value(i)))
                });
            }
        }};
    }
    macro_rules! timestamps {
        ($t:ty, $to_micros:expr) => {{
            let a = array.as_primitive::<$t>();
            for i in 0..n {
                out.push(if a.is_null(i) {
                    Value::Null
                } else {
                    let micros: i64 = $to_micros(a.value(i));
                    DateTime::<Utc>::from_timestamp_micros(micros)
                        .map(Value::Timestamp)
                        .ok_or_else(|| EngineError::Data("timestamp out of range".to_owned()))?
                });
            }
        }};
    }
    match array.data_type() {
        DataType::Int8 => ints!(Int8Type),
        DataType::Int16 => ints!(Int16Type),
        DataType::Int32 => ints!(Int32Type),
        DataType::Int64 => ints!(Int64Type),
        DataType::UInt8 => ints!(UInt8Type),
        DataType::UInt16 => ints!(UInt16Type),
        DataType::UInt32 => ints!(UInt32Type),
        DataType::UInt64 => {
            let a = array.as_primitive::<UInt64Type>();
            for i in 0..n {
                out.push(if a.is_null(i) {
                    Value::Null
                } else {
                    Value::Int(i64::try_from(a.value(i)).map_err(|_| {
                        EngineError::Data("integer out of range for int".to_owned())
                    })?)
                });
            }
        }
        DataType::Float16 => {
            let a = array.as_primitive::<Float16Type>();
            for i in 0..n {
                out.push(if a.is_null(i) {
                    Value::Null
                } else {
                    Value::Float(f64::from(a.value(i)))
                });
            }
        }
        DataType::Float32 => floats!(Float32Type),
        DataType::Float64 => floats!(Float64Type),
        DataType::Decimal128(_, s) => {
            let a = array.as_primitive::<Decimal128Type>();
            let scale = u32::try_from(*s).unwrap_or(0);
            for i in 0..n {
                out.push(if a.is_null(i) {
                    Value::Null
                } else {
                    Value::Decimal(decimal_of(a.value(i), scale)?)
                });
            }
        }
        DataType::Boolean => {
            let a = array.as_boolean();
            for i in 0..n {
                out.push(if a.is_null(i) {
                    Value::Null
                } else {
                    Value::Bool(a.value(i))
                });
            }
        }
        DataType::Utf8 => {
            let a = array.as_string::<i32>();
            for i in 0..n {
                out.push(if a.is_null(i) {
                    Value::Null
                } else {
                    Value::Text(a.value(i).to_owned())
                });
            }
        }
        DataType::LargeUtf8 => {
            let a = array.as_string::<i64>();
            for i in 0..n {
                out.push(if a.is_null(i) {
                    Value::Null
                } else {
                    Value::Text(a.value(i).to_owned())
                });
            }
        }
        DataType::Utf8View => {
            let a = array.as_string_view();
            for i in 0..n {
                out.push(if a.is_null(i) {
                    Value::Null
                } else {
                    Value::Text(a.value(i).to_owned())
                });
            }
        }
        DataType::Timestamp(TimeUnit::Second, _) => {
            timestamps!(TimestampSecondType, |v: i64| v.saturating_mul(1_000_000))
        }
        DataType::Timestamp(TimeUnit::Millisecond, _) => {
            timestamps!(TimestampMillisecondType, |v: i64| v.saturating_mul(1_000))
        }
        DataType::Timestamp(TimeUnit::Microsecond, _) => {
            timestamps!(TimestampMicrosecondType, |v: i64| v)
        }
        DataType::Timestamp(TimeUnit::Nanosecond, _) => {
            timestamps!(TimestampNanosecondType, |v: i64| v.div_euclid(1_000))
        }
        DataType::Date32 => {
            let a = array.as_primitive::<Date32Type>();
            for i in 0..n {
                out.push(if a.is_null(i) {
                    Value::Null
                } else {
                    Value::Date(date_of(i64::from(a.value(i)))?)
                });
            }
        }
        DataType::Date64 => {
            let a = array.as_primitive::<Date64Type>();
            for i in 0..n {
                out.push(if a.is_null(i) {
                    Value::Null
                } else {
                    Value::Date(date_of(a.value(i).div_euclid(86_400_000))?)
                });
            }
        }
        DataType::Null => out.resize(n, Value::Null),
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            let a = array.as_primitive::<IntervalMonthDayNanoType>();
            for i in 0..n {
                out.push(if a.is_null(i) {
                    Value::Null
                } else {
                    let v = a.value(i);
                    Value::Text(interval_text(v.months, v.days, v.nanoseconds))
                });
            }
        }
        DataType::Duration(unit) => {
            // A difference of instants: PostgreSQL answers days and a time of day.
            let per_nano: i64 = match unit {
                TimeUnit::Second => 1_000_000_000,
                TimeUnit::Millisecond => 1_000_000,
                TimeUnit::Microsecond => 1_000,
                TimeUnit::Nanosecond => 1,
            };
            let values: Vec<Option<i64>> = match unit {
                TimeUnit::Second => durations::<DurationSecondType>(array),
                TimeUnit::Millisecond => durations::<DurationMillisecondType>(array),
                TimeUnit::Microsecond => durations::<DurationMicrosecondType>(array),
                TimeUnit::Nanosecond => durations::<DurationNanosecondType>(array),
            };
            for v in values {
                out.push(match v {
                    None => Value::Null,
                    Some(v) => {
                        let nanos = v.saturating_mul(per_nano);
                        let day = 86_400_000_000_000_i64;
                        let days = i32::try_from(nanos / day).unwrap_or(i32::MAX);
                        Value::Text(interval_text(0, days, nanos % day))
                    }
                });
            }
        }
        DataType::Interval(IntervalUnit::YearMonth) => {
            let a = array.as_primitive::<IntervalYearMonthType>();
            for i in 0..n {
                out.push(if a.is_null(i) {
                    Value::Null
                } else {
                    Value::Text(interval_text(a.value(i), 0, 0))
                });
            }
        }
        DataType::Interval(IntervalUnit::DayTime) => {
            let a = array.as_primitive::<IntervalDayTimeType>();
            for i in 0..n {
                out.push(if a.is_null(i) {
                    Value::Null
                } else {
                    let v = a.value(i);
                    let nanos = i64::from(v.milliseconds) * 1_000_000;
                    Value::Text(interval_text(0, v.days, nanos))
                });
            }
        }
        DataType::Union(fields, _) => {
            let union = array.as_union();
            for i in 0..n {
                let type_id = union.type_id(i);
                let kind = fields
                    .iter()
                    .find(|(id, _)| *id == type_id)
                    .map_or("", |(_, f)| f.name().as_str());
                let child = union.value(i);
                let cell = array_values(child.as_ref())?
                    .into_iter()
                    .next()
                    .unwrap_or(Value::Null);
                out.push(json_of(kind, cell));
            }
        }
        _ => {
            let options = FormatOptions::default();
            let formatter = ArrayFormatter::try_new(array, &options)
                .map_err(|e| EngineError::Internal(format!("formatting a result: {e}")))?;
            for i in 0..n {
                out.push(if array.is_null(i) {
                    Value::Null
                } else {
                    Value::Text(formatter.value(i).to_string())
                });
            }
        }
    }
    Ok(out)
}

/// A value of the JSON functions' union as JSON: objects and arrays arrive as their text.
fn json_of(kind: &str, cell: Value) -> Value {
    match (kind, cell) {
        (_, Value::Null) => Value::Null,
        ("object" | "array", Value::Text(t)) => {
            serde_json::from_str(&t).map_or(Value::Text(t), Value::Json)
        }
        (_, Value::Text(t)) => Value::Json(serde_json::Value::String(t)),
        (_, Value::Int(i)) => Value::Json(serde_json::Value::from(i)),
        (_, Value::Float(f)) => Value::Json(serde_json::Value::from(f)),
        (_, Value::Bool(b)) => Value::Json(serde_json::Value::Bool(b)),
        (_, other) => other,
    }
}

fn decimal_of(unscaled: i128, scale: u32) -> Result<Decimal, EngineError> {
    Decimal::try_from_i128_with_scale(unscaled, scale)
        .or_else(|_| {
            // More than 28 digits: keep the integer digits, drop fraction digits.
            let mut v = unscaled;
            let mut s = scale;
            while s > 0 {
                v /= 10;
                s -= 1;
                if let Ok(d) = Decimal::try_from_i128_with_scale(v, s) {
                    return Ok(d);
                }
            }
            Err(())
        })
        .map_err(|()| EngineError::Data("numeric value out of range".to_owned()))
}

/// `days` since 1970-01-01 as `YYYY-MM-DD`.
fn durations<T: datafusion::arrow::datatypes::ArrowPrimitiveType<Native = i64>>(
    array: &dyn Array,
) -> Vec<Option<i64>> {
    let a = array.as_primitive::<T>();
    (0..a.len())
        .map(|i| (!a.is_null(i)).then(|| a.value(i)))
        .collect()
}

fn date_of(days: i64) -> Result<NaiveDate, EngineError> {
    NaiveDate::from_ymd_opt(1970, 1, 1)
        .and_then(|epoch| epoch.checked_add_signed(chrono::Duration::days(days)))
        .ok_or_else(|| EngineError::Data("date out of range".to_owned()))
}

/// A parameter's value as the router binds it.
pub(crate) fn scalar_value(v: &datafusion::common::ScalarValue) -> Result<Value, EngineError> {
    let array = v
        .to_array()
        .map_err(|e| EngineError::Internal(format!("parameter value: {e}")))?;
    Ok(array_values(array.as_ref())?
        .into_iter()
        .next()
        .unwrap_or(Value::Null))
}

/// A result batch as rows.
pub(crate) fn batch_rows(batch: &RecordBatch) -> Result<Vec<Vec<Value>>, EngineError> {
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (array, field) in batch.columns().iter().zip(batch.schema().fields()) {
        let mut values = array_values(array.as_ref())?;
        if is_json_text(field) {
            for v in &mut values {
                if let Value::Text(t) = v {
                    *v = Value::Json(serde_json::from_str(t).map_err(|e| {
                        EngineError::Data(format!("a JSON value is not JSON: {e}"))
                    })?);
                }
            }
        }
        columns.push(values.into_iter());
    }
    let mut rows = Vec::with_capacity(batch.num_rows());
    for _ in 0..batch.num_rows() {
        rows.push(
            columns
                .iter_mut()
                .map(|c| c.next().unwrap_or(Value::Null))
                .collect(),
        );
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn every_logical_type_round_trips_through_arrow() {
        let types = [
            LogicalType::Int,
            LogicalType::Float,
            LogicalType::Decimal {
                precision: 12,
                scale: 2,
            },
            LogicalType::Text,
            LogicalType::Bool,
            LogicalType::Timestamp,
            LogicalType::Date,
        ];
        let schema = Arc::new(Schema::new(
            types
                .iter()
                .enumerate()
                .map(|(i, t)| Field::new(format!("c{i}"), arrow_type(*t), true))
                .collect::<Vec<_>>(),
        ));
        let ts = DateTime::<Utc>::from_timestamp_micros(1_714_521_600_123_456).expect("ts");
        let rows = vec![
            vec![
                Value::Int(-7),
                Value::Float(1.5),
                Value::Decimal(Decimal::from_str("12.30").expect("dec")),
                Value::Text("ana".into()),
                Value::Bool(true),
                Value::Timestamp(ts),
                Value::Date(NaiveDate::from_ymd_opt(1998, 12, 1).expect("date")),
            ],
            vec![Value::Null; 7],
        ];
        let batch = rows_to_batch(&schema, &types, &rows).expect("batch");
        let back = batch_rows(&batch).expect("rows");
        assert_eq!(back, rows);
        for (field, ty) in schema.fields().iter().zip(types) {
            assert_eq!(logical_type(field.data_type()), ty);
        }
    }

    #[test]
    fn a_batch_without_columns_keeps_its_row_count() {
        let schema = Arc::new(Schema::empty());
        let batch = rows_to_batch(&schema, &[], &[vec![], vec![], vec![]]).expect("batch");
        assert_eq!(batch.num_rows(), 3);
    }

    #[test]
    fn dates_count_days_from_the_epoch() {
        assert_eq!(date_of(19_844).expect("date").to_string(), "2024-05-01");
        assert_eq!(date_of(-1).expect("date").to_string(), "1969-12-31");
    }

    #[test]
    fn wide_decimals_keep_their_integer_digits() {
        let d = decimal_of(12_345_678_901_234_567_890_123_456_789_012_345, 10).expect("dec");
        assert_eq!(d.trunc().to_string(), "1234567890123456789012345");
    }
}
