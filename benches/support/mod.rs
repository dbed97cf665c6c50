//! What the harness-free benches share: the runtime they run on and latency sampling.
#![allow(dead_code, clippy::unwrap_used)]

use std::time::{Duration, Instant};

/// Runs a bench on a 2-worker runtime; `--list` (cargo's target discovery) runs nothing.
pub fn run_bench(bench: impl std::future::Future<Output = ()>) {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
        .block_on(bench);
}

/// Median and p99 of the samples, in microseconds.
pub fn stats(mut samples: Vec<Duration>) -> (f64, f64) {
    samples.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    (
        us(samples[samples.len() / 2]),
        us(samples[(samples.len() * 99) / 100]),
    )
}

/// Times `n` calls of `f` after `n / 10` warm-up calls: (p50, p99) in microseconds.
pub async fn measure<F, Fut>(n: usize, mut f: F) -> (f64, f64)
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for i in 0..n / 10 {
        f(i).await;
    }
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        f(i).await;
        samples.push(t.elapsed());
    }
    stats(samples)
}
