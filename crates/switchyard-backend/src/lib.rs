//! The one trait every store adapter implements (SQLite, PostgreSQL, MySQL/MariaDB, MongoDB,
//! Redis), with the fragment it executes, the capabilities it declares and its errors.
//!
//! Invariant: the planner talks to stores only through [`Backend`]; it asks [`Capabilities`] and
//! never special-cases a backend by name or kind.

use std::fmt;

use async_trait::async_trait;
use switchyard_core::{BackendKind, BoundQuery, Catalog, ErrorCode, ResultSet, Table, Value};

/// The part of a query one backend runs. In this slice a fragment is a whole bound statement.
#[derive(Debug, Clone, Copy)]
pub struct Fragment<'a> {
    /// The bound statement and its parameter values.
    pub query: &'a BoundQuery,
    /// The catalog, for physical names of the tables on this backend.
    pub catalog: &'a Catalog,
}

/// What a backend can run natively.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// Runs whole SQL statements (joins, aggregates, sorts) of the supported subset.
    pub full_sql: bool,
    /// Can join tables it holds.
    pub joins: bool,
    /// Can compute GROUP BY and aggregates.
    pub aggregates: bool,
    /// Can sort and apply LIMIT/OFFSET.
    pub sort_limit: bool,
    /// Reads need a key (Redis without `scan = "allow"`).
    pub needs_key: bool,
    /// Runs several statements in one local ACID transaction.
    pub transactions: bool,
    /// Runs statements written in PostgreSQL's own SQL ([`Backend::stream_sql`]): the
    /// router-side engine sends a statement whose every table is here as a whole.
    pub postgres_sql: bool,
}

/// The native statement a fragment becomes, for `explain`.
#[derive(Debug, Clone, PartialEq)]
pub struct NativeStatement {
    /// The language of `text`: `sql`, `mongodb`, `redis`.
    pub language: &'static str,
    /// Statement text in the backend's dialect, with placeholders.
    pub text: String,
    /// Values bound to the placeholders, in order.
    pub params: Vec<Value>,
}

/// Why a backend could not run a fragment.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The store could not be reached (connect failure, pool exhausted, connection lost).
    #[error("backend `{backend}` is unavailable")]
    Unavailable {
        /// Backend name.
        backend: String,
        /// Driver error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The connection failed after a write (or a COMMIT) was sent: the store may or may not have
    /// applied it. Callers that must know (sagas) treat it like a timeout.
    #[error(
        "backend `{backend}`: the connection was lost while a write was in flight; it may have been applied"
    )]
    Interrupted {
        /// Backend name.
        backend: String,
        /// Driver error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The statement did not finish in time.
    #[error("backend `{backend}` did not answer within {after_ms} ms")]
    Timeout {
        /// Backend name.
        backend: String,
        /// The timeout that expired.
        after_ms: u64,
    },
    /// A primary key, unique, not-null or check constraint refused the write.
    #[error("constraint violated on backend `{backend}`: {message}")]
    Constraint {
        /// Backend name.
        backend: String,
        /// The store's message.
        message: String,
    },
    /// A value made the statement fail in the store (out of range, division by zero): the
    /// client's data, not the store, is at fault.
    #[error("backend `{backend}`: {message}")]
    Data {
        /// Backend name.
        backend: String,
        /// What went wrong, without driver text, e.g. `bigint out of range`.
        message: String,
    },
    /// A streamed answer whose client stopped reading: abandoned, its connection released.
    #[error(
        "backend `{backend}`: the answer was abandoned after the client read nothing for {after_ms} ms"
    )]
    Stalled {
        /// Backend name.
        backend: String,
        /// The stall timeout.
        after_ms: u64,
    },
    /// The store refused or failed the statement.
    #[error("backend `{backend}` failed the statement: {message}")]
    Rejected {
        /// Backend name.
        backend: String,
        /// The store's message.
        message: String,
    },
    /// A value the store returned does not fit the column's logical type.
    #[error("backend `{backend}` returned a value that does not fit column `{column}`: {message}")]
    Decode {
        /// Backend name.
        backend: String,
        /// Output column.
        column: String,
        /// What did not fit.
        message: String,
    },
    /// A key-value store was asked to read or write without the key.
    #[error("backend `{backend}` needs the key of table `{table}`: {hint}")]
    NeedsKey {
        /// Backend name.
        backend: String,
        /// The table.
        table: String,
        /// What to add.
        hint: String,
    },
    /// The answer would pass a configured row bound.
    #[error("backend `{backend}`: {what} passes {}", bound(*limit, unit))]
    TooLarge {
        /// Backend name.
        backend: String,
        /// What grew too large.
        what: String,
        /// The bound, when known (the store's own limits are not).
        limit: Option<u64>,
        /// The bound's unit with a leading space (` rows`), empty when `what` says it.
        unit: &'static str,
    },
    /// The backend cannot run this fragment (capability or not yet implemented).
    #[error("backend `{backend}` cannot run this: {what}")]
    Unsupported {
        /// Backend name.
        backend: String,
        /// What it cannot do.
        what: String,
    },
}

