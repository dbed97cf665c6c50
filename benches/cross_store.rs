//! Cross-store execution, in-process (parse, plan, plugin route, concurrent fragments, merge):
//!
//! 1. one customer's orders (MongoDB) with their payments and order lines (PostgreSQL) and the
//!    product names (MongoDB), through the `ecommerce` plugin, next to the sum of the direct
//!    driver calls the same answer needs;
//! 2. a join that semi-join reduction saves (a customer's cart on Redis joined with the order
//!    lines of its products on PostgreSQL): rows fetched from the backends and latency with the
//!    reduction and without it (`execution.semi_join_max_keys = 0`);
//! 3. top-10 by order total over two PostgreSQL shards vs the same query on one PostgreSQL.
//!
//! Prints median and p99 of each. Run: `cargo bench --bench cross_store` (needs the services of
//! scripts/test.sh; the MongoDB-wire server is the Python test server, so MongoDB figures are
//! that server's, not a real mongod's).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use common::{RedisCleanup, Store, TestStore, plugin_wasm, polyglot, with_plugins};
use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use serde_json::json;
use support::measure;
use switchyard_config::Role;
use switchyard_core::Value;
use switchyard_router::Router;

const CUSTOMER_ORDERS: &str = "SELECT o.order_id, o.status, p.payment_type, p.amount, oi.line, \
     oi.quantity, pr.name FROM orders o JOIN payments p ON p.order_id = o.order_id \
     JOIN order_items oi ON oi.order_id = o.order_id \
     JOIN products pr ON pr.product_id = oi.product_id WHERE o.customer_id = $1";

const CART_SALES: &str = "SELECT c.product_id, c.quantity, oi.order_id, oi.quantity \
     FROM carts c JOIN order_items oi ON oi.product_id = c.product_id WHERE c.customer_id = $1";

const TOP_10: &str = "SELECT order_id, customer_id, total FROM orders \
     ORDER BY total DESC, order_id LIMIT 10";

fn main() {
    support::run_bench(async {
        cross_store_join().await;
        top_k_over_shards().await;
    });
}

fn customer(i: usize) -> String {
    format!("c{:06}", 1 + (i * 7919) % 1000)
}

fn row(label: &str, (p50, p99): (f64, f64), extra: &str) {
    println!("{label:<52} {p50:>12.1} {p99:>12.1}  {extra}");
}

fn header(title: &str) {
    println!("\n{title}");
    println!("{:<52} {:>12} {:>12}", "", "p50 us", "p99 us");
}

fn total_fetched(router: &Router) -> u64 {
    router.rows_fetched().iter().map(|(_, n)| n).sum()
}

