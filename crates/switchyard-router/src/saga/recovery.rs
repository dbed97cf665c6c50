//! Sagas after the fact: listing them for `/admin/sagas`, and recovery — a saga whose router
//! died mid-way is compensated (or recorded committed) by any router once its lease expires.

use super::*;

impl Router {
    /// `GET /admin/sagas`: with `state`, the most recent `limit` sagas in that state; without,
    /// every saga that is not finished, then the `limit` most recent finished ones.
    pub async fn sagas(
        &self,
        state: Option<SagaState>,
        limit: u64,
    ) -> Result<Vec<SagaSummary>, RouterError> {
        let log = self.saga_ready().await?;
        let mut out = Vec::new();
        if let Some(state) = state {
            let q = log.query(
                &format!(
                    "SELECT {SUMMARY_COLUMNS} FROM {LOG} \
                     WHERE state = $1 ORDER BY updated_at DESC LIMIT {limit}"
                ),
                &[json!(state.as_str())],
            )?;
            return Ok(self
                .log_run(log, &q)
                .await?
                .rows
                .iter()
                .map(|r| summary(r))
                .collect());
        }
        let unfinished = log.query(
            &format!(
                "SELECT {SUMMARY_COLUMNS} FROM {LOG} \
                 WHERE state IN ('running', 'compensating', 'in_doubt') ORDER BY updated_at DESC"
            ),
            &[],
        )?;
        let recent = log.query(
            &format!(
                "SELECT {SUMMARY_COLUMNS} FROM {LOG} \
                 WHERE state IN ('committed', 'aborted') ORDER BY updated_at DESC LIMIT {limit}"
            ),
            &[],
        )?;
        for q in [unfinished, recent] {
            for row in self.log_run(log, &q).await?.rows {
                out.push(summary(&row));
            }
        }
        Ok(out)
    }

    /// One saga by id (`GET /admin/sagas/{saga_id}`).
    pub async fn saga(&self, saga_id: &str) -> Result<Option<SagaSummary>, RouterError> {
        let log = self.saga_ready().await?;
        let q = log.query(
            &format!("SELECT {SUMMARY_COLUMNS} FROM {LOG} WHERE saga_id = $1"),
            &[json!(saga_id)],
        )?;
        Ok(self
            .log_run(log, &q)
            .await?
            .rows
            .first()
            .map(|r| summary(r)))
    }

    /// Finishes the sagas whose router stopped (lease expired): commits those whose every step
    /// is done, compensates the rest. Returns how many it took over.
    pub async fn recover_sagas(&self) -> Result<usize, RouterError> {
        let log = self.saga_ready().await?;
        let now = now_ms();
        let q = log.query(
            &format!(
                "SELECT saga_id, steps, request FROM {LOG} \
                 WHERE state IN ('running', 'compensating') AND lease_until < $1"
            ),
            &[json!(now)],
        )?;
        let candidates = self.log_run(log, &q).await?.rows;
        let mut taken = 0;
        for row in candidates {
            let Some(Value::Text(saga_id)) = row.first() else {
                continue;
            };
            // Claim it: only one router wins the conditional update.
            let claim = log.query(
                &format!(
                    "UPDATE {LOG} SET owner = $2, lease_until = $3 \
                     WHERE saga_id = $1 AND lease_until < $4 AND state IN ('running', 'compensating')"
                ),
                &[
                    json!(saga_id),
                    json!(log.owner),
                    json!(log.lease_until()),
                    json!(now),
                ],
            )?;
            if self.log_run(log, &claim).await?.rows_affected != Some(1) {
                continue;
            }
            taken += 1;
            let steps: Vec<Step> = match row.get(1) {
                Some(Value::Json(j)) => serde_json::from_value(j.clone()).unwrap_or_default(),
                _ => Vec::new(),
            };
            let request: Option<TxRequest> = match row.get(2) {
                Some(Value::Json(j)) => serde_json::from_value(j.clone()).ok(),
                _ => None,
            };
            let context = request.map(|r| r.context).unwrap_or_default();
            self.recover_one(log, saga_id, &context, steps).await;
        }
        Ok(taken)
    }

    async fn recover_one(
        &self,
        log: &SagaLog,
        saga_id: &str,
        context: &Context,
        mut steps: Vec<Step>,
    ) {
        if !steps.is_empty() && steps.iter().all(|s| s.state == StepState::Done) {
            // The router died before the commit record, maybe before its events went out.
            self.publish_step_events(saga_id, &steps).await;
            let outcome = json!({ "results": serde_json::Value::Null, "recovered": true });
            match self
                .log_finish(log, saga_id, SagaState::Committed, &steps, &outcome)
                .await
            {
                Ok(()) => {
                    tracing::info!(
                        saga = saga_id,
                        "recovered saga: every step was done, committed"
                    );
                    self.metrics
                        .sagas
                        .with_label_values(&["recovered_committed"])
                        .inc();
                }
                Err(e) => {
                    tracing::warn!(saga = saga_id, error = %e, "recovery could not record the commit")
                }
            }
            return;
        }
        let result = self.compensate(log, saga_id, context, &mut steps).await;
        let (state, failure) = match result {
            Ok(()) => (
                SagaState::Aborted,
                TxFailure {
                    code: ErrorCode::TransactionAborted,
                    message: "the router running this transaction stopped; every completed step was rolled back"
                        .to_owned(),
                    saga_id: Some(saga_id.to_owned()),
                    statement: None,
                    cause: None,
                },
            ),
            Err(e) => (
                SagaState::InDoubt,
                TxFailure {
                    code: ErrorCode::TransactionInDoubt,
                    message: format!(
                        "the router running this transaction stopped and recovery could not roll it back: {}",
                        e.client_message()
                    ),
                    saga_id: Some(saga_id.to_owned()),
                    statement: None,
                    cause: None,
                },
            ),
        };
        if let Err(e) = self
            .log_finish(log, saga_id, state, &steps, &failure.to_json())
            .await
        {
            tracing::warn!(saga = saga_id, error = %e, "recovery could not record the outcome");
            return;
        }
        tracing::info!(saga = saga_id, state = state.as_str(), "recovered saga");
        self.metrics
            .sagas
            .with_label_values(&[if state == SagaState::Aborted {
                "recovered_aborted"
            } else {
                "in_doubt"
            }])
            .inc();
    }
}

pub(super) fn summary(row: &[Value]) -> SagaSummary {
    let text = |i: usize| match row.get(i) {
        Some(Value::Text(s)) => Some(s.clone()),
        Some(Value::Timestamp(t)) => Some(switchyard_core::value::format_timestamp(t)),
        _ => None,
    };
    let json_at = |i: usize| match row.get(i) {
        Some(Value::Json(j)) => j.clone(),
        _ => serde_json::Value::Null,
    };
    SagaSummary {
        saga_id: text(0).unwrap_or_default(),
        state: text(1).unwrap_or_default(),
        idempotency_key: text(2),
        steps: json_at(3),
        outcome: json_at(4),
        request: json_at(5),
        created_at: text(6).unwrap_or_default(),
        updated_at: text(7).unwrap_or_default(),
    }
}
