//! Bound statements as MongoDB commands: query filter documents where the predicates allow it,
//! aggregation pipelines (with SQL's three-valued logic) for the rest, typed BSON values.
//!
//! Pure: nothing here talks to a server, so the translation is snapshot-tested.

use std::str::FromStr;

use mongodb::bson::{Bson, DateTime as BsonDateTime, Decimal128, Document, doc};
use switchyard_core::ir::{
    AggFunc, BinaryOp, Expr, ExprKind, OnConflict, ScalarFunc, Select, Statement, UnaryOp,
};
use switchyard_core::{BoundQuery, Catalog, LogicalType, Placement, Table, Value};

/// What to send to the server.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// `aggregate` on `collection`; output documents carry `c0..cN`.
    Aggregate {
        /// Collection.
        collection: String,
        /// Stages.
        pipeline: Vec<Document>,
        /// A global aggregate (no GROUP BY): an empty input still answers one row.
        global_aggregate: bool,
    },
    /// `insertMany`; `ignore_duplicates` for ON CONFLICT DO NOTHING.
    Insert {
        /// Collection.
        collection: String,
        /// Documents.
        documents: Vec<Document>,
        /// Skip rows whose key exists.
        ignore_duplicates: bool,
    },
    /// `updateMany` with a pipeline update.
    Update {
        /// Collection.
        collection: String,
        /// Filter.
        filter: Document,
        /// `[{$set: ...}]`.
        update: Vec<Document>,
    },
    /// Insert each row, or update the existing document with its key.
    Upsert {
        /// Collection.
        collection: String,
        /// Rows.
        rows: Vec<UpsertRow>,
    },
    /// `deleteMany`.
    Delete {
        /// Collection.
        collection: String,
        /// Filter.
        filter: Document,
    },
}

/// MongoDB's bounds on a command: nesting of documents and arrays (the server refuses deeper
/// BSON) and the size of one BSON document.
pub const MAX_NESTING: usize = 100;
/// 16 MiB, MongoDB's `maxBsonObjectSize`.
pub const MAX_BSON_BYTES: usize = 16 * 1024 * 1024;

/// A generated command past one of MongoDB's bounds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandTooLarge {
    /// What passed its bound, e.g. `nesting depth`.
    pub what: &'static str,
    /// The bound.
    pub limit: u64,
}

/// How deep `b` nests (a scalar is 0, a document or array one more than its deepest member;
/// the walk stops below `limit` levels) and about how many bytes its BSON takes (names and
/// strings, plus 16 bytes per element: an upper bound for the scalars translation emits).
fn measure(b: &Bson, limit: usize) -> (usize, usize) {
    match b {
        Bson::Document(d) => measure_doc(d, limit),
        Bson::Array(a) => measure_members(a.iter().map(|v| (8, v)), limit),
        Bson::String(s) => (0, s.len()),
        Bson::RegularExpression(r) => (0, r.pattern.len() + r.options.len()),
        _ => (0, 16),
    }
}

fn measure_doc(d: &Document, limit: usize) -> (usize, usize) {
    measure_members(d.iter().map(|(k, v)| (k.len(), v)), limit)
}

fn measure_members<'b>(
    members: impl Iterator<Item = (usize, &'b Bson)>,
    limit: usize,
) -> (usize, usize) {
    if limit == 0 {
        return (1, 0);
    }
    let (mut depth, mut bytes) = (0, 5);
    for (name, member) in members {
        let (d, n) = measure(member, limit - 1);
        depth = depth.max(d);
        bytes += name + 16 + n;
    }
    (depth + 1, bytes)
}

impl Command {
    /// Checks the command against MongoDB's bounds before it is sent, so a statement that
    /// translates too large gets `QUERY_TOO_LARGE` from the router instead of a server error.
    pub fn check_limits(&self) -> Result<(), CommandTooLarge> {
        // Each part measured at the depth where it sits in the command, without copying it.
        let mut parts: Vec<(usize, &Document)> = Vec::new();
        match self {
            Command::Aggregate { pipeline, .. } => parts.extend(pipeline.iter().map(|d| (2, d))),
            Command::Insert { documents, .. } => parts.extend(documents.iter().map(|d| (2, d))),
            Command::Update { filter, update, .. } => {
                parts.push((1, filter));
                parts.extend(update.iter().map(|d| (2, d)));
            }
            Command::Delete { filter, .. } => parts.push((1, filter)),
            Command::Upsert { rows, .. } => {
                for r in rows {
                    parts.push((3, &r.document));
                    parts.push((4, &r.filter));
                    parts.extend(r.update.iter().map(|d| (5, d)));
                }
            }
        }
        let (mut depth, mut bytes) = (0, 64);
        for (at, part) in parts {
            let (d, n) = measure_doc(part, MAX_NESTING.saturating_sub(at));
            depth = depth.max(at + d);
            bytes += n;
        }
        if depth > MAX_NESTING {
            return Err(CommandTooLarge {
                what: "nesting depth",
                limit: MAX_NESTING as u64,
            });
        }
        if bytes > MAX_BSON_BYTES {
            return Err(CommandTooLarge {
                what: "size in bytes",
                limit: MAX_BSON_BYTES as u64,
            });
        }
        Ok(())
    }

    /// Extended JSON text of the command, for `explain`.
    pub fn to_text(&self) -> String {
        Bson::Document(self.document())
            .into_relaxed_extjson()
            .to_string()
    }

