//! Cross-store queries against real stores: the shop data (scale 1) placed across PostgreSQL,
//! MongoDB and Redis as `router.toml` says, and once more all in one PostgreSQL schema as the
//! oracle. A fixed suite of shop questions (with explain snapshots) and a seeded random generator
//! of SELECTs must give the oracle's answer, through the `ecommerce` plugin and again through
//! `shard-by-key` with `orders` sharded across MongoDB and PostgreSQL.
//!
//! Replay a failing generated query with `SWITCHYARD_DIFF_SEED=<seed>` (printed on failure);
//! `SWITCHYARD_DIFF_QUERIES` sets how many are generated (with a seed: a range from it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "differential_engine/mod.rs"]
mod engine;

use common::{
    RedisCleanup, Store, TestServer, TestStore, placement, plugin_wasm, polyglot, query,
    start_server, with_plugins,
};
use serde_json::{Value as J, json};
use switchyard_config::Role;
use switchyard_core::Value;
use switchyard_router::Router;

struct Env {
    poly: TestServer,
    shard: TestServer,
    oracle: TestServer,
    names: Vec<(String, &'static str)>,
    _stores: Vec<TestStore>,
    _redis: RedisCleanup,
}

async fn env() -> Env {
    let pg = TestStore::new(Store::Postgres);
    let mongo = TestStore::new(Store::Mongo);
    let mongo2 = TestStore::new(Store::Mongo);
    let oracle_store = TestStore::new(Store::Postgres);
    let prefix = format!("{}:", common::unique_name("sy"));
    let cleanup = RedisCleanup(prefix.clone());

    let oracle_config = common::shop_on(oracle_store.backend.clone());
    let oracle_router = Router::from_config(oracle_config.clone()).await.unwrap();
    common::seed(&oracle_router, 1).await;

    let base = polyglot(&pg, &mongo, &prefix);
    let seeder = Router::from_config(base.clone()).await.unwrap();
    common::seed(&seeder, 1).await;

    // orders sharded by order_id: shard 0 on a second MongoDB database, shard 1 on PostgreSQL.
    let mut sharded = base.clone();
    sharded
        .backends
        .insert("mongo2".to_owned(), mongo2.backend.clone());
    let orders = sharded.tables.get_mut("orders").unwrap();
    orders.shard_key = Some("order_id".to_owned());
    orders.placements = vec![
        placement("mongo2", Role::Shard),
        placement("pg", Role::Shard),
    ];
    let orders_data = switchyard_seed::generate(1)
        .into_iter()
        .find(|t| t.table == "orders")
        .unwrap();
    let key = orders_data
        .columns
        .iter()
        .position(|c| *c == "order_id")
        .unwrap();
    for (shard, backend) in ["mongo2", "pg"].into_iter().enumerate() {
        let mut one = base.clone();
        one.backends
            .insert("mongo2".to_owned(), mongo2.backend.clone());
        one.tables.get_mut("orders").unwrap().placements = vec![placement(backend, Role::Primary)];
        let router = Router::from_config(one).await.unwrap();
        let rows: Vec<Vec<Value>> = orders_data
            .rows
            .iter()
            .filter(|r| switchyard_core::routing::shard_of(&r[key], 2) == shard)
            .cloned()
            .collect();
        router
            .seed_table("orders", &orders_data.columns, rows, 500, &|_| {})
            .await
            .unwrap();
    }

    let poly_config = with_plugins(
        base,
        &[("ecommerce", plugin_wasm("placement_ecommerce"))],
        Some("ecommerce"),
        &[],
    );
    let shard_config = with_plugins(
        sharded,
        &[("shard", plugin_wasm("placement_shard_by_key"))],
        Some("shard"),
        &[],
    );
    let names = vec![
        (pg.backend.schema.clone().unwrap_or_default(), "<pg-schema>"),
        (prefix.clone(), "<redis-prefix>"),
    ];
    Env {
        poly: start_server(poly_config).await,
        shard: start_server(shard_config).await,
        oracle: start_server(oracle_config).await,
        names,
        _stores: vec![pg, mongo, mongo2, oracle_store],
        _redis: cleanup,
    }
}

/// Rows as comparable strings: floats to 9 significant digits, everything else as JSON.
fn normalize(rows: &J) -> Vec<String> {
    fn v(x: &J) -> String {
        match x {
            J::Number(n) if n.is_f64() => {
                let f = n.as_f64().unwrap_or(0.0);
                format!("{f:.9e}")
            }
            J::Array(a) => a.iter().map(v).collect::<Vec<_>>().join(" | "),
            // JSON documents compare with sorted keys (PostgreSQL's jsonb reorders them).
            J::Object(_) => engine::canonical(x).to_string(),
            other => other.to_string(),
        }
    }
    rows.as_array()
        .map(|a| a.iter().map(v).collect())
        .unwrap_or_default()
}

async fn same_answer(
    env: &Env,
    server: &TestServer,
    sql: &str,
    ordered: bool,
) -> Result<(), String> {
    let got = query(server.addr, sql, json!([])).await;
    let want = query(env.oracle.addr, sql, json!([])).await;
    if want.status != 200 {
        return Err(format!("oracle failed ({}): {}", want.status, want.body));
    }
    if got.status != 200 {
        return Err(format!("router failed ({}): {}", got.status, got.body));
    }
    let mut g = normalize(&got.body["rows"]);
    let mut w = normalize(&want.body["rows"]);
    if !ordered {
        g.sort();
        w.sort();
    }
    if g != w {
        let show = |r: &[String]| r.iter().take(8).cloned().collect::<Vec<_>>().join("\n    ");
        return Err(format!(
            "answers differ: router {} rows, oracle {} rows\n  router:\n    {}\n  oracle:\n    {}",
            g.len(),
            w.len(),
            show(&g),
            show(&w)
        ));
    }
    Ok(())
}

/// The questions an online shop asks, across the stores.
const SHOP_QUERIES: [(&str, &str, bool); 5] = [
    (
        "customer_orders_with_payments_and_products",
        "SELECT o.order_id, o.status, p.payment_type, p.amount, oi.line, oi.quantity, pr.name FROM orders o JOIN payments p ON p.order_id = o.order_id JOIN order_items oi ON oi.order_id = o.order_id JOIN products pr ON pr.product_id = oi.product_id WHERE o.customer_id = 'c000042' ORDER BY o.order_id, oi.line",
        true,
    ),
    (
        "top_products_by_revenue_per_category",
        "SELECT pr.category, pr.name, SUM(oi.price * oi.quantity) AS revenue, COUNT(DISTINCT oi.order_id) AS orders FROM order_items oi JOIN products pr ON pr.product_id = oi.product_id WHERE pr.category = 'books' GROUP BY pr.category, pr.name ORDER BY revenue DESC, pr.name LIMIT 5",
        true,
    ),
    (
        "carts_with_stock_and_price",
        "SELECT c.product_id, c.quantity, i.stock, p.retail_price FROM carts c JOIN inventory i ON i.product_id = c.product_id JOIN products p ON p.product_id = c.product_id WHERE c.customer_id = 'c000001' ORDER BY c.product_id",
        true,
    ),
    (
        "customers_in_a_state_with_order_count_and_spend",
        "SELECT cu.customer_id, cu.name, COUNT(o.order_id) AS orders, SUM(o.total) AS spend FROM customers cu LEFT JOIN orders o ON o.customer_id = cu.customer_id WHERE cu.state = 'SP' GROUP BY cu.customer_id, cu.name ORDER BY spend DESC, cu.customer_id LIMIT 10",
        true,
    ),
    (
        "product_point_lookup_through_the_cache",
        "SELECT product_id, name, retail_price FROM products WHERE product_id IN ('p000001', 'p000002', 'p000003') ORDER BY product_id",
        true,
    ),
];

fn explain_text(env: &Env, body: &J) -> String {
    let mut out = String::new();
    let route = &body["route"];
    out.push_str(&format!("planner: {}\n", body["planner"]));
    for (i, f) in route["fragments"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        out.push_str(&format!(
            "fragment {i}: {} {}\n",
            f["backend"], f["accesses"]
        ));
    }
    for (i, n) in route["nodes"].as_array().into_iter().flatten().enumerate() {
        out.push_str(&format!("node {i}: {n}\n"));
    }
    out.push_str(&format!("root: {}\n", route["root"]));
    for f in body["fragments"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "-- fragment {} on {} ({}){}\n{}\n",
            f["fragment"],
            f["backend"],
            f["language"],
            f["note"]
                .as_str()
                .map(|n| format!(" [{n}]"))
                .unwrap_or_default(),
            f["statement"].as_str().unwrap_or("")
        ));
    }
    for (name, placeholder) in &env.names {
        if !name.is_empty() {
            out = out.replace(name.as_str(), placeholder);
        }
    }
    out
}

