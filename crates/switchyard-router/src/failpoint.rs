//! Test-only fault injection at named points of the write paths (saga step boundaries, cache
//! fills). Nothing happens unless a test arms a point: in process with [`arm`], or in a router
//! process through the environment variable `SWITCHYARD_FAILPOINTS`
//! (`name=kill[,name=kill...]`), read once at the first check.
//!
//! Points: `saga.before_step.K` (the intent and steps before K are durable, step K has not
//! started; K = number of steps means "before the commit record"), `saga.after_execute.K` (step K
//! of a store other than the log's ran but its completion is not recorded),
//! `cache.before_fill.TABLE` (a first-hit read has its cache tokens and source rows and is about
//! to fill the cache).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use tokio::sync::Notify;

/// What an armed point does when reached.
#[derive(Debug, Clone)]
pub enum Action {
    /// SIGKILL the process (the crash tests; no destructor, no flush runs).
    Kill,
    /// Signal `reached`, then wait for `resume` (interleaving tests in one process).
    Pause {
        /// Notified when the point is reached.
        reached: Arc<Notify>,
        /// The point waits for this.
        resume: Arc<Notify>,
    },
}

static POINTS: LazyLock<Mutex<HashMap<String, Action>>> = LazyLock::new(|| {
    let mut points = HashMap::new();
    if let Ok(spec) = std::env::var("SWITCHYARD_FAILPOINTS") {
        for item in spec.split(',').filter(|s| !s.is_empty()) {
            if let Some((name, "kill")) = item.split_once('=') {
                points.insert(name.trim().to_owned(), Action::Kill);
            }
        }
    }
    Mutex::new(points)
});

/// Arms `name` (replacing what it did before).
pub fn arm(name: &str, action: Action) {
    if let Ok(mut p) = POINTS.lock() {
        p.insert(name.to_owned(), action);
    }
}

/// Disarms `name`.
pub fn disarm(name: &str) {
    if let Ok(mut p) = POINTS.lock() {
        p.remove(name);
    }
}

/// Runs the action armed at `name`, if any. A paused point disarms itself, so it fires once.
pub(crate) async fn hit(name: &str) {
    let action = match POINTS.lock() {
        Ok(mut p) => match p.get(name) {
            Some(Action::Kill) => Some(Action::Kill),
            Some(Action::Pause { .. }) => p.remove(name),
            None => None,
        },
        Err(_) => None,
    };
    match action {
        None => {}
        Some(Action::Kill) => {
            tracing::warn!(failpoint = name, "failpoint: killing the process");
            let pid = std::process::id().to_string();
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid])
                .status();
            // `kill` missing: still never continue past the point.
            std::process::abort();
        }
        Some(Action::Pause { reached, resume }) => {
            reached.notify_one();
            resume.notified().await;
        }
    }
}
