//! How a table sits in Redis: its key pattern parsed into segments, keys built from and parsed
//! back into key-column values, and values encoded as text that parses back to the same
//! logical value.
//!
//! Keys are injective: a pattern with one placeholder (`cart:{customer_id}`) keeps the value as
//! it is (byte-compatible with keys written by other tools), since the literals before and
//! after it delimit it. With several placeholders (`kv:{a}:{b}`), each value has `\`, `{`, `}`
//! and every character that occurs in the pattern's literals escaped with `\`, so the first
//! unescaped literal ends a value: `('x:y', 'z')` is `kv:x\:y:z` and `('x', 'y:z')` is
//! `kv:x:y\:z`. Two placeholders with nothing between them cannot be told apart and are
//! refused.

use std::str::FromStr;

use switchyard_config::RedisMode;
use switchyard_core::value::{format_date, format_timestamp, parse_date, parse_timestamp};
use switchyard_core::{LogicalType, Placement, Table, Value};

pub fn encode(v: &Value) -> Option<String> {
    Some(match v {
        Value::Null => return None,
        Value::Int(i) => i.to_string(),
        Value::Float(f) => format!("{f:?}"),
        Value::Decimal(d) => d.to_string(),
        Value::Text(s) => s.clone(),
        Value::Bool(b) => if *b { "1" } else { "0" }.to_owned(),
        Value::Timestamp(t) => format_timestamp(t),
        Value::Date(d) => format_date(d),
        Value::Json(j) => j.to_string(),
    })
}

/// The value of `ty` that `text` encodes.
pub fn decode(text: &str, ty: LogicalType) -> Result<Value, String> {
    let bad = |e: String| format!("`{text}` is not a {}: {e}", ty.name());
    Ok(match ty {
        LogicalType::Int => Value::Int(
            text.parse()
                .map_err(|e: std::num::ParseIntError| bad(e.to_string()))?,
        ),
        LogicalType::Float => Value::Float(
            text.parse()
                .map_err(|e: std::num::ParseFloatError| bad(e.to_string()))?,
        ),
        LogicalType::Decimal { .. } => {
            Value::Decimal(rust_decimal::Decimal::from_str(text).map_err(|e| bad(e.to_string()))?)
                .coerce(ty)?
        }
        LogicalType::Text => Value::Text(text.to_owned()),
        LogicalType::Bool => Value::Bool(text == "1" || text == "true"),
        LogicalType::Timestamp => {
            Value::Timestamp(parse_timestamp(text).ok_or_else(|| bad("bad timestamp".into()))?)
        }
        LogicalType::Date => Value::Date(parse_date(text).ok_or_else(|| bad("bad date".into()))?),
        LogicalType::Json => {
            Value::Json(serde_json::from_str(text).map_err(|e| bad(e.to_string()))?)
        }
    })
}

/// A piece of a key pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    /// Text copied as is.
    Literal(String),
    /// The value of this column.
    Column(usize),
}

/// `pattern` as segments over `table`'s columns, or why it cannot name keys.
pub(crate) fn parse_pattern(pattern: &str, table: &Table) -> Result<Vec<Segment>, String> {
    let mut out = Vec::new();
    let mut rest = pattern;
    while let Some(open) = rest.find(['{', '}']) {
        if rest[open..].starts_with('}') {
            return Err(format!(
                "key pattern `{pattern}` has a `}}` without its `{{`"
            ));
        }
        if open > 0 {
            out.push(Segment::Literal(rest[..open].to_owned()));
        }
        let Some(close) = rest[open..].find('}') else {
            return Err(format!(
                "key pattern `{pattern}` has a `{{` without its `}}`"
            ));
        };
        let name = &rest[open + 1..open + close];
        let column = table
            .column_index(name)
            .ok_or_else(|| format!("key pattern `{pattern}` names no column `{name}`"))?;
        if out.contains(&Segment::Column(column)) {
            return Err(format!("key pattern `{pattern}` names `{name}` twice"));
        }
        if matches!(out.last(), Some(Segment::Column(_))) {
            return Err(format!(
                "key pattern `{pattern}` has two placeholders with nothing between them"
            ));
        }
        out.push(Segment::Column(column));
        rest = &rest[open + close + 1..];
    }
    if !rest.is_empty() {
        out.push(Segment::Literal(rest.to_owned()));
    }
    Ok(out)
}

