//! SQL backends: PostgreSQL, MySQL/MariaDB and SQLite through sqlx.
//!
//! Invariant: this is the only crate that knows sqlx. Statements are rendered from the bound IR
//! ([`render`]) with every value bound as a parameter; rows are decoded into the logical type the
//! IR declares for each output column, whatever physical type the store reports.

pub mod ddl;
mod pool;
pub mod render;
mod stream;

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use pool::ConnPool;
use rust_decimal::Decimal;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlRow};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgRow};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteRow};
use sqlx::{AssertSqlSafe, Row, TypeInfo, ValueRef};
use switchyard_backend::{
    Backend, BackendError, Capabilities, Fragment, LocalTransaction, NativeStatement, PoolState,
    RowStream, coerce_column, undecodable, within,
};
use switchyard_config::BackendConfig;
use switchyard_core::value::{format_date, format_timestamp};
use switchyard_core::{BackendKind, LogicalType, ResultColumn, ResultSet, Statement, Table, Value};

pub use render::{Dialect, Rendered, render};

/// The pool of one SQL backend.
#[derive(Debug, Clone)]
enum Pool {
    Postgres(ConnPool<PgConnection>),
    Mysql(ConnPool<MySqlConnection>),
    Sqlite(ConnPool<SqliteConnection>),
}

/// Runs `$body` with `$conn` bound to a connection leased from `$pool` (a [`ConnPool`]); the
/// connection goes back to the pool if the work completed or the store refused it, and is
/// closed otherwise (see [`pool::Lease::finish`]).
macro_rules! on_lease {
    ($pool:expr, |$conn:ident| $body:expr) => {{
        let mut lease = $pool.acquire().await?;
        let result: Result<_, sqlx::Error> = async {
            let $conn = &mut *lease;
            Ok($body)
        }
        .await;
        lease.finish(&result);
        result?
    }};
}

/// A connection leased from a [`ConnPool`] with a transaction begun on it.
macro_rules! begin_on {
    ($pool:expr) => {{
        let mut lease = $pool.acquire().await?;
        sqlx::raw_sql("BEGIN").execute(&mut *lease).await?;
        lease
    }};
}

/// Commits the transaction on a lease; the connection goes back to the pool once it is over.
macro_rules! commit_on {
    ($lease:expr) => {{
        let mut lease = $lease;
        let result = sqlx::raw_sql("COMMIT")
            .execute(&mut *lease)
            .await
            .map(|_| ());
        lease.finish(&result);
        result
    }};
}

/// A PostgreSQL, MySQL/MariaDB or SQLite backend.
#[derive(Debug)]
pub struct SqlBackend {
    name: String,
    kind: BackendKind,
    dialect: Dialect,
    pool: Pool,
    timeout: Duration,
    /// `stream_stall_timeout_ms`.
    stall: Duration,
    schema: Option<String>,
}

impl SqlBackend {
    /// Creates the backend with a lazily connecting pool: nothing is dialled until the first
    /// statement, so the router starts even when a store is down (`/readyz` reports it).
    pub fn connect_lazy(
        name: &str,
        config: &BackendConfig,
        default_timeout_ms: u64,
    ) -> Result<Self, BackendError> {
        let bad_url = |e: sqlx::Error| BackendError::Unavailable {
            backend: name.to_owned(),
            source: Box::new(e),
        };
        let timeout_ms = config.statement_timeout_ms.unwrap_or(default_timeout_ms);
        let acquire = Duration::from_millis(config.connect_timeout_ms);
        let max = config.pool_max_connections;
        let (dialect, pool) = match config.kind {
            BackendKind::Postgres => {
                let mut opts = PgConnectOptions::from_str(&config.url).map_err(bad_url)?;
                let mut settings = vec![("statement_timeout".to_owned(), timeout_ms.to_string())];
                if let Some(schema) = &config.schema {
                    settings.push(("search_path".to_owned(), schema.clone()));
                }
                opts = opts.options(settings);
                (
                    Dialect::Postgres,
                    Pool::Postgres(ConnPool::new(opts, max, acquire)),
                )
            }
            BackendKind::Mysql => {
                let url = config.url.replacen("mariadb://", "mysql://", 1);
                let opts = MySqlConnectOptions::from_str(&url)
                    .map_err(bad_url)?
                    .timezone(Some("+00:00".to_owned()));
                (
                    Dialect::Mysql,
                    Pool::Mysql(ConnPool::new(opts, max, acquire)),
                )
            }
            BackendKind::Sqlite => {
                let opts = SqliteConnectOptions::from_str(&config.url)
                    .map_err(bad_url)?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .busy_timeout(Duration::from_millis(timeout_ms))
                    .pragma("case_sensitive_like", "ON");
                (
                    Dialect::Sqlite,
                    Pool::Sqlite(ConnPool::new(opts, max, acquire)),
                )
            }
            other => {
                return Err(BackendError::Unsupported {
                    backend: name.to_owned(),
                    what: format!("{} is not a SQL store", other.as_str()),
                });
            }
        };
        Ok(Self {
            name: name.to_owned(),
            kind: config.kind,
            dialect,
            pool,
            timeout: Duration::from_millis(timeout_ms),
            stall: Duration::from_millis(config.stream_stall_timeout_ms),
            schema: config.schema.clone(),
        })
    }

