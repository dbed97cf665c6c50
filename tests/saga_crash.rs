//! Checkout under crashes: the real `switchyard` binary is SIGKILLed at each step boundary of
//! the checkout saga in turn (a failpoint armed through `SWITCHYARD_FAILPOINTS` chooses where),
//! a fresh router process is started on the same stores, and its recovery finishes the saga.
//! Afterwards: no order without its payment, no payment without its order, stock decremented
//! exactly once per committed order, the cart gone only when the order exists, the change
//! events of a committed saga on the stream (at least once). Each kill point runs twice.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{RedisCleanup, Store, TestStore, checkout, checkout_env};
use serde_json::json;
use switchyard_core::Value;
use switchyard_router::Router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

/// Where the victim dies, and whether the saga must end committed (every step was durable).
const KILL_POINTS: [(&str, bool); 8] = [
    ("saga.before_step.0", false),   // intent logged, nothing ran
    ("saga.before_step.1", false),   // cart read
    ("saga.before_step.2", false),   // stock + payment committed (PostgreSQL, with its log record)
    ("saga.after_execute.2", false), // order inserted (MongoDB), not recorded
    ("saga.before_step.3", false),   // order recorded
    ("saga.after_execute.3", false), // cart deleted (Redis), not recorded
    ("saga.before_step.4", true),    // every step done, events not published
    ("saga.before_commit", true),    // events published, commit not recorded
];

/// Change events on the stream for `op` of `table`/`key`.
fn events_for(prefix: &str, table: &str, key: &str, op: &str) -> usize {
    let mut conn = redis::Client::open(common::redis_url())
        .unwrap()
        .get_connection()
        .unwrap();
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(format!("{prefix}changes"))
        .arg("-")
        .arg("+")
        .query(&mut conn)
        .unwrap();
    entries
        .iter()
        .filter(|(_, fields)| {
            fields.contains(&("table".to_owned(), table.to_owned()))
                && fields.contains(&("key".to_owned(), key.to_owned()))
                && fields.contains(&("op".to_owned(), op.to_owned()))
        })
        .count()
}

fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn start(
    config_path: &std::path::Path,
    addr: std::net::SocketAddr,
    failpoint: Option<&str>,
) -> Child {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "serve",
        "--config",
        config_path.to_str().unwrap(),
        "--listen",
        &addr.to_string(),
    ])
    .env("SWITCHYARD_LOG", "warn")
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    if let Some(point) = failpoint {
        cmd.env("SWITCHYARD_FAILPOINTS", format!("{point}=kill"));
    }
    cmd.spawn().expect("start switchyard")
}

async fn wait_listening(addr: std::net::SocketAddr) {
    let started = Instant::now();
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "router did not start"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Posts a checkout to a router that should die on the way; what it answered, if anything.
async fn post_to_victim(addr: std::net::SocketAddr, body: serde_json::Value) -> String {
    let body = body.to_string();
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
        return String::new();
    };
    let request = format!(
        "POST /v1/transaction HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = s.write_all(request.as_bytes()).await;
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut sink)).await;
    String::from_utf8_lossy(&sink).into_owned()
}

