//! Request ids and the slow-query log, read from the real log output (a global subscriber
//! writing into a buffer; this binary holds only this test).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};

use common::{Store, TestStore, start_server};
use serde_json::json;

#[derive(Clone)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// POSTs a query with an optional `x-request-id`; returns the status and the echoed id.
async fn send(
    addr: std::net::SocketAddr,
    sql: &str,
    params: serde_json::Value,
    id: Option<&str>,
) -> (u16, String) {
    let mut headers = vec![("content-type", "application/json")];
    headers.extend(id.map(|id| ("x-request-id", id)));
    let body = json!({ "sql": sql, "params": params }).to_string();
    let r = common::http_with(addr, "POST", "/v1/query", &headers, body.into_bytes()).await;
    let echoed = r.headers["x-request-id"].to_str().unwrap().to_owned();
    (r.status, echoed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_and_the_slow_query_log() {
    let buffer = Buffer(Arc::new(Mutex::new(Vec::new())));
    let writer = buffer.clone();
    tracing_subscriber::fmt()
        // Spans are INFO (the default level): the request span adds the id to the line.
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    let store = TestStore::new(Store::Sqlite);
    let mut config = common::shop_on(store.backend.clone());
    config.server.slow_query_ms = 1;
    let server = start_server(config).await;
    common::seed(&server.router, 1).await;

    // Ids: a fresh one per request, or the client's own, echoed.
    let sql = "SELECT order_id, line FROM order_items WHERE product_id <> $1";
    let (status, generated) = send(server.addr, sql, json!(["p-secret-999"]), None).await;
    assert_eq!(status, 200);
    assert_eq!(generated.len(), 16, "{generated}");
    let (_, other) = send(server.addr, "SELECT 1 FROM customers", json!([]), None).await;
    assert_ne!(generated, other);
    let (_, echoed) = send(
        server.addr,
        sql,
        json!(["p-secret-999"]),
        Some("checkout-42"),
    )
    .await;
    assert_eq!(echoed, "checkout-42");

    // The slow statements (15,000 rows take well over 1 ms) are logged with the request id,
    // route and timings, and without the parameter value.
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let slow: Vec<&str> = text.lines().filter(|l| l.contains("slow query")).collect();
    assert!(
        slow.iter().any(|l| l.contains(&generated)),
        "no slow-query line for request {generated}:\n{text}"
    );
    let line = slow.iter().find(|l| l.contains("checkout-42")).unwrap();
    for part in [
        "statement=\"select\"",
        "route=db[order_items]",
        "fragments=db:",
        "sql=SELECT order_id, line FROM order_items WHERE product_id <> $1",
    ] {
        assert!(line.contains(part), "`{part}` missing in: {line}");
    }
    assert!(
        !text.contains("p-secret-999"),
        "a parameter value was logged:\n{text}"
    );
}
