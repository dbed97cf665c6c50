//! The connection pool of a SQL backend: a statement costs the store one round trip.
//!
//! sqlx's pool pings a connection when it is taken (`test_before_acquire`) and again, always,
//! when it goes back, which is three round trips for a one-statement request. This pool sends
//! nothing but the statements: a connection is verified only when it has been idle longer than
//! [`CHECK_AFTER_IDLE`] (pgbouncer's `server_check_delay`), and goes back to the pool only when
//! the work on it finished — a statement that completed or that the store refused. A lease
//! dropped in the middle (a timeout, a client gone, a transaction never committed) closes its
//! connection, which ends whatever the store was doing on it, so no connection is ever handed
//! out in an unknown protocol state.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sqlx::Connection;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// A connection idle longer than this is pinged before it is handed out.
pub(crate) const CHECK_AFTER_IDLE: Duration = Duration::from_secs(30);
/// A connection idle longer than this is closed instead of handed out.
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// A connection older than this is closed when it comes back.
const MAX_LIFETIME: Duration = Duration::from_secs(1800);

/// A bounded pool of connections of one kind, connecting lazily.
pub(crate) struct ConnPool<C: Connection> {
    inner: Arc<Inner<C>>,
}

impl<C: Connection> std::fmt::Debug for ConnPool<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnPool")
            .field("open", &self.size())
            .field("idle", &self.num_idle())
            .finish_non_exhaustive()
    }
}

impl<C: Connection> Clone for ConnPool<C> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

struct Inner<C: Connection> {
    options: C::Options,
    /// Idle connections, most recently used last (taken first: its caches are warm).
    idle: Mutex<Vec<Idle<C>>>,
    /// One permit per connection the pool may have open.
    permits: Arc<Semaphore>,
    /// Connections open, idle or leased.
    open: AtomicU32,
    acquire_timeout: Duration,
}

struct Idle<C> {
    conn: C,
    since: Instant,
    born: Instant,
}

impl<C: Connection> ConnPool<C> {
    /// A pool of at most `max` connections; nothing is dialled until the first lease.
    pub(crate) fn new(options: C::Options, max: u32, acquire_timeout: Duration) -> Self {
        let permits = usize::try_from(max.max(1)).unwrap_or(usize::MAX);
        Self {
            inner: Arc::new(Inner {
                options,
                idle: Mutex::new(Vec::new()),
                permits: Arc::new(Semaphore::new(permits)),
                open: AtomicU32::new(0),
                acquire_timeout,
            }),
        }
    }

    /// A connection for one piece of work, within the acquire timeout: an idle one (verified
    /// if it idled long), else a new one. All connections busy past the timeout is
    /// `PoolTimedOut`; a store that cannot be reached is the connect error, at once.
    pub(crate) async fn acquire(&self) -> Result<Lease<C>, sqlx::Error> {
        let deadline = Instant::now() + self.inner.acquire_timeout;
        loop {
            let permit =
                tokio::time::timeout_at(deadline, Arc::clone(&self.inner.permits).acquire_owned())
                    .await
                    .map_err(|_| sqlx::Error::PoolTimedOut)?
                    .map_err(|_| sqlx::Error::PoolClosed)?;
            let idle = self
                .inner
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            let Some(idle) = idle else {
                let conn = tokio::time::timeout_at(deadline, C::connect_with(&self.inner.options))
                    .await
                    .map_err(|_| sqlx::Error::PoolTimedOut)??;
                self.inner.open.fetch_add(1, Ordering::Relaxed);
                return Ok(self.lease(conn, Instant::now(), permit));
            };
            let idle_for = idle.since.elapsed();
            // A lease dropped unfinished closes its connection and counts it closed: one that
            // idled too long, fails its check, or whose caller gives up during the check.
            let mut lease = self.lease(idle.conn, idle.born, permit);
            if idle_for > IDLE_TIMEOUT {
                continue;
            }
            if idle_for > CHECK_AFTER_IDLE
                && !matches!(
                    tokio::time::timeout_at(deadline, lease.ping()).await,
                    Ok(Ok(()))
                )
            {
                tracing::debug!("idle connection failed its check; closed");
                continue;
            }
            return Ok(lease);
        }
    }

    fn lease(&self, conn: C, born: Instant, permit: OwnedSemaphorePermit) -> Lease<C> {
        Lease {
            conn: Some(conn),
            born,
            reusable: false,
            pool: Arc::clone(&self.inner),
            _permit: permit,
        }
    }

    /// Connections open (idle or leased).
    pub(crate) fn size(&self) -> u32 {
        self.inner.open.load(Ordering::Relaxed)
    }

    /// Connections idle.
    pub(crate) fn num_idle(&self) -> usize {
        self.inner
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl<C: Connection> Inner<C> {
    fn closed(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection taken from a [`ConnPool`]. It goes back to the pool only when marked
/// reusable ([`Lease::finish`]); dropped otherwise, it closes its connection.
pub(crate) struct Lease<C: Connection> {
    conn: Option<C>,
    born: Instant,
    reusable: bool,
    pool: Arc<Inner<C>>,
    // Released after the connection went back, so whoever waits for it finds it idle.
    _permit: OwnedSemaphorePermit,
}

impl<C: Connection> Lease<C> {
    /// Marks the work done after `result`: a connection whose statement completed, or was
    /// refused by the store, is in a known state and goes back when the lease drops; after any
    /// other error (I/O, protocol, decoding) it is closed.
    pub(crate) fn finish<T>(&mut self, result: &Result<T, sqlx::Error>) {
        self.reusable = matches!(result, Ok(_) | Err(sqlx::Error::Database(_)));
    }
}

impl<C: Connection> Deref for Lease<C> {
    type Target = C;

    fn deref(&self) -> &C {
        self.conn
            .as_ref()
            .expect("a lease holds its connection until it drops")
    }
}

impl<C: Connection> DerefMut for Lease<C> {
    fn deref_mut(&mut self) -> &mut C {
        self.conn
            .as_mut()
            .expect("a lease holds its connection until it drops")
    }
}

impl<C: Connection> Drop for Lease<C> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        if self.reusable && self.born.elapsed() < MAX_LIFETIME {
            self.pool
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(Idle {
                    conn,
                    since: Instant::now(),
                    born: self.born,
                });
        } else {
            // Dropping the connection closes its socket: the store ends the session.
            self.pool.closed();
            drop(conn);
        }
    }
}
