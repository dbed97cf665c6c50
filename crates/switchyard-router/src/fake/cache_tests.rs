//! First-hit caching over fakes: `products` has its primary on `mongo` and a cache on `redis`.
//!
//! The default planner never reads a cache (a product lookup routes to `mongo` alone); the
//! first-hit route comes from a placement plugin (the shop's `ecommerce` plugin returns exactly
//! the route built here). Plugins are WebAssembly modules, not available to unit tests, so these
//! tests plan with the real planner (`Router::routed`), substitute the plugin's route (checked by
//! `routing::validate`, as the plugin host does) and run it with the real executor
//! (`Router::execute`, what `Router::query` runs for a plugin's route).

use std::time::{Duration, Instant};

use serde_json::json;
use switchyard_core::routing::{Input, MergeNode, MergeOp, Route, RouteFragment, validate};
use switchyard_core::{ResultSet, StatementKind, Value};

use super::{Failure, Shop, row, text};
use crate::{Context, RouterError};

/// Columns of `products`.
const WIDTH: usize = 8;

fn product(id: &str, name: &str) -> Vec<Value> {
    row(&[Some(id), Some(name), Some("Acme"), Some("home")], WIDTH)
}

/// The shop with `p1` and `p2` in the source of truth.
fn shop(edit: impl FnOnce(&mut switchyard_config::Config)) -> Shop {
    let shop = Shop::new(edit);
    shop.mongo.put(
        "products",
        vec![product("p1", "Lamp"), product("p2", "Chair")],
    );
    shop
}

/// Runs `sql` over the first-hit route of the `ecommerce` plugin: the `redis` cache, then the
/// `mongo` primary for the keys it missed, filling the cache.
async fn first_hit(
    shop: &Shop,
    sql: &str,
    params: &[serde_json::Value],
) -> Result<ResultSet, RouterError> {
    let router = &shop.router;
    let (plan, _, request) = router.routed(sql, params, &Context::new()).await?;
    let (redis, mongo) = (shop.backend_id("redis"), shop.backend_id("mongo"));
    assert_eq!(plan.route.as_single(), Some(mongo), "default route");
    let route = Route {
        fragments: vec![
            RouteFragment {
                backend: redis,
                accesses: vec![0],
            },
            RouteFragment {
                backend: mongo,
                accesses: vec![0],
            },
        ],
        nodes: vec![MergeNode {
            op: MergeOp::FirstHit {
                fill: true,
                ttl_seconds: Some(300),
            },
            inputs: vec![Input::Fragment(0), Input::Fragment(1)],
        }],
        root: Input::Node(0),
        write: None,
    };
    validate(&route, &request, router.catalog()).expect("the plugin's route is valid");
    router.execute(&plan.query, &route, &request, true).await
}

const BY_ID: &str = "SELECT product_id, name FROM products WHERE product_id = $1";

fn sorted(mut rows: Vec<Vec<Value>>) -> Vec<Vec<Value>> {
    rows.sort_by_key(|r| format!("{r:?}"));
    rows
}

#[tokio::test]
async fn a_cache_hit_answers_without_touching_the_primary() {
    let shop = shop(|_| {});
    shop.redis
        .put("products", vec![product("p1", "Lamp (cached)")]);
    let rs = first_hit(&shop, BY_ID, &[json!("p1")])
        .await
        .expect("query");
    assert_eq!(rs.rows, vec![vec![text("p1"), text("Lamp (cached)")]]);
    assert!(shop.mongo.calls().is_empty(), "{:?}", shop.mongo.calls());
    let calls = shop.redis.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].kind, StatementKind::Select);
    assert_eq!(calls[0].table(), "products");
    assert_eq!(
        calls[0].in_lists,
        vec![("product_id".to_owned(), vec![text("p1")])]
    );
}

