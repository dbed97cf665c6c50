//! Change events of saga steps (the outbox): recorded with each step's `done` record and
//! published once every step is done; and the change events of any committed write.

use super::*;

impl Router {
    /// The change events of a step's writes (`written`: statement, keys), when a change stream
    /// is configured.
    pub(super) fn step_events(
        &self,
        prepared: &[Prepared],
        written: &[(usize, Vec<Vec<Value>>)],
    ) -> Vec<StepEvent> {
        if self.events.is_none() {
            return Vec::new();
        }
        written
            .iter()
            .flat_map(|(i, keys)| change_events(&prepared[*i].plan.query, keys, None))
            .map(StepEvent::of)
            .collect()
    }

    /// Publishes the events recorded with the steps (every step done).
    pub(super) async fn publish_step_events(&self, saga_id: &str, steps: &[Step]) {
        let events = steps
            .iter()
            .flat_map(|s| &s.events)
            .map(|e| e.to_change(saga_id))
            .collect();
        self.publish(events).await;
    }
}

/// The `key` of a change event: one key column's text as is; several columns' texts with a
/// backslash before each `\` and `:` in them, joined by `:`, so distinct keys stay distinct
/// (`("a:b", "c")` is `a\:b:c`, `("a", "b:c")` is `a:b\:c`): the rule of Redis key patterns.
pub(crate) fn event_key(key: &[Value]) -> String {
    let parts = key
        .iter()
        .map(|v| switchyard_backend_redis::encode(v).unwrap_or_default());
    if key.len() == 1 {
        return parts.collect();
    }
    parts
        .map(|p| p.replace('\\', "\\\\").replace(':', "\\:"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
#[test]
fn event_keys_of_several_columns_stay_distinct() {
    let text = |s: &str| Value::Text(s.to_owned());
    assert_eq!(event_key(&[text("a:b")]), "a:b");
    assert_eq!(event_key(&[text("a:b"), text("c")]), "a\\:b:c");
    assert_eq!(event_key(&[text("a"), text("b:c")]), "a:b\\:c");
    assert_eq!(event_key(&[text("a\\"), text(":")]), "a\\\\:\\:");
    assert_eq!(event_key(&[Value::Int(7), text("x")]), "7:x");
}

/// Change events of a committed write (one per key; `*` when the keys are unknown).
pub(crate) fn change_events(
    query: &BoundQuery,
    keys: &[Vec<Value>],
    saga_id: Option<&str>,
) -> Vec<ChangeEvent> {
    let operation = match query.statement {
        Statement::Select(_) => return Vec::new(),
        Statement::Insert(_) => "insert",
        Statement::Update(_) => "update",
        Statement::Delete(_) => "delete",
    };
    let table = query
        .statement
        .access_tables()
        .first()
        .map(|t| (*t).to_owned())
        .unwrap_or_default();
    let keys: Vec<String> = if keys.is_empty() {
        vec!["*".to_owned()]
    } else {
        keys.iter().map(|k| event_key(k)).collect()
    };
    keys.into_iter()
        .map(|key| ChangeEvent {
            table: table.clone(),
            key,
            operation,
            saga_id: saga_id.map(str::to_owned),
        })
        .collect()
}
