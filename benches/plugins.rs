//! Plugin hot path: one `route` call on a reused instance for a 3-table join, and planning from
//! SQL text to a validated route for a point lookup (parse, bind, default route, plugin,
//! validate), with and without a plugin. Run: `cargo bench --bench plugins`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/common/mod.rs"]
mod common;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use switchyard_core::Catalog;
use switchyard_plugin_host::{HostLimits, PluginEngine};

// The allocator the router binary runs with (the `mimalloc` feature, on by default).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const JOIN: &str = "SELECT c.customer_id, p.name, i.stock FROM carts c JOIN products p ON p.product_id = c.product_id JOIN inventory i ON i.product_id = c.product_id WHERE c.customer_id = $1";
const LOOKUP: &str = "SELECT name, state FROM customers WHERE customer_id = $1";

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let _guard = rt.enter();
    let config = common::shop_config();
    let catalog = Catalog::from_config(&config);
    let engine = std::sync::Arc::new(PluginEngine::new(HostLimits::default()).unwrap());
    let plugin = rt
        .block_on(engine.load(&common::plugin_wasm("placement_ecommerce"), &catalog))
        .unwrap();
    let (_, join_request) = switchyard_core::plan_with_request(
        JOIN,
        &[json!("c000001")],
        &catalog,
        Vec::new(),
        Vec::new(),
    )
    .unwrap();
    c.bench_function("route call, 3-table join, reused instance", |b| {
        b.iter(|| plugin.route(&join_request).unwrap())
    });

    let (_, one) = switchyard_core::plan_with_request(
        LOOKUP,
        &[json!("c000001")],
        &catalog,
        Vec::new(),
        Vec::new(),
    )
    .unwrap();
    c.bench_function("route call, 1-table lookup, reused instance", |b| {
        b.iter(|| plugin.route(&one).unwrap())
    });
    // The host's fixed cost: a policy that hands back the default route it was given.
    let primaries = rt
        .block_on(engine.load(&common::plugin_wasm("placement_default"), &catalog))
        .unwrap();
    c.bench_function(
        "route call, 1-table lookup, default plugin (host fixed cost)",
        |b| b.iter(|| primaries.route(&one).unwrap()),
    );
    let invalid = rt
        .block_on(engine.load(&common::plugin_wasm("fixture_invalid_route"), &catalog))
        .unwrap();
    c.bench_function("route call, fixture returning an invalid route", |b| {
        b.iter(|| invalid.route(&one).is_err())
    });

    let store = common::TestStore::new(common::Store::Sqlite);
    let plain = rt
        .block_on(switchyard_router::Router::from_config(common::shop_on(
            store.backend.clone(),
        )))
        .unwrap();
    let with_plugin = rt
        .block_on(switchyard_router::Router::from_config(
            common::with_plugins(
                common::shop_on(store.backend.clone()),
                &[("ecommerce", common::plugin_wasm("placement_ecommerce"))],
                Some("ecommerce"),
                &[],
            ),
        ))
        .unwrap();
    let params = [json!("c000001")];
    let context = Default::default();
    c.bench_function("plan point lookup, default planner", |b| {
        b.to_async(&rt)
            .iter(|| async { plain.route(LOOKUP, &params, &context).await.unwrap() })
    });
    c.bench_function("plan point lookup, ecommerce plugin", |b| {
        b.to_async(&rt)
            .iter(|| async { with_plugin.route(LOOKUP, &params, &context).await.unwrap() })
    });
}

criterion_group!(group, benches);
criterion_main!(group);
