//! The HTTP contract: every error code with its status, and the server still answering after each.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Store, TestStore, http, post, query, shop_on, start_server};
use serde_json::json;
use switchyard_config::{BackendKind, PlacementConfig, Role};

/// Sends `body` and checks status, code and (where given) position; then checks that the server
/// still answers a good query.
async fn expect_error(
    server: &common::TestServer,
    send: common::Answer,
    status: u16,
    code: &str,
    position: Option<(u64, u64)>,
) {
    assert_eq!(send.status, status, "{code}: {}", send.body);
    assert_eq!(send.body["error"]["code"], code, "{}", send.body);
    assert!(
        send.body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{}",
        send.body
    );
    match position {
        Some((line, column)) => assert_eq!(
            send.body["error"]["position"],
            json!({ "line": line, "column": column }),
            "{code}"
        ),
        None => assert!(
            send.body["error"].get("position").is_none() || code == "SQL_SYNTAX",
            "{}",
            send.body
        ),
    }
    let next = query(server.addr, "SELECT COUNT(*) FROM customers", json!([])).await;
    assert_eq!(
        next.status, 200,
        "server must answer after {code}: {}",
        next.body
    );
}

#[tokio::test]
async fn every_client_error_code_has_its_status_and_the_server_keeps_serving() {
    let store = TestStore::new(Store::Sqlite);
    let mut config = shop_on(store.backend.clone());
    config.server.max_body_bytes = 2048;
    let server = start_server(config).await;
    common::seed(&server.router, 1).await;
    let a = server.addr;

    let ok = query(a, "SELECT c.name, p.amount FROM customers c JOIN payments p ON p.customer_id = c.customer_id WHERE c.state = $1 ORDER BY p.amount DESC LIMIT 5", json!(["SP"])).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(
        ok.body["columns"],
        json!([{ "name": "name", "type": "text" }, { "name": "amount", "type": "decimal" }])
    );
    assert_eq!(ok.body["rows"].as_array().map(Vec::len), Some(5));
    assert!(
        ok.body["rows"][0][1]
            .as_str()
            .is_some_and(|s| s.contains('.')),
        "decimals are strings: {}",
        ok.body
    );
    assert_eq!(ok.body["rows_affected"], serde_json::Value::Null);

    type Case = (common::Answer, u16, &'static str, Option<(u64, u64)>);
    let cases: Vec<Case> = vec![
        (http(a, "POST", "/v1/query", Some("application/json"), b"{not json".to_vec()).await, 400, "BAD_REQUEST", None),
        (post(a, "/v1/query", json!({ "sql": 5 })).await, 400, "BAD_REQUEST", None),
        (post(a, "/v1/query", json!({ "sql": "SELECT 1", "parms": [] })).await, 400, "BAD_REQUEST", None),
        (post(a, "/v1/query", json!({ "sql": "SELECT * FROM customers", "params": {} })).await, 400, "BAD_REQUEST", None),
        (http(a, "POST", "/v1/query", Some("text/plain"), b"SELECT 1".to_vec()).await, 415, "UNSUPPORTED_MEDIA_TYPE", None),
        (http(a, "POST", "/v1/query", None, b"{}".to_vec()).await, 415, "UNSUPPORTED_MEDIA_TYPE", None),
        (post(a, "/v1/query", json!({ "sql": format!("SELECT * FROM customers WHERE name = '{}'", "x".repeat(4000)) })).await, 413, "PAYLOAD_TOO_LARGE", None),
        (query(a, "SELECT * FROM customers WHER state = 'SP'", json!([])).await, 400, "SQL_SYNTAX", Some((1, 30))),
        (query(a, "SELECT * FROM customers\nORDER BY name\nLIMIT 5 OFFSET", json!([])).await, 400, "SQL_SYNTAX", None),
        (query(a, "UPDATE customers SET name = CASE WHEN name = 'a' THEN 'b' END", json!([])).await, 400, "UNSUPPORTED", Some((1, 29))),
        (query(a, "DROP TABLE customers", json!([])).await, 400, "UNSUPPORTED", None),
        (query(a, "SELECT * FROM\n  customerz", json!([])).await, 400, "UNKNOWN_TABLE", Some((2, 3))),
        (query(a, "SELECT nmae FROM customers", json!([])).await, 400, "UNKNOWN_COLUMN", Some((1, 8))),
        (query(a, "SELECT customer_id FROM customers c JOIN payments p ON p.customer_id = c.customer_id", json!([])).await, 400, "AMBIGUOUS_COLUMN", Some((1, 8))),
        (query(a, "SELECT * FROM inventory WHERE stock > $1", json!(["lots"])).await, 400, "BAD_PARAMS", Some((1, 39))),
        (query(a, "SELECT * FROM inventory WHERE stock > $2", json!([1])).await, 400, "BAD_PARAMS", Some((1, 39))),
        (query(a, "SELECT * FROM inventory", json!([1])).await, 400, "BAD_PARAMS", None),
        (query(a, "SELECT * FROM inventory WHERE warehouse > 3", json!([])).await, 400, "TYPE_MISMATCH", Some((1, 31))),
        (query(a, "SELECT state, name FROM customers GROUP BY state", json!([])).await, 400, "BAD_GROUPING", None),
        (query(a, "INSERT INTO customers (customer_id, name) VALUES ('c000001', 'Dup')", json!([])).await, 409, "CONSTRAINT_VIOLATION", None),
        (http(a, "GET", "/v1/nothing", None, Vec::new()).await, 404, "NOT_FOUND", None),
        (http(a, "GET", "/v1/query", None, Vec::new()).await, 405, "METHOD_NOT_ALLOWED", None),
    ];
    for (answer, status, code, position) in cases {
        expect_error(&server, answer, status, code, position).await;
    }

    // The refused duplicate left the original row alone.
    let row = query(
        a,
        "SELECT name FROM customers WHERE customer_id = 'c000001'",
        json!([]),
    )
    .await;
    assert_ne!(row.body["rows"][0][0], "Dup");
}

#[tokio::test]
async fn no_route_timeout_and_unavailable_backend() {
    // Two SQLite backends: customers on one, orders on the other.
    let a = TestStore::new(Store::Sqlite);
    let b = TestStore::new(Store::Sqlite);
    let mut config = shop_on(a.backend.clone());
    config
        .backends
        .insert("other".to_owned(), b.backend.clone());
    config.tables["orders"].placements[0].backend = "other".to_owned();
    // A backend nobody listens on.
    let mut dead = common::backend(
        BackendKind::Postgres,
        "postgres://nobody@127.0.0.1:1/none".to_owned(),
    );
    dead.connect_timeout_ms = 100;
    config.backends.insert("dead".to_owned(), dead);
    let mut table = config.tables["sessions"].clone();
    table.placements = vec![PlacementConfig {
        backend: "dead".to_owned(),
        role: Role::Primary,
        name: None,
        columns: Default::default(),
        key_pattern: None,
        mode: None,
        ttl_seconds: None,
        scan: Default::default(),
        scan_max_rows: 10_000,
    }];
    config.tables.insert("sessions".to_owned(), table);
    config.server.query_timeout_ms = 300;
    let server = start_server(config).await;
    for t in switchyard_seed::generate(1) {
        if t.table != "sessions" {
            server
                .router
                .seed_table(t.table, &t.columns, t.rows, 500, &|_| {})
                .await
                .expect("seed");
        }
    }
    let addr = server.addr;

    let no_route = query(
        addr,
        "SELECT c.name, o.total FROM customers c JOIN orders o ON o.total > 100",
        json!([]),
    )
    .await;
    // A cross-store join runs now, but one without an equality between the stores has no route.
    expect_error(&server, no_route, 422, "NO_ROUTE", None).await;

    let down = query(addr, "SELECT * FROM sessions", json!([])).await;
    expect_error(&server, down, 503, "BACKEND_UNAVAILABLE", None).await;
    assert!(!down_message_leaks(&server).await);

    // A self-join of 5,000 x 5,000 payments runs far longer than 300 ms on SQLite.
    let slow = query(
        addr,
        "SELECT COUNT(*) FROM payments p JOIN payments q ON q.amount > p.amount",
        json!([]),
    )
    .await;
    expect_error(&server, slow, 504, "TIMEOUT", None).await;

    let ready = http(addr, "GET", "/readyz", None, Vec::new()).await;
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert_eq!(
        http(addr, "GET", "/healthz", None, Vec::new()).await.status,
        200
    );
}

/// The unavailable-backend message names the backend but not its URL.
async fn down_message_leaks(server: &common::TestServer) -> bool {
    let down = query(server.addr, "SELECT * FROM sessions", json!([])).await;
    let message = down.body["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(message.contains("dead"), "{message}");
    message.contains("127.0.0.1:1") || message.contains("nobody")
}

#[tokio::test]
async fn explain_names_backend_and_native_statement() {
    let store = TestStore::new(Store::Sqlite);
    let server = start_server(shop_on(store.backend.clone())).await;
    let e = post(
        server.addr,
        "/v1/explain",
        json!({ "sql": "SELECT name FROM products WHERE product_id = $1", "params": ["p1"] }),
    )
    .await;
    assert_eq!(e.status, 200, "{}", e.body);
    assert_eq!(e.body["route"]["kind"], "single");
    assert_eq!(e.body["route"]["backend"], "db");
    assert_eq!(e.body["fragments"][0]["backend_kind"], "sqlite");
    assert_eq!(
        e.body["fragments"][0]["statement"],
        "SELECT \"products\".\"name\" FROM \"products\" AS \"products\" WHERE (\"products\".\"_id\" = ?)"
    );
    assert_eq!(e.body["fragments"][0]["params"], json!(["p1"]));

    // A statement the router-side engine runs: its plan, and each scan with its own route and
    // native statement (the filter it could push, as a parameter).
    let e = post(
        server.addr,
        "/v1/explain",
        json!({ "sql": "SELECT COUNT(*) FROM customers c WHERE NOT EXISTS (SELECT 1 FROM payments p WHERE p.customer_id = c.customer_id AND p.amount > $1)", "params": [100] }),
    )
    .await;
    assert_eq!(e.status, 200, "{}", e.body);
    assert_eq!(e.body["route"]["kind"], "engine");
    assert!(
        e.body["engine"]["plan"]
            .as_str()
            .is_some_and(|p| p.contains("LeftAnti Join")),
        "{}",
        e.body
    );
    let scans = e.body["engine"]["scans"].as_array().expect("scans");
    let tables: Vec<&str> = scans.iter().filter_map(|s| s["table"].as_str()).collect();
    assert_eq!(tables, ["customers", "payments"]);
    assert_eq!(
        scans[1]["statement"],
        "SELECT \"customer_id\", \"amount\" FROM \"payments\" WHERE \"amount\" > $1"
    );
    assert_eq!(scans[1]["params"], json!(["100.00"]));
    assert_eq!(scans[1]["route"]["backend"], "db");
    assert_eq!(e.body["fragments"][1]["backend_kind"], "sqlite");
}

/// A statement the engine runs whose every table is on one PostgreSQL store goes to it whole:
/// PostgreSQL computes the subquery, the router reads the answer.
#[tokio::test]
async fn a_statement_on_one_postgresql_store_runs_there_whole() {
    let store = TestStore::new(Store::Postgres);
    let server = start_server(shop_on(store.backend.clone())).await;
    use switchyard_core::Value as V;
    let ts = |s: &str| V::Timestamp(s.parse().expect("timestamp"));
    let seeded = [
        (
            "customers",
            vec!["customer_id", "name", "created_at"],
            vec![
                vec![
                    V::Text("c1".into()),
                    V::Text("Ana".into()),
                    ts("2024-05-01T10:00:00Z"),
                ],
                vec![
                    V::Text("c2".into()),
                    V::Text("Bia".into()),
                    ts("2024-06-01T10:00:00Z"),
                ],
            ],
        ),
        (
            "payments",
            vec!["payment_id", "customer_id", "amount"],
            vec![vec![
                V::Text("p1".into()),
                V::Text("c1".into()),
                V::Decimal("150.50".parse().expect("decimal")),
            ]],
        ),
    ];
    for (table, columns, rows) in seeded {
        let n = rows.len() as u64;
        let done = server
            .router
            .seed_table(table, &columns, rows, 10, &|_| {})
            .await;
        assert_eq!(done.expect("seeded"), n);
    }
    let sql = "SELECT c.name, date_trunc('month', c.created_at) AS m, CASE WHEN EXISTS (SELECT 1 FROM payments p WHERE p.customer_id = c.customer_id AND p.amount > $1) THEN 'paid' ELSE 'not' END AS s FROM customers c ORDER BY c.name";
    let e = post(
        server.addr,
        "/v1/explain",
        json!({ "sql": sql, "params": [100] }),
    )
    .await;
    assert_eq!(e.status, 200, "{}", e.body);
    let fragments = e.body["fragments"].as_array().expect("fragments");
    assert_eq!(fragments.len(), 1, "{}", e.body);
    assert!(
        fragments[0]["note"]
            .as_str()
            .is_some_and(|n| n.starts_with("whole statement")),
        "{}",
        e.body
    );
    assert!(
        fragments[0]["statement"]
            .as_str()
            .is_some_and(|s| s.contains("EXISTS (SELECT 1 FROM (SELECT")),
        "{}",
        e.body
    );
    let a = query(server.addr, sql, json!([100])).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(
        a.body["rows"],
        json!([
            ["Ana", "2024-05-01T00:00:00.000000Z", "paid"],
            ["Bia", "2024-06-01T00:00:00.000000Z", "not"]
        ])
    );
    assert_eq!(a.body["columns"][1]["type"], "timestamp");
    // Its failures are the store's, with our codes: a cast PostgreSQL refuses.
    let bad = query(server.addr, "SELECT CAST(name AS int) FROM customers WHERE customer_id IN (SELECT customer_id FROM payments)", json!([])).await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert_eq!(bad.body["error"]["code"], "DATA_ERROR");
}

/// A store's data exception (SQLSTATE class 22) is the client's `DATA_ERROR` in words of our own;
/// a statement the store refuses for its own reasons (a table it lacks) is `BACKEND_ERROR`.
#[tokio::test]
async fn store_refusals_are_data_errors_or_backend_errors() {
    let store = TestStore::new(Store::Postgres);
    let server = start_server(shop_on(store.backend.clone())).await;
    let seeded = server
        .router
        .seed_table(
            "inventory",
            &["product_id", "stock"],
            vec![vec![
                switchyard_core::Value::Text("p1".into()),
                switchyard_core::Value::Int(3),
            ]],
            10,
            &|_| {},
        )
        .await;
    assert_eq!(seeded.unwrap(), 1);
    let refused = query(
        server.addr,
        "SELECT stock / (stock - stock) FROM inventory",
        json!([]),
    )
    .await;
    assert_eq!(
        (refused.status, &refused.body["error"]),
        (
            422,
            &json!({ "code": "DATA_ERROR", "message": "backend `db`: division by zero" })
        ),
        "{}",
        refused.body
    );
    let missing = query(server.addr, "SELECT name FROM customers", json!([])).await;
    assert_eq!(missing.status, 502, "{}", missing.body);
    assert_eq!(missing.body["error"]["code"], "BACKEND_ERROR");
    let next = query(server.addr, "SELECT stock FROM inventory", json!([])).await;
    assert_eq!(next.body["rows"], json!([[3]]));
}

/// Large answers stream with chunked transfer; `Accept: application/x-ndjson` gives one line per
/// row between a `columns` line and a `row_count` trailer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_stream_as_chunked_json_or_ndjson() {
    let store = TestStore::new(Store::Sqlite);
    let server = start_server(shop_on(store.backend.clone())).await;
    common::seed(&server.router, 1).await;
    let sql = "SELECT order_id, total FROM orders ORDER BY order_id";
    let send = |accept: &'static str| async move {
        let r = common::http_with(
            server.addr,
            "POST",
            "/v1/query",
            &[("content-type", "application/json"), ("accept", accept)],
            serde_json::json!({ "sql": sql }).to_string().into_bytes(),
        )
        .await;
        (r.headers, r.text)
    };
    let (headers, body) = send("application/json").await;
    assert_eq!(headers["transfer-encoding"], "chunked");
    let doc: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(doc["rows"].as_array().unwrap().len(), 5000);
    assert_eq!(doc["columns"][1]["type"], "decimal");

    let (headers, body) = send("application/x-ndjson").await;
    assert_eq!(headers["content-type"], "application/x-ndjson");
    let lines: Vec<serde_json::Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5002);
    assert_eq!(lines[0]["columns"][0]["name"], "order_id");
    assert_eq!(lines[1], doc["rows"][0]);
    assert_eq!(lines[5001]["row_count"], 5000);
}