    /// The command as one document (as `explain` shows it).
    fn document(&self) -> Document {
        match self {
            Command::Aggregate {
                collection,
                pipeline,
                ..
            } => doc! { "aggregate": collection, "pipeline": pipeline.clone() },
            Command::Insert {
                collection,
                documents,
                ignore_duplicates,
            } => {
                doc! { "insert": collection, "documents": documents.clone(), "ordered": !ignore_duplicates }
            }
            Command::Update {
                collection,
                filter,
                update,
            } => {
                doc! { "update": collection, "q": filter.clone(), "u": update.clone(), "multi": true }
            }
            Command::Delete { collection, filter } => {
                doc! { "delete": collection, "q": filter.clone(), "limit": 0 }
            }
            Command::Upsert { collection, rows } => {
                let steps: Vec<Document> = rows
                    .iter()
                    .map(|r| doc! { "insert": r.document.clone(), "onDuplicateKey": { "q": r.filter.clone(), "u": r.update.clone() } })
                    .collect();
                doc! { "upsert": collection, "rows": steps }
            }
        }
    }
}

/// One row of an upsert.
#[derive(Debug, Clone, PartialEq)]
pub struct UpsertRow {
    /// The document inserted when the key is new.
    pub document: Document,
    /// The key, to find the existing document.
    pub filter: Document,
    /// The pipeline update applied to it.
    pub update: Vec<Document>,
}

/// Why a statement cannot run on MongoDB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Untranslatable(pub String);

type R<T> = Result<T, Untranslatable>;

fn no(what: impl Into<String>) -> Untranslatable {
    Untranslatable(what.into())
}

/// A value as BSON: int64, double, Decimal128, string, bool, UTC datetime (milliseconds), and JSON
/// as documents and arrays.
pub fn to_bson(v: &Value) -> Bson {
    match v {
        Value::Null => Bson::Null,
        Value::Int(i) => Bson::Int64(*i),
        Value::Float(f) => Bson::Double(*f),
        Value::Decimal(d) => {
            Decimal128::from_str(&d.to_string()).map_or(Bson::Null, Bson::Decimal128)
        }
        Value::Text(s) => Bson::String(s.clone()),
        Value::Bool(b) => Bson::Boolean(*b),
        Value::Timestamp(t) => Bson::DateTime(BsonDateTime::from_millis(t.timestamp_millis())),
        // A date is the BSON Date at midnight UTC, so it compares with instants as PostgreSQL's
        // date does with timestamptz in UTC.
        Value::Date(d) => Bson::DateTime(BsonDateTime::from_millis(
            switchyard_core::value::date_micros(d) / 1000,
        )),
        Value::Json(j) => json_to_bson(j),
    }
}

fn json_to_bson(j: &serde_json::Value) -> Bson {
    use serde_json::Value as J;
    match j {
        J::Null => Bson::Null,
        J::Bool(b) => Bson::Boolean(*b),
        J::Number(n) => match n.as_i64() {
            Some(i) => Bson::Int64(i),
            None => n.as_f64().map(Bson::Double).unwrap_or_else(|| {
                Decimal128::from_str(&n.to_string()).map_or(Bson::Null, Bson::Decimal128)
            }),
        },
        J::String(s) => Bson::String(s.clone()),
        J::Array(a) => Bson::Array(a.iter().map(json_to_bson).collect()),
        J::Object(o) => Bson::Document(
            o.iter()
                .map(|(k, v)| (k.clone(), json_to_bson(v)))
                .collect(),
        ),
    }
}