impl BackendError {
    /// Whether the store may have applied the write that failed this way (the answer was lost,
    /// not refused).
    pub fn maybe_applied(&self) -> bool {
        matches!(self, Self::Interrupted { .. } | Self::Timeout { .. })
    }

    /// The client-facing code.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Unavailable { .. } | Self::Interrupted { .. } => ErrorCode::BackendUnavailable,
            Self::Timeout { .. } => ErrorCode::Timeout,
            Self::Constraint { .. } => ErrorCode::ConstraintViolation,
            Self::Data { .. } => ErrorCode::DataError,
            Self::Stalled { .. } => ErrorCode::Timeout,
            Self::Rejected { .. } | Self::Decode { .. } => ErrorCode::BackendError,
            Self::Unsupported { .. } => ErrorCode::NoRoute,
            Self::NeedsKey { .. } => ErrorCode::NeedsKey,
            Self::TooLarge { .. } => ErrorCode::QueryTooLarge,
        }
    }
}

/// `raw`, as a store returned it, as a value of `column`'s type. An int column holding a float
/// is an integer overflow that the store (SQLite, MongoDB) turned into a float: the client's
/// data error, as PostgreSQL reports it, not a store failure.
pub fn coerce_column(
    backend: &str,
    column: &switchyard_core::ResultColumn,
    raw: Value,
) -> Result<Value, BackendError> {
    if column.ty == switchyard_core::LogicalType::Int
        && let Value::Float(f) = raw
        && (f.fract() != 0.0 || f.abs() >= i64::MAX as f64)
    {
        return Err(BackendError::Data {
            backend: backend.to_owned(),
            message: "value out of range".to_owned(),
        });
    }
    raw.coerce(column.ty)
        .map_err(|message| BackendError::Decode {
            backend: backend.to_owned(),
            column: column.name.clone(),
            message,
        })
}

/// A value the driver could not read at all: the driver's text goes to the log, the client
/// gets the column and its type.
pub fn undecodable(
    backend: &str,
    column: &switchyard_core::ResultColumn,
    detail: String,
) -> BackendError {
    tracing::warn!(backend, column = %column.name, detail = %detail, "store value not decodable");
    BackendError::Decode {
        backend: backend.to_owned(),
        column: column.name.clone(),
        message: format!("the store's value cannot be read as {}", column.ty.name()),
    }
}

fn bound(limit: Option<u64>, unit: &str) -> String {
    match limit {
        Some(limit) => format!("the bound of {limit}{unit}"),
        None => "a limit of the store".to_owned(),
    }
}

/// Runs `work`, failing with [`BackendError::Timeout`] for `backend` once `limit` has passed.
pub async fn within<T>(
    backend: &str,
    limit: std::time::Duration,
    work: impl std::future::Future<Output = Result<T, BackendError>>,
) -> Result<T, BackendError> {
    match tokio::time::timeout(limit, work).await {
        Ok(result) => result,
        Err(_) => Err(BackendError::Timeout {
            backend: backend.to_owned(),
            after_ms: u64::try_from(limit.as_millis()).unwrap_or(u64::MAX),
        }),
    }
}

/// Connections of a backend's pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolState {
    /// Open connections.
    pub size: u32,
    /// Open and idle.
    pub idle: u32,
}

/// Rows per batch of a streamed SELECT.
pub const STREAM_BATCH_ROWS: usize = 512;