/// A store failing after the first rows were sent (the status line is out by then) ends the
/// document with an `error` member (JSON) or an `{"error": ...}` line (NDJSON): a cut answer
/// never reads as a complete one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_failing_midway_ends_the_stream_with_an_error() {
    let store = TestStore::new(Store::Sqlite);
    let server = start_server(shop_on(store.backend.clone())).await;
    common::seed(&server.router, 1).await;
    // SQLite keeps what it is given: a text where the catalog says int, in the last row.
    let pool = sqlx::SqlitePool::connect(&store.backend.url).await.unwrap();
    sqlx::query(
        "INSERT INTO order_items (order_id, line, product_id, quantity, price) \
         VALUES ('o9999999', 1, 'p000001', 'many', 1.00)",
    )
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
    let sql = "SELECT order_id, line, quantity FROM order_items";
    let send = |accept: &'static str| async move {
        let r = common::http_with(
            server.addr,
            "POST",
            "/v1/query",
            &[("content-type", "application/json"), ("accept", accept)],
            serde_json::json!({ "sql": sql }).to_string().into_bytes(),
        )
        .await;
        (r.status, r.text)
    };
    let (status, text) = send("application/json").await;
    assert_eq!(status, 200, "the first rows were fine: {text}");
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let rows = doc["rows"].as_array().unwrap().len();
    assert!(rows > 10_000, "{rows} rows streamed before the failure");
    assert_eq!(doc["error"]["code"], "BACKEND_ERROR", "{}", doc["error"]);
    assert!(doc.get("rows_affected").is_none());

    let (status, text) = send("application/x-ndjson").await;
    assert_eq!(status, 200);
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "BACKEND_ERROR", "{last}");
    assert_eq!(last["row_count"], rows);
    assert!(!text.contains("rows_affected"));
}