/// BSON back to JSON for `json` columns (numbers stay numbers, subdocuments objects).
pub fn bson_to_json(b: &Bson) -> serde_json::Value {
    use serde_json::Value as J;
    match b {
        Bson::Null | Bson::Undefined => J::Null,
        Bson::Boolean(v) => J::Bool(*v),
        Bson::Int32(i) => J::from(*i),
        Bson::Int64(i) => J::from(*i),
        Bson::Double(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
        Bson::Decimal128(d) => {
            let text = d.to_string();
            serde_json::from_str::<serde_json::Number>(&text).map_or(J::String(text), J::Number)
        }
        Bson::String(s) => J::String(s.clone()),
        Bson::Array(a) => J::Array(a.iter().map(bson_to_json).collect()),
        Bson::Document(d) => J::Object(
            d.iter()
                .map(|(k, v)| (k.clone(), bson_to_json(v)))
                .collect(),
        ),
        Bson::ObjectId(o) => J::String(o.to_hex()),
        Bson::DateTime(t) => J::String(t.try_to_rfc3339_string().unwrap_or_default()),
        other => J::String(other.to_string()),
    }
}

/// A BSON value as a logical value (then coerced to the column's type by the caller).
pub fn from_bson(b: &Bson) -> Result<Value, String> {
    Ok(match b {
        Bson::Null | Bson::Undefined => Value::Null,
        Bson::Int32(i) => Value::Int(i64::from(*i)),
        Bson::Int64(i) => Value::Int(*i),
        Bson::Double(f) => Value::Float(*f),
        Bson::Decimal128(d) => {
            let text = d.to_string();
            Value::Decimal(
                rust_decimal::Decimal::from_str(&text)
                    .or_else(|_| rust_decimal::Decimal::from_scientific(&text))
                    .map_err(|e| format!("decimal {text}: {e}"))?,
            )
        }
        Bson::String(s) => Value::Text(s.clone()),
        Bson::Boolean(v) => Value::Bool(*v),
        Bson::DateTime(t) => Value::Timestamp(
            chrono::DateTime::from_timestamp_millis(t.timestamp_millis())
                .ok_or("timestamp out of range")?,
        ),
        Bson::ObjectId(o) => Value::Text(o.to_hex()),
        Bson::Document(_) | Bson::Array(_) => Value::Json(bson_to_json(b)),
        other => return Err(format!("unsupported BSON value {other}")),
    })
}

/// Translates a bound statement for the placement of its table on this backend.
pub fn translate(query: &BoundQuery, catalog: &Catalog, backend: &str) -> R<Command> {
    let placement = |table: &str| -> R<(&Table, &Placement)> {
        let t = catalog
            .table(table)
            .ok_or_else(|| no(format!("unknown table `{table}`")))?;
        let p = t
            .placement_on(backend)
            .ok_or_else(|| no(format!("table `{table}` has no placement here")))?;
        Ok((t, p))
    };
    let cx = |_table: &Table, placement| Cx {
        placements: vec![placement],
        prefixed: false,
        params: &query.params,
        excluded: None,
    };
    match &query.statement {
        Statement::Select(s) => {
            let mut placements = Vec::new();
            for t in &s.from {
                placements.push(placement(&t.table)?.1);
            }
            let cx = Cx {
                placements,
                prefixed: !s.joins.is_empty(),
                params: &query.params,
                excluded: None,
            };
            select(s, &cx)
        }
        Statement::Insert(ins) => {
            let (t, p) = placement(&ins.table)?;
            let c = cx(t, p);
            let ignore_duplicates = match &ins.on_conflict {
                None => false,
                Some(OnConflict::DoNothing) => true,
                Some(OnConflict::DoUpdate(assignments)) => {
                    return upsert(ins, assignments, t, p, &query.params);
                }
            };
            let mut documents = Vec::new();
            for row in &ins.rows {
                let mut d = Document::new();
                for (e, &col) in row.iter().zip(&ins.columns) {
                    let v = c
                        .constant(e)
                        .ok_or_else(|| no("computed values in INSERT on MongoDB"))?;
                    set_path(&mut d, &p.physical_columns[col], to_bson(&v));
                }
                documents.push(d);
            }
            Ok(Command::Insert {
                collection: p.physical_name.clone(),
                documents,
                ignore_duplicates,
            })
        }
        Statement::Update(u) => {
            let (t, p) = placement(&u.table)?;
            let c = cx(t, p);
            let filter = c.filter_document(u.filter.as_ref())?;
            let mut set = Document::new();
            for a in &u.assignments {
                set.insert(p.physical_columns[a.column].clone(), c.expr(&a.value)?);
            }
            Ok(Command::Update {
                collection: p.physical_name.clone(),
                filter,
                update: vec![doc! { "$set": set }],
            })
        }
        Statement::Delete(d) => {
            let (t, p) = placement(&d.table)?;
            let filter = cx(t, p).filter_document(d.filter.as_ref())?;
            Ok(Command::Delete {
                collection: p.physical_name.clone(),
                filter,
            })
        }
    }
}

/// Sets a dotted field path in a document (`shipping.city` -> `{shipping: {city: v}}`).
fn set_path(d: &mut Document, path: &str, value: Bson) {
    match path.split_once('.') {
        None => {
            d.insert(path, value);
        }
        Some((head, rest)) => {
            let entry = d
                .entry(head.to_owned())
                .or_insert_with(|| Bson::Document(Document::new()));
            if let Bson::Document(inner) = entry {
                set_path(inner, rest, value);
            }
        }
    }
}

struct Cx<'a> {
    /// Placement of each table of the statement (FROM order).
    placements: Vec<&'a Placement>,
    /// Joined documents nest each table under `t0`, `t1`, ...
    prefixed: bool,
    params: &'a [Value],
    /// The proposed row (by column index) in ON CONFLICT DO UPDATE.
    excluded: Option<&'a [Value]>,
}

/// INSERT ... ON CONFLICT (key) DO UPDATE: per row, insert it, or when its key exists, apply the
/// assignments (EXCLUDED.x is the proposed value) to the existing document.
fn upsert(
    ins: &switchyard_core::ir::Insert,
    assignments: &[switchyard_core::ir::Assignment],
    table: &Table,
    p: &Placement,
    params: &[Value],
) -> R<Command> {
    let mut rows = Vec::new();
    for row in &ins.rows {
        let mut full = vec![Value::Null; table.columns.len()];
        let mut document = Document::new();
        for (e, &col) in row.iter().zip(&ins.columns) {
            let v = e
                .constant(params)
                .ok_or_else(|| no("computed values in INSERT on MongoDB"))?;
            set_path(&mut document, &p.physical_columns[col], to_bson(&v));
            full[col] = v;
        }
        let mut filter = Document::new();
        for k in &table.primary_key {
            filter.insert(p.physical_columns[*k].clone(), to_bson(&full[*k]));
        }
        let cx = Cx {
            placements: vec![p],
            prefixed: false,
            params,
            excluded: Some(&full),
        };
        let mut set = Document::new();
        for a in assignments {
            set.insert(p.physical_columns[a.column].clone(), cx.expr(&a.value)?);
        }
        rows.push(UpsertRow {
            document,
            filter,
            update: vec![doc! { "$set": set }],
        });
    }
    Ok(Command::Upsert {
        collection: p.physical_name.clone(),
        rows,
    })
}

