//! UPDATE on Redis, in every layout: each key is written atomically with the check that its row
//! exists (an UPDATE never creates a row), and the rows affected are the rows really written.
//!
//! - `hash`, `counter` and single-value `hash-per-partition` rows: one Lua script per row
//!   (existence check, then `HSET`/`HDEL`/`HINCRBY`, `SET KEEPTTL`/`INCRBY`), all in one
//!   `MULTI`/`EXEC`;
//! - `json` rows and packed `hash-per-partition` values (several value columns as one JSON
//!   object): read, changed in the router (so numbers keep their exact text), and written back
//!   by a compare-and-set script that writes only if the value is still the one read; a row
//!   changed in between is read again (a few times, then the statement fails).
//!
//! Scripts run atomically, but Redis does not roll a script back when a command in it fails:
//! increments (the only commands that can fail, on overflow) run first, so a failing UPDATE
//! has changed nothing unless it increments several columns.

use switchyard_backend::BackendError;
use switchyard_config::RedisMode;
use switchyard_core::{LogicalType, Value};

use crate::RedisBackend;
use crate::layout::{Layout, encode};
use crate::plan::Change;

/// KEYS[1] the row; ARGV op, field, value triples (op: `incr`, `set` or `del`). Returns 1 when
/// the row exists (and was changed), 0 otherwise. `incr` of an absent field (NULL) keeps it
/// NULL.
const UPDATE_HASH_SCRIPT: &str = "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end \
for i = 1, #ARGV, 3 do \
local op, f, v = ARGV[i], ARGV[i + 1], ARGV[i + 2] \
if op == 'set' then redis.call('HSET', KEYS[1], f, v) \
elseif op == 'del' then redis.call('HDEL', KEYS[1], f) \
elseif redis.call('HEXISTS', KEYS[1], f) == 1 then redis.call('HINCRBY', KEYS[1], f, v) end \
end \
return 1";

/// KEYS[1] the counter; ARGV[1] `set` or `incr`, ARGV[2] the value. 1 when it exists.
const UPDATE_COUNTER_SCRIPT: &str = "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end \
if ARGV[1] == 'set' then redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL') \
else redis.call('INCRBY', KEYS[1], ARGV[2]) end \
return 1";

/// KEYS[1] the partition; ARGV[1] the field, ARGV[2] `set` or `incr`, ARGV[3] the value. 1 when
/// the field exists.
const UPDATE_FIELD_SCRIPT: &str = "if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end \
if ARGV[2] == 'set' then redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) \
else redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[3]) end \
return 1";

/// Compare and set. KEYS[1] the key; ARGV[1] `key` (a string value) or `field` (a hash field,
/// named by ARGV[2]); ARGV[3] the value read; ARGV[4] the new value. 1 written, 0 the row is
/// gone, -1 the value changed since it was read.
const CAS_SCRIPT: &str = "local cur \
if ARGV[1] == 'key' then cur = redis.call('GET', KEYS[1]) \
else cur = redis.call('HGET', KEYS[1], ARGV[2]) end \
if not cur then return 0 end \
if cur ~= ARGV[3] then return -1 end \
if ARGV[1] == 'key' then redis.call('SET', KEYS[1], ARGV[4], 'KEEPTTL') \
else redis.call('HSET', KEYS[1], ARGV[2], ARGV[4]) end \
return 1";

/// Reads of a JSON row before a compare-and-set gives up on a row others keep changing.
const CAS_ATTEMPTS: usize = 8;

/// Whether rows of `layout` are JSON objects changed in the router (compare-and-set).
pub(crate) fn read_modify_write(layout: &Layout<'_>) -> bool {
    layout.mode == RedisMode::Json
        || (layout.mode == RedisMode::HashPerPartition && layout.values.len() > 1)
}

/// One row to update: its key and, in `hash-per-partition`, its field.
fn targets(
    layout: &Layout<'_>,
    partitions: &[Vec<Value>],
    fields: Option<&Vec<Vec<Value>>>,
) -> Vec<(String, Option<String>)> {
    let mut out = Vec::new();
    for p in partitions {
        let key = layout.key(p);
        match fields {
            Some(fs) => {
                for f in fs {
                    let field = f.first().and_then(encode).unwrap_or_default();
                    out.push((key.clone(), Some(field)));
                }
            }
            None => out.push((key, None)),
        }
    }
    out
}