    /// The dialect this backend renders.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    fn rendered(&self, fragment: Fragment<'_>) -> Result<Rendered, BackendError> {
        rendered(&self.name, self.dialect, fragment)
    }

    fn map_err(&self, err: sqlx::Error) -> BackendError {
        map_sqlx_err(&self.name, self.timeout_ms(), err)
    }

    fn timeout_ms(&self) -> u64 {
        u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX)
    }

    /// Runs a statement text without results (DDL), within the timeout.
    async fn run_ddl(&self, sql: String) -> Result<(), BackendError> {
        let fut = async {
            match &self.pool {
                Pool::Postgres(p) => {
                    on_lease!(p, |c| sqlx::query(AssertSqlSafe(sql)).execute(c).await?);
                    Ok(())
                }
                Pool::Mysql(p) => {
                    on_lease!(p, |c| sqlx::query(AssertSqlSafe(sql)).execute(c).await?);
                    Ok(())
                }
                Pool::Sqlite(p) => {
                    on_lease!(p, |c| sqlx::query(AssertSqlSafe(sql)).execute(c).await?);
                    Ok(())
                }
            }
        };
        within(&self.name, self.timeout, async {
            fut.await.map_err(|e| self.map_err(e))
        })
        .await
    }
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;
type MyQuery<'q> = sqlx::query::Query<'q, sqlx::MySql, sqlx::mysql::MySqlArguments>;
type LiteQuery<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>;

