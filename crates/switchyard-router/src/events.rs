//! The change events of `/v1/query` writes: queued and published in order by one task, so a
//! stream that hangs (a stopped Redis) delays a write's answer by at most
//! `events.publish_wait_ms` instead of the store's timeout. A full queue drops events and
//! counts them; nothing here ever fails the write the events describe.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus::IntCounterVec;
use switchyard_backend::{Backend, ChangeEvent};
use tokio::sync::{mpsc, oneshot};

/// One write's events and who waits for them.
struct Queued {
    events: Vec<ChangeEvent>,
    published: oneshot::Sender<()>,
}

/// The queue in front of the events stream.
pub(crate) struct EventQueue {
    backend: Arc<dyn Backend>,
    stream: String,
    max_len: u64,
    capacity: usize,
    wait: Duration,
    /// `switchyard_events_published_total{outcome}`.
    counter: IntCounterVec,
    /// Started by the first write (inside the runtime).
    tx: OnceLock<mpsc::Sender<Queued>>,
}

impl std::fmt::Debug for EventQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventQueue")
            .field("backend", &self.backend.name())
            .field("stream", &self.stream)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl EventQueue {
    pub(crate) fn new(
        backend: Arc<dyn Backend>,
        stream: String,
        max_len: u64,
        capacity: u64,
        wait: Duration,
        counter: IntCounterVec,
    ) -> Self {
        Self {
            backend,
            stream,
            max_len,
            capacity: usize::try_from(capacity).unwrap_or(usize::MAX).max(1),
            wait,
            counter,
            tx: OnceLock::new(),
        }
    }

    /// Queues `events` and waits up to `publish_wait_ms` for them to be published.
    pub(crate) async fn publish(&self, events: Vec<ChangeEvent>) {
        if events.is_empty() {
            return;
        }
        let tx = self.tx.get_or_init(|| self.start());
        let (published, done) = oneshot::channel();
        let n = events.len() as u64;
        match tx.try_send(Queued { events, published }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_) | mpsc::error::TrySendError::Closed(_)) => {
                self.counter.with_label_values(&["dropped"]).inc_by(n);
                tracing::warn!(
                    backend = self.backend.name(),
                    events = n,
                    "change events dropped: queue full"
                );
                return;
            }
        }
        let _ = tokio::time::timeout(self.wait, done).await;
    }

    /// The task that publishes queued events, one write's events at a time, in order.
    fn start(&self) -> mpsc::Sender<Queued> {
        let (tx, mut rx) = mpsc::channel::<Queued>(self.capacity);
        let (backend, stream, max_len) = (self.backend.clone(), self.stream.clone(), self.max_len);
        let counter = self.counter.clone();
        tokio::spawn(async move {
            while let Some(q) = rx.recv().await {
                let n = q.events.len() as u64;
                match backend.publish_changes(&stream, max_len, &q.events).await {
                    Ok(_) => counter.with_label_values(&["ok"]).inc_by(n),
                    Err(err) => {
                        counter.with_label_values(&["error"]).inc_by(n);
                        tracing::warn!(backend = backend.name(), error = %err, "change events not published");
                    }
                }
                let _ = q.published.send(());
            }
        });
        tx
    }
}