/// `{$eq: [{$ifNull: [x, null]}, null]}`: x is NULL or missing.
fn is_null(x: Bson) -> Bson {
    Bson::Document(doc! { "$eq": [ { "$ifNull": [x, Bson::Null] }, Bson::Null ] })
}

/// `{$cond: [any operand null, null, e]}`: SQL's NULL propagation for comparisons.
fn null_if_any_null(operands: &[Bson], e: Bson) -> Bson {
    let checks: Vec<Bson> = operands.iter().cloned().map(is_null).collect();
    Bson::Document(doc! { "$cond": [ { "$or": checks }, Bson::Null, e ] })
}

fn literal(v: Bson) -> Bson {
    Bson::Document(doc! { "$literal": v })
}

/// `body` over `operands`, where each operand that is more than a field path or a literal is
/// bound once by `$let` and referred to as `$$vN`: a body that uses an operand twice (NULL
/// checks) must not copy it, or nested expressions grow exponentially. Every translated
/// expression is closed, so nested `$let`s reusing the names cannot capture each other's.
fn let_bound(operands: Vec<Bson>, body: impl FnOnce(&[Bson]) -> Bson) -> Bson {
    let mut vars = Document::new();
    let refs: Vec<Bson> = operands
        .into_iter()
        .enumerate()
        .map(|(i, x)| match &x {
            Bson::String(_) => x,
            Bson::Document(d) if d.contains_key("$literal") => x,
            _ => {
                vars.insert(format!("v{i}"), x);
                Bson::String(format!("$$v{i}"))
            }
        })
        .collect();
    let body = body(&refs);
    if vars.is_empty() {
        body
    } else {
        Bson::Document(doc! { "$let": { "vars": vars, "in": body } })
    }
}

/// The operands of a chain of one AND/OR (the binder builds long ones as balanced trees).
#[recursive::recursive]
fn chain_terms<'e>(e: &'e Expr, op: BinaryOp, out: &mut Vec<&'e Expr>) {
    match &e.kind {
        ExprKind::Binary { op: o, left, right } if *o == op => {
            chain_terms(left, op, out);
            chain_terms(right, op, out);
        }
        _ => out.push(e),
    }
}

impl Cx<'_> {
    fn field(&self, table: usize, column: usize) -> String {
        let physical = self
            .placements
            .get(table)
            .map_or("", |p| p.physical_columns[column].as_str());
        if self.prefixed {
            format!("t{table}.{physical}")
        } else {
            physical.to_owned()
        }
    }

    fn constant(&self, e: &Expr) -> Option<Value> {
        e.constant(self.params)
    }

    /// A WHERE clause as a query filter document: simple `column op constant` conjuncts become
    /// field conditions (index-friendly); anything else joins them as `$expr`.
    fn filter_document(&self, filter: Option<&Expr>) -> R<Document> {
        let Some(f) = filter else {
            return Ok(Document::new());
        };
        let mut simple = Vec::new();
        let mut rest = Vec::new();
        for c in f.conjuncts() {
            match self.simple_condition(c) {
                Some(d) => simple.push(Bson::Document(d)),
                None => rest.push(c),
            }
        }
        if !rest.is_empty() {
            let mut parts = Vec::new();
            for c in rest {
                parts.push(self.expr(c)?);
            }
            let all = if parts.len() == 1 {
                parts.remove(0)
            } else {
                Bson::Document(doc! { "$and": parts })
            };
            simple.push(Bson::Document(doc! { "$expr": { "$eq": [all, true] } }));
        }
        Ok(match simple.len() {
            0 => Document::new(),
            1 => match simple.remove(0) {
                Bson::Document(d) => d,
                _ => Document::new(),
            },
            _ => doc! { "$and": simple },
        })
    }

    /// `e` as a query filter document that matches exactly the rows where `e` is true (so only
    /// at the top of a WHERE, where false and NULL both drop the row), when it is that simple.
    #[recursive::recursive]
    fn simple_condition(&self, e: &Expr) -> Option<Document> {
        let column = |x: &Expr| match x.kind {
            ExprKind::Column { table, column } => Some(self.field(table, column)),
            _ => None,
        };
        match &e.kind {
            ExprKind::Binary {
                op: op @ (BinaryOp::And | BinaryOp::Or),
                ..
            } => {
                // True exactly when all (any) of the terms are true.
                let mut terms = Vec::new();
                chain_terms(e, *op, &mut terms);
                let docs: Option<Vec<Bson>> = terms
                    .into_iter()
                    .map(|t| self.simple_condition(t).map(Bson::Document))
                    .collect();
                let name = if *op == BinaryOp::And { "$and" } else { "$or" };
                Some(doc! { name: docs? })
            }
            ExprKind::Binary { op, left, right } if op.is_comparison() => {
                let (f, v, flipped) = match (column(left), column(right)) {
                    (Some(f), None) => (f, self.constant(right)?, false),
                    (None, Some(f)) => (f, self.constant(left)?, true),
                    _ => return None,
                };
                if v.is_null() {
                    return None;
                }
                let b = to_bson(&v);
                let cond = match (op, flipped) {
                    (BinaryOp::Eq, _) => doc! { "$eq": b },
                    (BinaryOp::NotEq, _) => doc! { "$nin": [b, Bson::Null] },
                    (BinaryOp::Lt, false) | (BinaryOp::Gt, true) => doc! { "$lt": b },
                    (BinaryOp::LtEq, false) | (BinaryOp::GtEq, true) => doc! { "$lte": b },
                    (BinaryOp::Gt, false) | (BinaryOp::Lt, true) => doc! { "$gt": b },
                    (BinaryOp::GtEq, false) | (BinaryOp::LtEq, true) => doc! { "$gte": b },
                    _ => return None,
                };
                Some(doc! { f: cond })
            }
            ExprKind::InList {
                expr,
                list,
                negated: false,
            } => {
                let values: Option<Vec<Value>> = list.iter().map(|x| self.constant(x)).collect();
                let values: Vec<Bson> = values?
                    .iter()
                    .filter(|v| !v.is_null())
                    .map(to_bson)
                    .collect();
                Some(doc! { column(expr)?: { "$in": values } })
            }
            ExprKind::Between {
                expr,
                low,
                high,
                negated: false,
            } => {
                let (lo, hi) = (self.constant(low)?, self.constant(high)?);
                if lo.is_null() || hi.is_null() {
                    return None;
                }
                Some(doc! { column(expr)?: { "$gte": to_bson(&lo), "$lte": to_bson(&hi) } })
            }
            ExprKind::Like {
                expr,
                pattern,
                negated: false,
            } => {
                let Value::Text(p) = self.constant(pattern)? else {
                    return None;
                };
                Some(doc! { column(expr)?: { "$regex": like_to_regex(&p).ok()?, "$options": "s" } })
            }
            ExprKind::IsNull { expr, negated } => {
                let f = column(expr)?;
                Some(if *negated {
                    doc! { f: { "$ne": Bson::Null } }
                } else {
                    doc! { f: Bson::Null }
                })
            }
            _ => None,
        }
    }

    /// An expression over input documents as an aggregation expression.
    fn expr(&self, e: &Expr) -> R<Bson> {
        composite(e, &|x| self.expr(x), self)
    }
}

