//! The Redis backend against a real Redis: every layout (hash, json, counter,
//! hash-per-partition), TTLs, pipelined key lookups, increments, NEEDS_KEY, duplicates, explain.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{
    RedisCleanup, Store, TestStore, http, post, query, redis_url, start_server, unique_name,
};
use serde_json::json;
use switchyard_config::{BackendConfig, BackendKind, Config};

/// The shop catalog: Redis tables on a real Redis under a unique key prefix, the rest on SQLite.
fn shop(sqlite: &TestStore, prefix: &str) -> Config {
    let mut config = common::shop_config();
    for (name, backend) in config.backends.iter_mut() {
        if name == "redis" {
            *backend = BackendConfig {
                key_prefix: Some(prefix.to_owned()),
                ..common::backend(BackendKind::Redis, redis_url())
            };
        } else {
            *backend = sqlite.backend.clone();
        }
    }
    config
}

fn ttl(key: &str) -> i64 {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    redis::cmd("TTL").arg(key).query(&mut conn).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carts_sessions_and_hits_live_in_redis() {
    let sqlite = TestStore::new(Store::Sqlite);
    let prefix = format!("{}:", unique_name("sy"));
    let _cleanup = RedisCleanup(prefix.clone());
    let server = start_server(shop(&sqlite, &prefix)).await;
    let a = server.addr;

    // hash-per-partition: one hash per customer, one field per product.
    let add = "INSERT INTO carts (customer_id, product_id, quantity) VALUES ($1, $2, $3) ON CONFLICT (customer_id, product_id) DO UPDATE SET quantity = carts.quantity + EXCLUDED.quantity";
    for (c, p, q) in [
        ("c1", "p1", 2),
        ("c1", "p2", 1),
        ("c1", "p1", 3),
        ("c2", "p9", 1),
    ] {
        let r = query(a, add, json!([c, p, q])).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let cart = query(
        a,
        "SELECT product_id, quantity FROM carts WHERE customer_id = $1",
        json!(["c1"]),
    )
    .await;
    let mut rows = cart.body["rows"].as_array().unwrap().clone();
    rows.sort_by_key(|r| r.to_string());
    assert_eq!(rows, vec![json!(["p1", 5]), json!(["p2", 1])]);
    let one = query(
        a,
        "SELECT quantity FROM carts WHERE customer_id = 'c1' AND product_id IN ('p2', 'p7')",
        json!([]),
    )
    .await;
    assert_eq!(one.body["rows"], json!([[1]]));
    let e = post(
        a,
        "/v1/explain",
        json!({ "sql": "SELECT * FROM carts WHERE customer_id IN ('c1', 'c2')" }),
    )
    .await;
    assert_eq!(e.body["fragments"][0]["language"], "redis");
    assert_eq!(
        e.body["fragments"][0]["statement"],
        format!("HGETALL {prefix}cart:c1; HGETALL {prefix}cart:c2")
    );
    let removed = query(
        a,
        "DELETE FROM carts WHERE customer_id = 'c1' AND product_id = 'p2'",
        json!([]),
    )
    .await;
    assert_eq!(removed.body["rows_affected"], 1);

    // json with TTL: sessions expire after 1800 s, set atomically with the write.
    let s = query(
        a,
        "INSERT INTO sessions (session_id, customer_id, data) VALUES ($1, 'c1', $2)",
        json!(["s1", { "page": "/p/1", "items": [1, 2] }]),
    )
    .await;
    assert_eq!(s.status, 200, "{}", s.body);
    let t = ttl(&format!("{prefix}session:s1"));
    assert!((1..=1800).contains(&t), "ttl {t}");
    let got = query(
        a,
        "SELECT session_id, customer_id, data FROM sessions WHERE session_id IN ($1, $2)",
        json!(["s1", "nope"]),
    )
    .await;
    assert_eq!(
        got.body["rows"],
        json!([["s1", "c1", { "page": "/p/1", "items": [1, 2] }]])
    );
    let dup = query(
        a,
        "INSERT INTO sessions (session_id, customer_id) VALUES ('s1', 'other')",
        json!([]),
    )
    .await;
    assert_eq!(
        (dup.status, dup.body["error"]["code"].clone()),
        (409, json!("CONSTRAINT_VIOLATION"))
    );
    let kept = query(
        a,
        "SELECT customer_id FROM sessions WHERE session_id = 's1'",
        json!([]),
    )
    .await;
    assert_eq!(
        kept.body["rows"],
        json!([["c1"]]),
        "a refused insert changes nothing"
    );

    // counter: INCRBY for `hits = hits + 1`, MGET for lookups.
    for p in ["p1", "p2"] {
        query(
            a,
            "INSERT INTO product_hits (product_id, hits) VALUES ($1, 0)",
            json!([p]),
        )
        .await;
    }
    for _ in 0..3 {
        let r = query(
            a,
            "UPDATE product_hits SET hits = hits + 1 WHERE product_id = $1",
            json!(["p1"]),
        )
        .await;
        assert_eq!(r.body["rows_affected"], 1, "{}", r.body);
    }
    let missing = query(
        a,
        "UPDATE product_hits SET hits = hits + 1 WHERE product_id = 'ghost'",
        json!([]),
    )
    .await;
    assert_eq!(
        missing.body["rows_affected"], 0,
        "an update never creates a row"
    );
    let hits = query(
        a,
        "SELECT product_id, hits FROM product_hits WHERE product_id IN ('p1', 'p2', 'ghost')",
        json!([]),
    )
    .await;
    assert_eq!(hits.body["rows"], json!([["p1", 3], ["p2", 0]]));
    let e = post(
        a,
        "/v1/explain",
        json!({ "sql": "UPDATE product_hits SET hits = hits + 1 WHERE product_id = 'p1'" }),
    )
    .await;
    // One script per counter: the existence check and INCRBY, atomically.
    let statement = e.body["fragments"][0]["statement"].as_str().unwrap();
    assert!(
        statement.starts_with("MULTI; EVAL ")
            && statement.contains("INCRBY")
            && statement.ends_with(&format!(" 1 {prefix}hits:p1 incr 1; EXEC")),
        "{statement}"
    );

    // Without the key: NEEDS_KEY, and the router keeps serving.
    let scan = query(a, "SELECT * FROM carts", json!([])).await;
    assert_eq!(
        (scan.status, scan.body["error"]["code"].clone()),
        (400, json!("NEEDS_KEY")),
        "{}",
        scan.body
    );
    assert!(
        scan.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("customer_id"),
        "{}",
        scan.body
    );
    let filtered = query(a, "SELECT * FROM product_hits WHERE hits > 5", json!([])).await;
    // The filter is finished in the router, but reading every hit still needs the key.
    assert_eq!(
        filtered.body["error"]["code"], "NEEDS_KEY",
        "{}",
        filtered.body
    );
    // Readiness is a health probe: allow a transient failed probe, report the body otherwise.
    let mut ready = http(a, "GET", "/readyz", None, Vec::new()).await;
    for _ in 0..3 {
        if ready.status == 200 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        ready = http(a, "GET", "/readyz", None, Vec::new()).await;
    }
    assert_eq!(ready.status, 200, "{}", ready.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_round_trips_in_hash_and_json_layouts() {
    let prefix = format!("{}:", unique_name("sy"));
    let _cleanup = RedisCleanup(prefix.clone());
    for mode in ["hash", "json"] {
        let text = format!(
            r#"
[backends.kv]
kind = "redis"
url = "{url}"
key_prefix = "{prefix}{mode}:"
[tables.probe]
columns = {{ id = "text", b = "bool", i = "int", f = "float", d = "decimal(28,6)", t = "timestamp", j = "json", s = "text" }}
primary_key = ["id"]
placements = [{{ backend = "kv", key_pattern = "probe:{{id}}", mode = "{mode}" }}]
"#,
            url = redis_url()
        );
        let config = switchyard_config::parse_str(&text, "probe.toml", &|_| None).unwrap();
        let server = start_server(config).await;
        let insert =
            "INSERT INTO probe (id, b, i, f, d, t, j, s) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
        let rows = [
            json!(["a", true, -9_007_199_254_740_993i64, 0.1, "1234567890123456789012.123456", "2024-02-29T23:59:59.999999+05:30", { "x": [1, { "y": null }], "ü": "✓" }, "héllo ✓ 'q' \"dq\" \\"]),
            json!(["b", null, null, null, null, null, null, null]),
        ];
        for row in &rows {
            let r = query(server.addr, insert, row.clone()).await;
            assert_eq!(r.status, 200, "{mode}: {}", r.body);
        }
        let got = query(
            server.addr,
            "SELECT * FROM probe WHERE id IN ('a', 'b')",
            json!([]),
        )
        .await;
        assert_eq!(
            got.body["rows"],
            json!([
                ["a", true, -9_007_199_254_740_993i64, 0.1, "1234567890123456789012.123456", "2024-02-29T18:29:59.999999Z", { "x": [1, { "y": null }], "ü": "✓" }, "héllo ✓ 'q' \"dq\" \\"],
                ["b", null, null, null, null, null, null, null],
            ]),
            "{mode}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_are_opt_in_and_bounded() {
    let sqlite = TestStore::new(Store::Sqlite);
    let prefix = format!("{}:", unique_name("sy"));
    let _cleanup = RedisCleanup(prefix.clone());
    let mut config = shop(&sqlite, &prefix);
    for p in &mut config.tables["product_hits"].placements {
        p.scan = switchyard_config::ScanPolicy::Allow;
        p.scan_max_rows = 3;
    }
    let server = start_server(config).await;
    let a = server.addr;
    for (p, h) in [("p1", 5), ("p2", 7)] {
        query(
            a,
            "INSERT INTO product_hits (product_id, hits) VALUES ($1, $2)",
            json!([p, h]),
        )
        .await;
    }
    let all = query(a, "SELECT product_id, hits FROM product_hits", json!([])).await;
    let mut rows = all.body["rows"].as_array().unwrap().clone();
    rows.sort_by_key(|r| r.to_string());
    assert_eq!(
        rows,
        vec![json!(["p1", 5]), json!(["p2", 7])],
        "{}",
        all.body
    );
    let e = post(
        a,
        "/v1/explain",
        json!({ "sql": "SELECT * FROM product_hits" }),
    )
    .await;
    assert_eq!(
        e.body["fragments"][0]["statement"],
        format!("SCAN 0 MATCH {prefix}hits:* COUNT 500")
    );
    for p in ["p3", "p4"] {
        query(
            a,
            "INSERT INTO product_hits (product_id, hits) VALUES ($1, 1)",
            json!([p]),
        )
        .await;
    }
    let big = query(a, "SELECT * FROM product_hits", json!([])).await;
    assert_eq!(
        (big.status, big.body["error"]["code"].clone()),
        (422, json!("QUERY_TOO_LARGE")),
        "{}",
        big.body
    );
    // Carts did not opt in.
    let carts = query(a, "SELECT * FROM carts", json!([])).await;
    assert_eq!(carts.body["error"]["code"], "NEEDS_KEY");
}

/// A filter on the clustering key alone (or on part of a key) pins no partition: with scans
/// allowed the adapter scans and keeps the matching rows; the bound counts the rows read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clustering_key_filters_scan_when_allowed() {
    let sqlite = TestStore::new(Store::Sqlite);
    let prefix = format!("{}:", unique_name("sy"));
    let _cleanup = RedisCleanup(prefix.clone());
    let mut config = shop(&sqlite, &prefix);
    for p in &mut config.tables["carts"].placements {
        p.scan = switchyard_config::ScanPolicy::Allow;
        p.scan_max_rows = 5;
    }
    let server = start_server(config).await;
    let a = server.addr;
    for (c, p, q) in [
        ("c1", "p1", 2),
        ("c1", "p2", 1),
        ("c2", "p1", 5),
        ("c2", "p3", 1),
    ] {
        let r = query(
            a,
            "INSERT INTO carts (customer_id, product_id, quantity) VALUES ($1, $2, $3)",
            json!([c, p, q]),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let sorted = |body: &serde_json::Value| {
        let mut rows = body["rows"].as_array().cloned().unwrap_or_default();
        rows.sort_by_key(|r| r.to_string());
        rows
    };
    let by_product = query(
        a,
        "SELECT customer_id, quantity FROM carts WHERE product_id = $1",
        json!(["p1"]),
    )
    .await;
    assert_eq!(by_product.status, 200, "{}", by_product.body);
    assert_eq!(
        sorted(&by_product.body),
        vec![json!(["c1", 2]), json!(["c2", 5])]
    );
    let listed = query(
        a,
        "SELECT product_id FROM carts WHERE product_id IN ('p2', 'p3', 'p9')",
        json!([]),
    )
    .await;
    assert_eq!(sorted(&listed.body), vec![json!(["p2"]), json!(["p3"])]);
    // The partition pinned, the clustering key listed: a keyed read, filtered the same way.
    let keyed = query(
        a,
        "SELECT product_id, quantity FROM carts WHERE customer_id = 'c2' AND product_id IN ('p1', 'p2')",
        json!([]),
    )
    .await;
    assert_eq!(
        sorted(&keyed.body),
        vec![json!(["p1", 5])],
        "{}",
        keyed.body
    );
    // Two more rows: the scan reads 6 > 5 rows, even though the filter would keep one.
    for p in ["p4", "p5"] {
        query(
            a,
            "INSERT INTO carts (customer_id, product_id, quantity) VALUES ('c3', $1, 1)",
            json!([p]),
        )
        .await;
    }
    let big = query(
        a,
        "SELECT customer_id FROM carts WHERE product_id = 'p4'",
        json!([]),
    )
    .await;
    assert_eq!(
        (big.status, big.body["error"]["code"].clone()),
        (422, json!("QUERY_TOO_LARGE")),
        "{}",
        big.body
    );
    // A whole partition deleted: as many rows as it held, and none left.
    let gone = query(
        a,
        "DELETE FROM carts WHERE customer_id IN ('c3', 'c9')",
        json!([]),
    )
    .await;
    assert_eq!(gone.body["rows_affected"], 2, "{}", gone.body);
    let left = query(
        a,
        "SELECT product_id FROM carts WHERE customer_id = 'c3'",
        json!([]),
    )
    .await;
    assert_eq!(left.body["rows"], json!([]), "{}", left.body);
}

/// The key-shaped queries of the shop give the same rows on Redis as on SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_shaped_queries_match_sqlite() {
    let sqlite = TestStore::new(Store::Sqlite);
    let reference_store = TestStore::new(Store::Sqlite);
    let prefix = format!("{}:", unique_name("sy"));
    let _cleanup = RedisCleanup(prefix.clone());
    let redis_server = start_server(shop(&sqlite, &prefix)).await;
    let reference = start_server(common::shop_on(reference_store.backend.clone())).await;
    for server in [&redis_server, &reference] {
        for t in switchyard_seed::generate(1) {
            if ["carts", "sessions", "product_hits"].contains(&t.table) {
                server
                    .router
                    .seed_table(t.table, &t.columns, t.rows, 200, &|_| {})
                    .await
                    .unwrap();
            }
        }
    }
    let carts: Vec<String> = {
        let t = switchyard_seed::generate(1)
            .into_iter()
            .find(|t| t.table == "carts")
            .unwrap();
        let mut ids: Vec<String> = t
            .rows
            .iter()
            .map(|r| match &r[0] {
                switchyard_core::Value::Text(s) => s.clone(),
                _ => String::new(),
            })
            .collect();
        ids.dedup();
        ids.truncate(5);
        ids
    };
    let cases = [
        (
            "SELECT product_id, quantity FROM carts WHERE customer_id = $1",
            json!([carts[0]]),
        ),
        (
            "SELECT customer_id, product_id, quantity FROM carts WHERE customer_id IN ($1, $2, $3)",
            json!([carts[1], carts[2], "nobody"]),
        ),
        (
            "SELECT * FROM sessions WHERE session_id IN ('s000001', 's000007', 's999999')",
            json!([]),
        ),
        (
            "SELECT customer_id, data FROM sessions WHERE session_id = $1",
            json!(["s000100"]),
        ),
        (
            "SELECT * FROM product_hits WHERE product_id IN ('p000001', 'p000002', 'p001999', 'nope')",
            json!([]),
        ),
        (
            "SELECT hits FROM product_hits WHERE product_id = $1",
            json!(["p000042"]),
        ),
        (
            "SELECT product_id, hits FROM product_hits WHERE product_id IN ('p000001', 'p000002', 'p000003') AND product_id = 'p000002'",
            json!([]),
        ),
        (
            "SELECT product_id FROM product_hits WHERE product_id IN ('p000001', 'p000001', 'p000002') AND product_id IN ('p000001', 'p000003')",
            json!([]),
        ),
        (
            "SELECT product_id FROM product_hits WHERE product_id = 'p000001' AND product_id = 'p000002'",
            json!([]),
        ),
        (
            "UPDATE product_hits SET hits = hits + 5 WHERE product_id = 'p000042' AND product_id IN ('p000001')",
            json!([]),
        ),
        (
            "DELETE FROM sessions WHERE session_id = 's000001' AND session_id = 's000002'",
            json!([]),
        ),
        (
            "UPDATE product_hits SET hits = hits + 5 WHERE product_id = 'p000042'",
            json!([]),
        ),
        (
            "SELECT hits FROM product_hits WHERE product_id = $1",
            json!(["p000042"]),
        ),
        (
            "DELETE FROM sessions WHERE session_id = 's000001'",
            json!([]),
        ),
        (
            "SELECT session_id FROM sessions WHERE session_id IN ('s000001', 's000002')",
            json!([]),
        ),
        (
            "INSERT INTO carts (customer_id, product_id, quantity) VALUES ($1, 'p000001', 4) ON CONFLICT (customer_id, product_id) DO UPDATE SET quantity = carts.quantity + EXCLUDED.quantity",
            json!([carts[3]]),
        ),
        (
            "SELECT product_id, quantity FROM carts WHERE customer_id = $1",
            json!([carts[3]]),
        ),
    ];
    for (sql, params) in cases {
        let mut got = query(redis_server.addr, sql, params.clone()).await.body;
        let mut want = query(reference.addr, sql, params).await.body;
        for body in [&mut got, &mut want] {
            if let Some(rows) = body["rows"].as_array_mut() {
                rows.sort_by_key(|r| r.to_string());
            }
        }
        assert_eq!(got, want, "{sql}");
    }
}

/// Every statement kind in every layout does the write it acknowledges, or is refused before
/// anything is written; each write is read back from the real Redis. Keys over several columns
/// stay distinct whatever the values hold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_in_every_layout_is_done_or_refused() {
    let prefix = format!("{}:", unique_name("sy"));
    let _cleanup = RedisCleanup(prefix.clone());
    let text = format!(
        r#"
[backends.kv]
kind = "redis"
url = "{url}"
key_prefix = "{prefix}"
[tables.h]
columns = {{ id = "text", n = "int", s = "text" }}
primary_key = ["id"]
placements = [{{ backend = "kv", key_pattern = "h:{{id}}", mode = "hash" }}]
[tables.j]
columns = {{ id = "text", n = "int", s = "text" }}
primary_key = ["id"]
placements = [{{ backend = "kv", key_pattern = "j:{{id}}", mode = "json" }}]
[tables.c]
columns = {{ id = "text", n = "int" }}
primary_key = ["id"]
placements = [{{ backend = "kv", key_pattern = "c:{{id}}", mode = "counter" }}]
[tables.p1]
columns = {{ part = "text", item = "text", n = "int" }}
primary_key = ["part", "item"]
placements = [{{ backend = "kv", key_pattern = "p1:{{part}}", mode = "hash-per-partition" }}]
[tables.p2]
columns = {{ part = "text", item = "text", n = "int", s = "text" }}
primary_key = ["part", "item"]
placements = [{{ backend = "kv", key_pattern = "p2:{{part}}", mode = "hash-per-partition" }}]
[tables.kv2]
columns = {{ a = "text", b = "text", v = "text" }}
primary_key = ["a", "b"]
placements = [{{ backend = "kv", key_pattern = "kv:{{a}}:{{b}}", mode = "json" }}]
"#,
        url = redis_url()
    );
    let config = switchyard_config::parse_str(&text, "matrix.toml", &|_| None).unwrap();
    let server = start_server(config).await;
    let a = server.addr;
    let ok = |sql: &'static str, params: serde_json::Value| async move {
        let r = query(a, sql, params).await;
        assert_eq!(r.status, 200, "{sql}: {}", r.body);
        r.body
    };
    let refused = |sql: &'static str| async move {
        let r = query(a, sql, json!([])).await;
        assert!(r.status >= 400, "{sql} must be refused: {}", r.body);
        r.body["error"]["code"].clone()
    };

    // hash and json rows: set, increment, NULL, a missing key, delete.
    for t in ["h", "j"] {
        let sql = |s: &str| -> &'static str { Box::leak(s.replace("{t}", t).into_boxed_str()) };
        ok(
            sql("INSERT INTO {t} (id, n, s) VALUES ('r1', 1, 'x')"),
            json!([]),
        )
        .await;
        let u = ok(
            sql("UPDATE {t} SET s = $1, n = n + 5 WHERE id = $2"),
            json!(["y", "r1"]),
        )
        .await;
        assert_eq!(u["rows_affected"], 1, "{t}");
        let r = ok(sql("SELECT id, n, s FROM {t} WHERE id = 'r1'"), json!([])).await;
        assert_eq!(r["rows"], json!([["r1", 6, "y"]]), "{t}");
        let u = ok(
            sql("UPDATE {t} SET s = 'z' WHERE id IN ('r1', 'ghost')"),
            json!([]),
        )
        .await;
        assert_eq!(u["rows_affected"], 1, "{t}: only the existing row");
        let r = ok(sql("SELECT id FROM {t} WHERE id = 'ghost'"), json!([])).await;
        assert_eq!(r["rows"], json!([]), "{t}: an UPDATE never creates a row");
        ok(sql("UPDATE {t} SET n = NULL WHERE id = 'r1'"), json!([])).await;
        ok(sql("UPDATE {t} SET n = n + 1 WHERE id = 'r1'"), json!([])).await;
        let r = ok(sql("SELECT id, n, s FROM {t} WHERE id = 'r1'"), json!([])).await;
        assert_eq!(
            r["rows"],
            json!([["r1", null, "z"]]),
            "{t}: NULL + 1 is NULL"
        );
        refused(sql("UPDATE {t} SET id = 'r2' WHERE id = 'r1'")).await;
        let d = ok(sql("DELETE FROM {t} WHERE id = 'r1'"), json!([])).await;
        assert_eq!(d["rows_affected"], 1, "{t}");
        let u = ok(sql("UPDATE {t} SET s = 'w' WHERE id = 'r1'"), json!([])).await;
        assert_eq!(u["rows_affected"], 0, "{t}");
        let r = ok(sql("SELECT id FROM {t} WHERE id = 'r1'"), json!([])).await;
        assert_eq!(r["rows"], json!([]), "{t}");
    }

    // counters: increments and sets of an existing counter only; NULL refused.
    ok("INSERT INTO c (id, n) VALUES ('k1', 1)", json!([])).await;
    ok("UPDATE c SET n = n + 5 WHERE id = 'k1'", json!([])).await;
    let u = ok(
        "UPDATE c SET n = n + 5 WHERE id IN ('k1', 'ghost')",
        json!([]),
    )
    .await;
    assert_eq!(u["rows_affected"], 1);
    let r = ok("SELECT id, n FROM c WHERE id IN ('k1', 'ghost')", json!([])).await;
    assert_eq!(r["rows"], json!([["k1", 11]]));
    ok("UPDATE c SET n = 40 WHERE id = 'k1'", json!([])).await;
    refused("UPDATE c SET n = NULL WHERE id = 'k1'").await;
    refused("INSERT INTO c (id, n) VALUES ('k2', NULL)").await;
    refused("INSERT INTO c (id, n) VALUES (NULL, 1)").await;
    let r = ok("SELECT n FROM c WHERE id = 'k1'", json!([])).await;
    assert_eq!(r["rows"], json!([[40]]));
    let over = query(
        a,
        "UPDATE c SET n = n + 9223372036854775807 WHERE id = 'k1'",
        json!([]),
    )
    .await;
    assert_eq!(over.body["error"]["code"], "DATA_ERROR", "{}", over.body);
    let r = ok("SELECT n FROM c WHERE id = 'k1'", json!([])).await;
    assert_eq!(
        r["rows"],
        json!([[40]]),
        "a failed increment changed nothing"
    );

    // hash-per-partition, one value column and packed (JSON) values.
    ok(
        "INSERT INTO p1 (part, item, n) VALUES ('a', 'i1', 2)",
        json!([]),
    )
    .await;
    let u = ok(
        "UPDATE p1 SET n = n + 3 WHERE part = 'a' AND item IN ('i1', 'ghost')",
        json!([]),
    )
    .await;
    assert_eq!(u["rows_affected"], 1);
    let r = ok("SELECT part, item, n FROM p1 WHERE part = 'a'", json!([])).await;
    assert_eq!(r["rows"], json!([["a", "i1", 5]]));
    ok(
        "INSERT INTO p2 (part, item, n, s) VALUES ('a', 'i1', 2, 'x')",
        json!([]),
    )
    .await;
    let u = ok(
        "UPDATE p2 SET s = 'y', n = n + 1 WHERE part = 'a' AND item = 'i1'",
        json!([]),
    )
    .await;
    assert_eq!(u["rows_affected"], 1);
    let r = ok(
        "SELECT part, item, n, s FROM p2 WHERE part = 'a'",
        json!([]),
    )
    .await;
    assert_eq!(r["rows"], json!([["a", "i1", 3, "y"]]));
    refused("UPDATE p2 SET item = 'i2' WHERE part = 'a' AND item = 'i1'").await;

    // Keys over two columns: values holding the separator or a placeholder stay distinct rows.
    let pairs = [
        ("x:y", "z", "1"),
        ("x", "y:z", "2"),
        ("{b}", "q", "3"),
        ("q", "{b}", "4"),
    ];
    for (ka, kb, v) in pairs {
        ok(
            "INSERT INTO kv2 (a, b, v) VALUES ($1, $2, $3)",
            json!([ka, kb, v]),
        )
        .await;
    }
    for (ka, kb, v) in pairs {
        let r = ok("SELECT v FROM kv2 WHERE a = $1 AND b = $2", json!([ka, kb])).await;
        assert_eq!(r["rows"], json!([[v]]), "({ka}, {kb})");
    }
    let d = ok("DELETE FROM kv2 WHERE a = 'x' AND b = 'y:z'", json!([])).await;
    assert_eq!(d["rows_affected"], 1);
    let r = ok("SELECT v FROM kv2 WHERE a = 'x:y' AND b = 'z'", json!([])).await;
    assert_eq!(
        r["rows"],
        json!([["1"]]),
        "deleting ('x', 'y:z') left ('x:y', 'z') alone"
    );
}

/// A Redis of our own on a free port, stopped and continued with signals (never the machine's).
struct OwnRedis {
    child: std::process::Child,
    port: u16,
}

impl OwnRedis {
    fn start() -> OwnRedis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test.sh installs it)");
        let url = format!("redis://127.0.0.1:{port}/0");
        for _ in 0..100 {
            if redis::Client::open(url.as_str())
                .and_then(|c| c.get_connection())
                .is_ok()
            {
                return OwnRedis { child, port };
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("redis-server on port {port} did not start");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.signal("-CONT");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// With the cache and events Redis stopped (SIGSTOP), writes to other stores answer within
/// `events.publish_wait_ms` + `execution.cache_timeout_ms`, cached reads within the cache
/// timeout (from the source of truth), and the queued events go out once Redis continues.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redis_delays_nothing_for_long() {
    let sqlite = TestStore::new(Store::Sqlite);
    let own = OwnRedis::start();
    let mut config = common::shop_config();
    for (name, b) in config.backends.iter_mut() {
        *b = if name == "redis" {
            common::backend(BackendKind::Redis, own.url())
        } else {
            sqlite.backend.clone()
        };
    }
    let server = start_server(config).await;
    common::seed(&server.router, 1).await;
    let a = server.addr;
    let lookup = "SELECT product_id, name FROM products WHERE product_id = 'p000001'";
    let before = query(a, lookup, json!([])).await;
    assert_eq!(before.status, 200, "{}", before.body);

    own.signal("-STOP");
    let timed = |sql: &'static str| async move {
        let started = std::time::Instant::now();
        let r = query(a, sql, json!([])).await;
        (r, started.elapsed())
    };
    let bound = std::time::Duration::from_millis(1_500);
    let (w, took) =
        timed("UPDATE inventory SET stock = stock + 1 WHERE product_id = 'p000002'").await;
    assert_eq!(w.status, 200, "{}", w.body);
    assert!(took < bound, "a write with its events queued took {took:?}");
    let (r, took) = timed(lookup).await;
    assert_eq!(
        (r.status, &r.body["rows"]),
        (200, &before.body["rows"]),
        "{}",
        r.body
    );
    assert!(took < bound, "a cached read took {took:?}");
    let (w, took) =
        timed("UPDATE products SET name = 'Renamed' WHERE product_id = 'p000001'").await;
    assert_eq!(w.status, 200, "{}", w.body);
    assert!(took < bound, "a write to a cached table took {took:?}");

    own.signal("-CONT");
    // The events queued while Redis was stopped are published, and the renamed product is
    // not served stale from the cache.
    let client = redis::Client::open(own.url()).unwrap();
    let mut conn = client.get_connection().unwrap();
    let mut len = 0;
    for _ in 0..100 {
        len = redis::cmd("XLEN")
            .arg("switchyard:changes")
            .query(&mut conn)
            .unwrap_or(0);
        if len >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(len >= 2, "events published after Redis continued: {len}");
    let after = query(a, lookup, json!([])).await;
    assert_eq!(after.body["rows"][0][1], "Renamed", "{}", after.body);
}