/// The first seed of a run: the clock, so every run explores new queries (any failure prints
/// its seed for `SWITCHYARD_DIFF_SEED`).
fn time_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
/// Queries per run (`SWITCHYARD_DIFF_QUERIES` overrides).
const DEFAULT_QUERIES: u64 = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_store_answers_equal_one_database() {
    let env = env().await;

    // The fixed suite, with its explain snapshots.
    for (name, sql, ordered) in SHOP_QUERIES {
        for server in [&env.poly, &env.shard] {
            if let Err(e) = same_answer(&env, server, sql, ordered).await {
                panic!("{name}: {e}\n  sql: {sql}");
            }
        }
        let e = common::post(env.poly.addr, "/v1/explain", json!({ "sql": sql })).await;
        assert_eq!(e.status, 200, "{}", e.body);
        insta::assert_snapshot!(name, explain_text(&env, &e.body), sql);
    }
    // Statements only the router-side engine runs: across MongoDB, PostgreSQL and Redis (and
    // with orders sharded), against the oracle, where PostgreSQL runs each whole.
    let mut engine_failures = Vec::new();
    for case in engine::engine_suite() {
        for (label, server) in [("ecommerce", &env.poly), ("shard-by-key", &env.shard)] {
            if let Err(e) = same_answer(&env, server, case.sql, case.ordered).await {
                engine_failures.push(format!("{label}: {e}\n  sql: {}", case.sql));
            }
        }
    }
    assert!(
        engine_failures.is_empty(),
        "{} engine statements differ:\n{}",
        engine_failures.len(),
        engine_failures.join("\n")
    );

    // Semi-join reduction reads only what the customer's orders reach: without it the query
    // would fetch every payment, order line and product (22,000 rows).
    let fetched =
        |server: &TestServer| -> u64 { server.router.rows_fetched().iter().map(|(_, n)| n).sum() };
    let before = fetched(&env.poly);
    same_answer(&env, &env.poly, SHOP_QUERIES[0].1, true)
        .await
        .unwrap();
    let rows = fetched(&env.poly) - before;
    assert!(
        (1..200).contains(&rows),
        "the customer's orders fetched {rows} rows"
    );

    // A read through the cache fills it: the second answer is the same, now from Redis.
    let sql = SHOP_QUERIES[4].1;
    same_answer(&env, &env.poly, sql, true).await.unwrap();

    // The random generator.
    let base: u64 = std::env::var("SWITCHYARD_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(time_seed);
    // A seed alone replays that one query; with SWITCHYARD_DIFF_QUERIES, a range from it.
    let replay = std::env::var("SWITCHYARD_DIFF_SEED").is_ok();
    let count: u64 = std::env::var("SWITCHYARD_DIFF_QUERIES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if replay { 1 } else { DEFAULT_QUERIES });
    let samples = generator::Samples::load(env.oracle.addr).await;
    let mut failures = Vec::new();
    for i in 0..count {
        let seed = base.wrapping_add(i);
        let (sql, ordered) = generator::query(seed, &samples);
        for (label, server) in [("ecommerce", &env.poly), ("shard-by-key", &env.shard)] {
            if let Err(e) = same_answer(&env, server, &sql, ordered).await {
                failures.push(format!(
                    "seed {seed} ({label}): {e}\n  sql: {sql}\n  replay: SWITCHYARD_DIFF_SEED={seed} cargo test --test cross_store"
                ));
            }
        }
        if failures.len() >= 5 {
            break;
        }
    }
    assert!(
        failures.is_empty(),
        "{} generated queries differ from the oracle:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    eprintln!("{count} generated queries (seeds {base}..) equal the oracle on both routes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_guard_and_fragment_errors() {
    let pg = TestStore::new(Store::Postgres);
    let mongo = TestStore::new(Store::Mongo);
    let prefix = format!("{}:", common::unique_name("sy"));
    let _cleanup = RedisCleanup(prefix.clone());
    let mut config = polyglot(&pg, &mongo, &prefix);
    let seeder = Router::from_config(config.clone()).await.unwrap();
    common::seed(&seeder, 1).await;
    config.execution.max_query_rows = 3_000;
    let server = start_server(config.clone()).await;
    // 5,000 orders joined with 1,000 customers passes a 3,000-row budget.
    let big =
        "SELECT o.order_id, c.name FROM orders o JOIN customers c ON c.customer_id = o.customer_id";
    let r = query(server.addr, big, json!([])).await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "QUERY_TOO_LARGE", "{}", r.body);
    // The next query is fine.
    let small = "SELECT o.order_id, c.name FROM orders o JOIN customers c ON c.customer_id = o.customer_id WHERE o.customer_id = 'c000007'";
    let r = query(server.addr, small, json!([])).await;
    assert_eq!(r.status, 200, "{}", r.body);

    // Division by zero evaluated in the router is a DATA_ERROR, and the server goes on.
    let r = query(
        server.addr,
        "SELECT o.order_id, 1 / (LENGTH(c.name) - LENGTH(c.name)) FROM orders o JOIN customers c ON c.customer_id = o.customer_id WHERE o.customer_id = 'c000007'",
        json!([]),
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "DATA_ERROR", "{}", r.body);

    // A failing fragment fails the query with its code: MongoDB unreachable.
    let mut down = config.clone();
    down.backends.get_mut("mongo").unwrap().url =
        "mongodb://127.0.0.1:1/shop?directConnection=true&serverSelectionTimeoutMS=300".to_owned();
    let server = start_server(down).await;
    let r = query(server.addr, small, json!([])).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "BACKEND_UNAVAILABLE", "{}", r.body);
}

#[path = "cross_store_generator/mod.rs"]
mod generator;