/// Translates `e` as an aggregation expression with SQL NULL semantics (booleans are
/// true/false/null); children go through `sub`, so the same rules serve expressions over input
/// documents (`Cx::expr`) and over grouped documents (`Grouped::expr`).
#[recursive::recursive]
fn composite(e: &Expr, sub: &dyn Fn(&Expr) -> R<Bson>, cx: &Cx<'_>) -> R<Bson> {
    Ok(match &e.kind {
        ExprKind::Column { table, column } => {
            Bson::String(format!("${}", cx.field(*table, *column)))
        }
        ExprKind::Excluded { column } => match cx.excluded {
            Some(row) => literal(to_bson(row.get(*column).unwrap_or(&Value::Null))),
            None => return Err(no("EXCLUDED outside ON CONFLICT")),
        },
        ExprKind::Literal(_) | ExprKind::Param(_) => {
            literal(to_bson(&cx.constant(e).unwrap_or(Value::Null)))
        }
        ExprKind::Unary {
            op: UnaryOp::Neg,
            expr,
        } => Bson::Document(doc! { "$multiply": [sub(expr)?, literal(Bson::Int64(-1))] }),
        ExprKind::Unary {
            op: UnaryOp::Not,
            expr,
        } => let_bound(vec![sub(expr)?], |x| {
            Bson::Document(
                doc! { "$cond": [is_null(x[0].clone()), Bson::Null, { "$not": [x[0].clone()] }] },
            )
        }),
        ExprKind::Binary {
            op: op @ (BinaryOp::And | BinaryOp::Or),
            ..
        } => {
            // One n-ary operation over the whole chain, each term translated and evaluated
            // once: a term equal to the decisive value decides, else any NULL gives NULL.
            let (decisive, other) = if *op == BinaryOp::And {
                (false, true)
            } else {
                (true, false)
            };
            let mut parts = Vec::new();
            chain_terms(e, *op, &mut parts);
            let mut terms = Vec::with_capacity(parts.len());
            for part in parts {
                terms.push(Bson::Document(doc! { "$ifNull": [sub(part)?, Bson::Null] }));
            }
            Bson::Document(doc! { "$let": {
                "vars": { "terms": terms },
                "in": { "$switch": {
                    "branches": [
                        { "case": { "$in": [decisive, "$$terms"] }, "then": decisive },
                        { "case": { "$in": [Bson::Null, "$$terms"] }, "then": Bson::Null },
                    ],
                    "default": other,
                } },
            } })
        }
        ExprKind::Binary {
            op: op @ (BinaryOp::Plus | BinaryOp::Multiply | BinaryOp::Concat),
            ..
        } => {
            // One n-ary operator for a whole chain (`a + b + c` is `$add: [a, b, c]`, evaluated
            // left to right like the nested form): a long chain stays one level deep.
            let mut parts = Vec::new();
            chain_terms(e, *op, &mut parts);
            let mut terms = Vec::with_capacity(parts.len());
            for part in parts {
                terms.push(sub(part)?);
            }
            let name = match op {
                BinaryOp::Plus => "$add",
                BinaryOp::Multiply => "$multiply",
                _ => "$concat",
            };
            Bson::Document(doc! { name: terms })
        }
        ExprKind::Binary { op, left, right } => {
            let (l, r) = (sub(left)?, sub(right)?);
            match op {
                BinaryOp::And | BinaryOp::Or => return Err(no("AND/OR outside a chain")),
                BinaryOp::Eq
                | BinaryOp::NotEq
                | BinaryOp::Lt
                | BinaryOp::LtEq
                | BinaryOp::Gt
                | BinaryOp::GtEq => {
                    let name = match op {
                        BinaryOp::Eq => "$eq",
                        BinaryOp::NotEq => "$ne",
                        BinaryOp::Lt => "$lt",
                        BinaryOp::LtEq => "$lte",
                        BinaryOp::Gt => "$gt",
                        _ => "$gte",
                    };
                    let_bound(vec![l, r], |v| {
                        null_if_any_null(
                            v,
                            Bson::Document(doc! { name: [v[0].clone(), v[1].clone()] }),
                        )
                    })
                }
                BinaryOp::Minus => Bson::Document(doc! { "$subtract": [l, r] }),
                BinaryOp::Divide if left.ty == LogicalType::Int && right.ty == LogicalType::Int => {
                    Bson::Document(doc! { "$trunc": [ { "$divide": [l, r] }, 0 ] })
                }
                BinaryOp::Divide => Bson::Document(doc! { "$divide": [l, r] }),
                BinaryOp::Modulo => Bson::Document(doc! { "$mod": [l, r] }),
                BinaryOp::Plus | BinaryOp::Multiply | BinaryOp::Concat => {
                    return Err(no("an operator chain outside a chain"));
                }
            }
        }
        ExprKind::IsNull { expr, negated } => {
            let test = is_null(sub(expr)?);
            if *negated {
                Bson::Document(doc! { "$not": [test] })
            } else {
                test
            }
        }
        ExprKind::InList {
            expr,
            list,
            negated,
        } => {
            let x = sub(expr)?;
            let mut items = Vec::new();
            for i in list {
                items.push(sub(i)?);
            }
            let_bound(vec![x], |x| {
                let test = Bson::Document(doc! { "$in": [x[0].clone(), items] });
                let test = if *negated {
                    Bson::Document(doc! { "$not": [test] })
                } else {
                    test
                };
                null_if_any_null(x, test)
            })
        }
        ExprKind::Between {
            expr,
            low,
            high,
            negated,
        } => {
            let operands = vec![sub(expr)?, sub(low)?, sub(high)?];
            let_bound(operands, |v| {
                let (x, lo, hi) = (&v[0], &v[1], &v[2]);
                let test = Bson::Document(
                    doc! { "$and": [ { "$gte": [x.clone(), lo.clone()] }, { "$lte": [x.clone(), hi.clone()] } ] },
                );
                let test = if *negated {
                    Bson::Document(doc! { "$not": [test] })
                } else {
                    test
                };
                null_if_any_null(v, test)
            })
        }
        ExprKind::Like {
            expr,
            pattern,
            negated,
        } => {
            let Some(Value::Text(p)) = cx.constant(pattern) else {
                return Err(no("LIKE with a computed pattern on MongoDB"));
            };
            let regex = like_to_regex(&p)?;
            let_bound(vec![sub(expr)?], |x| {
                let test = Bson::Document(
                    doc! { "$regexMatch": { "input": x[0].clone(), "regex": regex, "options": "s" } },
                );
                let test = if *negated {
                    Bson::Document(doc! { "$not": [test] })
                } else {
                    test
                };
                null_if_any_null(x, test)
            })
        }
        ExprKind::Func { func, args } => {
            let mut a = Vec::new();
            for x in args {
                a.push(sub(x)?);
            }
            let first = a.first().cloned().unwrap_or(Bson::Null);
            let null_or = |name: &str, first: Bson| {
                let name = name.to_owned();
                let_bound(vec![first], move |x| {
                    let mut call = Document::new();
                    call.insert(name, x[0].clone());
                    Bson::Document(doc! { "$cond": [is_null(x[0].clone()), Bson::Null, call] })
                })
            };
            match func {
                ScalarFunc::Lower => null_or("$toLower", first),
                ScalarFunc::Upper => null_or("$toUpper", first),
                ScalarFunc::Length => null_or("$strLenCP", first),
                ScalarFunc::Abs => Bson::Document(doc! { "$abs": first }),
                ScalarFunc::Coalesce => {
                    let mut out = a.pop().unwrap_or(Bson::Null);
                    while let Some(prev) = a.pop() {
                        out = Bson::Document(doc! { "$ifNull": [prev, out] });
                    }
                    out
                }
            }
        }
        ExprKind::Agg { .. } => return Err(no("an aggregate outside GROUP BY context")),
    })
}

