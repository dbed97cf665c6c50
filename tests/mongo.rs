//! MongoDB pushdown: what explain shows is sent (filter document, pipeline), and bad input:
//! a duplicate key, LIKE patterns with regex metacharacters, a string where an int is expected.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Store, TestStore, post, query, shop_on, start_server};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_shows_the_filter_document_and_pipeline() {
    let store = TestStore::new(Store::Mongo);
    let server = start_server(shop_on(store.backend.clone())).await;
    let e = post(
        server.addr,
        "/v1/explain",
        json!({ "sql": "SELECT name, retail_price FROM products WHERE product_id = $1 AND category LIKE 'bo%' ORDER BY name LIMIT 3", "params": ["p1"] }),
    )
    .await;
    assert_eq!(e.status, 200, "{}", e.body);
    let fragment = &e.body["fragments"][0];
    assert_eq!(fragment["language"], "mongodb");
    let statement: serde_json::Value =
        serde_json::from_str(fragment["statement"].as_str().unwrap()).unwrap();
    assert_eq!(statement["aggregate"], "products");
    assert_eq!(
        statement["pipeline"][0],
        json!({ "$match": { "$and": [ { "_id": { "$eq": "p1" } }, { "category": { "$regex": "^bo.*\\z", "$options": "s" } } ] } })
    );
    assert_eq!(statement["pipeline"][3], json!({ "$limit": 3 }));
    assert_eq!(
        statement["pipeline"][4],
        json!({ "$project": { "_id": 0, "c0": "$name", "c1": "$retail_price" } })
    );

    let g = post(server.addr, "/v1/explain", json!({ "sql": "SELECT category, COUNT(*), SUM(retail_price) FROM products GROUP BY category" })).await;
    let text = g.body["fragments"][0]["statement"].as_str().unwrap();
    assert!(
        text.contains("\"$group\":{\"_id\":{\"g0\":\"$category\"}"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors_and_nothing_half_written() {
    let store = TestStore::new(Store::Mongo);
    let server = start_server(shop_on(store.backend.clone())).await;
    let a = server.addr;
    server
        .router
        .seed_table(
            "products",
            &["product_id", "name", "category"],
            vec![],
            10,
            &|_| {},
        )
        .await
        .unwrap();
    let insert = "INSERT INTO products (product_id, name, category) VALUES ($1, $2, 'toys')";
    for (id, name) in [("p1", "a.b (x)*"), ("p2", "axb (x)"), ("p3", "A.B")] {
        let r = query(a, insert, json!([id, name])).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    // A duplicate key: 409, and the batch that contained it wrote nothing else.
    let dup = query(
        a,
        "INSERT INTO products (product_id, name) VALUES ('p1', 'again')",
        json!([]),
    )
    .await;
    assert_eq!(
        (dup.status, dup.body["error"]["code"].clone()),
        (409, json!("CONSTRAINT_VIOLATION")),
        "{}",
        dup.body
    );
    let count = query(a, "SELECT COUNT(*) FROM products", json!([])).await;
    assert_eq!(count.body["rows"], json!([[3]]));
    // Regex metacharacters in LIKE patterns are literal.
    let like = query(
        a,
        "SELECT product_id FROM products WHERE name LIKE $1 ORDER BY product_id",
        json!(["a.b (x)%"]),
    )
    .await;
    assert_eq!(like.body["rows"], json!([["p1"]]), "{}", like.body);
    let like = query(
        a,
        "SELECT product_id FROM products WHERE name LIKE '%(x)\\*' ORDER BY product_id",
        json!([]),
    )
    .await;
    assert_eq!(like.body["rows"], json!([["p1"]]), "{}", like.body);
    // A string where a number is expected.
    let bad = query(
        a,
        "SELECT * FROM products WHERE rating > $1",
        json!(["high"]),
    )
    .await;
    assert_eq!(
        (bad.status, bad.body["error"]["code"].clone()),
        (400, json!("BAD_PARAMS"))
    );
    // Joins run as $lookup; a LEFT JOIN with more than one equality is refused clearly.
    let join = query(
        a,
        "SELECT p.product_id, q.name FROM products p JOIN products q ON q.product_id = p.product_id ORDER BY 1",
        json!([]),
    )
    .await;
    assert_eq!(
        join.body["rows"],
        json!([["p1", "a.b (x)*"], ["p2", "axb (x)"], ["p3", "A.B"]]),
        "{}",
        join.body
    );
    let left = query(
        a,
        "SELECT p.name FROM products p LEFT JOIN products q ON q.product_id = p.product_id AND q.name = 'x'",
        json!([]),
    )
    .await;
    // MongoDB cannot take this LEFT JOIN; the router reads both sides and joins them.
    assert_eq!(left.status, 200, "{}", left.body);
    assert_eq!(
        left.body["rows"].as_array().map(Vec::len),
        Some(3),
        "{}",
        left.body
    );
}

/// Columns mapped to nested field paths and to `_id`: written as subdocuments, filtered and
/// projected by path, and read back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_field_paths_round_trip() {
    let store = TestStore::new(Store::Mongo);
    let text = format!(
        r#"
[backends.docs]
kind = "mongodb"
url = "{url}"
[tables.shipments]
columns = {{ shipment_id = "text", city = "text", zip = "text", weight = "decimal(10,3)" }}
primary_key = ["shipment_id"]
placements = [{{ backend = "docs", columns = {{ shipment_id = "_id", city = "address.city", zip = "address.zip" }} }}]
"#,
        url = store.backend.url
    );
    let config = switchyard_config::parse_str(&text, "nested.toml", &|_| None).unwrap();
    let server = start_server(config).await;
    let a = server.addr;
    server
        .router
        .seed_table("shipments", &[], vec![], 10, &|_| {})
        .await
        .unwrap();
    for (id, city, zip) in [
        ("s1", "Recife", "50000"),
        ("s2", "Natal", "59000"),
        ("s3", "Recife", "50100"),
    ] {
        let r = query(
            a,
            "INSERT INTO shipments (shipment_id, city, zip, weight) VALUES ($1, $2, $3, 1.5)",
            json!([id, city, zip]),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let got = query(
        a,
        "SELECT shipment_id, zip, weight FROM shipments WHERE city = $1 ORDER BY zip DESC",
        json!(["Recife"]),
    )
    .await;
    assert_eq!(
        got.body["rows"],
        json!([["s3", "50100", "1.500"], ["s1", "50000", "1.500"]]),
        "{}",
        got.body
    );
    let e = post(
        a,
        "/v1/explain",
        json!({ "sql": "SELECT zip FROM shipments WHERE city = 'Natal'" }),
    )
    .await;
    let statement = e.body["fragments"][0]["statement"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        statement.contains("\"address.city\":{\"$eq\":\"Natal\"}")
            && statement.contains("\"$address.zip\""),
        "{statement}"
    );
    let moved = query(
        a,
        "UPDATE shipments SET city = 'Olinda' WHERE shipment_id = 's1'",
        json!([]),
    )
    .await;
    assert_eq!(moved.body["rows_affected"], 1);
    let after = query(
        a,
        "SELECT city, zip FROM shipments WHERE shipment_id = 's1'",
        json!([]),
    )
    .await;
    assert_eq!(after.body["rows"], json!([["Olinda", "50000"]]));
}

/// The translation is linear in the statement: 100 OR terms, in a filter and where three-valued
/// logic matters (the output), 30 nested NOTs and nested function calls stay small, run, and
/// answer like PostgreSQL would (each OR term once, never doubled per term).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn or_chains_and_nesting_translate_linearly() {
    let store = TestStore::new(Store::Mongo);
    let server = start_server(shop_on(store.backend.clone())).await;
    common::seed(&server.router, 1).await;
    let terms: Vec<String> = (0..100).map(|i| format!("brand = ${}", i + 1)).collect();
    let mut params: Vec<serde_json::Value> =
        (0..100).map(|i| json!(format!("Brand {i}"))).collect();
    params[7] = json!("Acme");
    for sql in [
        format!("SELECT COUNT(*) FROM products WHERE {}", terms.join(" OR ")),
        format!(
            "SELECT product_id, ({}) AS hit FROM products ORDER BY product_id LIMIT 5",
            terms.join(" OR ")
        ),
    ] {
        let e = post(
            server.addr,
            "/v1/explain",
            json!({ "sql": sql, "params": params }),
        )
        .await;
        assert_eq!(e.status, 200, "{}", e.body);
        let text = e.body["fragments"][0]["statement"].as_str().unwrap();
        assert!(text.len() < 20_000, "{} bytes for 100 terms", text.len());
        let r = query(server.addr, &sql, json!(params)).await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let count = query(
        server.addr,
        &format!("SELECT COUNT(*) FROM products WHERE {}", terms.join(" OR ")),
        json!(params),
    )
    .await;
    let acme = query(
        server.addr,
        "SELECT COUNT(*) FROM products WHERE brand = 'Acme'",
        json!([]),
    )
    .await;
    assert_eq!(count.body["rows"], acme.body["rows"]);
    let nots = format!(
        "SELECT COUNT(*) FROM products WHERE {}rating > 3{}",
        "NOT (".repeat(30),
        ")".repeat(30)
    );
    let e = post(server.addr, "/v1/explain", json!({ "sql": nots })).await;
    assert!(
        e.status == 200 || e.body["error"]["code"] == "QUERY_TOO_LARGE",
        "{}",
        e.body
    );
    if e.status == 200 {
        assert!(e.body["fragments"][0]["statement"].as_str().unwrap().len() < 20_000);
    }
}
