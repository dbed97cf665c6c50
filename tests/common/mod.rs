//! Shared helpers for the integration tests: per-test databases on the real servers, the shop
//! catalog placed on one backend, an in-process server on a loopback port, and an HTTP client.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use switchyard_config::{BackendConfig, BackendKind, Config, PlacementConfig, Role, ScanPolicy};
use switchyard_router::Router;

/// Which store a test environment uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Sqlite,
    Postgres,
    Mysql,
    Mongo,
}

pub const ALL_STORES: [Store; 3] = [Store::Postgres, Store::Mysql, Store::Sqlite];
/// Every store, MongoDB included.
pub const EVERY_STORE: [Store; 4] = [Store::Postgres, Store::Mysql, Store::Sqlite, Store::Mongo];

pub fn pg_url() -> String {
    std::env::var("SWITCHYARD_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// The MongoDB-wire test server: `SWITCHYARD_TEST_MONGODB_URL`, else one started for this test
/// process from `.cache/secantus` (installed by `scripts/test.sh`).
pub fn mongo_base_url() -> String {
    static URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("SWITCHYARD_TEST_MONGODB_URL") {
            return url.trim_end_matches('/').to_owned();
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let server = root.join(".cache/secantus/bin/secantusd-py");
        assert!(
            server.exists(),
            "no MongoDB-wire server: run scripts/test.sh (it installs one) or set SWITCHYARD_TEST_MONGODB_URL"
        );
        let log = std::env::temp_dir().join(unique_name("secantus")).with_extension("log");
        let file = std::fs::File::create(&log).expect("log file");
        let child = std::process::Command::new(server)
            .args(["--host", "127.0.0.1", "--port", "0", "--storage-path", ":memory:"])
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .spawn()
            .expect("start secantusd-py");
        std::mem::forget(child);
        let started = std::time::Instant::now();
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(port) = text.split("listening on 127.0.0.1:").nth(1).and_then(|r| r.split_whitespace().next()) {
                return format!("mongodb://127.0.0.1:{port}");
            }
            assert!(started.elapsed() < std::time::Duration::from_secs(30), "secantusd-py did not start: {text}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    })
    .clone()
}

pub fn mysql_url() -> String {
    std::env::var("SWITCHYARD_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_owned())
}

/// A name unique to this process and call, for schemas, databases and files.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A store prepared for one test: a fresh schema, database or file, removed on drop.
pub struct TestStore {
    pub store: Store,
    pub backend: BackendConfig,
    cleanup: Option<Box<dyn FnOnce() + Send>>,
    _dir: Option<tempdir::Dir>,
}

impl Drop for TestStore {
    fn drop(&mut self) {
        if let Some(f) = self.cleanup.take() {
            f();
        }
    }
}

/// Runs an admin statement on a fresh single-use connection in its own thread (usable from Drop).
fn admin(url: String, sql: String) {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            use sqlx::Connection;
            if url.starts_with("postgres") {
                let mut c = sqlx::PgConnection::connect(&url)
                    .await
                    .expect("connect to PostgreSQL");
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(&mut c)
                    .await
                    .expect("admin statement");
            } else {
                let mut c = sqlx::MySqlConnection::connect(&url)
                    .await
                    .expect("connect to MariaDB");
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(&mut c)
                    .await
                    .expect("admin statement");
            }
        });
    })
    .join()
    .expect("admin thread");
}

pub fn backend(kind: BackendKind, url: String) -> BackendConfig {
    BackendConfig {
        kind,
        url,
        pool_max_connections: 5,
        connect_timeout_ms: 5_000,
        statement_timeout_ms: None,
        schema: None,
        key_prefix: None,
        circuit_failures: switchyard_config::defaults::CIRCUIT_FAILURES,
        circuit_open_ms: switchyard_config::defaults::CIRCUIT_OPEN_MS,
        stream_stall_timeout_ms: switchyard_config::defaults::STREAM_STALL_TIMEOUT_MS,
    }
}

impl TestStore {
    pub fn new(store: Store) -> TestStore {
        match store {
            Store::Sqlite => {
                let dir = tempdir::Dir::new();
                let url = format!("sqlite://{}?mode=rwc", dir.path.join("db.sqlite").display());
                TestStore {
                    store,
                    backend: backend(BackendKind::Sqlite, url),
                    cleanup: None,
                    _dir: Some(dir),
                }
            }
            Store::Postgres => {
                let schema = unique_name("sy");
                admin(pg_url(), format!("CREATE SCHEMA \"{schema}\""));
                let mut b = backend(BackendKind::Postgres, pg_url());
                b.schema = Some(schema.clone());
                TestStore {
                    store,
                    backend: b,
                    cleanup: Some(Box::new(move || {
                        admin(pg_url(), format!("DROP SCHEMA \"{schema}\" CASCADE"))
                    })),
                    _dir: None,
                }
            }
            Store::Mongo => {
                let db = unique_name("sy");
                let url = format!("{}/{db}?directConnection=true", mongo_base_url());
                TestStore {
                    store,
                    backend: backend(BackendKind::Mongodb, url),
                    cleanup: None,
                    _dir: None,
                }
            }
            Store::Mysql => {
                let db = unique_name("sy");
                admin(mysql_url(), format!("CREATE DATABASE `{db}`"));
                let base = mysql_url();
                let url = match base.rfind('/') {
                    Some(i) if i > "mysql://".len() => format!("{}/{db}", &base[..i]),
                    _ => format!("{base}/{db}"),
                };
                TestStore {
                    store,
                    backend: backend(BackendKind::Mysql, url),
                    cleanup: Some(Box::new(move || {
                        admin(mysql_url(), format!("DROP DATABASE `{db}`"))
                    })),
                    _dir: None,
                }
            }
        }
    }
}

/// Minimal temporary directory, removed on drop.
pub mod tempdir {
    pub struct Dir {
        pub path: std::path::PathBuf,
    }
    impl Dir {
        pub fn new() -> Dir {
            let path = std::env::temp_dir().join(super::unique_name("switchyard-test"));
            std::fs::create_dir_all(&path).expect("create temp dir");
            Dir { path }
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The shipped `router.toml` catalog.
pub fn shop_config() -> Config {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/router.toml");
    let text = std::fs::read_to_string(path).expect("router.toml");
    switchyard_config::parse_str(&text, "router.toml", &|_| None).expect("router.toml is valid")
}

/// The shop catalog with every table on the single backend `db` (physical renames kept).
pub fn shop_on(backend: BackendConfig) -> Config {
    let mut config = shop_config();
    config.backends.clear();
    config.backends.insert("db".to_owned(), backend);
    // The saga log defaults to the one SQL store; no Redis for change events.
    config.transactions.log_backend = None;
    config.events.backend = None;
    for table in config.tables.values_mut() {
        let primary = table
            .placements
            .iter()
            .find(|p| p.role == Role::Primary)
            .cloned();
        let renames = primary.map(|p| p.columns).unwrap_or_default();
        table.placements = vec![PlacementConfig {
            backend: "db".to_owned(),
            role: Role::Primary,
            name: None,
            columns: renames,
            key_pattern: None,
            mode: None,
            ttl_seconds: None,
            scan: Default::default(),
            scan_max_rows: 10_000,
        }];
    }
    config
}

/// Seeds the demo data through the router (the same path as `switchyard seed`).
pub async fn seed(router: &Router, scale: u32) {
    for t in switchyard_seed::generate(scale) {
        router
            .seed_table(t.table, &t.columns, t.rows, 500, &|_| {})
            .await
            .expect("seed");
    }
}

/// A running in-process server.
pub struct TestServer {
    pub addr: SocketAddr,
    pub router: Arc<Router>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

pub async fn start_server(config: Config) -> TestServer {
    let router = Arc::new(Router::from_config(config).await.expect("router"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let state = switchyard_server::AppState::new(router.clone());
    tokio::spawn(async move {
        let _ = switchyard_server::serve(listener, state, async move {
            let _ = rx.await;
        })
        .await;
    });
    TestServer {
        addr,
        router,
        stop: Some(tx),
    }
}

/// An HTTP answer: status and parsed JSON body (Null when the body is not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: serde_json::Value,
    /// The body as text.
    pub text: String,
    /// Response headers.
    pub headers: hyper::HeaderMap,
}

/// Sends one HTTP/1.1 request on a fresh connection.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> Answer {
    let headers: Vec<(&str, &str)> = content_type
        .map(|ct| ("content-type", ct))
        .into_iter()
        .collect();
    http_with(addr, method, path, &headers, body).await
}

/// Sends one HTTP/1.1 request with the given headers on a fresh connection.
pub async fn http_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Answer {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req.body(Full::new(Bytes::from(body))).expect("request");
    let resp = sender.send_request(req).await.expect("send");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Answer {
        status,
        body,
        text,
        headers,
    }
}

/// POSTs a JSON body.
pub async fn post(addr: SocketAddr, path: &str, body: serde_json::Value) -> Answer {
    http(
        addr,
        "POST",
        path,
        Some("application/json"),
        body.to_string().into_bytes(),
    )
    .await
}

/// Runs SQL through `/v1/query`.
pub async fn query(addr: SocketAddr, sql: &str, params: serde_json::Value) -> Answer {
    post(
        addr,
        "/v1/query",
        serde_json::json!({ "sql": sql, "params": params }),
    )
    .await
}

/// The `.wasm` component of a plugin crate (`placement_ecommerce`, `fixture_panic`, ...), built
/// once per test process by `scripts/build-plugins.sh` (a no-op when up to date).
pub fn plugin_wasm(crate_file: &str) -> std::path::PathBuf {
    static BUILT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let built = BUILT.get_or_init(|| {
        let out = std::process::Command::new("bash")
            .arg(root.join("scripts/build-plugins.sh"))
            .current_dir(root)
            .output()
            .map_err(|e| format!("cannot run scripts/build-plugins.sh: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "scripts/build-plugins.sh failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    if let Err(e) = built {
        panic!("{e}");
    }
    root.join("target/plugins/wasm32-wasip2/plugin")
        .join(format!("{crate_file}.wasm"))
}

/// `[plugins]` with the given modules (name -> crate file), the active one, and tenants.
pub fn with_plugins(
    mut config: Config,
    modules: &[(&str, std::path::PathBuf)],
    active: Option<&str>,
    tenants: &[(&str, &str)],
) -> Config {
    for (name, path) in modules {
        config.plugins.modules.insert(
            (*name).to_owned(),
            switchyard_config::PluginModuleConfig {
                path: path.display().to_string(),
            },
        );
    }
    config.plugins.active = active.map(str::to_owned);
    for (tenant, module) in tenants {
        config
            .plugins
            .tenants
            .insert((*tenant).to_owned(), (*module).to_owned());
    }
    config
}

/// POSTs `/v1/query` with a context.
pub async fn query_in(
    addr: SocketAddr,
    sql: &str,
    params: serde_json::Value,
    context: serde_json::Value,
) -> Answer {
    post(
        addr,
        "/v1/query",
        serde_json::json!({ "sql": sql, "params": params, "context": context }),
    )
    .await
}

/// POSTs `/v1/explain` with a context.
pub async fn explain_in(
    addr: SocketAddr,
    sql: &str,
    params: serde_json::Value,
    context: serde_json::Value,
) -> Answer {
    post(
        addr,
        "/v1/explain",
        serde_json::json!({ "sql": sql, "params": params, "context": context }),
    )
    .await
}

pub fn redis_url() -> String {
    std::env::var("SWITCHYARD_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/0".to_owned())
}

/// Deletes every Redis key under a test's prefix on drop.
pub struct RedisCleanup(pub String);

impl Drop for RedisCleanup {
    fn drop(&mut self) {
        let client = redis::Client::open(redis_url()).unwrap();
        let mut conn = client.get_connection().unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}*", self.0))
            .query(&mut conn)
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: () = redis::cmd("DEL").arg(keys).query(&mut conn).unwrap_or(());
        }
    }
}

/// The shipped catalog on the test stores; Redis tables may be scanned (the generator reads
/// carts and hits without keys).
pub fn polyglot(pg: &TestStore, mongo: &TestStore, prefix: &str) -> Config {
    let mut config = shop_config();
    config.backends.insert("pg".to_owned(), pg.backend.clone());
    config
        .backends
        .insert("mongo".to_owned(), mongo.backend.clone());
    config.backends.insert(
        "redis".to_owned(),
        BackendConfig {
            key_prefix: Some(prefix.to_owned()),
            ..backend(BackendKind::Redis, redis_url())
        },
    );
    for t in config.tables.values_mut() {
        for p in &mut t.placements {
            if p.backend == "redis" {
                p.scan = ScanPolicy::Allow;
                p.scan_max_rows = 100_000;
            }
        }
    }
    config
}

pub fn placement(backend: &str, role: Role) -> PlacementConfig {
    PlacementConfig {
        backend: backend.to_owned(),
        role,
        name: None,
        columns: Default::default(),
        key_pattern: None,
        mode: None,
        ttl_seconds: None,
        scan: ScanPolicy::Deny,
        scan_max_rows: 10_000,
    }
}

/// The shipped catalog with every non-Redis backend on one SQLite store and Redis under `prefix`
/// (products cached in Redis, carts/sessions/hits on Redis).
pub fn shop_sqlite_redis(sqlite: &TestStore, prefix: &str) -> Config {
    let mut config = shop_config();
    for (name, b) in config.backends.iter_mut() {
        *b = if name == "redis" {
            BackendConfig {
                key_prefix: Some(prefix.to_owned()),
                ..backend(BackendKind::Redis, redis_url())
            }
        } else {
            sqlite.backend.clone()
        };
    }
    config
}

/// The shop on the test stores for transactions: PostgreSQL (also the saga log), MongoDB, Redis
/// under `prefix` with the change stream `{prefix}changes`; `inventory` gets `stock` for each
/// product, `payments` is created empty.
pub async fn checkout_env(
    pg: &TestStore,
    mongo: &TestStore,
    prefix: &str,
    stock: &[(&str, i64)],
) -> Config {
    let mut config = polyglot(pg, mongo, prefix);
    config.events.backend = Some("redis".to_owned());
    config.events.stream = "changes".to_owned();
    config.transactions.log_backend = Some("pg".to_owned());
    let router = Router::from_config(config.clone()).await.expect("router");
    let rows = stock
        .iter()
        .map(|(p, n)| {
            vec![
                switchyard_core::Value::Text((*p).to_owned()),
                switchyard_core::Value::Int(*n),
                switchyard_core::Value::Text("W1".to_owned()),
            ]
        })
        .collect();
    router
        .seed_table(
            "inventory",
            &["product_id", "stock", "warehouse"],
            rows,
            500,
            &|_| {},
        )
        .await
        .expect("seed inventory");
    router
        .seed_table("payments", &["payment_id"], Vec::new(), 1, &|_| {})
        .await
        .expect("create payments");
    config
}

/// The checkout of `customer`'s cart as one transaction: read the cart (it must hold exactly
/// `items.len()` lines), decrement each item's stock only if enough remains, insert the payment
/// (PostgreSQL, one local transaction), insert the order document (MongoDB), delete the cart
/// (Redis).
pub fn checkout(
    customer: &str,
    order_id: &str,
    items: &[(&str, i64)],
    idempotency_key: Option<&str>,
) -> serde_json::Value {
    use serde_json::json;
    let mut statements = vec![json!({
        "sql": "SELECT product_id, quantity FROM carts WHERE customer_id = $1",
        "params": [customer],
        "expect_rows": items.len(),
    })];
    for (product, quantity) in items {
        statements.push(json!({
            "sql": "UPDATE inventory SET stock = stock - $2 WHERE product_id = $1 AND stock >= $2",
            "params": [product, quantity],
            "expect_rows": 1,
        }));
    }
    let total: i64 = items.iter().map(|(_, q)| q * 10).sum();
    statements.push(json!({
        "sql": "INSERT INTO payments (payment_id, order_id, customer_id, payment_type, installments, amount) VALUES ($1, $2, $3, 'credit_card', 1, $4)",
        "params": [format!("pay-{order_id}"), order_id, customer, format!("{total}.00")],
    }));
    let lines: Vec<serde_json::Value> = items
        .iter()
        .map(|(p, q)| json!({ "product_id": p, "quantity": q, "price": "10.00" }))
        .collect();
    statements.push(json!({
        "sql": "INSERT INTO orders (order_id, customer_id, status, total, created_at, items) VALUES ($1, $2, 'paid', $3, $4, $5)",
        "params": [order_id, customer, format!("{total}.00"), "2026-11-21T10:00:00Z", lines],
    }));
    statements.push(json!({
        "sql": "DELETE FROM carts WHERE customer_id = $1",
        "params": [customer],
    }));
    let mut body = json!({ "statements": statements });
    if let Some(key) = idempotency_key {
        body["idempotency_key"] = json!(key);
    }
    body
}

/// Puts `items` in `customer`'s cart through the router.
pub async fn fill_cart(addr: SocketAddr, customer: &str, items: &[(&str, i64)]) {
    for (product, quantity) in items {
        let a = query(
            addr,
            "INSERT INTO carts (customer_id, product_id, quantity) VALUES ($1, $2, $3)",
            serde_json::json!([customer, product, quantity]),
        )
        .await;
        assert_eq!(a.status, 200, "{}", a.body);
    }
}

/// The Redis key of a product's cache entry (`product:{product_id}`, json) under `prefix`.
pub fn fill_cache_key(prefix: &str, product_id: &str) -> String {
    format!("{prefix}product:{product_id}")
}