/// A LIKE pattern as an anchored regular expression: `%` -> `.*`, `_` -> `.`, `\x` -> literal x,
/// every other regex metacharacter escaped.
pub fn like_to_regex(pattern: &str) -> R<String> {
    let mut out = String::from("^");
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '%' => out.push_str(".*"),
            '_' => out.push('.'),
            '\\' => match chars.next() {
                Some(n) => push_escaped(&mut out, n),
                // The binder refuses such patterns (DATA_ERROR, as PostgreSQL does).
                None => return Err(no("a LIKE pattern ending in the escape character")),
            },
            other => push_escaped(&mut out, other),
        }
    }
    // `\z`, not `$`: `$` also matches before a final newline ('abc' LIKE must not match
    // 'abc\n'); the `s` option lets `.` match newlines.
    out.push_str("\\z");
    Ok(out)
}

fn push_escaped(out: &mut String, c: char) {
    if ".^$*+?()[]{}|\\/".contains(c) {
        out.push('\\');
    }
    out.push(c);
}

/// Aggregates of a SELECT, each computed once in `$group` as `aN` (with `aNn`, the count of
/// non-NULL inputs, where SQL needs NULL for an empty input).
struct Aggregates<'e> {
    list: Vec<&'e Expr>,
}

impl<'e> Aggregates<'e> {
    fn collect(s: &'e Select) -> Aggregates<'e> {
        let mut list: Vec<&Expr> = Vec::new();
        let mut visit = |e: &'e Expr| {
            fn walk<'x>(e: &'x Expr, list: &mut Vec<&'x Expr>) {
                if let ExprKind::Agg { .. } = e.kind {
                    if !list.contains(&e) {
                        list.push(e);
                    }
                    return;
                }
                match &e.kind {
                    ExprKind::Unary { expr, .. } | ExprKind::IsNull { expr, .. } => {
                        walk(expr, list)
                    }
                    ExprKind::Binary { left, right, .. } => {
                        walk(left, list);
                        walk(right, list);
                    }
                    ExprKind::InList { expr, list: l, .. } => {
                        walk(expr, list);
                        l.iter().for_each(|x| walk(x, list));
                    }
                    ExprKind::Between {
                        expr, low, high, ..
                    } => {
                        walk(expr, list);
                        walk(low, list);
                        walk(high, list);
                    }
                    ExprKind::Like { expr, pattern, .. } => {
                        walk(expr, list);
                        walk(pattern, list);
                    }
                    ExprKind::Func { args, .. } => args.iter().for_each(|x| walk(x, list)),
                    _ => {}
                }
            }
            walk(e, &mut list);
        };
        for c in &s.projection {
            visit(&c.expr);
        }
        if let Some(h) = &s.having {
            visit(h);
        }
        for o in &s.order_by {
            visit(&o.expr);
        }
        Aggregates { list }
    }

    fn index(&self, e: &Expr) -> Option<usize> {
        self.list.iter().position(|x| *x == e)
    }
}

