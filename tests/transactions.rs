//! Writes across stores on the real stores: `POST /v1/transaction` sagas (checkout across
//! PostgreSQL, MongoDB and Redis), compensation when a store fails mid-saga or its answer to a
//! write is lost (a TCP proxy hangs up after forwarding it), concurrent
//! checkouts of the last item, idempotency keys, refusals, `GET /admin/sagas`, change events on
//! the Redis stream, and the cache fill / write race.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::{
    RedisCleanup, Store, TestServer, TestStore, checkout, checkout_env, fill_cache_key, fill_cart,
    post, query, start_server,
};
use serde_json::{Value as J, json};

struct Env {
    server: TestServer,
    prefix: String,
    _stores: (TestStore, TestStore),
    _redis: RedisCleanup,
}

async fn env(stock: &[(&str, i64)], adjust: impl FnOnce(&mut switchyard_config::Config)) -> Env {
    let pg = TestStore::new(Store::Postgres);
    let mongo = TestStore::new(Store::Mongo);
    let prefix = format!("{}:", common::unique_name("tx"));
    let mut config = checkout_env(&pg, &mongo, &prefix, stock).await;
    adjust(&mut config);
    Env {
        server: start_server(config).await,
        _redis: RedisCleanup(prefix.clone()),
        prefix,
        _stores: (pg, mongo),
    }
}

async fn one(addr: std::net::SocketAddr, sql: &str, params: J) -> J {
    let a = query(addr, sql, params).await;
    assert_eq!(a.status, 200, "{sql}: {}", a.body);
    a.body["rows"].clone()
}

async fn stock_of(addr: std::net::SocketAddr, product: &str) -> J {
    one(
        addr,
        "SELECT stock FROM inventory WHERE product_id = $1",
        json!([product]),
    )
    .await[0][0]
        .clone()
}

async fn count(addr: std::net::SocketAddr, sql: &str, params: J) -> usize {
    one(addr, sql, params).await.as_array().map_or(0, Vec::len)
}

fn redis() -> redis::Connection {
    redis::Client::open(common::redis_url())
        .unwrap()
        .get_connection()
        .unwrap()
}