/// How a table sits in Redis.
pub(crate) struct Layout<'a> {
    pub(crate) table: &'a Table,
    pub(crate) placement: &'a Placement,
    pub(crate) mode: RedisMode,
    /// The key pattern, parsed.
    pub(crate) segments: Vec<Segment>,
    /// Characters escaped inside values (empty with one placeholder: nothing is escaped).
    pub(crate) reserved: Vec<char>,
    /// The pattern's columns, in pattern order.
    pub(crate) key_columns: Vec<usize>,
    /// Primary-key columns outside the pattern (hash-per-partition: the field).
    pub(crate) clustering: Vec<usize>,
    /// The other columns.
    pub(crate) values: Vec<usize>,
    /// The backend's `key_prefix`.
    pub(crate) prefix: String,
}

impl Layout<'_> {
    /// The characters escaped in values of a pattern of `segments`.
    pub(crate) fn reserved_of(segments: &[Segment]) -> Vec<char> {
        let columns = segments
            .iter()
            .filter(|s| matches!(s, Segment::Column(_)))
            .count();
        if columns <= 1 {
            return Vec::new();
        }
        let mut out = vec!['\\', '{', '}'];
        for s in segments {
            if let Segment::Literal(l) = s {
                out.extend(l.chars());
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The SCAN MATCH glob of the table's keys.
    pub(crate) fn glob(&self) -> String {
        let mut out = glob_escape(&self.prefix);
        for s in &self.segments {
            match s {
                Segment::Literal(l) => out.push_str(&glob_escape(l)),
                Segment::Column(_) => out.push('*'),
            }
        }
        out
    }

    /// The key-column values a key encodes (None when it does not fit the pattern).
    pub(crate) fn parse_key(&self, key: &str) -> Option<Vec<Value>> {
        let mut rest = key.strip_prefix(self.prefix.as_str())?;
        let mut values = Vec::with_capacity(self.key_columns.len());
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Literal(l) => rest = rest.strip_prefix(l.as_str())?,
                Segment::Column(c) => {
                    let next = match self.segments.get(i + 1) {
                        Some(Segment::Literal(l)) => l.as_str(),
                        _ => "",
                    };
                    let (raw, used) = if self.reserved.is_empty() {
                        // One placeholder: the value runs up to the pattern's closing literal.
                        let value = rest.strip_suffix(next)?;
                        (value.to_owned(), value.len())
                    } else {
                        unescape_until(rest, next)?
                    };
                    values.push(decode(&raw, self.table.columns[*c].ty).ok()?);
                    rest = &rest[used..];
                }
            }
        }
        rest.is_empty().then_some(values)
    }

    /// The key of a tuple of `key_columns` values.
    pub(crate) fn key(&self, tuple: &[Value]) -> String {
        let mut out = self.prefix.clone();
        let mut values = tuple.iter();
        for segment in &self.segments {
            match segment {
                Segment::Literal(l) => out.push_str(l),
                Segment::Column(_) => {
                    let raw = values.next().and_then(encode).unwrap_or_default();
                    for ch in raw.chars() {
                        if self.reserved.contains(&ch) {
                            out.push('\\');
                        }
                        out.push(ch);
                    }
                }
            }
        }
        out
    }

    pub(crate) fn key_of_row(&self, row: &[Value]) -> String {
        let tuple: Vec<Value> = self.key_columns.iter().map(|c| row[*c].clone()).collect();
        self.key(&tuple)
    }

    pub(crate) fn field_of_row(&self, row: &[Value]) -> String {
        encode(&row[self.clustering[0]]).unwrap_or_default()
    }

    /// The stored value of a hash-per-partition field or counter: the one value column, or the
    /// value columns as a JSON object.
    pub(crate) fn packed_value(&self, row: &[Value]) -> String {
        match self.values.as_slice() {
            [one] => encode(&row[*one]).unwrap_or_default(),
            many => json_of(self, row, many),
        }
    }

    pub(crate) fn ttl(&self) -> Option<u64> {
        self.placement.ttl_seconds
    }
}

fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

