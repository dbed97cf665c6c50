//! A real Prometheus server (the `prometheus` binary, installed by scripts/test.sh) scrapes a
//! running Switchyard on loopback; after a workload, PromQL through Prometheus's HTTP API returns
//! the expected series and values.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{RedisCleanup, Store, TestStore, query, start_server};
use serde_json::json;

/// Stops the Prometheus process and removes its files.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    dir: std::path::PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_prometheus(target: SocketAddr) -> Prometheus {
    let binary =
        std::env::var("SWITCHYARD_TEST_PROMETHEUS").unwrap_or_else(|_| "prometheus".into());
    let dir = std::env::temp_dir().join(common::unique_name("prometheus"));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: switchyard\n    static_configs:\n      - targets: [\"{target}\"]\n"
        ),
    )
    .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let child = Command::new(&binary)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address={addr}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start `{binary}` ({e}): run scripts/test.sh (it installs Prometheus) or set SWITCHYARD_TEST_PROMETHEUS")
        });
    let p = Prometheus { child, addr, dir };
    let started = Instant::now();
    loop {
        if let Ok(stream) = tokio::net::TcpStream::connect(addr).await {
            drop(stream);
            if common::http(addr, "GET", "/-/ready", None, Vec::new())
                .await
                .status
                == 200
            {
                return p;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "Prometheus did not start"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The value of an instant PromQL query that returns one sample, if it does.
async fn promql(prometheus: SocketAddr, expr: &str) -> Option<f64> {
    let path = format!("/api/v1/query?query={}", encode(expr));
    let r = common::http(prometheus, "GET", &path, None, Vec::new()).await;
    assert_eq!(r.status, 200, "{expr}: {}", r.text);
    let result = r.body["data"]["result"].as_array()?;
    let [one] = result.as_slice() else {
        return None;
    };
    one["value"][1].as_str()?.parse().ok()
}

/// Polls a PromQL query until it returns `want` (scrapes run every second).
async fn eventually(prometheus: SocketAddr, expr: &str, want: f64) {
    let started = Instant::now();
    let mut last = None;
    while started.elapsed() < Duration::from_secs(30) {
        last = promql(prometheus, expr).await;
        if last == Some(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("`{expr}` stayed at {last:?}, expected {want}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_series_a_workload_moves() {
    let sqlite = TestStore::new(Store::Sqlite);
    let prefix = format!("{}:", common::unique_name("prom"));
    let _cleanup = RedisCleanup(prefix.clone());
    let server = start_server(common::shop_sqlite_redis(&sqlite, &prefix)).await;
    common::seed(&server.router, 1).await;
    let prometheus = start_prometheus(server.addr).await;
    let p = prometheus.addr;

    eventually(p, "up{job=\"switchyard\"}", 1.0).await;
    eventually(
        p,
        &format!(
            "switchyard_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        ),
        1.0,
    )
    .await;

    // The Redis fragment counter goes up by exactly the number of cart reads.
    let redis = "switchyard_backend_fragments_total{backend=\"redis\",backend_kind=\"redis\",outcome=\"ok\"}";
    let before = server
        .router
        .metrics()
        .fragments
        .with_label_values(&["redis", "redis", "ok"])
        .get() as f64;
    let reads = 6;
    for i in 0..reads {
        let r = query(
            server.addr,
            "SELECT product_id, quantity FROM carts WHERE customer_id = $1",
            json!([format!("c{:06}", i + 1)]),
        )
        .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    eventually(p, redis, before + f64::from(reads)).await;
    eventually(
        p,
        "sum(switchyard_http_requests_total{endpoint=\"query\",status_class=\"2xx\"})",
        f64::from(reads),
    )
    .await;
    // Histograms arrive whole: a quantile over the Redis statements is a finite latency.
    let p99 = promql(
        p,
        "histogram_quantile(0.99, sum by (le) (switchyard_backend_fragment_duration_seconds_bucket{backend=\"redis\"}))",
    )
    .await
    .unwrap();
    assert!(p99.is_finite() && p99 > 0.0 && p99 <= 10.0, "p99 {p99}");
}
