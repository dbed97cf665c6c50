//! The saga log: a table on a SQL backend, in its own catalog, holding each saga's intent,
//! steps, state, outcome and lease; created on first use.

use super::*;

/// The saga log: a table on a SQL backend, in its own catalog (applications never see it).
#[derive(Debug)]
pub(crate) struct SagaLog {
    pub(super) backend: usize,
    pub(super) catalog: Catalog,
    ensured: tokio::sync::OnceCell<()>,
    pub(super) owner: String,
    lease: Duration,
}

pub(super) const LOG: &str = "saga_log";
const LOG_COLUMNS: [(&str, LogicalType); 11] = [
    ("saga_id", LogicalType::Text),
    ("idempotency_key", LogicalType::Text),
    ("request_hash", LogicalType::Text),
    ("state", LogicalType::Text),
    ("request", LogicalType::Json),
    ("steps", LogicalType::Json),
    ("outcome", LogicalType::Json),
    ("created_at", LogicalType::Timestamp),
    ("updated_at", LogicalType::Timestamp),
    ("lease_until", LogicalType::Int),
    ("owner", LogicalType::Text),
];
pub(super) const SUMMARY_COLUMNS: &str =
    "saga_id, state, idempotency_key, steps, outcome, request, created_at, updated_at";

pub(super) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub(super) fn now_text() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// 128 random bits as hex (std's `RandomState` is seeded randomly per instance).
pub(super) fn random_id() -> String {
    (0..2u64)
        .map(|i| {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(i);
            format!("{:016x}", h.finish())
        })
        .collect()
}

impl SagaLog {
    pub(crate) fn new(
        backend: usize,
        backend_name: &str,
        kind: switchyard_core::BackendKind,
        physical: &str,
        lease: Duration,
    ) -> SagaLog {
        let columns: Vec<Column> = LOG_COLUMNS
            .iter()
            .map(|(name, ty)| Column {
                name: (*name).to_owned(),
                ty: *ty,
            })
            .collect();
        let table = Table {
            name: LOG.to_owned(),
            primary_key: vec![0],
            placements: vec![Placement {
                backend: backend_name.to_owned(),
                role: Role::Primary,
                physical_name: physical.to_owned(),
                physical_columns: columns.iter().map(|c| c.name.clone()).collect(),
                key_pattern: None,
                mode: None,
                ttl_seconds: None,
                scan_max_rows: None,
            }],
            columns,
            shard_key: None,
        };
        let mut catalog = Catalog::default();
        catalog.tables.insert(LOG.to_owned(), table);
        catalog.backends.insert(
            backend_name.to_owned(),
            BackendInfo {
                name: backend_name.to_owned(),
                kind,
            },
        );
        SagaLog {
            backend,
            catalog,
            ensured: tokio::sync::OnceCell::new(),
            owner: format!("{}-{}", std::process::id(), &random_id()[..8]),
            lease,
        }
    }

    /// A log statement, bound against the log's catalog.
    pub(super) fn query(
        &self,
        sql: &str,
        params: &[serde_json::Value],
    ) -> Result<BoundQuery, RouterError> {
        Ok(switchyard_core::plan(sql, params, &self.catalog)?.query)
    }

    pub(super) fn lease_until(&self) -> i64 {
        now_ms() + i64::try_from(self.lease.as_millis()).unwrap_or(i64::MAX / 2)
    }

    /// The statement that records `steps` and `state` (and renews the lease).
    pub(super) fn progress(
        &self,
        saga_id: &str,
        state: SagaState,
        steps: &[Step],
    ) -> Result<BoundQuery, RouterError> {
        self.query(
            &format!(
                "UPDATE {LOG} SET state = $2, steps = $3, updated_at = $4, lease_until = $5 \
                 WHERE saga_id = $1"
            ),
            &[
                json!(saga_id),
                json!(state.as_str()),
                serde_json::to_value(steps).unwrap_or_default(),
                json!(now_text()),
                json!(self.lease_until()),
            ],
        )
    }
}

impl Router {
    fn saga_log(&self) -> Result<&SagaLog, RouterError> {
        self.saga.as_ref().ok_or_else(|| {
            RouterError::Plan(CoreError::NoRoute {
                reason:
                    "transactions need a SQL backend for the saga log ([transactions] log_backend)"
                        .to_owned(),
            })
        })
    }

    /// Creates the log table on first use.
    pub(super) async fn saga_ready(&self) -> Result<&SagaLog, RouterError> {
        let log = self.saga_log()?;
        log.ensured
            .get_or_try_init(|| async {
                let backend = self.backend_by_id(log.backend)?;
                let table = log
                    .catalog
                    .table(LOG)
                    .ok_or_else(|| RouterError::UnknownTable {
                        table: LOG.to_owned(),
                    })?;
                backend.ensure_table(table).await.map_err(RouterError::from)
            })
            .await?;
        Ok(log)
    }

    /// Runs a log statement on its own.
    pub(super) async fn log_run(
        &self,
        log: &SagaLog,
        q: &BoundQuery,
    ) -> Result<ResultSet, RouterError> {
        let backend = self.backend_by_id(log.backend)?;
        Ok(backend
            .execute(Fragment {
                query: q,
                catalog: &log.catalog,
            })
            .await?)
    }

    pub(super) async fn log_progress(
        &self,
        log: &SagaLog,
        saga_id: &str,
        state: SagaState,
        steps: &[Step],
    ) -> Result<(), RouterError> {
        let q = log.progress(saga_id, state, steps)?;
        self.log_run(log, &q).await.map(|_| ())
    }

    pub(super) async fn log_finish(
        &self,
        log: &SagaLog,
        saga_id: &str,
        state: SagaState,
        steps: &[Step],
        outcome: &serde_json::Value,
    ) -> Result<(), RouterError> {
        let q = log.query(
            &format!(
                "UPDATE {LOG} SET state = $2, steps = $3, outcome = $4, updated_at = $5 \
                 WHERE saga_id = $1"
            ),
            &[
                json!(saga_id),
                json!(state.as_str()),
                serde_json::to_value(steps).unwrap_or_default(),
                outcome.clone(),
                json!(now_text()),
            ],
        )?;
        self.log_run(log, &q).await.map(|_| ())
    }

    /// The state of step `k` as the log has it.
    pub(super) async fn step_state(
        &self,
        log: &SagaLog,
        saga_id: &str,
        k: usize,
    ) -> Option<StepState> {
        let q = log
            .query(
                &format!("SELECT steps FROM {LOG} WHERE saga_id = $1"),
                &[json!(saga_id)],
            )
            .ok()?;
        let rs = self.log_run(log, &q).await.ok()?;
        let Value::Json(steps) = rs.rows.first()?.first()? else {
            return None;
        };
        let steps: Vec<Step> = serde_json::from_value(steps.clone()).ok()?;
        steps.get(k).map(|s| s.state)
    }
}
