//! A SELECT streamed from the cursor on its own task (see [`spawn_stream`]), for the fast
//! path's statements and the router-side engine's whole statements alike.

use futures::TryStreamExt;
use sqlx::AssertSqlSafe;
use switchyard_backend::{
    BackendError, RowSink, RowStream, StreamLimits, coerce_column, spawn_stream, undecodable,
};
use switchyard_core::{LogicalType, ResultColumn, Value};

use crate::{
    Pool, SqlBackend, bind_mysql, bind_pg, bind_sqlite, decode_mysql, decode_pg, decode_sqlite,
    map_sqlx_err,
};

impl SqlBackend {
    /// Streams `sql` with `binds`, decoding each row into `columns`.
    pub(crate) async fn spawn_select(
        &self,
        sql: String,
        binds: Vec<(Value, LogicalType)>,
        columns: Vec<ResultColumn>,
    ) -> Result<RowStream, BackendError> {
        let task = StreamTask {
            name: self.name.clone(),
            timeout_ms: self.timeout_ms(),
            pool: self.pool.clone(),
            sql,
            binds,
            columns: columns.clone(),
        };
        let limits = StreamLimits {
            timeout: self.timeout,
            stall: self.stall,
        };
        spawn_stream(&self.name, limits, columns, move |sink| task.rows(sink)).await
    }
}

/// The type a value of a whole pushed-down statement is bound as.
pub(crate) fn bind_type(v: &Value) -> LogicalType {
    match v {
        Value::Int(_) => LogicalType::Int,
        Value::Float(_) => LogicalType::Float,
        Value::Decimal(d) => LogicalType::Decimal {
            precision: 28,
            scale: u8::try_from(d.scale()).unwrap_or(28),
        },
        Value::Bool(_) => LogicalType::Bool,
        Value::Timestamp(_) => LogicalType::Timestamp,
        Value::Date(_) => LogicalType::Date,
        Value::Json(_) => LogicalType::Json,
        Value::Null | Value::Text(_) => LogicalType::Text,
    }
}

/// A streamed SELECT, read from the cursor on its own task (see [`spawn_stream`]).
struct StreamTask {
    name: String,
    timeout_ms: u64,
    pool: Pool,
    sql: String,
    binds: Vec<(Value, LogicalType)>,
    columns: Vec<ResultColumn>,
}

impl StreamTask {
    async fn rows(self, mut sink: RowSink) -> Result<RowSink, BackendError> {
        let sql_err = |e: sqlx::Error| map_sqlx_err(&self.name, self.timeout_ms, e);
        let decode_err =
            |column: &ResultColumn, detail: String| undecodable(&self.name, column, detail);
        macro_rules! pump {
            ($pool:expr, $bind:ident, $decode:ident) => {{
                let q = self.binds.iter().cloned().fold(
                    sqlx::query(AssertSqlSafe(self.sql.as_str())),
                    |q, (v, t)| $bind(q, v, t),
                );
                let mut conn = $pool.acquire().await.map_err(sql_err)?;
                {
                    let mut rows = q.fetch(&mut *conn);
                    while let Some(row) = rows.try_next().await.map_err(sql_err)? {
                        let mut values = Vec::with_capacity(self.columns.len());
                        for (i, c) in self.columns.iter().enumerate() {
                            let raw = $decode(&row, i).map_err(|e| decode_err(c, e))?;
                            values.push(coerce_column(&self.name, c, raw)?);
                        }
                        if !sink.push(values).await {
                            // An answer nobody reads any more (the client went away or
                            // stalled): the lease drops unfinished, which closes the
                            // connection and so ends the statement in the store, instead of
                            // draining the rest of the rows into a pooled connection.
                            return Ok(sink);
                        }
                    }
                }
                conn.finish(&Ok(()));
            }};
        }
        match &self.pool {
            Pool::Postgres(p) => pump!(p, bind_pg, decode_pg),
            Pool::Mysql(p) => pump!(p, bind_mysql, decode_mysql),
            Pool::Sqlite(p) => pump!(p, bind_sqlite, decode_sqlite),
        }
        Ok(sink)
    }
}
