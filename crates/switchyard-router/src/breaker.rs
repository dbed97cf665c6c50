//! Per-backend circuit breaking: after `circuit_failures` statements in a row could not reach a
//! backend, it is *open* for `circuit_open_ms`: statements for it fail at once with
//! `BACKEND_UNAVAILABLE` and a `retry_after_ms`, instead of each waiting out the connect
//! timeout. Then it is *half open*: one statement goes through as a probe (another one only if
//! that probe has not answered within `circuit_open_ms`); a probe that reaches the backend
//! closes the circuit, one that does not opens it again. Health checks count as statements.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Where a breaker stands, as `/admin/backends` and the metrics show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Statements go through.
    Closed,
    /// Statements fail fast.
    Open,
    /// One probe goes through.
    HalfOpen,
}

impl CircuitState {
    /// Lowercase name (`closed`, `open`, `half_open`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

#[derive(Debug)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probe_since: Instant },
}

/// The breaker of one backend.
#[derive(Debug)]
pub(crate) struct Breaker {
    /// Consecutive unreachable statements that open it; 0 never opens.
    threshold: u32,
    open_for: Duration,
    state: Mutex<State>,
}

impl Breaker {
    pub(crate) fn new(threshold: u32, open_for: Duration) -> Self {
        Self {
            threshold,
            open_for,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    /// Whether a statement may go to the backend now; `Err(retry_after)` when the circuit is
    /// open (or half open with its probe out).
    pub(crate) fn admit(&self) -> Result<(), Duration> {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Result<(), Duration> {
        let Ok(mut state) = self.state.lock() else {
            return Ok(());
        };
        match *state {
            State::Closed { .. } => Ok(()),
            State::Open { until } if now < until => Err(until - now),
            State::Open { .. } => {
                *state = State::HalfOpen { probe_since: now };
                Ok(())
            }
            State::HalfOpen { probe_since } => {
                let waited = now.saturating_duration_since(probe_since);
                if waited >= self.open_for {
                    // The probe never answered (its client went away): send another.
                    *state = State::HalfOpen { probe_since: now };
                    Ok(())
                } else {
                    Err(self.open_for - waited)
                }
            }
        }
    }

    /// Records whether a statement reached the backend; true when this opened the circuit.
    pub(crate) fn record(&self, reachable: bool) -> bool {
        self.record_at(reachable, Instant::now())
    }

    fn record_at(&self, reachable: bool, now: Instant) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        if reachable {
            *state = State::Closed { failures: 0 };
            return false;
        }
        let open = State::Open {
            until: now + self.open_for,
        };
        match *state {
            State::Closed { failures } => {
                let failures = failures.saturating_add(1);
                if self.threshold > 0 && failures >= self.threshold {
                    *state = open;
                    true
                } else {
                    *state = State::Closed { failures };
                    false
                }
            }
            State::HalfOpen { .. } => {
                *state = open;
                true
            }
            // A statement admitted before the circuit opened: it stays open as it is.
            State::Open { .. } => false,
        }
    }

    /// The state now.
    pub(crate) fn state(&self) -> CircuitState {
        match self.state.lock().as_deref() {
            Ok(State::Closed { .. }) | Err(_) => CircuitState::Closed,
            Ok(State::Open { until }) if Instant::now() < *until => CircuitState::Open,
            Ok(State::Open { .. } | State::HalfOpen { .. }) => CircuitState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_and_probes_once() {
        let b = Breaker::new(3, Duration::from_secs(5));
        let t0 = Instant::now();
        assert!(!b.record_at(false, t0));
        assert!(!b.record_at(false, t0));
        // A success in between starts the count again.
        b.record_at(true, t0);
        assert!(!b.record_at(false, t0));
        assert!(!b.record_at(false, t0));
        assert!(
            b.record_at(false, t0),
            "the third failure in a row opens it"
        );
        assert_eq!(
            b.admit_at(t0 + Duration::from_secs(1)),
            Err(Duration::from_secs(4))
        );
        // After the open time one probe goes through, the next waits for it.
        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(b.admit_at(t1), Ok(()));
        assert!(b.admit_at(t1 + Duration::from_secs(1)).is_err());
        // A failed probe opens it again; a successful one closes it.
        assert!(b.record_at(false, t1 + Duration::from_secs(1)));
        assert!(b.admit_at(t1 + Duration::from_secs(2)).is_err());
        let t2 = t1 + Duration::from_secs(7);
        assert_eq!(b.admit_at(t2), Ok(()));
        b.record_at(true, t2);
        assert_eq!(b.admit_at(t2), Ok(()));
        assert_eq!(b.state(), CircuitState::Closed);
    }

    #[test]
    fn a_lost_probe_is_replaced_and_zero_never_opens() {
        let b = Breaker::new(1, Duration::from_secs(5));
        let t0 = Instant::now();
        assert!(b.record_at(false, t0));
        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(b.admit_at(t1), Ok(()));
        // The probe's client went away without an answer: after the open time, another.
        assert_eq!(b.admit_at(t1 + Duration::from_secs(5)), Ok(()));

        let never = Breaker::new(0, Duration::from_secs(5));
        for _ in 0..100 {
            assert!(!never.record_at(false, t0));
        }
        assert_eq!(never.admit_at(t0), Ok(()));
    }
}
