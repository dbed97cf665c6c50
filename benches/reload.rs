//! Plugin reload under load: a server answers point lookups from 4 client tasks while the active
//! plugin file is replaced 10 times; prints how long each replacement took until the new version
//! answered (file watch interval 50 ms, compile, activate, atomic swap) and how many queries
//! failed. Run: `cargo bench --bench reload`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

const LOOKUP: &str = "SELECT name FROM customers WHERE customer_id = $1";

fn main() {
    support::run_bench(run());
}

async fn run() {
    let store = common::TestStore::new(common::Store::Sqlite);
    let dir = common::tempdir::Dir::new();
    let active = dir.path.join("active.wasm");
    let versions = [
        common::plugin_wasm("placement_default"),
        common::plugin_wasm("placement_ecommerce"),
    ];
    let names = ["default", "ecommerce"];
    std::fs::copy(&versions[0], &active).unwrap();
    let mut config = common::with_plugins(
        common::shop_on(store.backend.clone()),
        &[("shop", active.clone())],
        Some("shop"),
        &[],
    );
    config.plugins.watch_interval_ms = 50;
    let server = common::start_server(config).await;
    common::seed(&server.router, 1).await;
    let addr = server.addr;

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut clients = Vec::new();
    for c in 0..4u64 {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        clients.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) && i < 200_000 {
                i += 1;
                let r = common::query(
                    addr,
                    LOOKUP,
                    json!([format!("c{:06}", 1 + (c * 131 + i) % 1000)]),
                )
                .await;
                if r.status == 200 {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    eprintln!("failed during reload: {} {}", r.status, r.body);
                }
            }
        }));
    }
    let mut times = Vec::new();
    for round in 1..=10 {
        let next = round % 2;
        let staged = dir.path.join("staged.wasm");
        std::fs::copy(&versions[next], &staged).unwrap();
        let started = Instant::now();
        std::fs::rename(&staged, &active).unwrap();
        loop {
            let e = common::explain_in(addr, LOOKUP, json!(["c000001"]), json!({})).await;
            if e.body["planner"]["name"] == names[next] {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "reload never served"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        times.push(started.elapsed());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "plugin reload under load (4 clients, watch interval 50 ms, 10 replacements): median {:.1} ms, max {:.1} ms, min {:.1} ms; {} queries ok, {} failed",
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1]),
        ms(times[0]),
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );
}
