//! The MongoDB backend (official `mongodb` 3.x driver).
//!
//! Tables are collections; columns are field paths (the primary key usually maps to `_id`);
//! `json` columns hold subdocuments and arrays. Statements on one collection are pushed down
//! whole: WHERE as a query filter document (comparisons, IN, BETWEEN, LIKE as an anchored regex,
//! IS NULL) with the remainder as `$expr` under SQL's three-valued logic; projection, sort,
//! skip/limit, GROUP BY and aggregates as an aggregation pipeline; INSERT as `insertMany`,
//! UPDATE as a pipeline `updateMany`, DELETE as `deleteMany`. Values are bound as BSON, never
//! spliced into strings.
//!
//! Invariant: the only crate that knows the `mongodb` driver. Timestamps are stored with
//! millisecond precision (BSON dates); decimals as Decimal128.

pub mod translate;

use std::time::Duration;

use async_trait::async_trait;
use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, Database, IndexModel};
use switchyard_backend::{
    Backend, BackendError, Capabilities, Fragment, NativeStatement, RowStream, StreamLimits,
    coerce_column, spawn_stream, undecodable, within,
};
use switchyard_config::BackendConfig;
use switchyard_core::ir::{ExprKind, Statement};
use switchyard_core::{BackendKind, LogicalType, ResultColumn, ResultSet, Table, Value};
use translate::{Command, bson_to_json, from_bson};

/// A MongoDB backend.
#[derive(Debug)]
pub struct MongoBackend {
    name: String,
    db: Database,
    timeout: Duration,
    /// `stream_stall_timeout_ms`.
    stall: Duration,
}

impl MongoBackend {
    /// Parses the URL and creates the client; connections are made on first use.
    pub async fn connect_lazy(
        name: &str,
        config: &BackendConfig,
        default_timeout_ms: u64,
    ) -> Result<Self, BackendError> {
        let unavailable = |e: mongodb::error::Error| BackendError::Unavailable {
            backend: name.to_owned(),
            source: Box::new(e),
        };
        let mut options = ClientOptions::parse(&config.url)
            .await
            .map_err(unavailable)?;
        options.connect_timeout = Some(Duration::from_millis(config.connect_timeout_ms));
        options.server_selection_timeout = Some(Duration::from_millis(config.connect_timeout_ms));
        options.max_pool_size = Some(config.pool_max_connections);
        options.app_name = Some("switchyard".to_owned());
        let database = options
            .default_database
            .clone()
            .unwrap_or_else(|| "switchyard".to_owned());
        let client = Client::with_options(options).map_err(unavailable)?;
        Ok(Self {
            name: name.to_owned(),
            db: client.database(&database),
            timeout: Duration::from_millis(
                config.statement_timeout_ms.unwrap_or(default_timeout_ms),
            ),
            stall: Duration::from_millis(config.stream_stall_timeout_ms),
        })
    }

    fn command(&self, fragment: Fragment<'_>) -> Result<Command, BackendError> {
        let command =
            translate::translate(fragment.query, fragment.catalog, &self.name).map_err(|e| {
                BackendError::Unsupported {
                    backend: self.name.clone(),
                    what: e.0,
                }
            })?;
        command.check_limits().map_err(|e| BackendError::TooLarge {
            backend: self.name.clone(),
            what: format!("the generated command's {}", e.what),
            limit: Some(e.limit),
            unit: "",
        })?;
        Ok(command)
    }

    fn map_err(&self, err: mongodb::error::Error) -> BackendError {
        map_mongo_err(&self.name, err)
    }

    /// A failed write: a network error after server selection may have come after the server
    /// applied it (interrupted); anything else is mapped like a read's error.
    fn map_write_err(&self, err: mongodb::error::Error) -> BackendError {
        map_mongo_write_err(&self.name, err)
    }