/// Deep and wide statements (issue: a 1.6 KB operator chain killed the process): refused with
/// `QUERY_TOO_LARGE` and the position of the expression that crossed
/// `execution.max_expr_depth` on `/v1/query` and `/v1/explain` alike, up to the 1 MiB body
/// limit; long AND/OR chains (generated filters) run; the server answers after each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_and_wide_statements_are_refused_or_run_never_crash() {
    let store = TestStore::new(Store::Postgres);
    let server = start_server(shop_on(store.backend.clone())).await;
    common::seed(&server.router, 1).await;
    let a = server.addr;
    let chain = |n: usize, term: &str, op: &str| vec![term; n].join(op);
    let plus = format!(
        "SELECT {} AS x FROM customers LIMIT 1",
        chain(775, "1", "+")
    );
    let concat = format!(
        "SELECT name FROM customers WHERE {} = 'x'",
        chain(900, "name", " || ")
    );
    let casts = format!("SELECT name{} FROM customers", "::text".repeat(1000));
    // As long as the body limit allows: 1 MiB less the JSON around it.
    let huge = format!(
        "SELECT 1{} FROM customers",
        "+1".repeat((1024 * 1024 - 200) / 2)
    );
    for path in ["/v1/query", "/v1/explain"] {
        for (sql, position) in [
            (&plus, (1, 8)),
            (&concat, (1, 34)),
            (&casts, (1, 8)),
            (&huge, (1, 8)),
        ] {
            let answer = post(a, path, json!({ "sql": sql })).await;
            expect_error(&server, answer, 422, "QUERY_TOO_LARGE", Some(position)).await;
        }
    }

    // At the limit a chain runs, and gives PostgreSQL's answer.
    let at_limit = format!(
        "SELECT {} AS x FROM customers LIMIT 1",
        chain(256, "1", "+")
    );
    let ok = query(a, &at_limit, json!([])).await;
    assert_eq!(
        (ok.status, &ok.body["rows"]),
        (200, &json!([[256]])),
        "{}",
        ok.body
    );

    // A generated filter: 900 AND terms and 5,000 OR terms.
    let and = format!(
        "SELECT COUNT(*) FROM customers WHERE {}",
        chain(900, "customer_id <> 'none'", " AND ")
    );
    let ok = query(a, &and, json!([])).await;
    assert_eq!(
        (ok.status, &ok.body["rows"]),
        (200, &json!([[1000]])),
        "{}",
        ok.body
    );
    let or = format!(
        "SELECT COUNT(*) FROM customers WHERE {}",
        (0..5000)
            .map(|i| format!("customer_id = 'c{i:06}'"))
            .collect::<Vec<_>>()
            .join(" OR ")
    );
    let ok = query(a, &or, json!([])).await;
    assert_eq!(
        (ok.status, &ok.body["rows"]),
        (200, &json!([[1000]])),
        "{}",
        ok.body
    );
    let healthy = http(a, "GET", "/healthz", None, Vec::new()).await;
    assert_eq!(healthy.status, 200);
}

