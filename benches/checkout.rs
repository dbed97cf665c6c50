//! Checkout transactions per second through the router (in process, over HTTP on loopback),
//! with the saga log on PostgreSQL: each checkout reads the cart (Redis), decrements stock and
//! inserts the payment in one PostgreSQL transaction, inserts the order document (MongoDB) and
//! deletes the cart (Redis). A bounded run: 200 checkouts (`SWITCHYARD_BENCH_CHECKOUTS`) by one client, then by four
//! concurrent clients. Prints TPS, latency p50/p99 and the mean latency of each saga step (from
//! `switchyard_saga_step_duration_seconds`).
//!
//! Run: `cargo bench --bench checkout` (needs the services of scripts/test.sh; MongoDB is the
//! Python MongoDB-wire test server, so the MongoDB step is that server's speed).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;
mod support;

use std::time::{Duration, Instant};

use common::{RedisCleanup, Store, TestStore, checkout, checkout_env, fill_cart, post};

/// Checkouts per run (`SWITCHYARD_BENCH_CHECKOUTS` overrides).
const CHECKOUTS: usize = 200;

fn main() {
    support::run_bench(bench());
}

async fn bench() {
    let pg = TestStore::new(Store::Postgres);
    let mongo = TestStore::new(Store::Mongo);
    let prefix = format!("{}:", common::unique_name("bench_tx"));
    let _cleanup = RedisCleanup(prefix.clone());
    let products: Vec<String> = (0..50).map(|i| format!("P{i}")).collect();
    let stock: Vec<(&str, i64)> = products.iter().map(|p| (p.as_str(), 1_000_000)).collect();
    let config = checkout_env(&pg, &mongo, &prefix, &stock).await;
    let server = common::start_server(config).await;
    let addr = server.addr;

    for (label, clients) in [("1 client", 1usize), ("4 clients", 4)] {
        // Carts first (not timed): two lines each.
        let checkouts = std::env::var("SWITCHYARD_BENCH_CHECKOUTS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(CHECKOUTS);
        let per_client = checkouts / clients;
        let mut carts = Vec::new();
        for c in 0..clients {
            for i in 0..per_client {
                let customer = format!("{label}-{c}-{i}").replace(' ', "");
                let items = vec![
                    (products[i % 50].clone(), 1i64),
                    (products[(i + 7) % 50].clone(), 2i64),
                ];
                let refs: Vec<(&str, i64)> = items.iter().map(|(p, q)| (p.as_str(), *q)).collect();
                fill_cart(addr, &customer, &refs).await;
                carts.push((c, customer, items));
            }
        }
        let before = step_totals(&server.router);
        let started = Instant::now();
        let results = futures::future::join_all((0..clients).map(|c| {
            let mine: Vec<_> = carts
                .iter()
                .filter(|(cc, _, _)| *cc == c)
                .cloned()
                .collect();
            async move {
                let mut samples = Vec::new();
                for (_, customer, items) in mine {
                    let refs: Vec<(&str, i64)> =
                        items.iter().map(|(p, q)| (p.as_str(), *q)).collect();
                    let t = Instant::now();
                    let a = post(
                        addr,
                        "/v1/transaction",
                        checkout(&customer, &format!("order-{customer}"), &refs, None),
                    )
                    .await;
                    assert_eq!(a.status, 200, "{}", a.body);
                    samples.push(t.elapsed());
                }
                samples
            }
        }))
        .await;
        let elapsed = started.elapsed();
        let samples: Vec<Duration> = results.into_iter().flatten().collect();
        let n = samples.len();
        let mean_ms = samples.iter().map(Duration::as_secs_f64).sum::<f64>() / n as f64 * 1000.0;
        let (p50, p99) = support::stats(samples);
        println!(
            "checkout, {label}: {n} transactions in {:.2} s = {:.1} TPS; latency mean {mean_ms:.1} ms, p50 {:.1} ms, p99 {:.1} ms",
            elapsed.as_secs_f64(),
            n as f64 / elapsed.as_secs_f64(),
            p50 / 1000.0,
            p99 / 1000.0
        );
        let after = step_totals(&server.router);
        let mut in_steps_ms = 0.0;
        for (backend, (sum, count)) in &after {
            let (s0, c0) = before.get(backend).copied().unwrap_or((0.0, 0));
            let c = count - c0;
            if c > 0 {
                println!(
                    "  step on {backend}: {c} steps, mean {:.2} ms",
                    (sum - s0) / c as f64 * 1000.0
                );
                in_steps_ms += (sum - s0) / n as f64 * 1000.0;
            }
        }
        // The rest: HTTP, planning and routing the statements, the intent and commit records,
        // publishing the change events.
        println!(
            "  outside the steps: mean {:.2} ms per transaction",
            mean_ms - in_steps_ms
        );
    }
}

/// Sum (seconds) and count of `switchyard_saga_step_duration_seconds` by backend.
fn step_totals(
    router: &switchyard_router::Router,
) -> std::collections::BTreeMap<String, (f64, u64)> {
    let mut out = std::collections::BTreeMap::new();
    for family in router.metrics().gather() {
        if family.name() != "switchyard_saga_step_duration_seconds" {
            continue;
        }
        for m in family.get_metric() {
            let backend = m
                .get_label()
                .iter()
                .find(|l| l.name() == "backend")
                .map(|l| l.value().to_owned())
                .unwrap_or_default();
            let h = m.get_histogram();
            let e = out.entry(backend).or_insert((0.0, 0));
            e.0 += h.get_sample_sum();
            e.1 += h.get_sample_count();
        }
    }
    out
}