    async fn run(
        &self,
        command: Command,
        columns: &[ResultColumn],
        statement: &Statement,
    ) -> Result<ResultSet, BackendError> {
        let mut out = ResultSet {
            columns: columns.to_vec(),
            rows: Vec::new(),
            rows_affected: None,
        };
        match command {
            Command::Aggregate {
                collection,
                pipeline,
                global_aggregate,
            } => {
                let coll = self.db.collection::<Document>(&collection);
                let cursor = coll
                    .aggregate(pipeline)
                    .await
                    .map_err(|e| self.map_err(e))?;
                let docs: Vec<Document> =
                    cursor.try_collect().await.map_err(|e| self.map_err(e))?;
                for d in docs {
                    out.rows.push(decode_row(&d, columns, &self.name)?);
                }
                if global_aggregate && out.rows.is_empty() {
                    out.rows.push(empty_aggregate_row(statement, &self.name)?);
                }
            }
            Command::Insert {
                collection,
                documents,
                ignore_duplicates,
            } => {
                let coll = self.db.collection::<Document>(&collection);
                let n = documents.len() as u64;
                match coll
                    .insert_many(documents)
                    .ordered(!ignore_duplicates)
                    .await
                {
                    Ok(r) => out.rows_affected = Some(r.inserted_ids.len() as u64),
                    Err(e) if ignore_duplicates => match e.kind.as_ref() {
                        mongodb::error::ErrorKind::InsertMany(im)
                            if im
                                .write_errors
                                .as_ref()
                                .is_some_and(|ws| ws.iter().all(|w| w.code == 11000)) =>
                        {
                            let failed = im.write_errors.as_ref().map_or(0, Vec::len) as u64;
                            out.rows_affected = Some(n.saturating_sub(failed));
                        }
                        _ => return Err(self.map_write_err(e)),
                    },
                    Err(e) => return Err(self.map_write_err(e)),
                }
            }
            Command::Update {
                collection,
                filter,
                update,
            } => {
                let coll = self.db.collection::<Document>(&collection);
                let r = coll
                    .update_many(filter, update)
                    .await
                    .map_err(|e| self.map_write_err(e))?;
                out.rows_affected = Some(r.matched_count);
            }
            Command::Upsert { collection, rows } => {
                let coll = self.db.collection::<Document>(&collection);
                let mut affected = 0;
                for row in rows {
                    match coll.insert_one(row.document).await {
                        Ok(_) => affected += 1,
                        Err(e) if is_duplicate_key(&e) => {
                            let r = coll
                                .update_one(row.filter, row.update)
                                .await
                                .map_err(|e| self.map_write_err(e))?;
                            affected += r.matched_count;
                        }
                        Err(e) => return Err(self.map_write_err(e)),
                    }
                }
                out.rows_affected = Some(affected);
            }
            Command::Delete { collection, filter } => {
                let coll = self.db.collection::<Document>(&collection);
                let r = coll
                    .delete_many(filter)
                    .await
                    .map_err(|e| self.map_write_err(e))?;
                out.rows_affected = Some(r.deleted_count);
            }
        }
        Ok(out)
    }
}

/// Whether a write failed on a duplicate key (E11000).
fn is_duplicate_key(err: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    match err.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == 11000,
        ErrorKind::InsertMany(e) => e
            .write_errors
            .as_ref()
            .is_some_and(|ws| ws.iter().any(|w| w.code == 11000)),
        ErrorKind::Command(c) => c.code == 11000,
        _ => false,
    }
}

/// The one row a global aggregate answers over an empty collection: COUNT is 0, the other
/// aggregates NULL, constants themselves.
fn empty_aggregate_row(statement: &Statement, backend: &str) -> Result<Vec<Value>, BackendError> {
    statement
        .output()
        .iter()
        .map(|c| match &c.expr.kind {
            ExprKind::Agg {
                func: switchyard_core::ir::AggFunc::Count,
                ..
            } => Ok(Value::Int(0)),
            ExprKind::Agg { .. } => Ok(Value::Null),
            ExprKind::Literal(v) => Ok(v.clone()),
            _ => Err(BackendError::Unsupported {
                backend: backend.to_owned(),
                what: "expressions over aggregates of an empty collection".to_owned(),
            }),
        })
        .collect()
}

#[async_trait]
impl Backend for MongoBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Mongodb
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            full_sql: false,
            joins: false,
            aggregates: true,
            sort_limit: true,
            needs_key: false,
            transactions: false,
            postgres_sql: false,
        }
    }

    fn explain(&self, fragment: Fragment<'_>) -> Result<NativeStatement, BackendError> {
        Ok(NativeStatement {
            language: "mongodb",
            text: self.command(fragment)?.to_text(),
            params: Vec::new(),
        })
    }

    async fn execute(&self, fragment: Fragment<'_>) -> Result<ResultSet, BackendError> {
        let command = self.command(fragment)?;
        let columns = fragment.query.statement.result_columns();
        let run = self.run(command, &columns, &fragment.query.statement);
        within(&self.name, self.timeout, run).await
    }

    async fn stream(&self, fragment: Fragment<'_>) -> Result<RowStream, BackendError> {
        let command = self.command(fragment)?;
        let columns = fragment.query.statement.result_columns();
        let Command::Aggregate {
            collection,
            pipeline,
            global_aggregate: false,
        } = command
        else {
            let run = self.run(command, &columns, &fragment.query.statement);
            return Ok(RowStream::whole(
                within(&self.name, self.timeout, run).await?,
            ));
        };
        let coll = self.db.collection::<Document>(&collection);
        let (name, cols) = (self.name.clone(), columns.clone());
        spawn_stream(
            &self.name,
            StreamLimits {
                timeout: self.timeout,
                stall: self.stall,
            },
            columns,
            move |mut sink| async move {
                let mut cursor = coll
                    .aggregate(pipeline)
                    .await
                    .map_err(|e| map_mongo_err(&name, e))?;
                while let Some(d) = cursor
                    .try_next()
                    .await
                    .map_err(|e| map_mongo_err(&name, e))?
                {
                    if !sink.push(decode_row(&d, &cols, &name)?).await {
                        break;
                    }
                }
                Ok(sink)
            },
        )
        .await
    }

    async fn health(&self) -> Result<(), BackendError> {
        let ping = self.db.run_command(doc! { "ping": 1 });
        within(&self.name, self.timeout, async {
            ping.await.map(|_| ()).map_err(|e| self.map_err(e))
        })
        .await
    }

    async fn ensure_table(&self, table: &Table) -> Result<(), BackendError> {
        let placement =
            table
                .placement_on(&self.name)
                .ok_or_else(|| BackendError::Unsupported {
                    backend: self.name.clone(),
                    what: format!("table `{}` has no placement here", table.name),
                })?;
        let existing = self
            .db
            .list_collection_names()
            .await
            .map_err(|e| self.map_err(e))?;
        if !existing.contains(&placement.physical_name)
            && let Err(e) = self.db.create_collection(&placement.physical_name).await
        {
            // 48: NamespaceExists (another router created it first).
            let exists =
                matches!(e.kind.as_ref(), mongodb::error::ErrorKind::Command(c) if c.code == 48);
            if !exists {
                return Err(self.map_err(e));
            }
        }
        let key_fields: Vec<&str> = table
            .primary_key
            .iter()
            .map(|c| placement.physical_columns[*c].as_str())
            .collect();
        if key_fields != ["_id"] {
            let mut keys = Document::new();
            for f in &key_fields {
                keys.insert(*f, Bson::Int32(1));
            }
            let index = IndexModel::builder()
                .keys(keys)
                .options(
                    IndexOptions::builder()
                        .unique(true)
                        .name("switchyard_pk".to_owned())
                        .build(),
                )
                .build();
            self.db
                .collection::<Document>(&placement.physical_name)
                .create_index(index)
                .await
                .map_err(|e| self.map_err(e))?;
        }
        Ok(())
    }
}