/// Benchmarks 1 and 2, on the shop placed across PostgreSQL, MongoDB and Redis.
async fn cross_store_join() {
    let pg = TestStore::new(Store::Postgres);
    let mongo = TestStore::new(Store::Mongo);
    let prefix = format!("{}:", common::unique_name("bench"));
    let _cleanup = RedisCleanup(prefix.clone());
    let base = polyglot(&pg, &mongo, &prefix);
    let seeder = Router::from_config(base.clone()).await.unwrap();
    common::seed(&seeder, 1).await;
    let with_plugin = |mut config: switchyard_config::Config, max_keys: u64| {
        config.execution.semi_join_max_keys = max_keys;
        with_plugins(
            config,
            &[("ecommerce", plugin_wasm("placement_ecommerce"))],
            Some("ecommerce"),
            &[],
        )
    };
    let router = Router::from_config(with_plugin(base.clone(), 1000))
        .await
        .unwrap();
    let no_reduction = Router::from_config(with_plugin(base, 0)).await.unwrap();
    let context = Default::default();

    // 1. The customer's orders with payments, lines and product names.
    let n = 200;
    let via_router = measure(n, |i| {
        let (router, context) = (&router, &context);
        async move {
            let rs = router
                .query(CUSTOMER_ORDERS, &[json!(customer(i))], context)
                .await
                .unwrap();
            std::hint::black_box(rs);
        }
    })
    .await;
    // Where the router's time went: statements per query and their mean latency, per store.
    let mut spent = Vec::new();
    for (name, kind) in [("mongo", "mongodb"), ("pg", "postgres")] {
        let h = router
            .metrics()
            .fragment_duration
            .with_label_values(&[name, kind, "ok"]);
        let runs = (n + n / 10) as f64;
        spent.push(format!(
            "{name}: {:.1} statements/query, mean {:.0} us",
            h.get_sample_count() as f64 / runs,
            h.get_sample_sum() * 1e6 / h.get_sample_count().max(1) as f64
        ));
    }
    let opts: sqlx::postgres::PgConnectOptions = pg.backend.url.parse().unwrap();
    let schema = pg.backend.schema.clone().unwrap();
    let pool = sqlx::PgPool::connect_with(opts.options([("search_path", schema)]))
        .await
        .unwrap();
    let client = mongodb::Client::with_uri_str(&mongo.backend.url)
        .await
        .unwrap();
    let db = client.default_database().unwrap();
    let orders = db.collection::<Document>("orders");
    let products = db.collection::<Document>("products");
    // `pipelines`: the MongoDB reads as the aggregate pipelines the router sends instead of finds.
    let direct_calls = |pipelines: bool| {
        let (pool, orders, products) = (&pool, &orders, &products);
        measure(n, move |i| {
            let (pool, orders, products) = (pool.clone(), orders.clone(), products.clone());
            async move {
                let found: Vec<Document> = if pipelines {
                    orders
                    .aggregate([
                        doc! { "$match": { "customer_id": { "$eq": customer(i) } } },
                        doc! { "$project": { "_id": 0, "c0": "$_id", "c1": "$customer_id", "c2": "$status" } },
                    ])
                    .await
                    .unwrap()
                    .try_collect()
                    .await
                    .unwrap()
                } else {
                    orders
                        .find(doc! { "customer_id": customer(i) })
                        .projection(doc! { "status": 1 })
                        .await
                        .unwrap()
                        .try_collect()
                        .await
                        .unwrap()
                };
                let id_field = if pipelines { "c0" } else { "_id" };
                let ids: Vec<String> = found
                    .iter()
                    .filter_map(|d| d.get_str(id_field).ok().map(str::to_owned))
                    .collect();
                let payments: Vec<(String, String, rust_decimal::Decimal)> = sqlx::query_as(
                    "SELECT order_id, payment_type, amount FROM payments WHERE order_id = ANY($1)",
                )
                .bind(&ids)
                .fetch_all(&pool)
                .await
                .unwrap();
                let lines: Vec<(String, i64, String, i64)> = sqlx::query_as(
                    "SELECT order_id, line, product_id, quantity FROM order_items \
                 WHERE order_id = ANY($1)",
                )
                .bind(&ids)
                .fetch_all(&pool)
                .await
                .unwrap();
                let mut pids: Vec<Bson> = lines.iter().map(|l| Bson::from(l.2.clone())).collect();
                pids.sort_by_key(|b| b.to_string());
                pids.dedup();
                let names: Vec<Document> = if pipelines {
                    products
                        .aggregate([
                            doc! { "$match": { "_id": { "$in": pids } } },
                            doc! { "$project": { "_id": 0, "c0": "$_id", "c1": "$name" } },
                        ])
                        .await
                        .unwrap()
                        .try_collect()
                        .await
                        .unwrap()
                } else {
                    products
                        .find(doc! { "_id": { "$in": pids } })
                        .projection(doc! { "name": 1 })
                        .await
                        .unwrap()
                        .try_collect()
                        .await
                        .unwrap()
                };
                std::hint::black_box((payments, names));
            }
        })
    };
    let direct = direct_calls(false).await;
    let direct_pipelines = direct_calls(true).await;
    header("1. a customer's orders + payments + lines + product names (200 customers)");
    row("router, ecommerce plugin", via_router, &spent.join("; "));
    row(
        "sum of the 4 direct driver calls (Mongo, PG, PG, Mongo)",
        direct,
        &format!("router overhead p50 {:.1} us", via_router.0 - direct.0),
    );
    row(
        "the same with the router's MongoDB pipelines",
        direct_pipelines,
        &format!(
            "router overhead p50 {:.1} us",
            via_router.0 - direct_pipelines.0
        ),
    );

    // 2. Semi-join reduction: the same join read with and without pushing the keys.
    header(
        "2. a customer's cart (Redis) JOIN the order lines of its products (order_items: ~15k rows on PG)",
    );
    let cart_owners: Vec<String> = {
        let carts = switchyard_seed::generate(1)
            .into_iter()
            .find(|t| t.table == "carts")
            .unwrap();
        let mut ids: Vec<String> = carts
            .rows
            .iter()
            .filter_map(|r| match &r[0] {
                Value::Text(s) => Some(s.clone()),
                _ => None,
            })
            .collect();
        ids.dedup();
        ids
    };
    let cart_owner = |i: usize| cart_owners[(i * 7) % cart_owners.len()].clone();
    for (label, router, n) in [
        ("with semi-join reduction", &router, 1000),
        ("without (semi_join_max_keys = 0)", &no_reduction, 300),
    ] {
        let before = total_fetched(router);
        let answer_rows = std::cell::Cell::new(0usize);
        let figures = measure(n, |i| {
            let (context, answer_rows, cart_owner) = (&context, &answer_rows, &cart_owner);
            async move {
                let rs = router
                    .query(CART_SALES, &[json!(cart_owner(i))], context)
                    .await
                    .unwrap();
                answer_rows.set(answer_rows.get() + rs.rows.len());
            }
        })
        .await;
        let answer_rows = answer_rows.get();
        let runs = (n + n / 10) as u64;
        let fetched = (total_fetched(router) - before) / runs;
        row(
            label,
            figures,
            &format!(
                "{fetched} rows fetched per query for {:.1} answer rows",
                answer_rows as f64 / runs as f64
            ),
        );
    }
}

