//! TPC-H on three placements, each answer compared with PostgreSQL's on the same data.

use std::time::Instant;

use serde_json::json;

use crate::common::{self, Store, TestStore, start_server, unique_name};
use crate::engine::{postgres_rows, same_as_postgres};
use crate::tpch::{Oracle, Placement, load, load_oracle, on_one_store, polyglot, queries};

/// Loads TPC-H through a router on `placement` and compares the 22 answers with the oracle's.
async fn run(label: &str, placement: Placement, backends: Vec<(&str, TestStore)>) {
    let data = crate::tpch::generate(crate::tpch::SCALE);
    let url = common::pg_url();
    let oracle = Oracle {
        url: url.clone(),
        schema: unique_name("tpch_oracle"),
    };
    {
        let (url, schema, data) = (url.clone(), oracle.schema.clone(), data.clone());
        tokio::task::spawn_blocking(move || load_oracle(&url, &schema, &data))
            .await
            .expect("oracle load");
    }
    let configs: Vec<(&str, switchyard_config::BackendConfig)> = backends
        .iter()
        .map(|(name, s)| (*name, s.backend.clone()))
        .collect();
    let server = start_server(crate::tpch::config(placement, &configs)).await;
    let started = Instant::now();
    load(&server.router, &data).await;
    eprintln!("[tpch {label}] loaded in {:?}", started.elapsed());
    let mut failures = Vec::new();
    for q in queries() {
        let (url, schema, sql) = (url.clone(), oracle.schema.clone(), q.sql);
        let pg = tokio::task::spawn_blocking(move || postgres_rows(&url, &schema, sql))
            .await
            .expect("psql task")
            .unwrap_or_else(|e| panic!("PostgreSQL refused Q{}: {e}", q.number));
        let started = Instant::now();
        let a = common::query(server.addr, q.sql, json!([])).await;
        eprintln!(
            "[tpch {label}] Q{} {} rows in {:?}",
            q.number,
            pg.len(),
            started.elapsed()
        );
        if a.status != 200 {
            failures.push(format!("Q{}: {} {}", q.number, a.status, a.body));
            continue;
        }
        if let Err(e) = same_as_postgres(&a.body, &pg, q.ordered) {
            failures.push(format!("Q{} differs: {e}", q.number));
        }
    }
    assert!(
        failures.is_empty(),
        "TPC-H on {label}: {} of 22 queries differ from PostgreSQL:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpch_all_on_postgres() {
    run(
        "postgres",
        on_one_store,
        vec![("db", TestStore::new(Store::Postgres))],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpch_embedded_sqlite() {
    run(
        "sqlite",
        on_one_store,
        vec![("db", TestStore::new(Store::Sqlite))],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tpch_polyglot() {
    run(
        "polyglot",
        polyglot,
        vec![
            ("pg", TestStore::new(Store::Postgres)),
            ("mysql", TestStore::new(Store::Mysql)),
            ("mongo", TestStore::new(Store::Mongo)),
        ],
    )
    .await;
}