/// A grouped query's output side: group keys live at `$_id.gK`, aggregates at `$aN`.
struct Grouped<'c, 'e> {
    cx: &'c Cx<'c>,
    keys: &'e [Expr],
    aggs: &'c Aggregates<'e>,
}

impl Grouped<'_, '_> {
    fn expr(&self, e: &Expr) -> R<Bson> {
        if let Some(k) = self.keys.iter().position(|g| g == e) {
            return Ok(Bson::String(format!("$_id.g{k}")));
        }
        if let ExprKind::Agg { func, distinct, .. } = &e.kind {
            let n = self
                .aggs
                .index(e)
                .ok_or_else(|| no("aggregate not collected"))?;
            let a = format!("$a{n}");
            return Ok(match (func, distinct) {
                (AggFunc::Count, false) => Bson::String(a),
                (AggFunc::Count, true) => Bson::Document(
                    doc! { "$size": { "$filter": { "input": a, "cond": { "$ne": ["$$this", Bson::Null] } } } },
                ),
                (AggFunc::Sum, true) => Bson::Document(
                    doc! { "$cond": [ { "$eq": [ { "$size": { "$filter": { "input": a.clone(), "cond": { "$ne": ["$$this", Bson::Null] } } } }, 0 ] }, Bson::Null, { "$sum": a } ] },
                ),
                (AggFunc::Avg, true) => Bson::Document(doc! { "$avg": a }),
                (AggFunc::Sum, false) => Bson::Document(
                    doc! { "$cond": [ { "$eq": [format!("$a{n}n"), 0] }, Bson::Null, a ] },
                ),
                (AggFunc::Avg, false) | (AggFunc::Min | AggFunc::Max, _) => Bson::String(a),
            });
        }
        match &e.kind {
            ExprKind::Column { .. } => Err(no("a column outside GROUP BY")),
            _ => composite(e, &|x| self.expr(x), self.cx),
        }
    }
}

