//! `GET /metrics` against a real workload: the shop on SQLite + Redis (products cached in Redis,
//! carts on Redis) through the `ecommerce` plugin; each step must move the series it should.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;

use common::{RedisCleanup, Store, TestStore, plugin_wasm, query, start_server};
use serde_json::json;
use switchyard_config::BackendKind;

/// Series as `name{label="value",...}` (labels sorted) -> value.
async fn scrape(addr: SocketAddr) -> HashMap<String, f64> {
    let r = common::http(addr, "GET", "/metrics", None, Vec::new()).await;
    assert_eq!(r.status, 200);
    let text = r.text;
    let mut out = HashMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => {
                let mut labels = BTreeMap::new();
                for pair in rest.trim_end_matches('}').split("\",") {
                    if let Some((k, v)) = pair.split_once("=\"") {
                        labels.insert(k.to_owned(), v.trim_end_matches('"').to_owned());
                    }
                }
                (n.to_owned(), labels)
            }
            None => (series.to_owned(), BTreeMap::new()),
        };
        out.insert(key(&name, &labels), value.parse().unwrap());
    }
    out
}

fn key(name: &str, labels: &BTreeMap<String, String>) -> String {
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", labels.join(","))
}

fn series(name: &str, labels: &[(&str, &str)]) -> String {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    key(name, &labels)
}

fn get(m: &HashMap<String, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    m.get(&series(name, labels)).copied().unwrap_or(0.0)
}