/// A backend that cannot be reached: after `circuit_failures` statements in a row its circuit
/// opens and statements fail at once (503, `Retry-After`, `retry_after_ms`) instead of waiting
/// for the connect timeout each; `/admin/backends`, the metrics and the status plugins see
/// report it; after `circuit_open_ms` one probe goes through again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_backend_fails_fast_once_its_circuit_opens() {
    let a = TestStore::new(Store::Sqlite);
    let mut config = shop_on(a.backend.clone());
    // Accepts connections and never answers: every connect waits for its timeout.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("postgres://nobody@{}/none", silent.local_addr().unwrap());
    let mut dead = common::backend(BackendKind::Postgres, url);
    dead.connect_timeout_ms = 400;
    dead.circuit_failures = 3;
    dead.circuit_open_ms = 1_500;
    config.backends.insert("dead".to_owned(), dead);
    config.tables["sessions"].placements = vec![PlacementConfig {
        backend: "dead".to_owned(),
        role: Role::Primary,
        name: None,
        columns: Default::default(),
        key_pattern: None,
        mode: None,
        ttl_seconds: None,
        scan: Default::default(),
        scan_max_rows: 10_000,
    }];
    let server = start_server(config).await;
    let addr = server.addr;

    for _ in 0..3 {
        let down = query(
            addr,
            "SELECT * FROM sessions WHERE session_id = 's1'",
            json!([]),
        )
        .await;
        assert_eq!(
            down.body["error"]["code"], "BACKEND_UNAVAILABLE",
            "{}",
            down.body
        );
    }
    let started = std::time::Instant::now();
    let fast = common::http_with(
        addr,
        "POST",
        "/v1/query",
        &[("content-type", "application/json")],
        json!({ "sql": "SELECT * FROM sessions WHERE session_id = 's1'" })
            .to_string()
            .into_bytes(),
    )
    .await;
    assert!(
        started.elapsed() < std::time::Duration::from_millis(300),
        "an open circuit answers at once, took {:?}",
        started.elapsed()
    );
    assert_eq!(fast.status, 503, "{}", fast.body);
    assert_eq!(fast.body["error"]["code"], "BACKEND_UNAVAILABLE");
    let retry = fast.body["error"]["retry_after_ms"].as_u64().unwrap();
    assert!((1..=1_500).contains(&retry), "{}", fast.body);
    assert_eq!(
        fast.headers
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
        Some("2")
    );

    let backends = http(addr, "GET", "/admin/backends", None, Vec::new()).await;
    let dead = backends.body["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["backend"] == "dead")
        .unwrap()
        .clone();
    assert_eq!(dead["circuit"], "open", "{dead}");
    let status = server.router.backend_status();
    let id = server
        .router
        .catalog()
        .backends
        .get_index_of("dead")
        .unwrap();
    assert!(!status[id].healthy, "plugins see the backend unhealthy");
    let metrics = http(addr, "GET", "/metrics", None, Vec::new()).await;
    let text = metrics.text;
    assert!(
        text.contains("switchyard_backend_circuit_state{backend=\"dead\"} 1")
            && text.contains("switchyard_backend_circuit_opened_total{backend=\"dead\"} 1"),
        "{text}"
    );
    // Other backends are untouched.
    let seeded = server
        .router
        .seed_table(
            "inventory",
            &["product_id", "stock"],
            vec![vec![
                switchyard_core::Value::Text("p1".into()),
                switchyard_core::Value::Int(3),
            ]],
            10,
            &|_| {},
        )
        .await;
    assert_eq!(seeded.unwrap(), 1);
    let ok = query(addr, "SELECT stock FROM inventory", json!([])).await;
    assert_eq!(ok.body["rows"], json!([[3]]), "{}", ok.body);

    // After the open time one probe goes to the store again (and, failing, reopens it).
    tokio::time::sleep(std::time::Duration::from_millis(1_600)).await;
    let started = std::time::Instant::now();
    let probe = query(
        addr,
        "SELECT * FROM sessions WHERE session_id = 's1'",
        json!([]),
    )
    .await;
    assert_eq!(probe.body["error"]["code"], "BACKEND_UNAVAILABLE");
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(300),
        "the probe waited for the store"
    );
    assert!(
        probe.body["error"].get("retry_after_ms").is_none(),
        "{}",
        probe.body
    );
    drop(silent);
}