/// Binds a value as PostgreSQL stores it (see `ddl`); NULLs carry the column's type.
fn bind_pg(q: PgQuery<'_>, value: Value, ty: LogicalType) -> PgQuery<'_> {
    match value {
        Value::Null => match ty {
            LogicalType::Int => q.bind(None::<i64>),
            LogicalType::Float => q.bind(None::<f64>),
            LogicalType::Decimal { .. } => q.bind(None::<Decimal>),
            LogicalType::Bool => q.bind(None::<bool>),
            LogicalType::Timestamp => q.bind(None::<DateTime<Utc>>),
            LogicalType::Date => q.bind(None::<NaiveDate>),
            LogicalType::Json => q.bind(None::<sqlx::types::Json<serde_json::Value>>),
            LogicalType::Text => q.bind(None::<String>),
        },
        Value::Int(i) => q.bind(i),
        Value::Float(f) => q.bind(f),
        Value::Decimal(d) => q.bind(d),
        Value::Text(s) => q.bind(s),
        Value::Bool(b) => q.bind(b),
        Value::Timestamp(t) => q.bind(t),
        Value::Date(d) => q.bind(d),
        Value::Json(j) => q.bind(sqlx::types::Json(j)),
    }
}

/// Binds a value as MySQL/MariaDB stores it (see `ddl`).
fn bind_mysql(q: MyQuery<'_>, value: Value, ty: LogicalType) -> MyQuery<'_> {
    match value {
        Value::Null => match ty {
            LogicalType::Int | LogicalType::Bool => q.bind(None::<i64>),
            LogicalType::Float => q.bind(None::<f64>),
            LogicalType::Decimal { .. } => q.bind(None::<Decimal>),
            LogicalType::Timestamp => q.bind(None::<DateTime<Utc>>),
            LogicalType::Date => q.bind(None::<NaiveDate>),
            LogicalType::Text | LogicalType::Json => q.bind(None::<String>),
        },
        Value::Int(i) => q.bind(i),
        Value::Float(f) => q.bind(f),
        Value::Decimal(d) => q.bind(d),
        Value::Text(s) => q.bind(s),
        Value::Bool(b) => q.bind(b),
        Value::Timestamp(t) => q.bind(t),
        Value::Date(d) => q.bind(d),
        Value::Json(j) => q.bind(j.to_string()),
    }
}

/// Binds a value as SQLite stores it: decimals as REAL, timestamps as fixed-width RFC 3339 text.
fn bind_sqlite(q: LiteQuery<'_>, value: Value, ty: LogicalType) -> LiteQuery<'_> {
    match value {
        Value::Null => match ty {
            LogicalType::Int | LogicalType::Bool => q.bind(None::<i64>),
            LogicalType::Float | LogicalType::Decimal { .. } => q.bind(None::<f64>),
            LogicalType::Text | LogicalType::Timestamp | LogicalType::Date | LogicalType::Json => {
                q.bind(None::<String>)
            }
        },
        Value::Int(i) => q.bind(i),
        Value::Float(f) => q.bind(f),
        Value::Decimal(d) => {
            q.bind(rust_decimal::prelude::ToPrimitive::to_f64(&d).unwrap_or(f64::NAN))
        }
        Value::Text(s) => q.bind(s),
        Value::Bool(b) => q.bind(b),
        Value::Timestamp(t) => q.bind(format_timestamp(&t)),
        Value::Date(d) => q.bind(format_date(&d)),
        Value::Json(j) => q.bind(j.to_string()),
    }
}

#[async_trait]
impl Backend for SqlBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> BackendKind {
        self.kind
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            full_sql: true,
            joins: true,
            aggregates: true,
            sort_limit: true,
            needs_key: false,
            transactions: true,
            postgres_sql: self.dialect == Dialect::Postgres,
        }
    }

    fn explain(&self, fragment: Fragment<'_>) -> Result<NativeStatement, BackendError> {
        let r = self.rendered(fragment)?;
        Ok(NativeStatement {
            language: "sql",
            text: r.sql,
            params: r.binds.into_iter().map(|(v, _)| v).collect(),
        })
    }

    async fn execute(&self, fragment: Fragment<'_>) -> Result<ResultSet, BackendError> {
        let r = self.rendered(fragment)?;
        let is_select = matches!(fragment.query.statement, Statement::Select(_));
        let (sql, binds) = (r.sql, r.binds);
        let fut = async {
            Ok::<_, sqlx::Error>(match &self.pool {
                Pool::Postgres(p) => {
                    on_lease!(p, |c| run_statement!(c, sql, binds, bind_pg, Pg, is_select))
                }
                Pool::Mysql(p) => {
                    on_lease!(p, |c| run_statement!(
                        c, sql, binds, bind_mysql, My, is_select
                    ))
                }
                Pool::Sqlite(p) => {
                    on_lease!(p, |c| run_statement!(
                        c,
                        sql,
                        binds,
                        bind_sqlite,
                        Lite,
                        is_select
                    ))
                }
            })
        };
        let fetched: Fetched = within(&self.name, self.timeout, async {
            fut.await.map_err(|e| self.map_err(e))
        })
        .await?;
        let out = decode_fetched(&self.name, fragment, fetched)?;
        tracing::debug!(backend = %self.name, rows = out.rows.len(), "fragment executed");
        Ok(out)
    }

    async fn begin(&self) -> Result<Box<dyn LocalTransaction>, BackendError> {
        let fut = async {
            Ok::<_, sqlx::Error>(match &self.pool {
                Pool::Postgres(p) => Tx::Pg(begin_on!(p)),
                Pool::Mysql(p) => Tx::My(begin_on!(p)),
                Pool::Sqlite(p) => Tx::Lite(begin_on!(p)),
            })
        };
        let tx = within(&self.name, self.timeout, async {
            fut.await.map_err(|e| self.map_err(e))
        })
        .await?;
        Ok(Box::new(SqlTransaction {
            name: self.name.clone(),
            dialect: self.dialect,
            timeout: self.timeout,
            tx,
        }))
    }

    async fn stream(&self, fragment: Fragment<'_>) -> Result<RowStream, BackendError> {
        if !matches!(fragment.query.statement, Statement::Select(_)) {
            return Ok(RowStream::whole(self.execute(fragment).await?));
        }
        let r = self.rendered(fragment)?;
        let columns = fragment.query.statement.result_columns();
        self.spawn_select(r.sql, r.binds, columns).await
    }

    async fn stream_sql(
        &self,
        sql: String,
        params: Vec<Value>,
        width: usize,
    ) -> Result<RowStream, BackendError> {
        if self.dialect != Dialect::Postgres {
            return Err(BackendError::Unsupported {
                backend: self.name.clone(),
                what: "statements in PostgreSQL's SQL".to_owned(),
            });
        }
        let columns: Vec<ResultColumn> = (0..width)
            .map(|i| ResultColumn {
                name: format!("c{i}"),
                ty: LogicalType::Text,
            })
            .collect();
        let binds = params
            .into_iter()
            .map(|v| {
                let ty = stream::bind_type(&v);
                (v, ty)
            })
            .collect();
        self.spawn_select(sql, binds, columns).await
    }

    async fn health(&self) -> Result<(), BackendError> {
        self.run_ddl("SELECT 1".to_owned()).await
    }

    fn pool_state(&self) -> Option<PoolState> {
        let (size, idle) = match &self.pool {
            Pool::Postgres(p) => (p.size(), p.num_idle()),
            Pool::Mysql(p) => (p.size(), p.num_idle()),
            Pool::Sqlite(p) => (p.size(), p.num_idle()),
        };
        Some(PoolState {
            size,
            idle: u32::try_from(idle).unwrap_or(u32::MAX),
        })
    }

    async fn ensure_table(&self, table: &Table) -> Result<(), BackendError> {
        let placement =
            table
                .placement_on(&self.name)
                .ok_or_else(|| BackendError::Unsupported {
                    backend: self.name.clone(),
                    what: format!("table `{}` has no placement here", table.name),
                })?;
        if let (Dialect::Postgres, Some(schema)) = (self.dialect, &self.schema) {
            self.run_ddl(format!(
                "CREATE SCHEMA IF NOT EXISTS {}",
                render::quote_ident(self.dialect, schema)
            ))
            .await?;
        }
        self.run_ddl(ddl::create_table(self.dialect, table, placement))
            .await
    }
}

/// Binds and runs one rendered statement on an executor (pool or transaction connection).
macro_rules! run_statement {
    ($exec:expr, $sql:expr, $binds:expr, $bind:ident, $variant:ident, $is_select:expr) => {{
        let q = $binds
            .into_iter()
            .fold(sqlx::query(AssertSqlSafe($sql)), |q, (v, t)| $bind(q, v, t));
        if $is_select {
            Fetched::$variant(q.fetch_all($exec).await?)
        } else {
            Fetched::Affected(q.execute($exec).await?.rows_affected())
        }
    }};
}
use run_statement;

/// Decodes what a statement returned into the logical types of its output columns.
fn decode_fetched(
    name: &str,
    fragment: Fragment<'_>,
    fetched: Fetched,
) -> Result<ResultSet, BackendError> {
    let decode_err = |column: &ResultColumn, detail: String| undecodable(name, column, detail);
    let mut out = ResultSet {
        columns: fragment.query.statement.result_columns(),
        rows: Vec::new(),
        rows_affected: None,
    };
    macro_rules! decode_rows {
        ($rows:expr, $decode:ident) => {
            for row in $rows {
                let mut values = Vec::with_capacity(out.columns.len());
                for (i, c) in out.columns.iter().enumerate() {
                    let raw = $decode(&row, i).map_err(|e| decode_err(c, e))?;
                    values.push(coerce_column(name, c, raw)?);
                }
                out.rows.push(values);
            }
        };
    }
    match fetched {
        Fetched::Affected(n) => out.rows_affected = Some(n),
        Fetched::Pg(rows) => decode_rows!(rows, decode_pg),
        Fetched::My(rows) => decode_rows!(rows, decode_mysql),
        Fetched::Lite(rows) => decode_rows!(rows, decode_sqlite),
    }
    Ok(out)
}

/// A fragment in `dialect`; a table without a placement on backend `name` is unsupported here.
fn rendered(
    name: &str,
    dialect: Dialect,
    fragment: Fragment<'_>,
) -> Result<Rendered, BackendError> {
    let rendered = render(fragment.query, fragment.catalog, name, dialect).map_err(|m| {
        BackendError::Unsupported {
            backend: name.to_owned(),
            what: format!("table `{}` has no placement here", m.table),
        }
    })?;
    let limit = max_binds(dialect);
    if rendered.binds.len() > limit {
        return Err(BackendError::TooLarge {
            backend: name.to_owned(),
            what: format!("a statement of {} values", rendered.binds.len()),
            limit: Some(limit as u64),
            unit: " bound values",
        });
    }
    Ok(rendered)
}

/// The most placeholders one statement may bind: PostgreSQL's and MySQL's protocols count them
/// in 16 bits; SQLite's default `SQLITE_MAX_VARIABLE_NUMBER` is 32766.
fn max_binds(dialect: Dialect) -> usize {
    match dialect {
        Dialect::Postgres | Dialect::Mysql => 65_535,
        Dialect::Sqlite => 32_766,
    }
}

/// The client's message for a store's data exception (SQLSTATE class 22), in the store's
/// words for none of them: the same mistake reads the same on every store.
fn data_message(sqlstate: &str) -> &'static str {
    match sqlstate {
        "22003" => "value out of range",
        "22012" => "division by zero",
        "22001" => "value too long for its column",
        "22021" | "22P05" => "invalid byte sequence in a text value",
        "22P02" => "invalid input syntax for the value's type",
        "22007" | "22008" => "invalid date or time value",
        _ => "invalid value",
    }
}

