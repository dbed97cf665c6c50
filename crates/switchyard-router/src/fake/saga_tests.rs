//! Saga compensation over fakes, through `Router::transaction`: the saga log lives on the
//! `pg` fake (it answers the log's statements like any table); the fakes have no local
//! transactions, so every statement is a step of its own.

use serde_json::json;
use switchyard_core::{ErrorCode, StatementKind};

use super::{Shop, row, text};
use crate::{RouterError, TxRequest, TxStatement};

fn statement(sql: &str) -> TxStatement {
    TxStatement {
        sql: sql.to_owned(),
        params: Vec::new(),
        expect_rows: None,
        compensation: None,
    }
}

fn request() -> TxRequest {
    TxRequest {
        statements: vec![
            statement(
                "INSERT INTO orders (order_id, customer_id, status) VALUES ('o9', 'c1', 'new')",
            ),
            statement(
                "INSERT INTO payments (payment_id, order_id, customer_id) \
                 VALUES ('pay1', 'o9', 'c1')",
            ),
        ],
        idempotency_key: None,
        context: Default::default(),
    }
}

/// The state column of the only saga in the log.
fn saga_state(shop: &Shop) -> switchyard_core::Value {
    let log = shop.pg.rows("saga_log");
    assert_eq!(log.len(), 1, "{log:?}");
    log[0][3].clone()
}

#[tokio::test]
async fn a_failed_second_step_runs_the_first_steps_compensation() {
    let shop = Shop::new(|_| {});
    // `pay1` exists: the second statement violates the primary key.
    shop.pg.put(
        "payments",
        vec![row(&[Some("pay1"), Some("o1"), Some("c2")], 6)],
    );
    let failure = match shop.router.transaction(&request()).await {
        Err(RouterError::Transaction(f)) => f,
        other => panic!("expected an aborted transaction, got {other:?}"),
    };
    assert_eq!(failure.code, ErrorCode::TransactionAborted);
    assert_eq!(failure.statement, Some(1));
    assert_eq!(
        failure.cause.as_ref().map(|c| c.0.as_str()),
        Some("CONSTRAINT_VIOLATION")
    );
    // Step 0 inserted o9 on mongo; its compensation deleted it by key.
    let calls = shop.mongo.calls_on("orders");
    let kinds: Vec<StatementKind> = calls.iter().map(|c| c.kind).collect();
    assert_eq!(kinds, vec![StatementKind::Insert, StatementKind::Delete]);
    assert_eq!(
        calls[0].rows,
        vec![row(&[Some("o9"), Some("c1"), Some("new")], 6)]
    );
    assert_eq!(
        calls[1].equalities,
        vec![("order_id".to_owned(), text("o9"))]
    );
    assert!(shop.mongo.rows("orders").is_empty());
    // The existing payment is untouched, and the saga is recorded as aborted.
    assert_eq!(
        shop.pg.rows("payments"),
        vec![row(&[Some("pay1"), Some("o1"), Some("c2")], 6)]
    );
    assert_eq!(saga_state(&shop), text("aborted"));
}

#[tokio::test]
async fn a_saga_whose_steps_all_succeed_compensates_nothing() {
    let shop = Shop::new(|_| {});
    let outcome = shop
        .router
        .transaction(&request())
        .await
        .expect("committed");
    assert_eq!(outcome.results.len(), 2);
    assert_eq!(outcome.results[0]["rows_affected"], json!(1));
    let kinds: Vec<StatementKind> = shop.mongo.calls().iter().map(|c| c.kind).collect();
    assert_eq!(kinds, vec![StatementKind::Insert]);
    assert_eq!(shop.mongo.rows("orders").len(), 1);
    assert_eq!(shop.pg.rows("payments").len(), 1);
    assert_eq!(saga_state(&shop), text("committed"));
}
