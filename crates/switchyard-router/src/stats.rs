//! Live backend status handed to placement plugins: health, latency percentiles, in-flight
//! statements and recent error rate.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchyard_core::routing::BackendStatus;

use crate::breaker::{Breaker, CircuitState};

const WINDOW: usize = 128;

/// Counters of one backend.
#[derive(Debug)]
pub(crate) struct BackendStats {
    /// Fails statements fast while the backend cannot be reached.
    pub(crate) breaker: Breaker,
    healthy: AtomicBool,
    /// Statements running, streamed answers included until their last batch.
    in_flight: Arc<AtomicU32>,
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    latencies_us: Vec<u32>,
    failures: Vec<bool>,
    next: usize,
    p50: u32,
    p99: u32,
    error_rate: f32,
}

impl BackendStats {
    /// Counters of a backend whose circuit opens after `circuit_failures` unreachable
    /// statements in a row, for `circuit_open`.
    pub(crate) fn new(circuit_failures: u32, circuit_open: Duration) -> Self {
        Self {
            breaker: Breaker::new(circuit_failures, circuit_open),
            healthy: AtomicBool::new(true),
            in_flight: Arc::new(AtomicU32::new(0)),
            window: Mutex::new(Window {
                latencies_us: Vec::with_capacity(WINDOW),
                failures: Vec::with_capacity(WINDOW),
                next: 0,
                p50: 0,
                p99: 0,
                error_rate: 0.0,
            }),
        }
    }
}

/// Marks a statement in flight until dropped (a streamed answer carries it to its end).
pub(crate) struct InFlight(Arc<AtomicU32>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl BackendStats {
    pub(crate) fn start(&self) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(self.in_flight.clone())
    }

    /// Records one statement; `reachable` is false when the backend could not be reached.
    /// True when this opened the circuit.
    pub(crate) fn record(&self, elapsed: Duration, failed: bool, reachable: bool) -> bool {
        self.healthy.store(reachable, Ordering::Relaxed);
        let opened = self.breaker.record(reachable);
        self.record_window(elapsed, failed);
        opened
    }

    fn record_window(&self, elapsed: Duration, failed: bool) {
        let Ok(mut w) = self.window.lock() else {
            return;
        };
        let us = u32::try_from(elapsed.as_micros()).unwrap_or(u32::MAX);
        if w.latencies_us.len() < WINDOW {
            w.latencies_us.push(us);
            w.failures.push(failed);
        } else {
            let i = w.next;
            w.latencies_us[i] = us;
            w.failures[i] = failed;
        }
        w.next = (w.next + 1) % WINDOW;
        // Percentiles are recomputed every 16 samples, off the per-request read path.
        if w.next % 16 == 0 || w.latencies_us.len() < 16 {
            let mut sorted = w.latencies_us.clone();
            sorted.sort_unstable();
            let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
            w.p50 = at(0.50);
            w.p99 = at(0.99);
            w.error_rate =
                w.failures.iter().filter(|f| **f).count() as f32 / w.failures.len() as f32;
        }
    }

    /// Marks the backend healthy or not (health checks); true when this opened the circuit.
    pub(crate) fn set_healthy(&self, healthy: bool) -> bool {
        self.healthy.store(healthy, Ordering::Relaxed);
        self.breaker.record(healthy)
    }

    pub(crate) fn status(&self) -> BackendStatus {
        let (p50, p99, error_rate) = self
            .window
            .lock()
            .map(|w| (w.p50, w.p99, w.error_rate))
            .unwrap_or_default();
        BackendStatus {
            // A backend whose circuit is not closed is not offered as healthy to plugins.
            healthy: self.healthy.load(Ordering::Relaxed)
                && self.breaker.state() == CircuitState::Closed,
            p50_micros: p50,
            p99_micros: p99,
            in_flight: self.in_flight.load(Ordering::Relaxed),
            error_rate,
        }
    }
}