/// How far a series moved between two scrapes.
fn delta(
    m: &HashMap<String, f64>,
    before: &HashMap<String, f64>,
    name: &str,
    labels: &[(&str, &str)],
) -> f64 {
    get(m, name, labels) - get(before, name, labels)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_moves_the_expected_series() {
    let sqlite = TestStore::new(Store::Sqlite);
    let prefix = format!("{}:", common::unique_name("metrics"));
    let _cleanup = RedisCleanup(prefix.clone());
    let mut config = common::with_plugins(
        common::shop_sqlite_redis(&sqlite, &prefix),
        &[
            ("ecommerce", plugin_wasm("placement_ecommerce")),
            ("panic", plugin_wasm("fixture_panic")),
        ],
        Some("ecommerce"),
        &[("broken", "panic")],
    );
    config.plugins.on_error = switchyard_config::OnPluginError::Fallback;
    let server = start_server(config).await;
    common::seed(&server.router, 1).await;
    let addr = server.addr;

    let start = scrape(addr).await;
    assert_eq!(
        get(
            &start,
            "switchyard_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0
    );
    let info: Vec<&String> = start
        .keys()
        .filter(|k| k.starts_with("switchyard_plugin_info{") && k.contains("plugin=\"ecommerce\""))
        .collect();
    assert_eq!(info.len(), 1, "{info:?}");
    assert_eq!(
        get(
            &start,
            "switchyard_plugin_reloads_total",
            &[("module", "ecommerce"), ("outcome", "loaded")]
        ),
        1.0
    );

    // Cart reads: one Redis statement each.
    let redis_ok = [
        ("backend", "redis"),
        ("backend_kind", "redis"),
        ("outcome", "ok"),
    ];
    let mut cart_rows = 0;
    for customer in ["c000001", "c000002", "c000003", "c000004"] {
        let r = query(
            addr,
            "SELECT product_id, quantity FROM carts WHERE customer_id = $1",
            json!([customer]),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        cart_rows += r.body["rows"].as_array().unwrap().len();
    }
    let after_carts = scrape(addr).await;
    assert_eq!(
        delta(
            &after_carts,
            &start,
            "switchyard_backend_fragments_total",
            &redis_ok
        ),
        4.0
    );
    assert_eq!(
        delta(
            &after_carts,
            &start,
            "switchyard_backend_fragment_duration_seconds_count",
            &redis_ok
        ),
        4.0
    );
    assert_eq!(
        delta(
            &after_carts,
            &start,
            "switchyard_backend_rows_fetched_total",
            &[("backend", "redis"), ("backend_kind", "redis")]
        ),
        cart_rows as f64
    );
    assert_eq!(
        delta(
            &after_carts,
            &start,
            "switchyard_http_requests_total",
            &[("endpoint", "query"), ("status_class", "2xx")]
        ),
        4.0
    );
    assert_eq!(
        delta(
            &after_carts,
            &start,
            "switchyard_query_duration_seconds_count",
            &[("statement", "select"), ("outcome", "ok")]
        ),
        4.0
    );

    // Cache-aside product lookups: a miss that fills, then hits.
    for _ in 0..3 {
        let r = query(
            addr,
            "SELECT product_id, name FROM products WHERE product_id = $1",
            json!(["p000007"]),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.body["rows"].as_array().unwrap().len(), 1);
    }
    let after_cache = scrape(addr).await;
    let products = |result| [("table", "products"), ("result", result)];
    for (result, n) in [("miss", 1.0), ("fill", 1.0), ("hit", 2.0)] {
        assert_eq!(
            delta(
                &after_cache,
                &after_carts,
                "switchyard_cache_lookups_total",
                &products(result)
            ),
            n,
            "{result}"
        );
    }
    assert_eq!(
        delta(
            &after_cache,
            &after_carts,
            "switchyard_merge_operator_uses_total",
            &[("operator", "first_hit")]
        ),
        3.0
    );
    assert!(
        get(
            &after_cache,
            "switchyard_plugin_route_duration_seconds_count",
            &[("plugin", "ecommerce"), ("version", "1.0.0")]
        ) >= 7.0
    );

    // Errors: counted by code and status class.
    let bad = query(addr, "SELEC name FROM customers", json!([])).await;
    assert_eq!(bad.status, 400);
    let code = bad.body["error"]["code"].as_str().unwrap().to_owned();
    let end = scrape(addr).await;
    assert_eq!(
        delta(
            &end,
            &after_cache,
            "switchyard_query_errors_total",
            &[("code", &code)]
        ),
        1.0
    );
    assert_eq!(
        delta(
            &end,
            &after_cache,
            "switchyard_http_requests_total",
            &[("endpoint", "query"), ("status_class", "4xx")]
        ),
        1.0
    );
    assert_eq!(get(&end, "switchyard_query_in_flight", &[]), 0.0);
    assert_eq!(
        get(
            &end,
            "switchyard_backend_up",
            &[("backend", "redis"), ("backend_kind", "redis")]
        ),
        1.0
    );
    assert!(
        end.keys()
            .any(|k| k.starts_with("switchyard_backend_pool_connections{")),
        "pooled SQL backends report their connections"
    );
    // Label values come from closed sets: no SQL text or ids in any series.
    assert!(
        end.keys()
            .all(|k| !k.contains("SELECT") && !k.contains("c000001"))
    );

    // Failures fill the remaining families: a plugin that traps (answered by the default
    // route) and a key-value read without its key.
    let r = common::query_in(
        addr,
        "SELECT name FROM customers WHERE customer_id = 'c000001'",
        json!([]),
        json!({ "tenant": "broken" }),
    )
    .await;
    assert_eq!(r.status, 200, "fallback answers: {}", r.body);
    let r = query(addr, "SELECT * FROM sessions", json!([])).await;
    assert_eq!(r.body["error"]["code"], "NEEDS_KEY", "{}", r.body);
    let after_failures = scrape(addr).await;
    for kind in ["trap", "fallback"] {
        assert_eq!(
            delta(
                &after_failures,
                &end,
                "switchyard_plugin_failures_total",
                &[
                    ("plugin", "fixture-panic"),
                    ("version", "1.0.0"),
                    ("kind", kind)
                ]
            ),
            1.0,
            "{kind}"
        );
    }

    // Every metric the Grafana dashboard queries is one /metrics exposes.
    let text = common::http(addr, "GET", "/metrics", None, Vec::new())
        .await
        .text;
    let families: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/grafana/dashboards/switchyard.json"
    );
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut checked = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let names = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("switchyard_"));
            for name in names {
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .filter(|base| families.contains(base))
                    .unwrap_or(name);
                assert!(
                    families.contains(family),
                    "panel `{}` queries `{name}`, which /metrics does not expose",
                    panel["title"]
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 14, "{checked} metric references checked");
}

/// The admin views an operator reads next to the dashboards: live backend health with recent
/// latency and pools, the catalog, and the effective configuration without secrets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_shows_backends_catalog_and_redacted_config() {
    let sqlite = TestStore::new(Store::Sqlite);
    let mut config = common::shop_on(sqlite.backend.clone());
    // A password in a URL (PostgreSQL trusts the loopback, so it answers), and a store that is down.
    let pg_url = common::pg_url().replacen("://postgres@", "://postgres:hunter2@", 1);
    config.backends.insert(
        "pg_secret".to_owned(),
        common::backend(BackendKind::Postgres, pg_url),
    );
    config.backends.insert(
        "down".to_owned(),
        common::backend(BackendKind::Redis, "redis://127.0.0.1:1/0".to_owned()),
    );
    let server = start_server(config).await;
    let customers = switchyard_seed::generate(1)
        .into_iter()
        .find(|t| t.table == "customers")
        .unwrap();
    server
        .router
        .seed_table(
            "customers",
            &customers.columns,
            customers.rows,
            500,
            &|_| {},
        )
        .await
        .unwrap();
    let r = query(server.addr, "SELECT name FROM customers", json!([])).await;
    assert_eq!(r.status, 200, "{}", r.body);

    let get = |path: &'static str| common::http(server.addr, "GET", path, None, Vec::new());
    let backends = get("/admin/backends").await;
    assert_eq!(backends.status, 200, "{}", backends.body);
    let find = |name: &str| {
        backends.body["backends"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["backend"] == name)
            .cloned()
            .unwrap()
    };
    let db = find("db");
    assert_eq!(db["kind"], "sqlite");
    assert_eq!(db["healthy"], true);
    assert!(db["check_latency_us"].as_u64().is_some());
    assert!(db["pool"]["open"].as_u64().unwrap() >= 1);
    assert!(db["recent"]["p50_us"].as_u64().is_some());
    let down = find("down");
    assert_eq!(down["healthy"], false);
    assert_eq!(down["error"]["code"], "BACKEND_UNAVAILABLE");
    assert_eq!(find("pg_secret")["healthy"], true);

    let catalog = get("/admin/catalog").await;
    assert_eq!(catalog.status, 200);
    assert_eq!(
        catalog.body["tables"]["orders"]["primary_key"],
        json!(["order_id"])
    );
    assert_eq!(
        catalog.body["tables"]["orders"]["placements"][0]["backend"],
        "db"
    );

    let effective = get("/admin/config").await;
    assert_eq!(effective.status, 200);
    assert!(!effective.text.contains("hunter2"), "{}", effective.text);
    assert_eq!(
        effective.body["backends"]["pg_secret"]["url"],
        common::pg_url().replacen("://postgres@", "://postgres:***@", 1)
    );
    assert!(
        effective.body["execution"]["max_query_rows"]
            .as_u64()
            .is_some()
    );
}
