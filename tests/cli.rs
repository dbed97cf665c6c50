//! The real `switchyard` binary: check, explain, seed (idempotent) and serve --embedded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::tempdir::Dir;
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");
const ROUTER_TOML: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/router.toml");

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .env("SWITCHYARD_LOG", "warn")
        .output()
        .expect("run switchyard");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_reports_every_config_problem_at_once() {
    let dir = Dir::new();
    let path = dir.path.join("bad.toml");
    std::fs::write(
        &path,
        "[server]\nlisten = \"x\"\n\n[backends.pg]\nkind = \"postgres\"\nurl = \"postgres://h/db\"\ntimeout = 3\n\n[tables.t]\ncolumns = { id = \"int\" }\nprimary_key = [\"id\"]\nplacements = [{ backend = \"nope\" }]\n",
    )
    .unwrap();
    let (code, _, stderr) = run(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("has 3 problems"), "{stderr}");
    assert!(stderr.contains("bad.toml:2:10: server.listen"), "{stderr}");
    assert!(
        stderr.contains("bad.toml:7:1: backends.pg.timeout: unknown field `timeout`"),
        "{stderr}"
    );
    assert!(
        stderr.contains("bad.toml:12:27: tables.t.placements[0].backend: unknown backend `nope`"),
        "{stderr}"
    );
}

#[test]
fn check_reaches_every_backend_and_reports_all_failures() {
    let dir = Dir::new();
    let data = dir.path.join("data");
    let (code, stdout, stderr) = run(&[
        "check",
        "--config",
        ROUTER_TOML,
        "--embedded",
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(stdout.matches("  ok    ").count(), 3, "{stdout}");

    let path = dir.path.join("down.toml");
    std::fs::write(
        &path,
        "[backends.a]\nkind = \"postgres\"\nurl = \"postgres://x@127.0.0.1:1/db\"\nconnect_timeout_ms = 200\n\n[backends.b]\nkind = \"mysql\"\nurl = \"mysql://x@127.0.0.1:1/db\"\nconnect_timeout_ms = 200\n",
    )
    .unwrap();
    let (code, stdout, _) = run(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("FAIL  a (postgres)") && stdout.contains("FAIL  b (mysql)"),
        "{stdout}"
    );
    assert!(stdout.contains("2 backend(s) unreachable"), "{stdout}");
}

#[test]
fn explain_prints_route_and_native_statement() {
    let dir = Dir::new();
    let data = dir.path.join("data");
    let (code, stdout, stderr) = run(&[
        "explain",
        "--config",
        ROUTER_TOML,
        "--embedded",
        "--data-dir",
        data.to_str().unwrap(),
        "--params",
        "[\"SP\"]",
        "SELECT name FROM customers WHERE state = $1",
    ]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("route: single backend `pg`"), "{stdout}");
    assert!(stdout.contains("SELECT \"customers\".\"name\" FROM \"customers\" AS \"customers\" WHERE (\"customers\".\"state\" = ?)"), "{stdout}");
    assert!(stdout.contains("params: text 'SP'"), "{stdout}");

    let (code, _, stderr) = run(&[
        "explain",
        "--config",
        ROUTER_TOML,
        "--embedded",
        "--data-dir",
        data.to_str().unwrap(),
        "SELECT * FROM nope",
    ]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("UNKNOWN_TABLE at line 1, column 15"),
        "{stderr}"
    );
}

#[tokio::test]
async fn seed_is_idempotent_and_serve_embedded_answers_the_readme_query() {
    let dir = Dir::new();
    let data = dir.path.join("data");
    let data_s = data.to_str().unwrap();
    for _ in 0..2 {
        let (code, _, stderr) = run(&[
            "seed",
            "--config",
            ROUTER_TOML,
            "--embedded",
            "--data-dir",
            data_s,
        ]);
        assert_eq!(code, 0, "{stderr}");
    }
    let config = common::shop_config().into_embedded(&data);
    let router = switchyard_router::Router::from_config(config)
        .await
        .unwrap();
    let count = router
        .query("SELECT COUNT(*) FROM customers", &[], &Default::default())
        .await
        .unwrap();
    assert_eq!(count.rows[0][0], switchyard_core::Value::Int(1000));

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--config",
            ROUTER_TOML,
            "--embedded",
            "--data-dir",
            data_s,
            "--listen",
            &listen,
        ])
        .env("SWITCHYARD_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = listen.parse().unwrap();
    let started = Instant::now();
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "serve did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answer = common::query(
        addr,
        "SELECT c.name, p.amount FROM customers c JOIN payments p ON p.customer_id = c.customer_id WHERE c.state = $1 ORDER BY p.amount DESC LIMIT 5",
        json!(["SP"]),
    )
    .await;
    let ready = common::http(addr, "GET", "/readyz", None, Vec::new()).await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["rows"].as_array().map(Vec::len), Some(5));
    assert_eq!(ready.status, 200, "{}", ready.body);
}