/// A SELECT answer that arrives in batches: the first batch is read before the stream is
/// handed over (so an error the store reports at once still becomes the response status), the
/// rest come through a bounded channel, so the producer waits while the consumer is behind and
/// memory stays at a few batches. Dropping the stream cancels the statement.
#[derive(Debug)]
pub struct RowStream {
    /// The output columns.
    pub columns: Vec<switchyard_core::ResultColumn>,
    /// The first batch (all rows when `rest` is `None`).
    pub first: Vec<Vec<switchyard_core::Value>>,
    /// The batches after the first, ending with an error if the store fails midway.
    pub rest: Option<Batches>,
}

/// The batches of a [`RowStream`] after its first.
#[derive(Debug)]
pub struct Batches {
    rx: tokio::sync::mpsc::Receiver<Batch>,
    /// Set by a producer that gave up on a consumer that stopped reading (the channel was full,
    /// so the error could not be queued behind the rows).
    abandoned: std::sync::Arc<std::sync::Mutex<Option<BackendError>>>,
    /// Closed when the producing task ends (its connection is back in the pool or closed).
    producer: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl Batches {
    /// Resolves when the task reading the store ends, whether or not anyone reads the rows it
    /// queued: how long the stream holds a store connection (the first call only).
    pub fn producer_done(&mut self) -> Option<impl std::future::Future<Output = ()> + use<>> {
        self.producer.take().map(|rx| async move {
            let _ = rx.await;
        })
    }

    /// The next batch; `None` at the end. A stream the producer abandoned ends with its error
    /// after the rows already queued, never as if it were complete.
    pub async fn recv(&mut self) -> Option<Batch> {
        match self.rx.recv().await {
            Some(batch) => Some(batch),
            None => self
                .abandoned
                .lock()
                .ok()
                .and_then(|mut e| e.take())
                .map(Err),
        }
    }
}

impl RowStream {
    /// A stream over rows already in memory.
    pub fn whole(result: ResultSet) -> RowStream {
        RowStream {
            columns: result.columns,
            first: result.rows,
            rest: None,
        }
    }
}

type Batch = Result<Vec<Vec<Value>>, BackendError>;

/// The producing side of a [`RowStream`]: gathers rows into batches of [`STREAM_BATCH_ROWS`]
/// and sends each full one, waiting while the consumer is behind.
#[derive(Debug)]
pub struct RowSink {
    tx: tokio::sync::mpsc::Sender<Batch>,
    batch: Vec<Vec<Value>>,
    /// How long a full batch may wait for the consumer before the stream is abandoned.
    stall: std::time::Duration,
    backend: String,
    abandoned: std::sync::Arc<std::sync::Mutex<Option<BackendError>>>,
}

impl RowSink {
    /// Adds a row; `false` when the consumer is gone, or stopped reading for longer than the
    /// stall timeout: stop reading the store (that cancels the statement and releases its
    /// connection).
    pub async fn push(&mut self, row: Vec<Value>) -> bool {
        self.batch.push(row);
        if self.batch.len() < STREAM_BATCH_ROWS {
            return true;
        }
        let full = std::mem::replace(&mut self.batch, Vec::with_capacity(STREAM_BATCH_ROWS));
        match tokio::time::timeout(self.stall, self.tx.send(Ok(full))).await {
            Ok(sent) => sent.is_ok(),
            Err(_) => {
                abandon(&self.abandoned, &self.backend, self.stall);
                false
            }
        }
    }