#[tokio::test]
async fn checkout_commits_across_three_stores_and_publishes_events() {
    let e = env(&[("P1", 5), ("P2", 3)], |_| {}).await;
    let addr = e.server.addr;
    fill_cart(addr, "C1", &[("P1", 2), ("P2", 1)]).await;

    let a = post(
        addr,
        "/v1/transaction",
        checkout("C1", "O1", &[("P1", 2), ("P2", 1)], None),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["status"], "committed");
    assert_eq!(a.body["replayed"], false);
    let saga_id = a.body["saga_id"].as_str().unwrap().to_owned();
    let results = a.body["results"].as_array().unwrap();
    assert_eq!(results.len(), 6);
    assert_eq!(
        results[0]["rows"].as_array().unwrap().len(),
        2,
        "the cart read"
    );
    assert_eq!(results[1]["rows_affected"], 1);
    assert!(
        results[5]["rows_affected"].as_u64().is_some_and(|n| n >= 1),
        "the cart deleted"
    );

    assert_eq!(stock_of(addr, "P1").await, json!(3));
    assert_eq!(stock_of(addr, "P2").await, json!(2));
    let payment = one(
        addr,
        "SELECT order_id, amount FROM payments WHERE payment_id = $1",
        json!(["pay-O1"]),
    )
    .await;
    assert_eq!(payment, json!([["O1", "30.00"]]));
    let order = one(
        addr,
        "SELECT customer_id, total FROM orders WHERE order_id = $1",
        json!(["O1"]),
    )
    .await;
    assert_eq!(order, json!([["C1", "30.00"]]));
    assert_eq!(
        count(
            addr,
            "SELECT product_id FROM carts WHERE customer_id = $1",
            json!(["C1"])
        )
        .await,
        0
    );

    // The change stream: one event per written key, with the key's version and the saga.
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(format!("{}changes", e.prefix))
        .arg("-")
        .arg("+")
        .query(&mut redis())
        .unwrap();
    let events: Vec<std::collections::HashMap<String, String>> = entries
        .into_iter()
        .map(|(_, fields)| fields.into_iter().collect())
        .collect();
    let ours: Vec<(String, String, String)> = events
        .iter()
        .filter(|ev| ev["saga"] == saga_id)
        .map(|ev| (ev["table"].clone(), ev["key"].clone(), ev["op"].clone()))
        .collect();
    for expected in [
        ("inventory", "P1", "update"),
        ("inventory", "P2", "update"),
        ("payments", "pay-O1", "insert"),
        ("orders", "O1", "insert"),
        ("carts", "C1:P1", "delete"),
        ("carts", "C1:P2", "delete"),
    ] {
        let e = (
            expected.0.to_owned(),
            expected.1.to_owned(),
            expected.2.to_owned(),
        );
        assert!(ours.contains(&e), "{e:?} missing from {ours:?}");
    }
    assert_eq!(ours.len(), 6, "{ours:?}");
    // Versions count the writes per key: the cart lines were inserted (1) and deleted (2).
    let version = |table: &str, key: &str| {
        events
            .iter()
            .filter(|ev| ev["table"] == table && ev["key"] == key)
            .map(|ev| ev["version"].parse::<u64>().unwrap())
            .max()
    };
    assert_eq!(version("carts", "C1:P1"), Some(2));
    assert_eq!(version("orders", "O1"), Some(1));

    // The saga log, through the admin API.
    let sagas = common::http(addr, "GET", "/admin/sagas", None, Vec::new()).await;
    assert_eq!(sagas.status, 200, "{}", sagas.body);
    let mine = sagas.body["sagas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["saga_id"] == saga_id.as_str())
        .cloned()
        .expect("the saga is listed");
    assert_eq!(mine["state"], "committed");
    let steps = mine["steps"].as_array().unwrap();
    assert_eq!(
        steps.len(),
        4,
        "cart read, PostgreSQL, MongoDB, Redis: {steps:?}"
    );
    assert_eq!(steps[1]["statements"], json!([1, 2, 3]));
    assert!(steps.iter().all(|s| s["state"] == "done"), "{steps:?}");
}

#[tokio::test]
async fn a_duplicate_order_in_mongodb_rolls_back_stock_and_payment() {
    let e = env(&[("P1", 5)], |_| {}).await;
    let addr = e.server.addr;
    fill_cart(addr, "C2", &[("P1", 2)]).await;
    let existing = query(
        addr,
        "INSERT INTO orders (order_id, customer_id, status, total) VALUES ('O2', 'someone', 'paid', 1)",
        json!([]),
    )
    .await;
    assert_eq!(existing.status, 200, "{}", existing.body);

    let a = post(
        addr,
        "/v1/transaction",
        checkout("C2", "O2", &[("P1", 2)], None),
    )
    .await;
    assert_eq!(a.status, 409, "{}", a.body);
    let err = &a.body["error"];
    assert_eq!(err["code"], "TRANSACTION_ABORTED");
    assert_eq!(err["statement"], 3, "the order insert");
    assert_eq!(err["cause"]["code"], "CONSTRAINT_VIOLATION");
    assert!(err["saga_id"].as_str().is_some());

    // As before the transaction.
    assert_eq!(stock_of(addr, "P1").await, json!(5));
    assert_eq!(
        count(
            addr,
            "SELECT payment_id FROM payments WHERE order_id = $1",
            json!(["O2"])
        )
        .await,
        0
    );
    assert_eq!(
        count(
            addr,
            "SELECT product_id FROM carts WHERE customer_id = $1",
            json!(["C2"])
        )
        .await,
        1
    );
    let order = one(
        addr,
        "SELECT customer_id FROM orders WHERE order_id = 'O2'",
        json!([]),
    )
    .await;
    assert_eq!(
        order,
        json!([["someone"]]),
        "the existing order is untouched"
    );
    let sagas = common::http(addr, "GET", "/admin/sagas", None, Vec::new()).await;
    let mine = sagas.body["sagas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["saga_id"] == err["saga_id"])
        .cloned()
        .unwrap();
    assert_eq!(mine["state"], "aborted");
    assert_eq!(mine["steps"][1]["state"], "compensated");
}

#[tokio::test]
async fn an_unreachable_store_at_the_last_step_compensates_every_earlier_step() {
    // `notifications` lives on a Redis nobody listens on.
    let e = env(&[("P1", 4)], |c| {
        c.backends.insert(
            "redis_down".to_owned(),
            switchyard_config::BackendConfig {
                connect_timeout_ms: 300,
                ..common::backend(
                    switchyard_config::BackendKind::Redis,
                    "redis://127.0.0.1:1/0".to_owned(),
                )
            },
        );
        let mut t = c.tables["sessions"].clone();
        t.placements = vec![switchyard_config::PlacementConfig {
            key_pattern: Some("note:{session_id}".to_owned()),
            mode: Some(switchyard_config::RedisMode::Json),
            ..common::placement("redis_down", switchyard_config::Role::Primary)
        }];
        c.tables.insert("notifications".to_owned(), t);
    })
    .await;
    let addr = e.server.addr;
    fill_cart(addr, "C3", &[("P1", 1)]).await;
    let mut body = checkout("C3", "O3", &[("P1", 1)], None);
    body["statements"].as_array_mut().unwrap().push(json!({
        "sql": "INSERT INTO notifications (session_id, customer_id) VALUES ('n-O3', 'C3')",
    }));
    let a = post(addr, "/v1/transaction", body).await;
    assert_eq!(a.status, 409, "{}", a.body);
    assert_eq!(a.body["error"]["code"], "TRANSACTION_ABORTED");
    assert_eq!(a.body["error"]["statement"], 5);
    assert_eq!(a.body["error"]["cause"]["code"], "BACKEND_UNAVAILABLE");
    assert_eq!(stock_of(addr, "P1").await, json!(4));
    assert_eq!(
        count(
            addr,
            "SELECT payment_id FROM payments WHERE order_id = 'O3'",
            json!([])
        )
        .await,
        0
    );
    assert_eq!(
        count(
            addr,
            "SELECT order_id FROM orders WHERE order_id = 'O3'",
            json!([])
        )
        .await,
        0
    );
    let cart = one(
        addr,
        "SELECT product_id, quantity FROM carts WHERE customer_id = 'C3'",
        json!([]),
    )
    .await;
    assert_eq!(
        cart,
        json!([["P1", 1]]),
        "the cart is restored from its before-image"
    );
}

/// A TCP proxy in front of Redis that, once armed, forwards the next `MULTI ... DEL ... EXEC`
/// and then closes the client's connection without the answer: Redis applies the write, the
/// router never hears so.
struct CutProxy {
    url: String,
    armed: Arc<std::sync::atomic::AtomicBool>,
    cuts: Arc<std::sync::atomic::AtomicUsize>,
}

async fn cut_proxy() -> CutProxy {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream_url = common::redis_url();
    let rest = upstream_url.trim_start_matches("redis://");
    let (host, db) = rest.split_once('/').unwrap_or((rest, "0"));
    let upstream = host.to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("redis://{}/{db}", listener.local_addr().unwrap());
    let armed = Arc::new(AtomicBool::new(false));
    let cuts = Arc::new(AtomicUsize::new(0));
    let (armed2, cuts2) = (armed.clone(), cuts.clone());
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                continue;
            };
            let (armed, cuts) = (armed2.clone(), cuts2.clone());
            tokio::spawn(async move {
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                // Answers go back to the client until the cut mutes them.
                let muted = Arc::new(AtomicBool::new(false));
                let mute = muted.clone();
                let answers = tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = server_read.read(&mut buf).await {
                        if n == 0
                            || muted.load(SeqCst)
                            || client_write.write_all(&buf[..n]).await.is_err()
                        {
                            break;
                        }
                    }
                });
                let mut buf = vec![0u8; 64 * 1024];
                let has =
                    |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
                loop {
                    let n = match client_read.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let chunk = &buf[..n];
                    let cut = has(chunk, b"MULTI")
                        && has(chunk, b"DEL")
                        && has(chunk, b"EXEC")
                        && armed.swap(false, SeqCst);
                    if cut {
                        mute.store(true, SeqCst);
                        cuts.fetch_add(1, SeqCst);
                    }
                    if server_write.write_all(chunk).await.is_err() {
                        break;
                    }
                    if cut {
                        // Redis applies it (its answer is dropped); then hang up on the client.
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        break;
                    }
                }
                answers.abort();
            });
        }
    });
    CutProxy { url, armed, cuts }
}

