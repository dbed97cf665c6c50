//! The Redis backend (`redis` crate, tokio, connection manager).
//!
//! Rows live under keys built from the placement's `key_pattern` over primary-key columns, in one
//! of four layouts (`mode`):
//! - `hash`: one hash per row, one field per non-key column (NULL = field absent);
//! - `json`: the non-key columns as one JSON object string per key;
//! - `counter`: one integer per key (the table's single non-key column);
//! - `hash-per-partition`: one hash per partition key (the pattern's columns), one field per
//!   clustering key (the remaining primary-key column), the value column(s) as the field value.
//!
//! Reads must pin the key (equality or IN on the pattern's columns): lookups are pipelined
//! (`MGET`, pipelined `HGETALL`), never one round trip per key. A read without the key is refused
//! with `NEEDS_KEY`. Writes set the placement's TTL in the same `MULTI`/`EXEC`. Values are
//! encoded as text that parses back to the same logical value.
//!
//! Invariant: the only crate that knows the `redis` driver.

mod layout;
mod plan;
mod update;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::ConnectionManager;
use switchyard_backend::{
    Backend, BackendError, Capabilities, ChangeEvent, Fragment, NativeStatement, VersionedCache,
    within,
};
use switchyard_config::{BackendConfig, RedisMode};
use switchyard_core::exec::eval::{Scope, eval, is_true};
use switchyard_core::ir::{ExprKind, Statement};
use switchyard_core::{BackendKind, LogicalType, ResultSet, Table, Value};

use layout::{Layout, Segment, json_of, parse_pattern};
pub use layout::{decode, encode};
use plan::Step;

/// A Redis backend.
pub struct RedisBackend {
    name: String,
    conn: ConnectionManager,
    prefix: String,
    timeout: Duration,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("name", &self.name)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisBackend {
    /// A lazily connecting backend.
    pub fn connect_lazy(
        name: &str,
        config: &BackendConfig,
        default_timeout_ms: u64,
    ) -> Result<Self, BackendError> {
        let unavailable = |e: redis::RedisError| BackendError::Unavailable {
            backend: name.to_owned(),
            source: Box::new(e),
        };
        let client = redis::Client::open(config.url.as_str()).map_err(unavailable)?;
        let timeout =
            Duration::from_millis(config.statement_timeout_ms.unwrap_or(default_timeout_ms));
        let manager_config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(config.connect_timeout_ms)))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1);
        let conn = client
            .get_connection_manager_lazy(manager_config)
            .map_err(unavailable)?;
        Ok(Self {
            name: name.to_owned(),
            conn,
            prefix: config.key_prefix.clone().unwrap_or_default(),
            timeout,
        })
    }

    fn unsupported(&self, what: impl Into<String>) -> BackendError {
        BackendError::Unsupported {
            backend: self.name.clone(),
            what: what.into(),
        }
    }

    fn map_err(&self, e: redis::RedisError) -> BackendError {
        if e.to_string().contains("would overflow") {
            return BackendError::Data {
                backend: self.name.clone(),
                message: "bigint out of range".to_owned(),
            };
        }
        if e.is_io_error()
            || e.is_connection_refusal()
            || e.is_timeout()
            || e.is_connection_dropped()
        {
            BackendError::Unavailable {
                backend: self.name.clone(),
                source: Box::new(e),
            }
        } else {
            BackendError::Rejected {
                backend: self.name.clone(),
                message: e.to_string(),
            }
        }
    }

    /// A failed write: a refused connection never sent it (unavailable); a connection that
    /// failed or timed out afterwards may have delivered it (interrupted).
    fn map_write_err(&self, e: redis::RedisError) -> BackendError {
        if !e.is_connection_refusal()
            && (e.is_io_error() || e.is_timeout() || e.is_connection_dropped())
        {
            return BackendError::Interrupted {
                backend: self.name.clone(),
                source: Box::new(e),
            };
        }
        self.map_err(e)
    }

    fn layout<'a>(&self, fragment: Fragment<'a>) -> Result<Layout<'a>, BackendError> {
        let statement = &fragment.query.statement;
        let name = statement
            .access_tables()
            .first()
            .map(|t| (*t).to_owned())
            .unwrap_or_default();
        let table = fragment
            .catalog
            .table(&name)
            .ok_or_else(|| self.unsupported(format!("unknown table `{name}`")))?;
        self.layout_of(table)
    }

    /// How `table` sits in this store.
    fn layout_of<'a>(&self, table: &'a Table) -> Result<Layout<'a>, BackendError> {
        let name = &table.name;
        let placement = table
            .placement_on(&self.name)
            .ok_or_else(|| self.unsupported(format!("table `{name}` has no placement here")))?;
        let mode = placement.mode.unwrap_or(RedisMode::Hash);
        let pattern = placement.key_pattern.clone().unwrap_or_else(|| {
            let keys: Vec<String> = table
                .primary_key
                .iter()
                .map(|k| format!("{{{}}}", table.columns[*k].name))
                .collect();
            format!("{}:{}", table.name, keys.join(":"))
        });
        let segments = parse_pattern(&pattern, table).map_err(|e| self.unsupported(e))?;
        let key_columns: Vec<usize> = segments
            .iter()
            .filter_map(|s| match s {
                Segment::Column(c) => Some(*c),
                Segment::Literal(_) => None,
            })
            .collect();
        let clustering: Vec<usize> = table
            .primary_key
            .iter()
            .copied()
            .filter(|k| !key_columns.contains(k))
            .collect();
        let values: Vec<usize> = (0..table.columns.len())
            .filter(|c| !key_columns.contains(c) && !clustering.contains(c))
            .collect();
        match mode {
            RedisMode::HashPerPartition if clustering.len() != 1 => {
                return Err(self.unsupported(format!("hash-per-partition table `{name}` needs exactly one primary-key column outside the key pattern")));
            }
            RedisMode::Counter
                if values.len() != 1
                    || !matches!(table.columns[values[0]].ty, LogicalType::Int) =>
            {
                return Err(self.unsupported(format!(
                    "counter table `{name}` needs exactly one int column besides the key"
                )));
            }
            _ if mode != RedisMode::HashPerPartition && !clustering.is_empty() => {
                return Err(self.unsupported(format!(
                    "the key pattern of `{name}` must name every primary-key column"
                )));
            }
            _ => {}
        }
        Ok(Layout {
            table,
            placement,
            mode,
            reserved: Layout::reserved_of(&segments),
            segments,
            key_columns,
            clustering,
            values,
            prefix: self.prefix.clone(),
        })
    }
}