    /// Whether the consumer stalled and the stream was abandoned.
    fn abandoned(&self) -> bool {
        self.abandoned.lock().map(|e| e.is_some()).unwrap_or(false)
    }
}

/// Marks a stream abandoned because its consumer stopped reading for `stall`: the rows already
/// queued are followed by a `Stalled` error, never by a normal end.
fn abandon(
    slot: &std::sync::Mutex<Option<BackendError>>,
    backend: &str,
    stall: std::time::Duration,
) {
    if let Ok(mut slot) = slot.lock() {
        *slot = Some(BackendError::Stalled {
            backend: backend.to_owned(),
            after_ms: u64::try_from(stall.as_millis()).unwrap_or(u64::MAX),
        });
    }
}

/// Streams a SELECT: `produce` reads the store within `timeout`, pushing rows into the sink it
/// is given and handing it back at the end. It runs on the calling task until the answer ends
/// or a first full batch is read: an answer of less than two batches or so (every point lookup)
/// is returned whole, with no task, channel or thread hand-off. A longer one continues on its
/// own task from where it stopped, its batches handed over through a bounded channel. An
/// immediate failure is returned before the answer starts; a later one ends the stream.
pub async fn spawn_stream<F, Fut>(
    backend: &str,
    limits: StreamLimits,
    columns: Vec<switchyard_core::ResultColumn>,
    produce: F,
) -> Result<RowStream, BackendError>
where
    F: FnOnce(RowSink) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<RowSink, BackendError>> + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::channel(2);
    let abandoned = std::sync::Arc::new(std::sync::Mutex::new(None));
    let sink = RowSink {
        tx: tx.clone(),
        batch: Vec::with_capacity(STREAM_BATCH_ROWS.min(16)),
        stall: limits.stall,
        backend: backend.to_owned(),
        abandoned: abandoned.clone(),
    };
    let name = backend.to_owned();
    let stall = limits.stall;
    let mut reading = Box::pin(async move { within(&name, limits.timeout, produce(sink)).await });
    // `biased`: the store is read until it has nothing ready, then the channel is looked at.
    let first = tokio::select! {
        biased;
        done = &mut reading => {
            // The whole answer was read here: what was queued, then the last partial batch.
            let mut rows = Vec::new();
            while let Ok(batch) = rx.try_recv() {
                rows.extend(batch?);
            }
            let sink = done?;
            if let Some(e) = abandoned.lock().ok().and_then(|mut e| e.take()) {
                return Err(e);
            }
            rows.extend(sink.batch);
            return Ok(RowStream { columns, first: rows, rest: None });
        }
        batch = rx.recv() => match batch {
            Some(batch) => batch?,
            None => Vec::new(),
        },
    };
    let (producer_tx, producer_rx) = tokio::sync::oneshot::channel::<()>();
    let slot = abandoned.clone();
    let backend = backend.to_owned();
    tokio::spawn(async move {
        // Dropped when this task ends: tells `Batches::producer_done`.
        let _producing = producer_tx;
        // The receiver may be gone (client disconnected): then there is nothing left to tell.
        // Sends wait at most the stall timeout: a consumer that does not read never holds the
        // task (and the store's connection) for longer, and one that comes back later finds
        // the stream ended by `Stalled` (the last rows or the error could not be queued), set
        // before this task drops its senders.
        let queued = match reading.await {
            Ok(sink) if !sink.abandoned() => {
                tokio::time::timeout(stall, sink.tx.send(Ok(sink.batch))).await
            }
            Ok(_) => return,
            Err(e) => tokio::time::timeout(stall, tx.send(Err(e))).await,
        };
        if queued.is_err() {
            abandon(&slot, &backend, stall);
        }
    });
    Ok(RowStream {
        columns,
        first,
        rest: Some(Batches {
            rx,
            abandoned,
            producer: Some(producer_rx),
        }),
    })
}

/// Bounds of a streamed answer.
#[derive(Debug, Clone, Copy)]
pub struct StreamLimits {
    /// The whole statement.
    pub timeout: std::time::Duration,
    /// How long a full batch waits for a consumer that stopped reading before the stream is
    /// abandoned (`backends.*.stream_stall_timeout_ms`).
    pub stall: std::time::Duration,
}