#[tokio::test]
async fn a_write_whose_answer_was_lost_is_undone_like_one_that_applied() {
    let proxy = cut_proxy().await;
    let url = proxy.url.clone();
    let e = env(&[("P1", 4)], move |c| {
        if let Some(redis) = c.backends.get_mut("redis") {
            redis.url = url;
        }
    })
    .await;
    let addr = e.server.addr;
    fill_cart(addr, "C5", &[("P1", 1)]).await;
    proxy.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    let a = post(
        addr,
        "/v1/transaction",
        checkout("C5", "O5", &[("P1", 1)], None),
    )
    .await;
    assert_eq!(
        proxy.cuts.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "the cart DELETE was cut: {}",
        a.body
    );
    // The DELETE applied, but the router only saw the connection drop: the step may have
    // applied, so it is undone (its compensation, re-inserting the before-image, is idempotent)
    // along with every earlier step.
    assert_eq!(a.status, 409, "{}", a.body);
    assert_eq!(a.body["error"]["code"], "TRANSACTION_ABORTED", "{}", a.body);
    assert_eq!(a.body["error"]["statement"], 4);
    assert_eq!(a.body["error"]["cause"]["code"], "BACKEND_UNAVAILABLE");
    let cart = one(
        addr,
        "SELECT product_id, quantity FROM carts WHERE customer_id = 'C5'",
        json!([]),
    )
    .await;
    assert_eq!(cart, json!([["P1", 1]]), "the cart is back");
    assert_eq!(stock_of(addr, "P1").await, json!(4));
    assert_eq!(
        count(
            addr,
            "SELECT order_id FROM orders WHERE order_id = 'O5'",
            json!([])
        )
        .await,
        0
    );
}