async fn rows(router: &Router, sql: &str, params: serde_json::Value) -> Vec<Vec<Value>> {
    let params = params.as_array().cloned().unwrap_or_default();
    router
        .query(sql, &params, &Default::default())
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_killed_at_any_saga_step_leaves_consistent_stores() {
    let pg = TestStore::new(Store::Postgres);
    let mongo = TestStore::new(Store::Mongo);
    let prefix = format!("{}:", common::unique_name("crash"));
    let _cleanup = RedisCleanup(prefix.clone());
    let mut config = checkout_env(&pg, &mongo, &prefix, &[("K1", 1000)]).await;
    config.server.query_timeout_ms = 2_000;
    config.transactions.lease_ms = 2_500;
    config.transactions.recovery_interval_ms = 200;
    let dir = common::tempdir::Dir::new();
    let config_path = dir.path.join("router.toml");
    std::fs::write(
        &config_path,
        toml::to_string(&config).expect("config as TOML"),
    )
    .unwrap();
    // Checks and set-up in process (this router runs no recovery of its own).
    let router = Router::from_config(config).await.unwrap();

    let mut committed = 0i64;
    for run in 0..2 {
        for (k, (point, commits)) in KILL_POINTS.iter().enumerate() {
            let customer = format!("K{run}-{k}");
            let order = format!("order-{customer}");
            rows(
                &router,
                "INSERT INTO carts (customer_id, product_id, quantity) VALUES ($1, 'K1', 2)",
                json!([customer]),
            )
            .await;

            let addr = free_addr();
            let mut victim = start(&config_path, addr, Some(point));
            wait_listening(addr).await;
            let answer =
                post_to_victim(addr, checkout(&customer, &order, &[("K1", 2)], None)).await;
            // Bounded: a checkout that fails before the failpoint leaves the victim serving.
            let deadline = Instant::now() + Duration::from_secs(60);
            let status = loop {
                if let Some(status) = victim.try_wait().unwrap() {
                    break status;
                }
                if Instant::now() > deadline {
                    let _ = victim.kill();
                    panic!("{point}: the victim did not reach its failpoint: {answer}");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            };
            assert_eq!(
                status.signal(),
                Some(9),
                "{point}: the failpoint SIGKILLs the router"
            );

            // A new router process on the same stores recovers the saga once its lease expires.
            let addr = free_addr();
            let mut survivor = start(&config_path, addr, None);
            wait_listening(addr).await;
            let started = Instant::now();
            loop {
                let sagas = common::http(addr, "GET", "/admin/sagas", None, Vec::new()).await;
                assert_eq!(sagas.status, 200, "{}", sagas.body);
                let unfinished = sagas.body["sagas"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|s| s["state"] == "running" || s["state"] == "compensating")
                    .count();
                let in_doubt: Vec<&serde_json::Value> = sagas.body["sagas"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|s| s["state"] == "in_doubt")
                    .collect();
                assert!(in_doubt.is_empty(), "{point}: {in_doubt:?}");
                if unfinished == 0 {
                    break;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(30),
                    "{point}: recovery did not finish: {}",
                    sagas.body
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let _ = survivor.kill();
            let _ = survivor.wait();

            let payment = rows(
                &router,
                "SELECT payment_id FROM payments WHERE order_id = $1",
                json!([order]),
            )
            .await;
            let order_doc = rows(
                &router,
                "SELECT order_id FROM orders WHERE order_id = $1",
                json!([order]),
            )
            .await;
            let cart = rows(
                &router,
                "SELECT product_id FROM carts WHERE customer_id = $1",
                json!([customer]),
            )
            .await;
            assert_eq!(
                payment.len(),
                order_doc.len(),
                "{point}: payment and order together"
            );
            assert_eq!(
                cart.is_empty(),
                !order_doc.is_empty(),
                "{point}: the cart is gone exactly when the order exists"
            );
            assert_eq!(
                order_doc.len() == 1,
                *commits,
                "{point}: committed only when every step was durable"
            );
            // The change events are in the saga log with the steps: a committed saga's reach the
            // stream (at least once) even when the router died before publishing them.
            let order_events = events_for(&prefix, "orders", &order, "insert");
            assert_eq!(
                order_events > 0,
                *commits,
                "{point}: {order_events} change events for the order"
            );
            assert_eq!(
                events_for(&prefix, "carts", &format!("{customer}:K1"), "delete") > 0,
                *commits,
                "{point}: the cart's delete event"
            );
            committed += i64::from(*commits);
            let stock = rows(
                &router,
                "SELECT stock FROM inventory WHERE product_id = 'K1'",
                json!([]),
            )
            .await;
            assert_eq!(
                stock,
                vec![vec![Value::Int(1000 - 2 * committed)]],
                "{point}: stock decremented exactly once per committed order"
            );
        }
    }
    let orders = rows(&router, "SELECT order_id FROM orders", json!([])).await;
    let payments = rows(&router, "SELECT order_id FROM payments", json!([])).await;
    assert_eq!(orders.len() as i64, committed);
    assert_eq!(payments.len() as i64, committed);
}