/// An open transaction on one connection of the pool.
enum Tx {
    Pg(pool::Lease<PgConnection>),
    My(pool::Lease<MySqlConnection>),
    Lite(pool::Lease<SqliteConnection>),
}

/// [`LocalTransaction`] of a SQL store. Dropping it rolls back: its connection is closed, which
/// ends the transaction in the store.
struct SqlTransaction {
    name: String,
    dialect: Dialect,
    timeout: Duration,
    tx: Tx,
}

#[async_trait]
impl LocalTransaction for SqlTransaction {
    async fn execute(&mut self, fragment: Fragment<'_>) -> Result<ResultSet, BackendError> {
        let r = rendered(&self.name, self.dialect, fragment)?;
        let is_select = matches!(fragment.query.statement, Statement::Select(_));
        let (sql, binds) = (r.sql, r.binds);
        let timeout_ms = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
        let tx = &mut self.tx;
        let fut = async {
            Ok::<_, sqlx::Error>(match tx {
                Tx::Pg(t) => run_statement!(&mut **t, sql, binds, bind_pg, Pg, is_select),
                Tx::My(t) => run_statement!(&mut **t, sql, binds, bind_mysql, My, is_select),
                Tx::Lite(t) => run_statement!(&mut **t, sql, binds, bind_sqlite, Lite, is_select),
            })
        };
        let fetched = within(&self.name, self.timeout, async {
            fut.await
                .map_err(|e| map_sqlx_err(&self.name, timeout_ms, e))
        })
        .await?;
        decode_fetched(&self.name, fragment, fetched)
    }