/// A SELECT on one collection as an aggregation pipeline.
fn select(s: &Select, cx: &Cx<'_>) -> R<Command> {
    let mut pipeline = Vec::new();
    if cx.prefixed {
        pipeline.push(doc! { "$replaceRoot": { "newRoot": { "t0": "$$ROOT" } } });
        for (i, join) in s.joins.iter().enumerate() {
            let joined = i + 1;
            let conjuncts = join.on.conjuncts();
            // The equality that drives the lookup: a column of the joined table = an earlier one.
            let edge = conjuncts
                .iter()
                .enumerate()
                .find_map(|(k, c)| match &c.kind {
                    ExprKind::Binary {
                        op: BinaryOp::Eq,
                        left,
                        right,
                    } => match (&left.kind, &right.kind) {
                        (
                            ExprKind::Column {
                                table: a,
                                column: ca,
                            },
                            ExprKind::Column {
                                table: b,
                                column: cb,
                            },
                        ) => {
                            if *a == joined && *b < joined {
                                Some((k, (*b, *cb), *ca))
                            } else if *b == joined && *a < joined {
                                Some((k, (*a, *ca), *cb))
                            } else {
                                None
                            }
                        }
                        _ => None,
                    },
                    _ => None,
                });
            let Some((edge_at, (local_table, local_column), foreign_column)) = edge else {
                return Err(no(
                    "a join without an equality between the joined table and an earlier one",
                ));
            };
            let rest: Vec<&Expr> = conjuncts
                .iter()
                .enumerate()
                .filter(|(k, _)| *k != edge_at)
                .map(|(_, c)| *c)
                .collect();
            let left = join.kind == switchyard_core::ir::JoinKind::Left;
            if left && !rest.is_empty() {
                return Err(no(
                    "LEFT JOIN with conditions beyond one equality on MongoDB",
                ));
            }
            let local = cx.field(local_table, local_column);
            if !left {
                pipeline.push(doc! { "$match": { local.clone(): { "$ne": Bson::Null } } });
            }
            let foreign = cx.placements[joined].physical_columns[foreign_column].clone();
            pipeline.push(doc! { "$lookup": {
                "from": cx.placements[joined].physical_name.clone(),
                "localField": local,
                "foreignField": foreign,
                "as": format!("t{joined}"),
            } });
            pipeline.push(doc! { "$unwind": { "path": format!("$t{joined}"), "preserveNullAndEmptyArrays": left } });
            for c in rest {
                pipeline.push(doc! { "$match": { "$expr": { "$eq": [cx.expr(c)?, true] } } });
            }
        }
    }
    let filter = cx.filter_document(s.filter.as_ref())?;
    if !filter.is_empty() {
        pipeline.push(doc! { "$match": filter });
    }
    let aggs = Aggregates::collect(s);
    let grouped = s.is_aggregate();
    let distinct_keys: Vec<Expr> = if s.distinct && !grouped {
        s.projection.iter().map(|c| c.expr.clone()).collect()
    } else {
        Vec::new()
    };
    let keys: &[Expr] = if grouped { &s.group_by } else { &distinct_keys };
    // Output expressions and sort keys, in terms of the stage they are computed after.
    let out_expr = |e: &Expr| -> R<Bson> {
        if grouped || s.distinct {
            Grouped {
                cx,
                keys,
                aggs: &aggs,
            }
            .expr(e)
        } else {
            cx.expr(e)
        }
    };
    if grouped || s.distinct {
        let mut id = Document::new();
        for (k, g) in keys.iter().enumerate() {
            id.insert(format!("g{k}"), cx.expr(g)?);
        }
        let mut group =
            doc! { "_id": if keys.is_empty() { Bson::Null } else { Bson::Document(id) } };
        for (n, a) in aggs.list.iter().enumerate() {
            let ExprKind::Agg {
                func,
                arg,
                distinct,
            } = &a.kind
            else {
                continue;
            };
            let arg = arg.as_deref().map(|x| cx.expr(x)).transpose()?;
            let non_null = |x: &Bson| Bson::Document(doc! { "$cond": [is_null(x.clone()), 0, 1] });
            let acc = match (func, &arg, distinct) {
                (AggFunc::Count, None, _) => doc! { "$sum": 1 },
                // DISTINCT changes nothing for MIN/MAX.
                (AggFunc::Min, Some(x), _) => doc! { "$min": x.clone() },
                (AggFunc::Max, Some(x), _) => doc! { "$max": x.clone() },
                (_, Some(x), true) => doc! { "$addToSet": x.clone() },
                (AggFunc::Count, Some(x), false) => doc! { "$sum": non_null(x) },
                (AggFunc::Sum, Some(x), false) => {
                    group.insert(format!("a{n}n"), doc! { "$sum": non_null(x) });
                    doc! { "$sum": x.clone() }
                }
                (AggFunc::Avg, Some(x), false) => doc! { "$avg": x.clone() },
                (_, None, _) => doc! { "$sum": 1 },
            };
            group.insert(format!("a{n}"), acc);
        }
        pipeline.push(doc! { "$group": group });
        if let Some(h) = &s.having {
            pipeline.push(doc! { "$match": { "$expr": { "$eq": [out_expr(h)?, true] } } });
        }
    }
    if !s.order_by.is_empty() {
        let mut add = Document::new();
        let mut sort = Document::new();
        for (i, o) in s.order_by.iter().enumerate() {
            let key = out_expr(&o.expr)?;
            add.insert(format!("_s{i}n"), is_null(key.clone()));
            add.insert(format!("_s{i}"), key);
            sort.insert(format!("_s{i}n"), if o.nulls_first { -1 } else { 1 });
            sort.insert(format!("_s{i}"), if o.desc { -1 } else { 1 });
        }
        pipeline.push(doc! { "$addFields": add });
        pipeline.push(doc! { "$sort": sort });
    }
    if let Some(o) = s.offset.filter(|o| *o > 0) {
        pipeline.push(doc! { "$skip": i64::try_from(o).unwrap_or(i64::MAX) });
    }
    if let Some(l) = s.limit {
        if l == 0 {
            pipeline.push(doc! { "$limit": 1 });
            pipeline.push(doc! { "$match": { "$expr": false } });
        } else {
            pipeline.push(doc! { "$limit": i64::try_from(l).unwrap_or(i64::MAX) });
        }
    }
    let mut project = doc! { "_id": 0 };
    for (i, c) in s.projection.iter().enumerate() {
        project.insert(format!("c{i}"), out_expr(&c.expr)?);
    }
    pipeline.push(doc! { "$project": project });
    Ok(Command::Aggregate {
        collection: cx.placements[0].physical_name.clone(),
        pipeline,
        global_aggregate: grouped && s.group_by.is_empty(),
    })
}