/// Clients that ask for a large streamed answer and read nothing: counted in flight while they
/// hold their connections, abandoned after `stream_stall_timeout_ms` (the statement cancelled,
/// the pool connection released, the answer ending with a `TIMEOUT` error), so other queries on
/// the store keep working well before the query timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_readers_release_their_connections() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let store = TestStore::new(Store::Postgres);
    let mut backend = store.backend.clone();
    backend.pool_max_connections = 3;
    // Waiting for a pooled connection may take until the streams are abandoned: the stall
    // timeout plus filling the socket buffers, which is slow on a loaded machine.
    backend.connect_timeout_ms = 5_000;
    backend.stream_stall_timeout_ms = 1_500;
    let server = start_server(shop_on(backend)).await;
    common::seed(&server.router, 1).await;
    let a = server.addr;
    // About six million rows: far more than socket buffers and two batches hold.
    let body = json!({ "sql": "SELECT p.payment_id, q.payment_id FROM payments p JOIN payments q ON q.payment_type = p.payment_type" }).to_string();
    let request = format!(
        "POST /v1/query HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut stalled = Vec::new();
    for _ in 0..3 {
        let mut conn = tokio::net::TcpStream::connect(a).await.unwrap();
        conn.write_all(request.as_bytes()).await.unwrap();
        stalled.push(conn);
    }
    let mut seen = 0;
    for _ in 0..20 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        // What `/admin/backends` shows as `recent.in_flight` (without its health checks, which
        // would wait for the pool these streams hold).
        seen = server.router.backend_status()[0].in_flight;
        if seen >= 3 {
            break;
        }
    }
    assert!(seen >= 3, "stalled streams are in flight: {seen}");

    // The pool's three connections come back once the streams are abandoned (the kernel's
    // socket buffers take a few megabytes before a stream stalls).
    let started = std::time::Instant::now();
    let other = query(a, "SELECT COUNT(*) FROM customers", json!([])).await;
    assert_eq!(other.status, 200, "{}", other.body);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "another query waited {:?}",
        started.elapsed()
    );
    // Every stream gives its store connection back, though no client read its answer.
    let mut seen = u32::MAX;
    for _ in 0..100 {
        seen = server.router.backend_status()[0].in_flight;
        if seen == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(seen, 0, "abandoned streams are not in flight");
    let backends = http(a, "GET", "/admin/backends", None, Vec::new()).await;
    assert_eq!(backends.body["backends"][0]["recent"]["in_flight"], 0);
    // A stalled answer ends with an error, not as if it were complete.
    let mut text = Vec::new();
    let mut conn = stalled.remove(0);
    tokio::time::timeout(
        std::time::Duration::from_secs(60),
        conn.read_to_end(&mut text),
    )
    .await
    .expect("the abandoned answer ends")
    .unwrap();
    let text = String::from_utf8_lossy(&text);
    assert!(
        text.contains("\"code\":\"TIMEOUT\"") && !text.contains("\"rows_affected\""),
        "{}",
        &text[text.len().saturating_sub(300)..]
    );
    drop(stalled);
}