    async fn commit(self: Box<Self>) -> Result<(), BackendError> {
        let timeout_ms = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
        let (name, timeout) = (self.name.clone(), self.timeout);
        let fut = async {
            match self.tx {
                Tx::Pg(t) => commit_on!(t),
                Tx::My(t) => commit_on!(t),
                Tx::Lite(t) => commit_on!(t),
            }
        };
        within(&name, timeout, async {
            fut.await.map_err(|e| map_commit_err(&name, timeout_ms, e))
        })
        .await
    }
}

/// A failed COMMIT: the connection failing after it was sent leaves the outcome unknown
/// (interrupted); anything else is mapped like any statement's error.
fn map_commit_err(name: &str, timeout_ms: u64, err: sqlx::Error) -> BackendError {
    match err {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) => BackendError::Interrupted {
            backend: name.to_owned(),
            source: Box::new(err),
        },
        other => map_sqlx_err(name, timeout_ms, other),
    }
}

enum Fetched {
    Affected(u64),
    Pg(Vec<PgRow>),
    My(Vec<MySqlRow>),
    Lite(Vec<SqliteRow>),
}

fn err(e: sqlx::Error) -> String {
    e.to_string()
}

fn decode_pg(row: &PgRow, i: usize) -> Result<Value, String> {
    let raw = row.try_get_raw(i).map_err(err)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let type_name = raw.type_info().name().to_owned();
    Ok(match type_name.as_str() {
        "INT8" => Value::Int(row.try_get::<i64, _>(i).map_err(err)?),
        "INT4" => Value::Int(i64::from(row.try_get::<i32, _>(i).map_err(err)?)),
        "INT2" => Value::Int(i64::from(row.try_get::<i16, _>(i).map_err(err)?)),
        "NUMERIC" => Value::Decimal(row.try_get::<Decimal, _>(i).map_err(err)?),
        "FLOAT8" => Value::Float(row.try_get::<f64, _>(i).map_err(err)?),
        "FLOAT4" => Value::Float(f64::from(row.try_get::<f32, _>(i).map_err(err)?)),
        "BOOL" => Value::Bool(row.try_get::<bool, _>(i).map_err(err)?),
        "TIMESTAMPTZ" => Value::Timestamp(row.try_get::<DateTime<Utc>, _>(i).map_err(err)?),
        "TIMESTAMP" => Value::Timestamp(row.try_get::<NaiveDateTime, _>(i).map_err(err)?.and_utc()),
        "DATE" => Value::Date(row.try_get::<NaiveDate, _>(i).map_err(err)?),
        "JSON" | "JSONB" => Value::Json(row.try_get::<serde_json::Value, _>(i).map_err(err)?),
        _ => Value::Text(
            row.try_get::<String, _>(i)
                .map_err(|e| format!("type {type_name}: {e}"))?,
        ),
    })
}