/// A store behind the router.
#[async_trait]
pub trait Backend: Send + Sync + fmt::Debug {
    /// Name from `[backends.NAME]`.
    fn name(&self) -> &str;
    /// Kind of store.
    fn kind(&self) -> BackendKind;
    /// What it can run natively.
    fn capabilities(&self) -> Capabilities;
    /// The native statement for a fragment, without running it.
    fn explain(&self, fragment: Fragment<'_>) -> Result<NativeStatement, BackendError>;
    /// Runs a fragment.
    async fn execute(&self, fragment: Fragment<'_>) -> Result<ResultSet, BackendError>;
    /// Runs a SELECT fragment, streaming its rows. The default reads the whole answer.
    async fn stream(&self, fragment: Fragment<'_>) -> Result<RowStream, BackendError> {
        Ok(RowStream::whole(self.execute(fragment).await?))
    }
    /// Streams a SELECT written in the store's own SQL (stores with
    /// [`Capabilities::postgres_sql`]), binding `params` to `$1..$n`; every output column is
    /// read as text (`width` of them). The default refuses.
    async fn stream_sql(
        &self,
        sql: String,
        params: Vec<Value>,
        width: usize,
    ) -> Result<RowStream, BackendError> {
        let _ = (sql, params, width);
        Err(BackendError::Unsupported {
            backend: self.name().to_owned(),
            what: "statements in its own SQL".to_owned(),
        })
    }
    /// Checks that the store answers.
    async fn health(&self) -> Result<(), BackendError>;
    /// Connections of its pool, for stores with one the router manages.
    fn pool_state(&self) -> Option<PoolState> {
        None
    }
    /// Creates the physical table (collection, ...) of `table` on this backend if it is missing.
    async fn ensure_table(&self, table: &Table) -> Result<(), BackendError>;
    /// Opens a local ACID transaction (stores whose [`Capabilities::transactions`] is true).
    /// The default refuses.
    async fn begin(&self) -> Result<Box<dyn LocalTransaction>, BackendError> {
        Err(BackendError::Unsupported {
            backend: self.name().to_owned(),
            what: "local transactions".to_owned(),
        })
    }
    /// Appends change events to the stream `stream` (capped near `max_len` entries), each with
    /// the key's new version (a per-key counter the store keeps), and returns those versions.
    /// The default refuses (only Redis holds event streams).
    async fn publish_changes(
        &self,
        stream: &str,
        max_len: u64,
        events: &[ChangeEvent],
    ) -> Result<Vec<u64>, BackendError> {
        let _ = (stream, max_len, events);
        Err(BackendError::Unsupported {
            backend: self.name().to_owned(),
            what: "change event streams".to_owned(),
        })
    }
    /// Versioned cache support (race-safe fills), for stores that can hold a cache placement
    /// safely. `None`: fills are plain `INSERT ... ON CONFLICT DO NOTHING`.
    fn versioned_cache(&self) -> Option<&dyn VersionedCache> {
        None
    }
}

/// A committed write, as published on the change stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeEvent {
    /// Logical table.
    pub table: String,
    /// The primary key: its value's text, or for several columns their values with `\` and
    /// `:` escaped by `\`, joined by `:`; `*` when the write did not pin its keys.
    pub key: String,
    /// `insert`, `update` or `delete`.
    pub operation: &'static str,
    /// The saga that wrote it, for writes of `POST /v1/transaction`.
    pub saga_id: Option<String>,
}

/// A local transaction on one store: statements run on one connection; [`commit`] makes them
/// durable together; dropping it without commit rolls everything back.
///
/// [`commit`]: LocalTransaction::commit
#[async_trait]
pub trait LocalTransaction: Send {
    /// Runs a fragment inside the transaction.
    async fn execute(&mut self, fragment: Fragment<'_>) -> Result<ResultSet, BackendError>;
    /// Commits.
    async fn commit(self: Box<Self>) -> Result<(), BackendError>;
}

/// Cache entries that carry a version, so a fill that read the source of truth before a write
/// cannot store what it read after that write invalidated the key.
///
/// The protocol: a reader takes [`tokens`](VersionedCache::tokens) for the keys it missed
/// *before* reading the source, then [`fill`](VersionedCache::fill)s with them; a writer calls
/// [`invalidate`](VersionedCache::invalidate) *after* its write committed, which bumps every
/// key's version and deletes the entry. A fill stores a row only while the key's version is the
/// one its token saw, atomically in the store, so a fill racing a write always loses.
#[async_trait]
pub trait VersionedCache: Send + Sync {
    /// The current version token of each key (`keys` in primary-key order).
    async fn tokens(&self, table: &Table, keys: &[Vec<Value>]) -> Result<Vec<u64>, BackendError>;
    /// Stores each row (every column of `table`, in order) whose key still has its token's
    /// version; returns how many were stored. `tokens[i]` belongs to `rows[i]`.
    async fn fill(
        &self,
        table: &Table,
        rows: &[Vec<Value>],
        tokens: &[u64],
    ) -> Result<u64, BackendError>;
    /// Bumps the version of each key and deletes its entry.
    async fn invalidate(&self, table: &Table, keys: &[Vec<Value>]) -> Result<(), BackendError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> StreamLimits {
        StreamLimits {
            timeout: std::time::Duration::from_secs(10),
            stall: std::time::Duration::from_secs(10),
        }
    }

