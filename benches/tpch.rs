//! TPC-H (scale factor 0.01, the 22 queries as published) through the router on three
//! placements: all tables on PostgreSQL (every query pushed down whole), the embedded SQLite
//! default, and polyglot (lineitem and orders on PostgreSQL; customer, nation and region on
//! MariaDB; part, partsupp and supplier on MongoDB). Beside the all-PostgreSQL figures, the same
//! query sent straight to PostgreSQL (sqlx) on the very tables the router loaded (analyzed
//! first, so both see the same statistics and plans).
//!
//! Prints the median and spread (min..max) of `RUNS` runs per query, in milliseconds, after one
//! warm-up run. Run: `cargo bench --bench tpch` (needs the services of scripts/test.sh; the
//! MongoDB-wire server is the Python test server, so polyglot figures are dominated by it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;
mod support;
#[path = "../tests/tpch/mod.rs"]
mod tpch;

use std::time::{Duration, Instant};

use common::{Store, TestStore};
use switchyard_router::Router;

const RUNS: usize = 5;

fn main() {
    support::run_bench(bench());
}

/// Median, min and max of `RUNS` timed runs of `f` after a warm-up, in milliseconds.
async fn time<F, Fut>(mut f: F) -> (f64, f64, f64)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    f().await;
    let mut samples: Vec<Duration> = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let t = Instant::now();
        f().await;
        samples.push(t.elapsed());
    }
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    (ms(samples[RUNS / 2]), ms(samples[0]), ms(samples[RUNS - 1]))
}

async fn time_query(
    router: &Router,
    sql: &str,
    context: &switchyard_router::Context,
) -> (f64, f64, f64) {
    time(|| async move {
        std::hint::black_box(router.query(sql, &[], context).await.unwrap());
    })
    .await
}

async fn placement_router(
    placement: tpch::Placement,
    stores: &[(&str, &TestStore)],
    data: &[(&'static str, Vec<String>)],
) -> Router {
    let backends: Vec<(&str, switchyard_config::BackendConfig)> = stores
        .iter()
        .map(|(name, s)| (*name, s.backend.clone()))
        .collect();
    let router = Router::from_config(tpch::config(placement, &backends))
        .await
        .unwrap();
    tpch::load(&router, data).await;
    router
}

async fn bench() {
    let data = tpch::generate(tpch::SCALE);
    let url = common::pg_url();
    let pg = TestStore::new(Store::Postgres);
    let on_pg = placement_router(tpch::on_one_store, &[("db", &pg)], &data).await;
    let schema = pg
        .backend
        .schema
        .clone()
        .expect("the PostgreSQL test schema");
    let direct = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .after_connect({
            let schema = schema.clone();
            move |conn, _| {
                let sql = format!("SET search_path = \"{schema}\"");
                Box::pin(async move {
                    sqlx::Executor::execute(conn, sqlx::AssertSqlSafe(sql))
                        .await
                        .map(|_| ())
                })
            }
        })
        .connect(&url)
        .await
        .unwrap();
    let tables: Vec<&str> = tpch::TABLES.iter().map(|t| t.name).collect();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ANALYZE {}",
        tables.join(", ")
    )))
    .execute(&direct)
    .await
    .unwrap();

    let sqlite = TestStore::new(Store::Sqlite);
    let (pg2, mysql, mongo) = (
        TestStore::new(Store::Postgres),
        TestStore::new(Store::Mysql),
        TestStore::new(Store::Mongo),
    );
    let on_sqlite = placement_router(tpch::on_one_store, &[("db", &sqlite)], &data).await;
    let mixed = placement_router(
        tpch::polyglot,
        &[("pg", &pg2), ("mysql", &mysql), ("mongo", &mongo)],
        &data,
    )
    .await;

    println!(
        "\nTPC-H SF {} — median (min..max) of {RUNS} runs, ms",
        tpch::SCALE
    );
    println!(
        "{:<4} {:>26} {:>26} {:>7} {:>26} {:>26}",
        "",
        "router, all PostgreSQL",
        "PostgreSQL direct",
        "ratio",
        "router, SQLite",
        "router, polyglot"
    );
    let context = switchyard_router::Context::default();
    let fmt = |(m, lo, hi): (f64, f64, f64)| format!("{m:.1} ({lo:.1}..{hi:.1})");
    let mut ratios = Vec::new();
    for q in tpch::queries() {
        let routed = time_query(&on_pg, q.sql, &context).await;
        let straight = time(|| {
            let direct = &direct;
            async move {
                std::hint::black_box(
                    sqlx::raw_sql(sqlx::AssertSqlSafe(q.sql))
                        .fetch_all(direct)
                        .await
                        .unwrap(),
                );
            }
        })
        .await;
        let lite = time_query(&on_sqlite, q.sql, &context).await;
        let poly = time_query(&mixed, q.sql, &context).await;
        let ratio = routed.0 / straight.0;
        ratios.push(ratio);
        println!(
            "Q{:<3} {:>26} {:>26} {:>7.2} {:>26} {:>26}",
            q.number,
            fmt(routed),
            fmt(straight),
            ratio,
            fmt(lite),
            fmt(poly)
        );
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "all-PostgreSQL router / direct: median {:.2}, max {:.2}",
        ratios[ratios.len() / 2],
        ratios[ratios.len() - 1]
    );
}