/// A failed write: `Io` (the connection failed, possibly after the write was sent) is
/// interrupted; server selection failures never sent it.
fn map_mongo_write_err(name: &str, err: mongodb::error::Error) -> BackendError {
    if matches!(err.kind.as_ref(), mongodb::error::ErrorKind::Io(_)) {
        return BackendError::Interrupted {
            backend: name.to_owned(),
            source: Box::new(err),
        };
    }
    map_mongo_err(name, err)
}

/// A driver error as a backend error: duplicate key, unreachable or rejected.
fn map_mongo_err(name: &str, err: mongodb::error::Error) -> BackendError {
    use mongodb::error::ErrorKind;
    let backend = name.to_owned();
    let duplicate = is_duplicate_key(&err);
    if duplicate {
        return BackendError::Constraint {
            backend,
            message: "duplicate key".to_owned(),
        };
    }
    match err.kind.as_ref() {
        ErrorKind::ServerSelection { .. }
        | ErrorKind::Io(_)
        | ErrorKind::ConnectionPoolCleared { .. } => BackendError::Unavailable {
            backend,
            source: Box::new(err),
        },
        // A zero divisor computed from the data (constant ones are refused when binding).
        ErrorKind::Command(c)
            if c.message.contains("divide by zero") || c.message.contains("mod by zero") =>
        {
            BackendError::Data {
                backend,
                message: "division by zero".to_owned(),
            }
        }
        ErrorKind::Command(c) => BackendError::Rejected {
            backend,
            message: c.message.clone(),
        },
        // The driver's own failures: its text (debug output) goes to the log only.
        _ => {
            tracing::warn!(backend = %backend, error = %err, "mongodb driver error");
            BackendError::Rejected {
                backend,
                message: "the MongoDB driver failed the command".to_owned(),
            }
        }
    }
}

/// One result document (fields `c0`, `c1`, ...) as a row of the declared types.
fn decode_row(
    d: &Document,
    columns: &[ResultColumn],
    backend: &str,
) -> Result<Vec<Value>, BackendError> {
    let mut row = Vec::with_capacity(columns.len());
    for (i, c) in columns.iter().enumerate() {
        let raw = match (d.get(format!("c{i}")), c.ty) {
            // Any JSON value reads back as itself: a scalar (a string, a number) stored in a
            // json column is JSON too, not text to parse.
            (Some(b), LogicalType::Json) if !matches!(b, Bson::Null) => {
                Ok(Value::Json(bson_to_json(b)))
            }
            (b, _) => b.map_or(Ok(Value::Null), from_bson),
        };
        let raw = raw.map_err(|detail| undecodable(backend, c, detail))?;
        row.push(coerce_column(backend, c, raw)?);
    }
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_whose_connection_failed_may_have_applied() {
        let io = || {
            mongodb::error::Error::from(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "reset",
            ))
        };
        let e = map_mongo_write_err("mongo", io());
        assert!(matches!(e, BackendError::Interrupted { .. }), "{e:?}");
        assert!(e.maybe_applied());
        // A read failing the same way is an unavailable store.
        let e = map_mongo_err("mongo", io());
        assert!(matches!(e, BackendError::Unavailable { .. }), "{e:?}");
    }
}