/// Benchmark 3: top-10 over two PostgreSQL shards vs one PostgreSQL.
async fn top_k_over_shards() {
    let single = TestStore::new(Store::Postgres);
    let shard_a = TestStore::new(Store::Postgres);
    let shard_b = TestStore::new(Store::Postgres);
    let orders = switchyard_seed::generate(1)
        .into_iter()
        .find(|t| t.table == "orders")
        .unwrap();
    let key = orders
        .columns
        .iter()
        .position(|c| *c == "order_id")
        .unwrap();

    let one = Router::from_config(common::shop_on(single.backend.clone()))
        .await
        .unwrap();
    one.seed_table("orders", &orders.columns, orders.rows.clone(), 500, &|_| {})
        .await
        .unwrap();
    for (shard, store) in [&shard_a, &shard_b].into_iter().enumerate() {
        let router = Router::from_config(common::shop_on(store.backend.clone()))
            .await
            .unwrap();
        let rows: Vec<Vec<Value>> = orders
            .rows
            .iter()
            .filter(|r| switchyard_core::routing::shard_of(&r[key], 2) == shard)
            .cloned()
            .collect();
        router
            .seed_table("orders", &orders.columns, rows, 500, &|_| {})
            .await
            .unwrap();
    }
    let mut sharded = common::shop_on(shard_a.backend.clone());
    sharded.backends.clear();
    sharded
        .backends
        .insert("a".to_owned(), shard_a.backend.clone());
    sharded
        .backends
        .insert("b".to_owned(), shard_b.backend.clone());
    for (name, table) in sharded.tables.iter_mut() {
        // Keep the physical renames shop_on gave the tables the shards were seeded through.
        let on = |backend: &str, role: Role| {
            let mut p = table.placements[0].clone();
            p.backend = backend.to_owned();
            p.role = role;
            p
        };
        table.placements = if name == "orders" {
            vec![on("a", Role::Shard), on("b", Role::Shard)]
        } else {
            vec![on("a", Role::Primary)]
        };
        if name == "orders" {
            table.shard_key = Some("order_id".to_owned());
        }
    }
    let two = Router::from_config(sharded).await.unwrap();
    let context = Default::default();
    header("3. top-10 orders by total (5,000 orders), default planner");
    let mut answers = Vec::new();
    for (label, router) in [
        ("one PostgreSQL", &one),
        ("two PostgreSQL shards (top-k merge, LIMIT pushed)", &two),
    ] {
        let before = total_fetched(router);
        let figures = measure(1000, |_| {
            let context = &context;
            async move {
                let rs = router.query(TOP_10, &[], context).await.unwrap();
                assert_eq!(rs.rows.len(), 10);
                std::hint::black_box(rs);
            }
        })
        .await;
        let fetched = (total_fetched(router) - before) / 1100;
        row(label, figures, &format!("{fetched} rows fetched per query"));
        answers.push(router.query(TOP_10, &[], &context).await.unwrap().rows);
    }
    assert_eq!(
        answers[0], answers[1],
        "the shards answer what one database does"
    );
}