fn decode_mysql(row: &MySqlRow, i: usize) -> Result<Value, String> {
    let raw = row.try_get_raw(i).map_err(err)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let type_name = raw.type_info().name().to_owned();
    Ok(match type_name.as_str() {
        "BIGINT" | "INT" | "MEDIUMINT" | "SMALLINT" | "TINYINT" | "BOOLEAN" => {
            Value::Int(row.try_get::<i64, _>(i).map_err(err)?)
        }
        "BIGINT UNSIGNED" | "INT UNSIGNED" | "MEDIUMINT UNSIGNED" | "SMALLINT UNSIGNED"
        | "TINYINT UNSIGNED" => {
            let u = row.try_get::<u64, _>(i).map_err(err)?;
            Value::Int(i64::try_from(u).map_err(|_| format!("{u} does not fit a 64-bit integer"))?)
        }
        "DECIMAL" => Value::Decimal(row.try_get::<Decimal, _>(i).map_err(err)?),
        "DOUBLE" => Value::Float(row.try_get::<f64, _>(i).map_err(err)?),
        "FLOAT" => Value::Float(f64::from(row.try_get::<f32, _>(i).map_err(err)?)),
        "DATETIME" => Value::Timestamp(row.try_get::<NaiveDateTime, _>(i).map_err(err)?.and_utc()),
        "TIMESTAMP" => Value::Timestamp(row.try_get::<DateTime<Utc>, _>(i).map_err(err)?),
        "DATE" => Value::Date(row.try_get::<NaiveDate, _>(i).map_err(err)?),
        "JSON" => Value::Json(row.try_get::<serde_json::Value, _>(i).map_err(err)?),
        "BLOB" | "VARBINARY" | "BINARY" | "TINYBLOB" | "MEDIUMBLOB" | "LONGBLOB" => {
            let bytes = row.try_get::<Vec<u8>, _>(i).map_err(err)?;
            Value::Text(String::from_utf8(bytes).map_err(|e| e.to_string())?)
        }
        _ => Value::Text(
            row.try_get::<String, _>(i)
                .map_err(|e| format!("type {type_name}: {e}"))?,
        ),
    })
}

