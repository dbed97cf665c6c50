//! Point lookup by key through the router (in-process: parse, bind, plan, execute, decode) next
//! to the same lookup with the store's driver directly, per backend. Prints median and p99 of
//! each and the router's overhead. Run: `cargo bench --bench point_lookup` (needs the services of
//! scripts/test.sh).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use common::{Store, TestStore};
use serde_json::json;
use support::measure;
use switchyard_router::Router;

const LOOKUP: &str = "SELECT name, state FROM customers WHERE customer_id = $1";

fn main() {
    support::run_bench(run());
}

fn id(i: usize) -> String {
    format!("c{:06}", 1 + (i * 7919) % 1000)
}

async fn run() {
    println!(
        "{:<10} {:>14} {:>14} {:>14} {:>14} {:>12}",
        "backend",
        "router p50 us",
        "router p99 us",
        "driver p50 us",
        "driver p99 us",
        "overhead p50"
    );
    for store in [Store::Postgres, Store::Mysql, Store::Sqlite, Store::Mongo] {
        let env = TestStore::new(store);
        let router = Router::from_config(common::shop_on(env.backend.clone()))
            .await
            .unwrap();
        let customers = switchyard_seed::generate(1)
            .into_iter()
            .find(|t| t.table == "customers")
            .unwrap();
        router
            .seed_table(
                "customers",
                &customers.columns,
                customers.rows,
                500,
                &|_| {},
            )
            .await
            .unwrap();
        let n = if store == Store::Mongo { 500 } else { 3000 };
        let context = Default::default();
        let via_router = measure(n, |i| {
            let router = &router;
            let context = &context;
            async move {
                let rs = router
                    .query(LOOKUP, &[json!(id(i))], context)
                    .await
                    .unwrap();
                assert_eq!(rs.rows.len(), 1);
            }
        })
        .await;
        let url = env.backend.url.clone();
        let direct = match store {
            Store::Postgres => {
                let opts: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
                let schema = env.backend.schema.clone().unwrap();
                let pool = sqlx::PgPool::connect_with(opts.options([("search_path", schema)]))
                    .await
                    .unwrap();
                measure(n, |i| {
                    let pool = pool.clone();
                    async move {
                        let row: (String, String) = sqlx::query_as(
                            "SELECT name, state FROM customers WHERE customer_id = $1",
                        )
                        .bind(id(i))
                        .fetch_one(&pool)
                        .await
                        .unwrap();
                        std::hint::black_box(row);
                    }
                })
                .await
            }
            Store::Mysql => {
                let pool = sqlx::MySqlPool::connect(&url).await.unwrap();
                measure(n, |i| {
                    let pool = pool.clone();
                    async move {
                        let row: (String, String) = sqlx::query_as(
                            "SELECT name, state FROM customers WHERE customer_id = ?",
                        )
                        .bind(id(i))
                        .fetch_one(&pool)
                        .await
                        .unwrap();
                        std::hint::black_box(row);
                    }
                })
                .await
            }
            Store::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
                measure(n, |i| {
                    let pool = pool.clone();
                    async move {
                        let row: (String, String) = sqlx::query_as(
                            "SELECT name, state FROM customers WHERE customer_id = ?",
                        )
                        .bind(id(i))
                        .fetch_one(&pool)
                        .await
                        .unwrap();
                        std::hint::black_box(row);
                    }
                })
                .await
            }
            Store::Mongo => {
                let client = mongodb::Client::with_uri_str(&url).await.unwrap();
                let db = client.default_database().unwrap();
                let coll = db.collection::<mongodb::bson::Document>("customers");
                measure(n, |i| {
                    let coll = coll.clone();
                    async move {
                        let doc = coll
                            .find_one(mongodb::bson::doc! { "customer_id": id(i) })
                            .projection(mongodb::bson::doc! { "name": 1, "state": 1 })
                            .await
                            .unwrap();
                        std::hint::black_box(doc.unwrap());
                    }
                })
                .await
            }
        };
        println!(
            "{:<10} {:>14.1} {:>14.1} {:>14.1} {:>14.1} {:>12.1}",
            format!("{store:?}"),
            via_router.0,
            via_router.1,
            direct.0,
            direct.1,
            via_router.0 - direct.0
        );
    }
    redis_lookup().await;
}

/// Redis: a session by key (json layout, GET) through the router and with the driver.
async fn redis_lookup() {
    let sqlite = TestStore::new(Store::Sqlite);
    let url = std::env::var("SWITCHYARD_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/0".to_owned());
    let prefix = format!("{}:", common::unique_name("bench"));
    let config = common::shop_sqlite_redis(&sqlite, &prefix);
    let router = Router::from_config(config).await.unwrap();
    let sessions = switchyard_seed::generate(1)
        .into_iter()
        .find(|t| t.table == "sessions")
        .unwrap();
    router
        .seed_table("sessions", &sessions.columns, sessions.rows, 200, &|_| {})
        .await
        .unwrap();
    let sid = |i: usize| format!("s{:06}", 1 + (i * 31) % 200);
    let context = Default::default();
    let n = 5000;
    let via_router = measure(n, |i| {
        let router = &router;
        let context = &context;
        async move {
            let rs = router
                .query(
                    "SELECT customer_id, data FROM sessions WHERE session_id = $1",
                    &[json!(sid(i))],
                    context,
                )
                .await
                .unwrap();
            assert_eq!(rs.rows.len(), 1);
        }
    })
    .await;
    let client = redis::Client::open(url.as_str()).unwrap();
    let conn = client.get_multiplexed_async_connection().await.unwrap();
    let direct = measure(n, |i| {
        let mut conn = conn.clone();
        let key = format!("{prefix}session:{}", sid(i));
        async move {
            let v: String = redis::cmd("GET")
                .arg(key)
                .query_async(&mut conn)
                .await
                .unwrap();
            std::hint::black_box(serde_json::from_str::<serde_json::Value>(&v).unwrap());
        }
    })
    .await;
    println!(
        "{:<10} {:>14.1} {:>14.1} {:>14.1} {:>14.1} {:>12.1}",
        "Redis",
        via_router.0,
        via_router.1,
        direct.0,
        direct.1,
        via_router.0 - direct.0
    );
    let mut sync_conn = client.get_connection().unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query(&mut sync_conn)
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL")
            .arg(keys)
            .query(&mut sync_conn)
            .unwrap_or(());
    }
}