impl RedisBackend {
    /// The commands of an UPDATE (run by [`RedisBackend::update`] for the scripted layouts; for
    /// the compare-and-set layouts, the read that starts it and the script that ends it).
    pub(crate) fn update_commands(
        &self,
        layout: &Layout<'_>,
        partitions: &[Vec<Value>],
        fields: Option<&Vec<Vec<Value>>>,
        changes: &[Change],
    ) -> Vec<redis::Cmd> {
        let mut out = Vec::new();
        // Increments first: a failing one then leaves the row as it was.
        let mut ordered: Vec<&Change> = changes
            .iter()
            .filter(|c| matches!(c, Change::Incr(..)))
            .collect();
        ordered.extend(changes.iter().filter(|c| matches!(c, Change::Set(..))));
        for (key, field) in targets(layout, partitions, fields) {
            let mut eval = redis::cmd("EVAL");
            if read_modify_write(layout) {
                match &field {
                    Some(f) => out.push(redis::cmd("HGET").arg(&key).arg(f).to_owned()),
                    None => out.push(redis::cmd("GET").arg(&key).to_owned()),
                }
                eval.arg(CAS_SCRIPT).arg(1).arg(&key);
                match &field {
                    Some(f) => eval.arg("field").arg(f),
                    None => eval.arg("key").arg(""),
                };
                eval.arg("<read>").arg("<changed>");
                out.push(eval);
                continue;
            }
            match (layout.mode, &field) {
                (RedisMode::Hash, _) => {
                    eval.arg(UPDATE_HASH_SCRIPT).arg(1).arg(&key);
                    for change in &ordered {
                        match change {
                            Change::Incr(c, n) => eval
                                .arg("incr")
                                .arg(&layout.placement.physical_columns[*c])
                                .arg(*n),
                            Change::Set(c, v) => match encode(v) {
                                Some(text) => eval
                                    .arg("set")
                                    .arg(&layout.placement.physical_columns[*c])
                                    .arg(text),
                                None => eval
                                    .arg("del")
                                    .arg(&layout.placement.physical_columns[*c])
                                    .arg(""),
                            },
                        };
                    }
                }
                (RedisMode::Counter, _) => {
                    eval.arg(UPDATE_COUNTER_SCRIPT).arg(1).arg(&key);
                    match ordered.first() {
                        Some(Change::Incr(_, n)) => eval.arg("incr").arg(*n),
                        Some(Change::Set(_, v)) => {
                            eval.arg("set").arg(encode(v).unwrap_or_default())
                        }
                        None => continue,
                    };
                }
                (_, field) => {
                    eval.arg(UPDATE_FIELD_SCRIPT)
                        .arg(1)
                        .arg(&key)
                        .arg(field.as_deref().unwrap_or_default());
                    match ordered.first() {
                        Some(Change::Incr(_, n)) => eval.arg("incr").arg(*n),
                        Some(Change::Set(_, v)) => {
                            eval.arg("set").arg(encode(v).unwrap_or_default())
                        }
                        None => continue,
                    };
                }
            }
            out.push(eval);
        }
        out
    }

    /// Runs an UPDATE; the rows written.
    pub(crate) async fn update(
        &self,
        layout: &Layout<'_>,
        partitions: &[Vec<Value>],
        fields: Option<&Vec<Vec<Value>>>,
        changes: &[Change],
    ) -> Result<u64, BackendError> {
        let mut conn = self.conn.clone();
        if read_modify_write(layout) {
            let mut written = 0;
            for (key, field) in targets(layout, partitions, fields) {
                written += self
                    .compare_and_set(&mut conn, layout, &key, field.as_deref(), changes)
                    .await?;
            }
            return Ok(written);
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for c in self.update_commands(layout, partitions, fields, changes) {
            pipe.add_command(c);
        }
        let replies: Vec<i64> = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| self.map_write_err(e))?;
        Ok(replies.iter().filter(|n| **n > 0).count() as u64)
    }

    /// Reads the JSON object at `key` (`field`), applies `changes` and writes it back if it is
    /// still the value read: 1 written, 0 no such row.
    async fn compare_and_set(
        &self,
        conn: &mut redis::aio::ConnectionManager,
        layout: &Layout<'_>,
        key: &str,
        field: Option<&str>,
        changes: &[Change],
    ) -> Result<u64, BackendError> {
        for _ in 0..CAS_ATTEMPTS {
            let read = match field {
                Some(f) => redis::cmd("HGET").arg(key).arg(f).to_owned(),
                None => redis::cmd("GET").arg(key).to_owned(),
            };
            let old: Option<String> = read.query_async(conn).await.map_err(|e| self.map_err(e))?;
            let Some(old) = old else {
                return Ok(0);
            };
            let new = self.changed_object(layout, &old, changes)?;
            let mut cas = redis::cmd("EVAL");
            cas.arg(CAS_SCRIPT).arg(1).arg(key);
            match field {
                Some(f) => cas.arg("field").arg(f),
                None => cas.arg("key").arg(""),
            };
            cas.arg(&old).arg(new);
            let reply: i64 = cas
                .query_async(conn)
                .await
                .map_err(|e| self.map_write_err(e))?;
            match reply {
                1 => return Ok(1),
                0 => return Ok(0),
                _ => continue,
            }
        }
        Err(BackendError::Rejected {
            backend: self.name.clone(),
            message: format!(
                "a row of `{}` kept changing while it was updated; try again",
                layout.table.name
            ),
        })
    }

    /// The JSON object `old` with `changes` applied, as text.
    fn changed_object(
        &self,
        layout: &Layout<'_>,
        old: &str,
        changes: &[Change],
    ) -> Result<String, BackendError> {
        let decode_err = |message: String| BackendError::Decode {
            backend: self.name.clone(),
            column: layout.table.name.clone(),
            message,
        };
        let mut object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(old).map_err(|e| decode_err(e.to_string()))?;
        for change in changes {
            match change {
                Change::Set(c, v) => {
                    let ty = layout.table.columns[*c].ty;
                    object.insert(layout.placement.physical_columns[*c].clone(), v.to_json(ty));
                }
                Change::Incr(c, n) => {
                    let name = &layout.placement.physical_columns[*c];
                    let current = object.get(name).cloned().unwrap_or(serde_json::Value::Null);
                    let sum =
                        match Value::from_param(&current, LogicalType::Int).map_err(decode_err)? {
                            Value::Int(i) => {
                                Value::Int(i.checked_add(*n).ok_or_else(|| BackendError::Data {
                                    backend: self.name.clone(),
                                    message: "bigint out of range".to_owned(),
                                })?)
                            }
                            other => other,
                        };
                    object.insert(name.clone(), sum.to_json(LogicalType::Int));
                }
            }
        }
        Ok(serde_json::Value::Object(object).to_string())
    }
}