fn decode_sqlite(row: &SqliteRow, i: usize) -> Result<Value, String> {
    let raw = row.try_get_raw(i).map_err(err)?;
    if raw.is_null() {
        return Ok(Value::Null);
    }
    let type_name = raw.type_info().name().to_owned();
    Ok(match type_name.as_str() {
        "INTEGER" | "BOOLEAN" | "INT8" | "BIGINT" => {
            Value::Int(row.try_get::<i64, _>(i).map_err(err)?)
        }
        "REAL" | "NUMERIC" => Value::Float(row.try_get::<f64, _>(i).map_err(err)?),
        "BLOB" => {
            let bytes = row.try_get::<Vec<u8>, _>(i).map_err(err)?;
            Value::Text(String::from_utf8(bytes).map_err(|e| e.to_string())?)
        }
        _ => Value::Text(
            row.try_get::<String, _>(i)
                .map_err(|e| format!("type {type_name}: {e}"))?,
        ),
    })
}

/// A sqlx error as a backend error: constraint, timeout, unreachable or rejected.
fn map_sqlx_err(name: &str, timeout_ms: u64, err: sqlx::Error) -> BackendError {
    let backend = name.to_owned();
    match err {
        sqlx::Error::Database(db) => {
            use sqlx::error::ErrorKind as K;
            let message = db.message().to_owned();
            match db.kind() {
                K::UniqueViolation
                | K::ForeignKeyViolation
                | K::NotNullViolation
                | K::CheckViolation => BackendError::Constraint { backend, message },
                _ if db.code().as_deref() == Some("57014") => BackendError::Timeout {
                    backend,
                    after_ms: timeout_ms,
                },
                // Data exceptions: the client's values, not the store, are at fault.
                _ if db
                    .code()
                    .is_some_and(|c| c.len() == 5 && c.starts_with("22")) =>
                {
                    BackendError::Data {
                        backend,
                        message: data_message(db.code().as_deref().unwrap_or_default()).to_owned(),
                    }
                }
                // Program limits (too many columns, a statement too complex).
                _ if db
                    .code()
                    .is_some_and(|c| c.len() == 5 && c.starts_with("54")) =>
                {
                    BackendError::TooLarge {
                        backend,
                        what: "the statement".to_owned(),
                        limit: None,
                        unit: "",
                    }
                }
                _ => BackendError::Rejected { backend, message },
            }
        }
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::Configuration(_) => BackendError::Unavailable {
            backend,
            source: Box::new(err),
        },
        other => BackendError::Rejected {
            backend,
            message: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_whose_connection_failed_may_have_landed() {
        let lost = sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset",
        ));
        let e = map_commit_err("pg", 1_000, lost);
        assert!(matches!(e, BackendError::Interrupted { .. }), "{e:?}");
        assert!(e.maybe_applied());
        // Before the COMMIT went out (no connection from the pool) nothing can have landed.
        let e = map_commit_err("pg", 1_000, sqlx::Error::PoolTimedOut);
        assert!(matches!(e, BackendError::Unavailable { .. }), "{e:?}");
        assert!(!e.maybe_applied());
        // The same lost connection on a statement inside the transaction: it rolls back.
        let lost = sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset",
        ));
        assert!(!map_sqlx_err("pg", 1_000, lost).maybe_applied());
    }
}
