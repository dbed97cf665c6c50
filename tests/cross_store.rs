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

mod generator {
    //! A seeded generator of SELECTs over the shop catalog.
    use std::collections::BTreeMap;
    use std::net::SocketAddr;

    use serde_json::{Value as J, json};

    /// SplitMix64.
    pub struct Rng(u64);
    impl Rng {
        pub fn new(seed: u64) -> Rng {
            Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
        }
        pub fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        pub fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
        pub fn chance(&mut self, percent: u64) -> bool {
            self.next() % 100 < percent
        }
        pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            &items[self.below(items.len())]
        }
    }

    #[derive(Clone, Copy, PartialEq)]
    enum Ty {
        Text,
        Int,
        Dec,
        Float,
        Ts,
    }

    const TABLES: &[(&str, &[(&str, Ty)])] = &[
        (
            "customers",
            &[
                ("customer_id", Ty::Text),
                ("name", Ty::Text),
                ("city", Ty::Text),
                ("state", Ty::Text),
                ("created_at", Ty::Ts),
            ],
        ),
        (
            "products",
            &[
                ("product_id", Ty::Text),
                ("name", Ty::Text),
                ("brand", Ty::Text),
                ("category", Ty::Text),
                ("retail_price", Ty::Dec),
                ("discounted_price", Ty::Dec),
                ("rating", Ty::Float),
            ],
        ),
        (
            "inventory",
            &[
                ("product_id", Ty::Text),
                ("stock", Ty::Int),
                ("warehouse", Ty::Text),
                ("updated_at", Ty::Ts),
            ],
        ),
        (
            "orders",
            &[
                ("order_id", Ty::Text),
                ("customer_id", Ty::Text),
                ("status", Ty::Text),
                ("total", Ty::Dec),
                ("created_at", Ty::Ts),
            ],
        ),
        (
            "payments",
            &[
                ("payment_id", Ty::Text),
                ("order_id", Ty::Text),
                ("customer_id", Ty::Text),
                ("payment_type", Ty::Text),
                ("installments", Ty::Int),
                ("amount", Ty::Dec),
            ],
        ),
        (
            "order_items",
            &[
                ("order_id", Ty::Text),
                ("line", Ty::Int),
                ("product_id", Ty::Text),
                ("quantity", Ty::Int),
                ("price", Ty::Dec),
            ],
        ),
        (
            "carts",
            &[
                ("customer_id", Ty::Text),
                ("product_id", Ty::Text),
                ("quantity", Ty::Int),
            ],
        ),
        (
            "product_hits",
            &[("product_id", Ty::Text), ("hits", Ty::Int)],
        ),
    ];

    /// Real join keys: (table, column, table, column).
    const EDGES: &[(&str, &str, &str, &str)] = &[
        ("orders", "customer_id", "customers", "customer_id"),
        ("payments", "order_id", "orders", "order_id"),
        ("payments", "customer_id", "customers", "customer_id"),
        ("inventory", "product_id", "products", "product_id"),
        ("carts", "product_id", "products", "product_id"),
        ("carts", "customer_id", "customers", "customer_id"),
        ("product_hits", "product_id", "products", "product_id"),
        ("carts", "product_id", "inventory", "product_id"),
        ("order_items", "order_id", "orders", "order_id"),
        ("order_items", "product_id", "products", "product_id"),
        ("order_items", "order_id", "payments", "order_id"),
    ];

    /// Low-cardinality columns worth grouping by.
    const GROUPABLE: &[&str] = &[
        "state",
        "city",
        "status",
        "payment_type",
        "category",
        "brand",
        "warehouse",
        "installments",
    ];

    /// Values of every column, sampled from the oracle, for constants.
    pub struct Samples(BTreeMap<(String, String), Vec<J>>);

    impl Samples {
        pub async fn load(oracle: SocketAddr) -> Samples {
            let mut out = BTreeMap::new();
            for (t, cols) in TABLES {
                for (c, _) in *cols {
                    let sql = format!("SELECT DISTINCT {c} FROM {t} ORDER BY {c} LIMIT 400");
                    let r = super::query(oracle, &sql, json!([])).await;
                    assert_eq!(r.status, 200, "{sql}: {}", r.body);
                    let values: Vec<J> = r.body["rows"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|row| row[0].clone())
                        .filter(|v| !v.is_null())
                        .collect();
                    out.insert(((*t).to_owned(), (*c).to_owned()), values);
                }
            }
            Samples(out)
        }
    }

    fn literal(v: &J, ty: Ty) -> String {
        match (v, ty) {
            (J::String(s), Ty::Text | Ty::Ts) => format!("'{}'", s.replace('\'', "''")),
            (J::String(s), _) => s.clone(),
            (other, _) => other.to_string(),
        }
    }

    struct Access {
        table: &'static str,
        alias: String,
        cols: &'static [(&'static str, Ty)],
    }

    fn predicate(rng: &mut Rng, samples: &Samples, a: &Access) -> String {
        let (c, ty) = *rng.pick(a.cols);
        let col = format!("{}.{c}", a.alias);
        let values = samples
            .0
            .get(&(a.table.to_owned(), c.to_owned()))
            .cloned()
            .unwrap_or_default();
        if values.is_empty() || rng.chance(5) {
            return format!("{col} IS {}NULL", if rng.chance(50) { "NOT " } else { "" });
        }
        let v = |rng: &mut Rng| literal(rng.pick(&values), ty);
        match (ty, rng.below(6)) {
            (_, 0) => format!("{col} = {}", v(rng)),
            (_, 1) => format!("{col} IN ({}, {}, {})", v(rng), v(rng), v(rng)),
            (Ty::Text, 2) => {
                let s = rng
                    .pick(&values)
                    .as_str()
                    .unwrap_or("")
                    .chars()
                    .take(2)
                    .collect::<String>();
                format!(
                    "{col} LIKE '{}%'",
                    s.replace('\'', "''").replace(['%', '_'], "")
                )
            }
            (_, 3) => {
                let (x, y) = (v(rng), v(rng));
                format!("{col} BETWEEN {x} AND {y}")
            }
            (_, 4) => format!("{col} <> {}", v(rng)),
            (_, _) => format!("{col} {} {}", rng.pick(&[">", ">=", "<", "<="]), v(rng)),
        }
    }

    /// `[NOT] IN` / `[NOT] EXISTS` over a table that shares a join key with `a`.
    fn subquery_filter(rng: &mut Rng, samples: &Samples, a: &Access) -> Option<String> {
        let edges: Vec<(&str, &str, &str)> = EDGES
            .iter()
            .filter_map(|(x, xc, y, yc)| {
                if *x == a.table {
                    Some((*xc, *y, *yc))
                } else if *y == a.table {
                    Some((*yc, *x, *xc))
                } else {
                    None
                }
            })
            .collect();
        if edges.is_empty() {
            return None;
        }
        let (col, t, tcol) = *rng.pick(&edges);
        let cols = TABLES.iter().find(|(n, _)| *n == t).map(|(_, c)| *c)?;
        let inner = Access {
            table: t,
            alias: "s".to_owned(),
            cols,
        };
        let pred = predicate(rng, samples, &inner);
        let not = if rng.chance(30) { "NOT " } else { "" };
        Some(if rng.chance(50) {
            // NOT IN over a column that may hold NULL is PostgreSQL's three-valued puzzle:
            // exclude NULLs so the answer is about the values.
            format!(
                "{}.{col} {not}IN (SELECT s.{tcol} FROM {t} s WHERE {pred} AND s.{tcol} IS NOT NULL)",
                a.alias
            )
        } else {
            format!(
                "{not}EXISTS (SELECT 1 FROM {t} s WHERE s.{tcol} = {}.{col} AND {pred})",
                a.alias
            )
        })
    }

    /// An output expression only the engine computes, over column `c` of type `ty`.
    fn engine_expression(rng: &mut Rng, c: &str, ty: Ty) -> String {
        match (ty, rng.below(3)) {
            (Ty::Text, 0) => format!("SUBSTRING({c} FROM 1 FOR 3)"),
            (Ty::Text, 1) => {
                format!("CASE WHEN {c} LIKE 'A%' THEN 'a' WHEN {c} IS NULL THEN 'n' ELSE 'z' END")
            }
            (Ty::Ts, 0) => format!("date_trunc('month', {c})"),
            (Ty::Ts, 1) => format!("EXTRACT(YEAR FROM {c})"),
            (Ty::Int | Ty::Dec, 0) => format!("CAST({c} AS int)"),
            (Ty::Int | Ty::Dec, 1) => format!("CASE WHEN {c} > 10 THEN {c} * 2 ELSE 0 END"),
            _ => format!("dense_rank() OVER (ORDER BY {c})"),
        }
    }

    /// One query and whether its answer's order is determined.
    pub fn query(seed: u64, samples: &Samples) -> (String, bool) {
        let mut rng = Rng::new(seed);
        let (t0, cols0) = *rng.pick(TABLES);
        let mut accesses = vec![Access {
            table: t0,
            alias: "t0".to_owned(),
            cols: cols0,
        }];
        let mut from = format!("{t0} t0");
        let joins = rng.below(3);
        for _ in 0..joins {
            let candidates: Vec<(usize, &str, &str, &str)> = EDGES
                .iter()
                .flat_map(|(a, ac, b, bc)| {
                    let mut v = Vec::new();
                    for (i, acc) in accesses.iter().enumerate() {
                        if acc.table == *a {
                            v.push((i, *ac, *b, *bc));
                        }
                        if acc.table == *b {
                            v.push((i, *bc, *a, *ac));
                        }
                    }
                    v
                })
                .filter(|(_, _, t, _)| !accesses.iter().any(|x| x.table == *t))
                .collect();
            if candidates.is_empty() {
                break;
            }
            let (i, col, t, tcol) = *rng.pick(&candidates);
            let alias = format!("t{}", accesses.len());
            let kind = if rng.chance(25) { "LEFT JOIN" } else { "JOIN" };
            let mut on = format!("{alias}.{tcol} = {}.{col}", accesses[i].alias);
            let cols = TABLES
                .iter()
                .find(|(n, _)| *n == t)
                .map(|(_, c)| *c)
                .unwrap_or(&[]);
            let acc = Access {
                table: t,
                alias: alias.clone(),
                cols,
            };
            if rng.chance(15) {
                on.push_str(" AND ");
                on.push_str(&predicate(&mut rng, samples, &acc));
            }
            from.push_str(&format!(" {kind} {t} {alias} ON {on}"));
            accesses.push(acc);
        }
        let n_pred = rng.below(3);
        let preds: Vec<String> = (0..n_pred)
            .map(|_| {
                let a = &accesses[rng.below(accesses.len())];
                predicate(&mut rng, samples, a)
            })
            .collect();
        let mut where_ = if preds.is_empty() {
            String::new()
        } else {
            format!(
                " WHERE {}",
                preds.join(if rng.chance(80) { " AND " } else { " OR " })
            )
        };
        // Keep answers small enough for a quick suite: pin big tables now and then.
        if accesses.len() > 1 && preds.is_empty() && rng.chance(50) {
            let a = &accesses[0];
            where_ = format!(" WHERE {}", predicate(&mut rng, samples, a));
        }
        // Constructs only the router-side engine runs: a subquery over a real join key.
        if rng.chance(20)
            && let Some(sub) = subquery_filter(&mut rng, samples, &accesses[0])
        {
            where_ = if where_.is_empty() {
                format!(" WHERE {sub}")
            } else {
                format!(" WHERE ({}) AND {sub}", &where_[" WHERE ".len()..])
            };
        }
        let all_cols: Vec<(String, Ty)> = accesses
            .iter()
            .flat_map(|a| {
                a.cols
                    .iter()
                    .map(move |(c, ty)| (format!("{}.{c}", a.alias), *ty))
            })
            .collect();
        let numeric: Vec<&(String, Ty)> = all_cols
            .iter()
            .filter(|(_, t)| matches!(t, Ty::Int | Ty::Dec | Ty::Float))
            .collect();
        let shape = rng.below(10);
        if shape < 4 && !numeric.is_empty() {
            // Aggregate, grouped or not.
            let groupable: Vec<&(String, Ty)> = all_cols
                .iter()
                .filter(|(c, _)| GROUPABLE.iter().any(|g| c.ends_with(&format!(".{g}"))))
                .collect();
            let group = if !groupable.is_empty() && rng.chance(70) {
                Some(rng.pick(&groupable).0.clone())
            } else {
                None
            };
            let mut outs: Vec<String> = group.iter().cloned().collect();
            outs.push("COUNT(*)".to_owned());
            for _ in 0..1 + rng.below(3) {
                let (c, _) = rng.pick(&numeric);
                let f = *rng.pick(&["SUM", "MIN", "MAX", "AVG", "COUNT"]);
                outs.push(format!("{f}({c})"));
            }
            // COUNT(DISTINCT) over low-cardinality columns: the Python MongoDB-wire test server
            // builds `$addToSet` sets in quadratic time.
            if rng.chance(30) && !groupable.is_empty() {
                let (c, _) = rng.pick(&groupable);
                outs.push(format!("COUNT(DISTINCT {c})"));
            }
            let mut sql = format!("SELECT {} FROM {from}{where_}", outs.join(", "));
            if let Some(g) = &group {
                sql.push_str(&format!(" GROUP BY {g}"));
                if rng.chance(30) {
                    sql.push_str(&format!(" HAVING COUNT(*) > {}", rng.below(20)));
                }
                if rng.chance(50) {
                    let order: Vec<String> = (1..=outs.len()).map(|i| i.to_string()).collect();
                    sql.push_str(&format!(
                        " ORDER BY {} LIMIT {}",
                        order.join(", "),
                        1 + rng.below(10)
                    ));
                    return (sql, true);
                }
            }
            return (sql, false);
        }
        let n = 1 + rng.below(4);
        let mut outs: Vec<String> = Vec::new();
        for _ in 0..n {
            let (c, _) = rng.pick(&all_cols);
            if !outs.contains(c) {
                outs.push(c.clone());
            }
        }
        if rng.chance(25) {
            let (c, ty) = rng.pick(&all_cols).clone();
            let extra = engine_expression(&mut rng, &c, ty);
            if !outs.contains(&extra) {
                outs.push(extra);
            }
        }
        let distinct = if rng.chance(15) { "DISTINCT " } else { "" };
        let mut sql = format!("SELECT {distinct}{} FROM {from}{where_}", outs.join(", "));
        if rng.chance(50) {
            let order: Vec<String> = (1..=outs.len())
                .map(|i| format!("{i}{}", if rng.chance(30) { " DESC" } else { "" }))
                .collect();
            sql.push_str(&format!(
                " ORDER BY {} LIMIT {}",
                order.join(", "),
                1 + rng.below(30)
            ));
            if rng.chance(30) {
                sql.push_str(&format!(" OFFSET {}", rng.below(10)));
            }
            // Ties on every output column are equal rows, so the order is determined.
            return (sql, true);
        }
        if where_.is_empty() && accesses.len() > 1 {
            sql.push_str(" LIMIT 0");
        }
        (sql, false)
    }
}
