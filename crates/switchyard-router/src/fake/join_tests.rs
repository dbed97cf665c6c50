//! Cross-store scheduling over fakes, through `Router::query`: `orders` on `mongo` joined with
//! `customers` on `pg` runs a fragment on each and joins them in the router; semi-join
//! reduction sends the keys of the side read first to the other side's fragment.

use switchyard_core::{ErrorCode, StatementKind, Value};

use super::{Call, Failure, Shop, row, text};
use crate::Context;

const JOIN: &str = "SELECT o.order_id, c.name FROM orders o \
                    JOIN customers c ON c.customer_id = o.customer_id \
                    WHERE o.status = 'shipped' ORDER BY o.order_id";

/// Customers c1..c3 on `pg`; orders on `mongo`, three shipped (one of a customer that does
/// not exist) and one new.
fn shop(edit: impl FnOnce(&mut switchyard_config::Config)) -> Shop {
    let shop = Shop::new(edit);
    shop.pg.put(
        "customers",
        vec![
            row(&[Some("c1"), Some("Ann")], 6),
            row(&[Some("c2"), Some("Bob")], 6),
            row(&[Some("c3"), Some("Cy")], 6),
        ],
    );
    shop.mongo.put(
        "orders",
        vec![
            row(&[Some("o1"), Some("c1"), Some("shipped")], 6),
            row(&[Some("o2"), Some("c2"), Some("new")], 6),
            row(&[Some("o3"), Some("c1"), Some("shipped")], 6),
            row(&[Some("o4"), Some("c9"), Some("shipped")], 6),
        ],
    );
    shop
}

fn expected() -> Vec<Vec<Value>> {
    vec![vec![text("o1"), text("Ann")], vec![text("o3"), text("Ann")]]
}

async fn run(shop: &Shop) -> Result<Vec<Vec<Value>>, ErrorCode> {
    shop.router
        .query(JOIN, &[], &Context::new())
        .await
        .map(|rs| rs.rows)
        .map_err(|e| e.code())
}

fn only(calls: Vec<Call>) -> Call {
    assert_eq!(calls.len(), 1, "{calls:?}");
    calls.into_iter().next().expect("one call")
}

#[tokio::test]
async fn a_join_across_stores_runs_one_fragment_per_store_and_joins_in_the_router() {
    let shop = shop(|c| c.execution.semi_join_max_keys = 0);
    assert_eq!(run(&shop).await, Ok(expected()));
    let orders = only(shop.mongo.calls());
    assert_eq!(orders.kind, StatementKind::Select);
    assert_eq!(orders.tables, vec!["orders".to_owned()]);
    // The filter on orders is pushed into its fragment.
    assert_eq!(
        orders.equalities,
        vec![("status".to_owned(), text("shipped"))]
    );
    // Without reduction, customers is read whole.
    let customers = only(shop.pg.calls());
    assert_eq!(customers.tables, vec!["customers".to_owned()]);
    assert!(customers.in_lists.is_empty(), "{customers:?}");
    assert!(shop.redis.calls().is_empty());
}

#[tokio::test]
async fn semi_join_reduction_sends_the_first_sides_keys_to_the_second_fragment() {
    let shop = shop(|_| {});
    assert_eq!(run(&shop).await, Ok(expected()));
    only(shop.mongo.calls());
    // The filtered side (orders) runs first; customers gets its distinct join keys.
    let customers = only(shop.pg.calls());
    assert_eq!(
        customers.in_lists,
        vec![("customer_id".to_owned(), vec![text("c1"), text("c9")])]
    );
}

#[tokio::test]
async fn reduced_keys_are_sent_in_batches() {
    let shop = shop(|c| c.execution.semi_join_batch_size = 1);
    assert_eq!(run(&shop).await, Ok(expected()));
    let mut lists: Vec<Vec<(String, Vec<Value>)>> =
        shop.pg.calls().into_iter().map(|c| c.in_lists).collect();
    lists.sort_by_key(|l| format!("{l:?}"));
    assert_eq!(
        lists,
        vec![
            vec![("customer_id".to_owned(), vec![text("c1")])],
            vec![("customer_id".to_owned(), vec![text("c9")])],
        ]
    );
}

#[tokio::test]
async fn more_keys_than_the_bound_are_not_pushed() {
    // Two distinct keys, at most one may be pushed: customers is read whole.
    let shop = shop(|c| c.execution.semi_join_max_keys = 1);
    assert_eq!(run(&shop).await, Ok(expected()));
    let customers = only(shop.pg.calls());
    assert!(customers.in_lists.is_empty(), "{customers:?}");
}

#[tokio::test]
async fn a_failing_fragment_fails_the_query_with_the_backends_code() {
    let shop = shop(|_| {});
    shop.pg.fail(Some("customers"), Failure::Unavailable);
    assert_eq!(run(&shop).await, Err(ErrorCode::BackendUnavailable));
    assert_eq!(shop.pg.calls().len(), 1, "{:?}", shop.pg.calls());

    let shop = self::shop(|c| c.execution.semi_join_max_keys = 0);
    shop.pg.fail(Some("customers"), Failure::Rejected);
    assert_eq!(run(&shop).await, Err(ErrorCode::BackendError));
}

#[tokio::test]
async fn a_first_stage_that_fails_stops_the_schedule() {
    let shop = shop(|_| {});
    // Answers late: a fragment scheduled alongside would be sent meanwhile.
    shop.mongo.delay(std::time::Duration::from_millis(50));
    shop.mongo.fail(Some("orders"), Failure::Rejected);
    assert_eq!(run(&shop).await, Err(ErrorCode::BackendError));
    assert_eq!(shop.mongo.calls().len(), 1);
    // Customers waited for the orders' keys, which never came.
    assert!(shop.pg.calls().is_empty(), "{:?}", shop.pg.calls());
}