pub(crate) fn json_of(layout: &Layout<'_>, row: &[Value], columns: &[usize]) -> String {
    let object: serde_json::Map<String, serde_json::Value> = columns
        .iter()
        .map(|c| {
            let col = &layout.table.columns[*c];
            (
                layout.placement.physical_columns[*c].clone(),
                row[*c].to_json(col.ty),
            )
        })
        .collect();
    serde_json::Value::Object(object).to_string()
}

/// The value at the start of `s` up to the first unescaped `stop` (the rest of `s` when `stop`
/// is empty), unescaped, and how many bytes of `s` it took.
fn unescape_until(s: &str, stop: &str) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        if !stop.is_empty() && s[i..].starts_with(stop) {
            return Some((out, i));
        }
        if c == '\\' {
            out.push(chars.next()?.1);
        } else {
            out.push(c);
        }
    }
    stop.is_empty().then_some((out, s.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout_for<'a>(table: &'a Table, pattern: &str) -> Layout<'a> {
        let segments = parse_pattern(pattern, table).expect("a valid pattern");
        let key_columns = segments
            .iter()
            .filter_map(|s| match s {
                Segment::Column(c) => Some(*c),
                Segment::Literal(_) => None,
            })
            .collect();
        Layout {
            table,
            placement: &table.placements[0],
            mode: RedisMode::Json,
            reserved: Layout::reserved_of(&segments),
            segments,
            key_columns,
            clustering: Vec::new(),
            values: Vec::new(),
            prefix: "t:".to_owned(),
        }
    }

    fn kv_table() -> Table {
        let text = r#"
[backends.r]
kind = "redis"
url = "redis://127.0.0.1:6379"

[tables.kv]
columns = { a = "text", b = "text", n = "int", v = "text" }
primary_key = ["a", "b"]
placements = [{ backend = "r", role = "primary", mode = "json", key_pattern = "kv:{a}:{b}" }]
"#;
        let config = switchyard_config::parse_str(text, "t.toml", &|_| None).expect("valid");
        switchyard_core::Catalog::from_config(&config)
            .tables
            .shift_remove("kv")
            .expect("kv")
    }

    #[test]
    fn multi_column_keys_are_injective_and_parse_back() {
        let table = kv_table();
        let l = layout_for(&table, "kv:{a}:{b}");
        let t = |a: &str, b: &str| vec![Value::Text(a.into()), Value::Text(b.into())];
        let cases = [
            t("x:y", "z"),
            t("x", "y:z"),
            t("{b}", "q"),
            t("a\\", ":"),
            t("", ""),
            t("é:", "\\:{}"),
        ];
        let keys: Vec<String> = cases.iter().map(|c| l.key(c)).collect();
        assert_eq!(keys[0], "t:kv:x\\:y:z");
        assert_eq!(keys[1], "t:kv:x:y\\:z");
        assert_eq!(keys[2], "t:kv:\\{b\\}:q");
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(keys.iter().filter(|o| *o == k).count(), 1, "{k} repeats");
            assert_eq!(l.parse_key(k).as_ref(), Some(&cases[i]), "{k}");
        }
    }

    #[test]
    fn dates_are_stored_as_iso_days() {
        let d = Value::Date(parse_date("2024-02-29").expect("date"));
        let text = encode(&d).expect("text");
        assert_eq!(text, "2024-02-29");
        assert_eq!(decode(&text, LogicalType::Date), Ok(d));
        assert!(decode("2024-02-30", LogicalType::Date).is_err());
    }

    #[test]
    fn one_placeholder_keys_stay_as_they_were() {
        let table = kv_table();
        let l = layout_for(&table, "kv:{a}:x");
        let key = l.key(&[Value::Text("p:q\\{}".into())]);
        assert_eq!(key, "t:kv:p:q\\{}:x");
        assert_eq!(l.parse_key(&key), Some(vec![Value::Text("p:q\\{}".into())]));
        assert_eq!(l.parse_key("t:kv:p:y"), None);
    }

    #[test]
    fn patterns_that_cannot_name_keys_are_refused() {
        let table = kv_table();
        for (pattern, why) in [
            ("kv:{a}{b}", "nothing between"),
            ("kv:{a}:{a}", "twice"),
            ("kv:{nope}", "no column"),
            ("kv:{a", "without its"),
            ("kv:a}", "without its"),
        ] {
            let err = parse_pattern(pattern, &table).expect_err(pattern);
            assert!(err.contains(why), "{pattern}: {err}");
        }
    }
}