    /// Streams `n` one-column rows, failing after them when `fail` is set.
    async fn rows(n: usize, fail: bool) -> Result<RowStream, BackendError> {
        rows_within(limits(), n, fail).await
    }

    async fn rows_within(
        limits: StreamLimits,
        n: usize,
        fail: bool,
    ) -> Result<RowStream, BackendError> {
        spawn_stream("b", limits, Vec::new(), move |mut sink| async move {
            for i in 0..n {
                // A store answers in network reads: let the consumer run now and then.
                if i % 100 == 0 {
                    tokio::task::yield_now().await;
                }
                if !sink.push(vec![Value::Int(i as i64)]).await {
                    return Ok(sink);
                }
            }
            if fail {
                return Err(BackendError::Rejected {
                    backend: "b".to_owned(),
                    message: "midway".to_owned(),
                });
            }
            Ok(sink)
        })
        .await
    }

    async fn all(stream: RowStream) -> (Vec<i64>, Option<BackendError>) {
        let mut out: Vec<Vec<Value>> = stream.first;
        let mut error = None;
        if let Some(mut rest) = stream.rest {
            while let Some(batch) = rest.recv().await {
                match batch {
                    Ok(rows) => out.extend(rows),
                    Err(e) => error = Some(e),
                }
            }
        }
        let ints = out
            .into_iter()
            .map(|r| match r.as_slice() {
                [Value::Int(i)] => *i,
                other => panic!("unexpected row {other:?}"),
            })
            .collect();
        (ints, error)
    }

    #[tokio::test]
    async fn a_small_answer_is_read_on_the_calling_task() {
        for n in [0, 1, 7, STREAM_BATCH_ROWS - 1] {
            let stream = rows(n, false).await.expect("stream");
            assert!(stream.rest.is_none(), "{n} rows came through a task");
            let (got, error) = all(stream).await;
            assert_eq!(got, (0..n as i64).collect::<Vec<_>>());
            assert!(error.is_none());
        }
    }

    #[tokio::test]
    async fn a_large_answer_continues_on_its_own_task_in_order() {
        let n = STREAM_BATCH_ROWS * 10 + 3;
        let stream = rows(n, false).await.expect("stream");
        assert!(stream.rest.is_some(), "a large answer was read whole");
        let (got, error) = all(stream).await;
        assert_eq!(got, (0..n as i64).collect::<Vec<_>>());
        assert!(error.is_none());
    }

    #[tokio::test]
    async fn a_consumer_that_stalls_before_the_last_rows_gets_an_error_not_a_short_answer() {
        let stall = std::time::Duration::from_millis(50);
        let limits = StreamLimits {
            timeout: std::time::Duration::from_secs(10),
            stall,
        };
        // Three full batches and a partial one: the first is handed over, the next two fill
        // the channel, and the last cannot be queued while nobody reads.
        let n = STREAM_BATCH_ROWS * 3 + 100;
        let stream = rows_within(limits, n, false).await.expect("stream");
        tokio::time::sleep(stall * 6).await;
        let (got, error) = all(stream).await;
        assert_eq!(got.len(), STREAM_BATCH_ROWS * 3);
        assert!(
            matches!(error, Some(BackendError::Stalled { .. })),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn failures_before_and_after_the_first_batch() {
        // Before the answer starts: the error itself.
        let early = rows(3, true).await;
        assert!(
            matches!(early, Err(BackendError::Rejected { .. })),
            "{early:?}"
        );
        // After batches were handed over: the rows, then the error.
        let n = STREAM_BATCH_ROWS * 10;
        let stream = rows(n, true).await.expect("stream");
        let (got, error) = all(stream).await;
        assert_eq!(got.len(), n);
        assert!(
            matches!(error, Some(BackendError::Rejected { .. })),
            "{error:?}"
        );
    }
}