#[tokio::test]
async fn a_miss_reads_the_primary_and_fills_the_cache() {
    let shop = shop(|_| {});
    let rs = first_hit(&shop, BY_ID, &[json!("p2")])
        .await
        .expect("query");
    assert_eq!(rs.rows, vec![vec![text("p2"), text("Chair")]]);
    // The primary is asked for the missed key only.
    let source = shop.mongo.calls();
    assert_eq!(source.len(), 1, "{source:?}");
    assert_eq!(source[0].kind, StatementKind::Select);
    assert_eq!(
        source[0].in_lists,
        vec![("product_id".to_owned(), vec![text("p2")])]
    );
    // The cache is read, then filled with the whole row (a write, not a read).
    let cache = shop.redis.calls();
    let kinds: Vec<StatementKind> = cache.iter().map(|c| c.kind).collect();
    assert_eq!(kinds, vec![StatementKind::Select, StatementKind::Insert]);
    assert_eq!(cache[1].table(), "products");
    assert_eq!(cache[1].rows, vec![product("p2", "Chair")]);
    assert_eq!(shop.redis.rows("products"), vec![product("p2", "Chair")]);
    // The next lookup is a hit.
    shop.mongo.clear_calls();
    let again = first_hit(&shop, BY_ID, &[json!("p2")])
        .await
        .expect("query");
    assert_eq!(again.rows, rs.rows);
    assert!(shop.mongo.calls().is_empty(), "{:?}", shop.mongo.calls());
}

#[tokio::test]
async fn a_partial_hit_reads_only_the_missing_keys_from_the_primary() {
    let shop = shop(|_| {});
    shop.redis
        .put("products", vec![product("p1", "Lamp (cached)")]);
    let rs = first_hit(
        &shop,
        "SELECT product_id, name FROM products WHERE product_id IN ('p1', 'p2')",
        &[],
    )
    .await
    .expect("query");
    assert_eq!(
        sorted(rs.rows),
        vec![
            vec![text("p1"), text("Lamp (cached)")],
            vec![text("p2"), text("Chair")],
        ]
    );
    let source = shop.mongo.calls();
    assert_eq!(source.len(), 1, "{source:?}");
    assert_eq!(
        source[0].in_lists,
        vec![("product_id".to_owned(), vec![text("p2")])]
    );
    let fills: Vec<_> = shop
        .redis
        .calls()
        .into_iter()
        .filter(|c| c.kind == StatementKind::Insert)
        .collect();
    assert_eq!(fills.len(), 1, "{fills:?}");
    assert_eq!(fills[0].rows, vec![product("p2", "Chair")]);
}

#[tokio::test]
async fn a_failing_cache_falls_back_to_the_primary() {
    let shop = shop(|_| {});
    shop.redis
        .put("products", vec![product("p1", "Lamp (cached)")]);
    shop.redis.fail(None, Failure::Unavailable);
    let rs = first_hit(&shop, BY_ID, &[json!("p1")])
        .await
        .expect("query");
    assert_eq!(rs.rows, vec![vec![text("p1"), text("Lamp")]]);
    let source = shop.mongo.calls();
    assert_eq!(source.len(), 1, "{source:?}");
    assert_eq!(
        source[0].in_lists,
        vec![("product_id".to_owned(), vec![text("p1")])]
    );
    // The fill is still tried (and its failure only logged).
    let kinds: Vec<StatementKind> = shop.redis.calls().iter().map(|c| c.kind).collect();
    assert_eq!(kinds, vec![StatementKind::Select, StatementKind::Insert]);
}

#[tokio::test]
async fn a_cache_that_times_out_is_skipped_and_not_filled() {
    let shop = shop(|c| c.execution.cache_timeout_ms = 50);
    shop.redis
        .put("products", vec![product("p1", "Lamp (cached)")]);
    shop.redis.delay(Duration::from_secs(5));
    let started = Instant::now();
    let rs = first_hit(&shop, BY_ID, &[json!("p1")])
        .await
        .expect("query");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "waited for the cache: {:?}",
        started.elapsed()
    );
    assert_eq!(rs.rows, vec![vec![text("p1"), text("Lamp")]]);
    assert_eq!(shop.mongo.calls().len(), 1, "{:?}", shop.mongo.calls());
    // Read once, never filled.
    let kinds: Vec<StatementKind> = shop.redis.calls().iter().map(|c| c.kind).collect();
    assert_eq!(kinds, vec![StatementKind::Select]);
}
