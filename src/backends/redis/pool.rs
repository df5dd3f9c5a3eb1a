//! Dedicated Redis connections for blocking commands (`BLPOP`, `XREAD BLOCK`), pooled.
//!
//! A blocking command holds its connection until it returns, so waiting requests cannot share
//! one multiplexed connection (every other request would queue behind the first `BLPOP`). Each
//! wait therefore leases a connection of its own. A lease goes back to the pool only when its
//! last command completed: a lease dropped mid-command (the client went away) closes its
//! connection, which is also what makes Redis abandon the blocked command. Connecting retries
//! with backoff within the request's budget, so a Redis restart costs a short wait, not an error.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, FromRedisValue, RedisResult};
use tokio::time::Instant;

/// Idle connections kept for reuse; more are opened under load and closed after use.
const MAX_IDLE: usize = 64;
/// A connection idle longer than this is checked with a `PING` before use: Redis may have
/// restarted meanwhile. Busy connections skip the check (no extra round trip under load).
const CHECK_AFTER: Duration = Duration::from_secs(1);
/// First and largest pause between two connection attempts.
const BACKOFF_START: Duration = Duration::from_millis(25);
const BACKOFF_MAX: Duration = Duration::from_millis(500);

/// A pool of connections for blocking commands.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    config: AsyncConnectionConfig,
    idle: Mutex<Vec<(MultiplexedConnection, Instant)>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the client: its connection info holds the password.
        f.debug_struct("Pool").finish_non_exhaustive()
    }
}

impl Pool {
    /// A pool for `client`; nothing is connected until the first lease.
    pub fn new(client: redis::Client) -> Self {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            // Blocking commands wait as long as they asked to; callers bound them themselves.
            .set_response_timeout(None);
        Pool {
            inner: Arc::new(Inner {
                client,
                config,
                idle: Mutex::new(Vec::new()),
            }),
        }
    }

    /// A connection: an idle one known to work, else a new one, retrying with backoff until
    /// `deadline`. A job is never sent twice, so the connection must be sound before use.
    pub async fn lease(&self, deadline: Instant) -> RedisResult<Lease> {
        while Instant::now() < deadline {
            let Some((mut conn, since)) = self.inner.idle.lock().ok().and_then(|mut i| i.pop())
            else {
                break;
            };
            if since.elapsed() < CHECK_AFTER {
                return Ok(self.wrap(conn));
            }
            let cmd = redis::cmd("PING");
            let ping = cmd.query_async::<()>(&mut conn);
            if let Ok(Ok(())) = tokio::time::timeout(CHECK_AFTER, ping).await {
                return Ok(self.wrap(conn));
            }
        }
        Ok(self.wrap(self.connect(deadline).await?))
    }

    /// A new connection, retrying refused or reset connections with backoff until `deadline`.
    pub async fn connect(&self, deadline: Instant) -> RedisResult<MultiplexedConnection> {
        let mut pause = BACKOFF_START;
        loop {
            let attempt = self
                .inner
                .client
                .get_multiplexed_async_connection_with_config(&self.inner.config)
                .await;
            match attempt {
                Ok(conn) => return Ok(conn),
                Err(err) if retryable(&err) && Instant::now() + pause < deadline => {
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(BACKOFF_MAX);
                }
                Err(err) => return Err(err),
            }
        }
    }

    fn wrap(&self, conn: MultiplexedConnection) -> Lease {
        Lease {
            conn: Some(conn),
            pool: self.inner.clone(),
            reusable: true,
        }
    }
}

/// Whether a failed connection attempt may succeed if tried again (Redis restarting).
pub fn retryable(err: &redis::RedisError) -> bool {
    err.is_io_error()
        || err.is_connection_refusal()
        || err.is_connection_dropped()
        || err.is_timeout()
        || matches!(
            err.kind(),
            redis::ErrorKind::Server(redis::ServerErrorKind::BusyLoading)
        )
}

/// One leased connection. Returned to the pool on drop if its last command completed.
pub struct Lease {
    conn: Option<MultiplexedConnection>,
    pool: Arc<Inner>,
    reusable: bool,
}

impl Lease {
    /// Runs a command. While it runs the lease is not reusable, so a lease dropped mid-command
    /// (cancelled) or after an error closes its connection.
    pub async fn cmd<T: FromRedisValue>(&mut self, cmd: &redis::Cmd) -> RedisResult<T> {
        let conn = self.conn()?;
        let result = cmd.query_async(conn).await;
        self.reusable = result.is_ok();
        result
    }

    /// Runs a pipeline, under the same rule as `cmd`.
    pub async fn pipe<T: FromRedisValue>(&mut self, pipe: &redis::Pipeline) -> RedisResult<T> {
        let conn = self.conn()?;
        let result = pipe.query_async(conn).await;
        self.reusable = result.is_ok();
        result
    }

    fn conn(&mut self) -> RedisResult<&mut MultiplexedConnection> {
        self.reusable = false;
        self.conn.as_mut().ok_or_else(|| {
            redis::RedisError::from((redis::ErrorKind::Client, "connection already closed"))
        })
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !self.reusable {
            return;
        }
        if let (Some(conn), Ok(mut idle)) = (self.conn.take(), self.pool.idle.lock())
            && idle.len() < MAX_IDLE
        {
            idle.push((conn, Instant::now()));
        }
    }
}