/// Keys asked per SCAN round trip.
const SCAN_COUNT: u64 = 500;

/// Inserts a hash row unless its key exists: returns 1 when written, 0 when present.
/// KEYS[1] the key; ARGV[1] the TTL in seconds (0: none); ARGV[2..] field, value pairs.
const INSERT_HASH_SCRIPT: &str = "if redis.call('HSETNX', KEYS[1], '__row', '1') == 0 then return 0 end \
if #ARGV > 1 then redis.call('HSET', KEYS[1], unpack(ARGV, 2)) end \
if tonumber(ARGV[1]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end \
return 1";

fn text_of(v: &redis::Value) -> Option<String> {
    match v {
        redis::Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        redis::Value::SimpleString(s) => Some(s.clone()),
        redis::Value::Int(i) => Some(i.to_string()),
        redis::Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

/// HGETALL answers as field -> value.
fn pairs(v: &redis::Value) -> BTreeMap<String, String> {
    match v {
        redis::Value::Array(items) => items
            .chunks(2)
            .filter_map(|kv| match kv {
                [k, v] => Some((text_of(k)?, text_of(v)?)),
                _ => None,
            })
            .collect(),
        redis::Value::Map(items) => items
            .iter()
            .filter_map(|(k, v)| Some((text_of(k)?, text_of(v)?)))
            .collect(),
        _ => BTreeMap::new(),
    }
}

fn describe(cmd: &redis::Cmd) -> String {
    cmd.args_iter()
        .map(|a| match a {
            redis::Arg::Simple(b) => String::from_utf8_lossy(b).into_owned(),
            _ => "<cursor>".to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

impl RedisBackend {
    /// The commands a step sends (reads: one pipeline; writes: one MULTI/EXEC).
    fn commands(&self, layout: &Layout<'_>, step: &Step) -> Vec<redis::Cmd> {
        let mut out = Vec::new();
        let set_ttl = |out: &mut Vec<redis::Cmd>, key: &str| {
            if let Some(ttl) = layout.ttl() {
                out.push(redis::cmd("EXPIRE").arg(key).arg(ttl).to_owned());
            }
        };
        match step {
            Step::Scan { .. } => {
                out.push(
                    redis::cmd("SCAN")
                        .arg(0)
                        .arg("MATCH")
                        .arg(layout.glob())
                        .arg("COUNT")
                        .arg(SCAN_COUNT)
                        .to_owned(),
                );
            }
            Step::Read {
                partitions, fields, ..
            } => match layout.mode {
                RedisMode::Json | RedisMode::Counter => {
                    let mut mget = redis::cmd("MGET");
                    for p in partitions {
                        mget.arg(layout.key(p));
                    }
                    out.push(mget);
                }
                RedisMode::Hash => {
                    for p in partitions {
                        out.push(redis::cmd("HGETALL").arg(layout.key(p)).to_owned());
                    }
                }
                RedisMode::HashPerPartition => {
                    for p in partitions {
                        match fields {
                            None => out.push(redis::cmd("HGETALL").arg(layout.key(p)).to_owned()),
                            Some(fs) => {
                                let mut hmget = redis::cmd("HMGET");
                                hmget.arg(layout.key(p));
                                for f in fs {
                                    hmget.arg(encode(&f[0]).unwrap_or_default());
                                }
                                out.push(hmget);
                            }
                        }
                    }
                }
            },
            Step::Insert { rows, on_conflict } => {
                for row in rows {
                    let key = layout.key_of_row(row);
                    match (layout.mode, on_conflict) {
                        (RedisMode::HashPerPartition, Some(true)) => {
                            let n = layout
                                .values
                                .first()
                                .and_then(|v| match row[*v] {
                                    Value::Int(i) => Some(i),
                                    _ => None,
                                })
                                .unwrap_or(0);
                            out.push(
                                redis::cmd("HINCRBY")
                                    .arg(&key)
                                    .arg(layout.field_of_row(row))
                                    .arg(n)
                                    .to_owned(),
                            );
                        }
                        (RedisMode::HashPerPartition, _) => {
                            out.push(
                                redis::cmd("HSETNX")
                                    .arg(&key)
                                    .arg(layout.field_of_row(row))
                                    .arg(layout.packed_value(row))
                                    .to_owned(),
                            );
                        }
                        (RedisMode::Counter, Some(true)) => {
                            let n = match row[layout.values[0]] {
                                Value::Int(i) => i,
                                _ => 0,
                            };
                            out.push(redis::cmd("INCRBY").arg(&key).arg(n).to_owned());
                        }
                        (RedisMode::Counter | RedisMode::Json, _) => {
                            // SET NX [EX ttl]: insert unless present, TTL set atomically with it.
                            let value = if layout.mode == RedisMode::Json {
                                json_of(layout, row, &layout.values)
                            } else {
                                layout.packed_value(row)
                            };
                            let mut set = redis::cmd("SET");
                            set.arg(&key).arg(value).arg("NX");
                            if let Some(ttl) = layout.ttl() {
                                set.arg("EX").arg(ttl);
                            }
                            out.push(set);
                            continue;
                        }
                        (RedisMode::Hash, _) => {
                            // One script: a marker field makes "insert unless present" atomic, and
                            // the row's fields and TTL are written only when it is new.
                            let mut eval = redis::cmd("EVAL");
                            eval.arg(INSERT_HASH_SCRIPT)
                                .arg(1)
                                .arg(&key)
                                .arg(layout.ttl().unwrap_or(0));
                            for c in &layout.values {
                                if let Some(v) = encode(&row[*c]) {
                                    eval.arg(&layout.placement.physical_columns[*c]).arg(v);
                                }
                            }
                            out.push(eval);
                            continue;
                        }
                    }
                    set_ttl(&mut out, &key);
                }
            }
            Step::Update {
                partitions,
                fields,
                changes,
            } => out.extend(self.update_commands(layout, partitions, fields.as_ref(), changes)),
            Step::Delete { partitions, fields } => {
                for p in partitions {
                    match fields {
                        Some(fs) => {
                            let mut hdel = redis::cmd("HDEL");
                            hdel.arg(layout.key(p));
                            for f in fs {
                                hdel.arg(encode(&f[0]).unwrap_or_default());
                            }
                            out.push(hdel);
                        }
                        None => {
                            // A partition holds many rows: count them, in the same MULTI.
                            if layout.mode == RedisMode::HashPerPartition {
                                out.push(redis::cmd("HLEN").arg(layout.key(p)).to_owned());
                            }
                            out.push(redis::cmd("DEL").arg(layout.key(p)).to_owned())
                        }
                    }
                }
            }
        }
        out
    }

    /// Every key of the table, by SCAN, decoded into key tuples; fails past `max_rows` keys.
    async fn scan_keys(
        &self,
        layout: &Layout<'_>,
        max_rows: u64,
    ) -> Result<Vec<Vec<Value>>, BackendError> {
        let mut conn = self.conn.clone();
        let mut cursor: u64 = 0;
        let mut seen = std::collections::BTreeSet::new();
        let too_large = || BackendError::TooLarge {
            backend: self.name.clone(),
            what: format!("a scan of `{}`", layout.table.name),
            limit: Some(max_rows),
            unit: " rows",
        };
        loop {
            let mut cmd = redis::cmd("SCAN");
            cmd.arg(cursor)
                .arg("MATCH")
                .arg(layout.glob())
                .arg("COUNT")
                .arg(SCAN_COUNT);
            let (next, keys): (u64, Vec<String>) = cmd
                .query_async(&mut conn)
                .await
                .map_err(|e| self.map_err(e))?;
            seen.extend(keys);
            if seen.len() as u64 > max_rows && layout.mode != RedisMode::HashPerPartition {
                return Err(too_large());
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        Ok(seen.iter().filter_map(|k| layout.parse_key(k)).collect())
    }

    async fn run(
        &self,
        layout: &Layout<'_>,
        step: &Step,
        fragment: Fragment<'_>,
    ) -> Result<ResultSet, BackendError> {
        if let Step::Scan { max_rows } = step {
            let partitions = self.scan_keys(layout, *max_rows).await?;
            let read = Step::Read {
                partitions,
                fields: None,
                max_rows: Some(*max_rows),
            };
            return Box::pin(self.run(layout, &read, fragment)).await;
        }
        let columns = fragment.query.statement.result_columns();
        // No key to read (contradictory key predicates, an empty scan): no
        // round trip, and no `MGET` without arguments.
        if let Step::Read {
            partitions, fields, ..
        }
        | Step::Update {
            partitions, fields, ..
        }
        | Step::Delete { partitions, fields } = step
            && (partitions.is_empty() || fields.as_ref().is_some_and(Vec::is_empty))
        {
            return Ok(ResultSet {
                columns,
                rows: Vec::new(),
                rows_affected: (!matches!(step, Step::Read { .. })).then_some(0),
            });
        }
        if let Step::Update {
            partitions,
            fields,
            changes,
        } = step
        {
            let written = self
                .update(layout, partitions, fields.as_ref(), changes)
                .await?;
            return Ok(ResultSet {
                columns,
                rows: Vec::new(),
                rows_affected: Some(written),
            });
        }
        let mut conn = self.conn.clone();
        let commands = self.commands(layout, step);
        let mut pipe = redis::pipe();
        if !matches!(step, Step::Read { .. }) {
            pipe.atomic();
        }
        for c in &commands {
            pipe.add_command(c.clone());
        }
        let is_read = matches!(step, Step::Read { .. });
        let replies: Vec<redis::Value> = pipe.query_async(&mut conn).await.map_err(|e| {
            if is_read {
                self.map_err(e)
            } else {
                self.map_write_err(e)
            }
        })?;
        let mut out = ResultSet {
            columns,
            rows: Vec::new(),
            rows_affected: None,
        };
        match step {
            Step::Scan { .. } => {}
            Step::Read {
                partitions,
                fields,
                max_rows,
            } => {
                let decode_err = |column: &str, message: String| BackendError::Decode {
                    backend: self.name.clone(),
                    column: column.to_owned(),
                    message,
                };
                let mut rows: Vec<Vec<Value>> = Vec::new();
                let width = layout.table.columns.len();
                let with_key = |tuple: &[Value]| {
                    let mut row = vec![Value::Null; width];
                    for (c, v) in layout.key_columns.iter().zip(tuple) {
                        row[*c] = v.clone();
                    }
                    row
                };
                // A json row is always an object; a counter or a hash-per-partition field with
                // one value column holds the bare value.
                let fill_values = |row: &mut Vec<Value>, text: &str| -> Result<(), BackendError> {
                    match layout.values.as_slice() {
                        [one] if layout.mode != RedisMode::Json => {
                            row[*one] = decode(text, layout.table.columns[*one].ty)
                                .map_err(|m| decode_err(&layout.table.columns[*one].name, m))?
                        }
                        many => {
                            let object: serde_json::Value = serde_json::from_str(text)
                                .map_err(|e| decode_err(&layout.table.name, e.to_string()))?;
                            for c in many {
                                let col = &layout.table.columns[*c];
                                let field = object
                                    .get(&layout.placement.physical_columns[*c])
                                    .cloned()
                                    .unwrap_or(serde_json::Value::Null);
                                row[*c] = Value::from_param(&field, col.ty)
                                    .map_err(|m| decode_err(&col.name, m))?;
                            }
                        }
                    }
                    Ok(())
                };
                match layout.mode {
                    RedisMode::Json | RedisMode::Counter => {
                        let values = match replies.first() {
                            Some(redis::Value::Array(v)) => v.clone(),
                            _ => Vec::new(),
                        };
                        for (tuple, v) in partitions.iter().zip(values) {
                            if let Some(text) = text_of(&v) {
                                let mut row = with_key(tuple);
                                fill_values(&mut row, &text)?;
                                rows.push(row);
                            }
                        }
                    }
                    RedisMode::Hash => {
                        for (tuple, reply) in partitions.iter().zip(&replies) {
                            let map = pairs(reply);
                            if map.is_empty() {
                                continue;
                            }
                            let mut row = with_key(tuple);
                            for c in &layout.values {
                                let col = &layout.table.columns[*c];
                                if let Some(text) = map.get(&layout.placement.physical_columns[*c])
                                {
                                    row[*c] = decode(text, col.ty)
                                        .map_err(|m| decode_err(&col.name, m))?;
                                }
                            }
                            rows.push(row);
                        }
                    }
                    RedisMode::HashPerPartition => {
                        let cl = layout.clustering[0];
                        let cl_ty = layout.table.columns[cl].ty;
                        for (tuple, reply) in partitions.iter().zip(&replies) {
                            let entries: Vec<(String, String)> = match fields {
                                None => pairs(reply).into_iter().collect(),
                                Some(fs) => match reply {
                                    redis::Value::Array(vals) => fs
                                        .iter()
                                        .zip(vals)
                                        .filter_map(|(f, v)| Some((encode(&f[0])?, text_of(v)?)))
                                        .collect(),
                                    _ => Vec::new(),
                                },
                            };
                            for (field, value) in entries {
                                let mut row = with_key(tuple);
                                row[cl] = decode(&field, cl_ty)
                                    .map_err(|m| decode_err(&layout.table.columns[cl].name, m))?;
                                fill_values(&mut row, &value)?;
                                rows.push(row);
                            }
                        }
                    }
                }
                if let Some(max_rows) = max_rows
                    && rows.len() as u64 > *max_rows
                {
                    return Err(BackendError::TooLarge {
                        backend: self.name.clone(),
                        what: format!("a scan of `{}`", layout.table.name),
                        limit: Some(*max_rows),
                        unit: " rows",
                    });
                }
                let Statement::Select(s) = &fragment.query.statement else {
                    return Ok(out);
                };
                // The key predicates over a scan's rows: a partial key (one column of a composite
                // key, the clustering key alone) pins nothing, so every row was read.
                if let (Some(filter), Some(_)) = (&s.filter, max_rows) {
                    let mut kept = Vec::with_capacity(rows.len());
                    for row in rows {
                        let scope = Scope {
                            row: &row,
                            offsets: &[0],
                            params: &fragment.query.params,
                            group: None,
                        };
                        let holds = eval(filter, &scope).map_err(|e| BackendError::Decode {
                            backend: self.name.clone(),
                            column: layout.table.name.clone(),
                            message: e.to_string(),
                        })?;
                        if is_true(&holds) {
                            kept.push(row);
                        }
                    }
                    rows = kept;
                }
                let skip = usize::try_from(s.offset.unwrap_or(0)).unwrap_or(usize::MAX);
                let take = s
                    .limit
                    .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
                for row in rows.into_iter().skip(skip).take(take) {
                    let projected = s
                        .projection
                        .iter()
                        .map(|c| match c.expr.kind {
                            ExprKind::Column { column, .. } => row[column].clone(),
                            _ => Value::Null,
                        })
                        .collect();
                    out.rows.push(projected);
                }
            }
            Step::Insert { rows, on_conflict } => {
                // Per row: the reply of its first command says whether it was new.
                let per_row = commands.len() / rows.len().max(1);
                let mut inserted = 0u64;
                for (i, _) in rows.iter().enumerate() {
                    let new = match replies.get(i * per_row) {
                        Some(redis::Value::Int(n)) => *n != 0 || *on_conflict == Some(true),
                        Some(redis::Value::Okay) | Some(redis::Value::SimpleString(_)) => true,
                        Some(redis::Value::Nil) => false,
                        _ => true,
                    };
                    if new {
                        inserted += 1;
                    } else if *on_conflict == Some(false) {
                        return Err(BackendError::Constraint {
                            backend: self.name.clone(),
                            message: format!(
                                "a row of `{}` with this key exists",
                                layout.table.name
                            ),
                        });
                    }
                }
                out.rows_affected = Some(inserted);
            }
            Step::Update { .. } => {}
            Step::Delete { fields, .. } => {
                // A whole partition: its HLEN replies (every other one) are the rows deleted.
                let whole_partitions =
                    layout.mode == RedisMode::HashPerPartition && fields.is_none();
                out.rows_affected = Some(
                    replies
                        .iter()
                        .step_by(if whole_partitions { 2 } else { 1 })
                        .map(|r| {
                            if let redis::Value::Int(n) = r {
                                *n as u64
                            } else {
                                0
                            }
                        })
                        .sum(),
                );
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl Backend for RedisBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Redis
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            full_sql: false,
            joins: false,
            aggregates: false,
            sort_limit: false,
            needs_key: true,
            transactions: false,
            postgres_sql: false,
        }
    }

    fn explain(&self, fragment: Fragment<'_>) -> Result<NativeStatement, BackendError> {
        let (layout, steps) = self.plan(fragment)?;
        let mut text = Vec::new();
        for step in &steps {
            let commands = self.commands(&layout, step);
            let wrap = matches!(
                step,
                Step::Insert { .. } | Step::Update { .. } | Step::Delete { .. }
            );
            if wrap {
                text.push("MULTI".to_owned());
            }
            text.extend(commands.iter().map(describe));
            if wrap {
                text.push("EXEC".to_owned());
            }
        }
        Ok(NativeStatement {
            language: "redis",
            text: text.join("; "),
            params: Vec::new(),
        })
    }

    async fn execute(&self, fragment: Fragment<'_>) -> Result<ResultSet, BackendError> {
        let (layout, steps) = self.plan(fragment)?;
        let Some(step) = steps.first() else {
            return Ok(ResultSet::default());
        };
        within(&self.name, self.timeout, self.run(&layout, step, fragment)).await
    }

    async fn health(&self) -> Result<(), BackendError> {
        let mut conn = self.conn.clone();
        let cmd = redis::cmd("PING");
        let ping = cmd.query_async::<String>(&mut conn);
        within(&self.name, self.timeout, async {
            ping.await.map(|_| ()).map_err(|e| self.map_err(e))
        })
        .await
    }

    async fn ensure_table(&self, _table: &Table) -> Result<(), BackendError> {
        Ok(())
    }

    async fn publish_changes(
        &self,
        stream: &str,
        max_len: u64,
        events: &[ChangeEvent],
    ) -> Result<Vec<u64>, BackendError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut eval = redis::cmd("EVAL");
        eval.arg(PUBLISH_SCRIPT)
            .arg(events.len() + 1)
            .arg(format!("{}{stream}", self.prefix));
        for e in events {
            eval.arg(format!("{}__version:{}:{}", self.prefix, e.table, e.key));
        }
        eval.arg(max_len);
        for e in events {
            eval.arg(&e.table)
                .arg(&e.key)
                .arg(e.operation)
                .arg(e.saga_id.as_deref().unwrap_or(""));
        }
        let mut conn = self.conn.clone();
        within(&self.name, self.timeout, async {
            eval.query_async::<Vec<u64>>(&mut conn)
                .await
                .map_err(|e| self.map_err(e))
        })
        .await
    }

    fn versioned_cache(&self) -> Option<&dyn VersionedCache> {
        Some(self)
    }
}

/// Bumps each key's version and appends its event, atomically. KEYS: the stream, then one
/// version key per event; ARGV: the length cap, then table, key, operation, saga per event.
const PUBLISH_SCRIPT: &str = "local out = {} \
for i = 2, #KEYS do \
  local v = redis.call('INCR', KEYS[i]) \
  local b = 2 + (i - 2) * 4 \
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'table', ARGV[b], 'key', ARGV[b + 1], \
    'op', ARGV[b + 2], 'version', v, 'saga', ARGV[b + 3]) \
  out[#out + 1] = v \
end \
return out";

/// Stores a cache entry only while its key's version is the one the reader saw. KEYS: the
/// entry, its version key; ARGV: the expected version, the layout (`json` or `hash`), the TTL
/// (0: none), then the JSON text or the hash's field/value pairs.
const FILL_SCRIPT: &str = "if tonumber(redis.call('GET', KEYS[2]) or '0') ~= tonumber(ARGV[1]) then return 0 end \
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end \
if ARGV[2] == 'json' then redis.call('SET', KEYS[1], ARGV[4]) \
else redis.call('HSET', KEYS[1], '__row', '1') \
  if #ARGV > 3 then redis.call('HSET', KEYS[1], unpack(ARGV, 4)) end end \
if tonumber(ARGV[3]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[3]) end \
return 1";

/// Invalidation: bump the version (kept a day, longer than any fill can take), drop the entry.
const INVALIDATE_SCRIPT: &str = "redis.call('INCR', KEYS[2]) \
redis.call('EXPIRE', KEYS[2], 86400) \
redis.call('DEL', KEYS[1]) \
return 1";

impl RedisBackend {
    /// The version key of a cache entry: beside the table's keyspace, so scans of the key
    /// pattern never see it.
    fn version_key(&self, layout: &Layout<'_>, tuple: &[Value]) -> String {
        let key = layout.key(tuple);
        let bare = key.strip_prefix(self.prefix.as_str()).unwrap_or(&key);
        format!("{}__version:{bare}", self.prefix)
    }

    /// A primary-key tuple (in `primary_key` order) as the pattern's key columns.
    fn pattern_tuple(layout: &Layout<'_>, pk_tuple: &[Value]) -> Vec<Value> {
        layout
            .key_columns
            .iter()
            .map(|c| {
                layout
                    .table
                    .primary_key
                    .iter()
                    .position(|k| k == c)
                    .and_then(|i| pk_tuple.get(i).cloned())
                    .unwrap_or(Value::Null)
            })
            .collect()
    }

    /// The layout of a versioned cache table: one entry per key (`json` or `hash`).
    fn cache_layout<'a>(&self, table: &'a Table) -> Result<Layout<'a>, BackendError> {
        let layout = self.layout_of(table)?;
        if !matches!(layout.mode, RedisMode::Json | RedisMode::Hash) {
            return Err(self.unsupported(format!(
                "versioned cache entries for table `{}` need mode json or hash",
                table.name
            )));
        }
        Ok(layout)
    }

    async fn run_scripts(&self, cmds: Vec<redis::Cmd>) -> Result<Vec<i64>, BackendError> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for c in cmds {
            pipe.add_command(c);
        }
        let mut conn = self.conn.clone();
        within(&self.name, self.timeout, async {
            pipe.query_async::<Vec<i64>>(&mut conn)
                .await
                .map_err(|e| self.map_err(e))
        })
        .await
    }
}

#[async_trait]
impl VersionedCache for RedisBackend {
    async fn tokens(&self, table: &Table, keys: &[Vec<Value>]) -> Result<Vec<u64>, BackendError> {
        let layout = self.cache_layout(table)?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut mget = redis::cmd("MGET");
        for k in keys {
            mget.arg(self.version_key(&layout, &Self::pattern_tuple(&layout, k)));
        }
        let mut conn = self.conn.clone();
        let raw: Vec<Option<u64>> = within(&self.name, self.timeout, async {
            mget.query_async(&mut conn)
                .await
                .map_err(|e| self.map_err(e))
        })
        .await?;
        Ok(raw.into_iter().map(|v| v.unwrap_or(0)).collect())
    }

    async fn fill(
        &self,
        table: &Table,
        rows: &[Vec<Value>],
        tokens: &[u64],
    ) -> Result<u64, BackendError> {
        let layout = self.cache_layout(table)?;
        let mut cmds = Vec::new();
        for (row, token) in rows.iter().zip(tokens) {
            let tuple: Vec<Value> = layout.key_columns.iter().map(|c| row[*c].clone()).collect();
            let mut eval = redis::cmd("EVAL");
            eval.arg(FILL_SCRIPT)
                .arg(2)
                .arg(layout.key(&tuple))
                .arg(self.version_key(&layout, &tuple))
                .arg(token)
                .arg(if layout.mode == RedisMode::Json {
                    "json"
                } else {
                    "hash"
                })
                .arg(layout.ttl().unwrap_or(0));
            if layout.mode == RedisMode::Json {
                eval.arg(json_of(&layout, row, &layout.values));
            } else {
                for c in &layout.values {
                    if let Some(v) = encode(&row[*c]) {
                        eval.arg(&layout.placement.physical_columns[*c]).arg(v);
                    }
                }
            }
            cmds.push(eval);
        }
        let stored = self.run_scripts(cmds).await?;
        Ok(stored.iter().filter(|n| **n == 1).count() as u64)
    }

    async fn invalidate(&self, table: &Table, keys: &[Vec<Value>]) -> Result<(), BackendError> {
        let layout = self.cache_layout(table)?;
        let cmds = keys
            .iter()
            .map(|k| {
                let k = Self::pattern_tuple(&layout, k);
                redis::cmd("EVAL")
                    .arg(INVALIDATE_SCRIPT)
                    .arg(2)
                    .arg(layout.key(&k))
                    .arg(self.version_key(&layout, &k))
                    .to_owned()
            })
            .collect();
        self.run_scripts(cmds).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_config::BackendKind;

    fn backend() -> RedisBackend {
        let config = BackendConfig {
            kind: BackendKind::Redis,
            url: "redis://127.0.0.1:1/0".to_owned(),
            pool_max_connections: 1,
            connect_timeout_ms: 100,
            statement_timeout_ms: None,
            schema: None,
            key_prefix: None,
            circuit_failures: 0,
            circuit_open_ms: 0,
            stream_stall_timeout_ms: 0,
        };
        match RedisBackend::connect_lazy("r", &config, 1_000) {
            Ok(b) => b,
            Err(e) => panic!("lazy backend: {e}"),
        }
    }

    fn io(kind: std::io::ErrorKind) -> redis::RedisError {
        redis::RedisError::from(std::io::Error::new(kind, "test"))
    }

    #[tokio::test]
    async fn a_refused_write_was_not_sent_a_lost_one_may_have_applied() {
        let b = backend();
        let refused = b.map_write_err(io(std::io::ErrorKind::ConnectionRefused));
        assert!(
            matches!(refused, BackendError::Unavailable { .. }),
            "{refused:?}"
        );
        assert!(!refused.maybe_applied());
        for kind in [
            std::io::ErrorKind::ConnectionReset,
            std::io::ErrorKind::BrokenPipe,
            std::io::ErrorKind::UnexpectedEof,
        ] {
            let lost = b.map_write_err(io(kind));
            assert!(matches!(lost, BackendError::Interrupted { .. }), "{lost:?}");
            assert!(lost.maybe_applied());
            // The same failure on a read is just an unavailable store.
            assert!(matches!(
                b.map_err(io(kind)),
                BackendError::Unavailable { .. }
            ));
        }
    }
}