/// Counts the round trips clients make to PostgreSQL: a TCP proxy that reads the frontend
/// protocol and counts `Sync` and simple `Query` messages (each waits for the server's
/// `ReadyForQuery`: one round trip apiece; a ping is a lone `Sync`).
struct RoundTrips {
    addr: std::net::SocketAddr,
    count: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl RoundTrips {
    async fn start(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = count.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = tokio::net::TcpStream::connect(&upstream).await.unwrap();
                let (client_read, mut client_write) = client.into_split();
                let (mut server_read, server_write) = server.into_split();
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                });
                tokio::spawn(Self::relay(client_read, server_write, counter.clone()));
            }
        });
        Self { addr, count }
    }

    async fn relay(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        counter: std::sync::Arc<std::sync::atomic::AtomicU64>,
    ) -> std::io::Result<()> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // Untyped messages first: SSL or GSS requests, then the startup message.
        let mut started = false;
        loop {
            let mut frame = Vec::new();
            if started {
                let kind = from.read_u8().await?;
                frame.push(kind);
                if matches!(kind, b'S' | b'Q') {
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
            let len = from.read_u32().await?;
            frame.extend_from_slice(&len.to_be_bytes());
            let mut body = vec![0u8; (len as usize).saturating_sub(4)];
            from.read_exact(&mut body).await?;
            if !started {
                let code = body
                    .get(..4)
                    .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]));
                started = !matches!(code, Some(80_877_103 | 80_877_104));
            }
            frame.extend_from_slice(&body);
            to.write_all(&frame).await?;
        }
    }

    fn now(&self) -> u64 {
        self.count.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A point lookup costs PostgreSQL exactly one round trip: no ping when the pool hands out a
/// connection or takes it back, the statement prepared once per connection, the statement
/// timeout set once when the connection opens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_point_lookup_is_one_round_trip_to_postgresql() {
    let store = TestStore::new(Store::Postgres);
    let mut backend = store.backend.clone();
    // postgres://user@host:port/db?... with the proxy in place of host:port.
    let (scheme, rest) = backend.url.split_once("://").unwrap();
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let (user, upstream) = match authority.rsplit_once('@') {
        Some((user, host)) => (format!("{user}@"), host.to_owned()),
        None => (String::new(), authority.to_owned()),
    };
    let proxy = RoundTrips::start(upstream).await;
    let separator = if path.contains('?') { '&' } else { '?' };
    backend.url = format!(
        "{scheme}://{user}{}{path}{separator}sslmode=disable",
        proxy.addr
    );
    backend.pool_max_connections = 2;
    let mut config = shop_on(backend);
    // The saga log lives on this store: its periodic recovery scan would be counted too. With
    // interval 0 it scans once, at start, before the lookups.
    config.transactions.recovery_interval_ms = 0;
    let server = start_server(config).await;
    common::seed(&server.router, 1).await;
    let lookup = "SELECT name, city FROM customers WHERE customer_id = $1";
    // The first lookups on each connection prepare the statement.
    for _ in 0..4 {
        let warm = query(server.addr, lookup, json!(["c000001"])).await;
        assert_eq!(warm.status, 200, "{}", warm.body);
    }
    let before = proxy.now();
    for _ in 0..20 {
        let hit = query(server.addr, lookup, json!(["c000001"])).await;
        assert_eq!(hit.status, 200, "{}", hit.body);
        assert_eq!(
            hit.body["rows"].as_array().map(Vec::len),
            Some(1),
            "{}",
            hit.body
        );
    }
    // A connection goes back to the pool without a ping after the answer: give any such
    // background work time to show up before counting.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        proxy.now() - before,
        20,
        "round trips to PostgreSQL for 20 point lookups"
    );
}