#[tokio::test]
async fn concurrent_checkouts_of_the_last_item_have_one_winner() {
    let e = env(&[("LAST", 1)], |_| {}).await;
    let addr = e.server.addr;
    let buyers: Vec<String> = (0..8).map(|i| format!("B{i}")).collect();
    for b in &buyers {
        fill_cart(addr, b, &[("LAST", 1)]).await;
    }
    let answers = futures::future::join_all(buyers.iter().map(|b| {
        post(
            addr,
            "/v1/transaction",
            checkout(b, &format!("O-{b}"), &[("LAST", 1)], None),
        )
    }))
    .await;
    let winners: Vec<&common::Answer> = answers.iter().filter(|a| a.status == 200).collect();
    assert_eq!(winners.len(), 1, "{answers:#?}");
    for a in answers.iter().filter(|a| a.status != 200) {
        assert_eq!(a.status, 409, "{}", a.body);
        assert_eq!(a.body["error"]["code"], "TRANSACTION_ABORTED");
        assert_eq!(a.body["error"]["cause"]["code"], "PRECONDITION_FAILED");
        assert_eq!(a.body["error"]["statement"], 1, "the stock decrement");
    }
    assert_eq!(stock_of(addr, "LAST").await, json!(0));
    assert_eq!(
        count(addr, "SELECT payment_id FROM payments", json!([])).await,
        1
    );
    let orders = count(
        addr,
        "SELECT order_id FROM orders WHERE order_id LIKE 'O-B%'",
        json!([]),
    )
    .await;
    assert_eq!(orders, 1);
}

#[tokio::test]
async fn an_idempotency_key_replays_the_first_outcome() {
    let e = env(&[("P1", 10)], |_| {}).await;
    let addr = e.server.addr;
    fill_cart(addr, "C4", &[("P1", 3)]).await;
    let body = checkout("C4", "O4", &[("P1", 3)], Some("checkout-C4-1"));
    let first = post(addr, "/v1/transaction", body.clone()).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let again = post(addr, "/v1/transaction", body.clone()).await;
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(again.body["replayed"], true);
    assert_eq!(again.body["saga_id"], first.body["saga_id"]);
    assert_eq!(again.body["results"], first.body["results"]);
    assert_eq!(stock_of(addr, "P1").await, json!(7), "decremented once");

    // The same key with another request is refused.
    let other = post(
        addr,
        "/v1/transaction",
        checkout("C4", "O4b", &[("P1", 1)], Some("checkout-C4-1")),
    )
    .await;
    assert_eq!(other.status, 409, "{}", other.body);
    assert_eq!(other.body["error"]["code"], "IDEMPOTENCY_CONFLICT");

    // A failed outcome replays too (not enough stock), and still changes nothing.
    fill_cart(addr, "C5", &[("P1", 50)]).await;
    let body = checkout("C5", "O5", &[("P1", 50)], Some("checkout-C5-1"));
    let failed = post(addr, "/v1/transaction", body.clone()).await;
    assert_eq!(failed.status, 409, "{}", failed.body);
    let replay = post(addr, "/v1/transaction", body).await;
    assert_eq!(replay.status, 409);
    assert_eq!(replay.body["error"], failed.body["error"]);
    assert_eq!(stock_of(addr, "P1").await, json!(7));
}

#[tokio::test]
async fn refusals_name_the_statement_and_run_nothing() {
    let e = env(&[("P1", 10)], |_| {}).await;
    let addr = e.server.addr;
    let cases = [
        (json!({ "statements": [] }), 400, "BAD_REQUEST", None),
        (
            json!({ "statements": [
                { "sql": "UPDATE inventory SET stock = stock - 1 WHERE product_id = 'P1'" },
                { "sql": "SELEC 1" },
            ] }),
            400,
            "SQL_SYNTAX",
            Some(1),
        ),
        (
            json!({ "statements": [
                { "sql": "INSERT INTO payments (payment_id, amount) VALUES ('x', 1) ON CONFLICT DO NOTHING" },
            ] }),
            400,
            "UNSUPPORTED",
            Some(0),
        ),
        (
            json!({ "statements": [
                { "sql": "UPDATE inventory SET product_id = 'P9' WHERE product_id = 'P1'" },
            ] }),
            400,
            "UNSUPPORTED",
            Some(0),
        ),
        (
            json!({ "statements": [{ "sql": "SELECT 1", "bogus": true }] }),
            400,
            "BAD_REQUEST",
            None,
        ),
    ];
    for (body, status, code, statement) in cases {
        let a = post(addr, "/v1/transaction", body.clone()).await;
        assert_eq!(a.status, status, "{body}: {}", a.body);
        assert_eq!(a.body["error"]["code"], code, "{body}: {}", a.body);
        if let Some(s) = statement {
            assert_eq!(a.body["error"]["statement"], s, "{}", a.body);
        }
        assert!(a.body["error"]["saga_id"].is_null(), "nothing was logged");
    }
    assert_eq!(stock_of(addr, "P1").await, json!(10));
    // An explicit compensation makes an ON CONFLICT insert acceptable.
    let ok = post(
        addr,
        "/v1/transaction",
        json!({ "statements": [{
            "sql": "INSERT INTO payments (payment_id, amount) VALUES ('x', 1) ON CONFLICT DO NOTHING",
            "compensation": { "sql": "DELETE FROM payments WHERE payment_id = 'x'" },
        }] }),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    let wrong_method = common::http(addr, "GET", "/v1/transaction", None, Vec::new()).await;
    assert_eq!(wrong_method.status, 405);
}

/// A cache fill that read the source before a write must not store what it read after the
/// write invalidated the key: the reader is paused between its source read and its fill while
/// the write commits.
#[tokio::test]
async fn a_fill_that_raced_a_write_does_not_resurrect_the_old_row() {
    use switchyard_router::failpoint;
    let e = env(&[], |c| {
        *c = common::with_plugins(
            c.clone(),
            &[("ecommerce", common::plugin_wasm("placement_ecommerce"))],
            Some("ecommerce"),
            &[],
        );
    })
    .await;
    let addr = e.server.addr;
    let cache_key = fill_cache_key(&e.prefix, "RACE1");
    let mut r = redis();
    let put = query(
        addr,
        "INSERT INTO products (product_id, name, retail_price) VALUES ('RACE1', 'old', 1)",
        json!([]),
    )
    .await;
    assert_eq!(put.status, 200, "{}", put.body);
    let read = "SELECT name FROM products WHERE product_id = 'RACE1'";

    // Control: a fill without a racing write stores the row.
    assert_eq!(one(addr, read, json!([])).await, json!([["old"]]));
    let cached: Option<String> = redis::cmd("GET").arg(&cache_key).query(&mut r).unwrap();
    assert!(
        cached.is_some_and(|c| c.contains("old")),
        "the control fill stored the row"
    );
    let _: () = redis::cmd("DEL").arg(&cache_key).query(&mut r).unwrap();

    // The race.
    let reached = Arc::new(tokio::sync::Notify::new());
    let resume = Arc::new(tokio::sync::Notify::new());
    failpoint::arm(
        "cache.before_fill.products",
        failpoint::Action::Pause {
            reached: reached.clone(),
            resume: resume.clone(),
        },
    );
    let reader = tokio::spawn(async move { one(addr, read, json!([])).await });
    reached.notified().await;
    let write = query(
        addr,
        "UPDATE products SET name = 'new' WHERE product_id = 'RACE1'",
        json!([]),
    )
    .await;
    assert_eq!(write.status, 200, "{}", write.body);
    resume.notify_one();
    assert_eq!(
        reader.await.unwrap(),
        json!([["old"]]),
        "it read before the write"
    );
    failpoint::disarm("cache.before_fill.products");

    let cached: Option<String> = redis::cmd("GET").arg(&cache_key).query(&mut r).unwrap();
    assert!(
        cached.as_deref().is_none_or(|c| !c.contains("old")),
        "the stale fill was stored: {cached:?}"
    );
    assert_eq!(one(addr, read, json!([])).await, json!([["new"]]));
    assert_eq!(
        one(addr, read, json!([])).await,
        json!([["new"]]),
        "from the cache"
    );
}
