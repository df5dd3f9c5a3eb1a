//! HTTP/1.1 connections to a plain `http://` upstream, pooled per thread and read by the
//! request that uses them.
//!
//! A client that drives each connection on a task of its own (reqwest, hyper-util's pool) hands
//! every body chunk from that task to the request's through a channel, and each hand-over goes
//! back through the scheduler: the request sees one chunk, then `Pending`, so actix writes the
//! client one event at a time (a `sendto` per event, plus the wake-ups between the two tasks).
//! Here the request's own task reads the connection (`h1_conn`) while it reads the body: every
//! chunk one socket read brought is decoded in one go and leaves in one write, as nginx relays
//! what one read brought. The connection then goes back to its thread's pool (each actix worker
//! runs its own runtime, so a connection is only ever used by the runtime that registered it,
//! as nginx keeps an upstream keep-alive pool per worker).
//!
//! An idle connection is not read while it waits: a close the upstream sent meanwhile is seen
//! when it is taken (it is then dropped and another taken), and a timer on the thread's
//! runtime closes connections idle for `pool_idle_timeout`.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use thread_local::ThreadLocal;
use tokio::net::TcpStream;
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::time::Instant;

use super::h1_conn::{self, BodyReader, H1Conn, H1Error};

/// The idle connections one thread keeps to one upstream; a busier moment opens more, which
/// are closed as they come back. Bounds the sockets a burst leaves open.
const MAX_IDLE_PER_THREAD: usize = 256;

/// Why an exchange failed.
#[derive(Debug)]
pub enum SendError {
    /// No connection within `connect_timeout`.
    ConnectTimeout,
    /// The TCP connection failed (refused, unreachable, no address).
    Connect(std::io::Error),
    /// The exchange failed once connected.
    Exchange(H1Error),
}

impl SendError {
    /// What went wrong, for the client's error message: never the URL.
    pub fn describe(&self) -> String {
        match self {
            SendError::ConnectTimeout => "timed out connecting".to_owned(),
            SendError::Connect(err) => format!("cannot connect: {err}"),
            SendError::Exchange(err) => err.to_string(),
        }
    }
}

/// One upstream's connections, for every thread.
pub struct H1Pool {
    host: url::Host<String>,
    port: u16,
    connect_timeout: Duration,
    idle_timeout: Duration,
    idle: ThreadLocal<RefCell<Idle>>,
}

/// One thread's idle connections, oldest first.
#[derive(Default)]
struct Idle {
    conns: VecDeque<Pooled>,
    /// The timer that closes expired connections, while there are any.
    sweeper: Option<tokio::task::JoinHandle<()>>,
}

struct Pooled {
    conn: H1Conn,
    since: Instant,
}

impl std::fmt::Debug for H1Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H1Pool")
            .field("host", &self.host)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl H1Pool {
    /// A pool for `base` (an `http://` URL with a host).
    pub fn new(
        base: &url::Url,
        connect_timeout: Duration,
        idle_timeout: Duration,
    ) -> Option<Arc<Self>> {
        Some(Arc::new(H1Pool {
            host: base.host()?.to_owned(),
            port: base.port_or_known_default()?,
            connect_timeout,
            idle_timeout,
            idle: ThreadLocal::new(),
        }))
    }

    /// Sends the request `build` makes and waits for the response head. A connection the
    /// upstream closed under the request before answering (the keep-alive race: it closed an
    /// idle connection as the request went out) costs no request: `build` is called once more
    /// and the request sent on a new connection.
    pub async fn send(
        self: &Arc<Self>,
        build: impl Fn() -> http::Request<Bytes>,
    ) -> Result<(http::response::Parts, LocalBody), SendError> {
        let first = match self.checkout() {
            Some(conn) => conn,
            // Boxed: a new connection is the rare case, and its future is the larger one.
            None => Box::pin(self.connect()).await?,
        };
        match self.exchange(first, build()).await {
            Err(SendError::Exchange(H1Error::ClosedBeforeAnswer)) => {
                tracing::debug!(
                    "upstream connection closed under the request; resending on a new one"
                );
                let fresh = Box::pin(self.connect()).await?;
                self.exchange(fresh, build()).await
            }
            sent => sent,
        }
    }

    /// Sends on one connection and reads the response head.
    async fn exchange(
        self: &Arc<Self>,
        mut conn: H1Conn,
        request: http::Request<Bytes>,
    ) -> Result<(http::response::Parts, LocalBody), SendError> {
        let (parts, body) = request.into_parts();
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let head = h1_conn::write_request(&parts.method, target, &parts.headers, body.len());
        let bodiless = parts.method == http::Method::HEAD;
        let (head, reader) = conn
            .exchange(head, body, bodiless)
            .await
            .map_err(SendError::Exchange)?;
        // An answer without a body (a 204, a `HEAD`'s) frees its connection at once: whoever
        // takes the answer may never read an empty body to its end.
        let conn = if reader.reusable(&conn) {
            self.put(conn);
            None
        } else {
            Some(conn)
        };
        Ok((
            head,
            LocalBody {
                pool: Arc::downgrade(self),
                conn,
                reader,
            },
        ))
    }

    async fn connect(&self) -> Result<H1Conn, SendError> {
        let deadline = Instant::now() + self.connect_timeout;
        // The name lookup counts against the same limit.
        let stream = tokio::time::timeout_at(deadline, self.tcp(deadline))
            .await
            .map_err(|_| SendError::ConnectTimeout)??;
        // Each event is written as soon as it is ready: no Nagle delay.
        stream.set_nodelay(true).map_err(SendError::Connect)?;
        Ok(H1Conn::new(stream))
    }

    /// A TCP connection to one of the host's addresses (`connect_any`) by `deadline`.
    async fn tcp(&self, deadline: Instant) -> Result<TcpStream, SendError> {
        let addrs: Vec<std::net::SocketAddr> = match &self.host {
            url::Host::Ipv4(ip) => vec![(*ip, self.port).into()],
            url::Host::Ipv6(ip) => vec![(*ip, self.port).into()],
            url::Host::Domain(name) => tokio::net::lookup_host((name.as_str(), self.port))
                .await
                .map_err(SendError::Connect)?
                .collect(),
        };
        connect_any(&addrs, deadline).await
    }

    /// This thread's most recently used live connection, if any: expired ones and those the
    /// upstream closed meanwhile are dropped on the way.
    fn checkout(&self) -> Option<H1Conn> {
        let idle = self.idle.get()?;
        let mut idle = idle.borrow_mut();
        let now = Instant::now();
        while let Some(mut pooled) = idle.conns.pop_back() {
            if now.duration_since(pooled.since) >= self.idle_timeout {
                // Older ones are more expired still.
                idle.conns.clear();
                return None;
            }
            // A close (or stray bytes) that arrived while it waited rules it out.
            if pooled.conn.is_reusable() {
                return Some(pooled.conn);
            }
        }
        None
    }

    /// Puts a connection whose exchange ended back in this thread's pool.
    fn put(self: &Arc<Self>, conn: H1Conn) {
        let idle = self.idle.get_or_default();
        let mut idle = idle.borrow_mut();
        if idle.conns.len() >= MAX_IDLE_PER_THREAD {
            idle.conns.pop_front();
        }
        idle.conns.push_back(Pooled {
            conn,
            since: Instant::now(),
        });
        if idle.sweeper.as_ref().is_none_or(|s| s.is_finished()) {
            idle.sweeper = self.sweeper();
        }
    }

    /// A task that closes this thread's connections as they expire, until none is left. Only
    /// on a runtime that runs on this thread alone (actix's workers): a task of a
    /// multi-threaded runtime could wake on another thread and sweep that one's pool; there,
    /// connections are dropped when next taken. (A connection is never used once expired,
    /// swept or not: `checkout` checks.)
    fn sweeper(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        let runtime = Handle::try_current().ok()?;
        if runtime.runtime_flavor() != RuntimeFlavor::CurrentThread {
            return None;
        }
        let pool = Arc::downgrade(self);
        let first = Instant::now() + self.idle_timeout;
        Some(runtime.spawn(async move {
            let mut next = first;
            loop {
                tokio::time::sleep_until(next).await;
                let Some(pool) = pool.upgrade() else { return };
                match pool.sweep() {
                    Some(expiry) => next = expiry,
                    None => return,
                }
            }
        }))
    }

    /// Closes this thread's expired idle connections; when the oldest one left expires.
    fn sweep(&self) -> Option<Instant> {
        let idle = self.idle.get()?;
        let mut idle = idle.borrow_mut();
        let now = Instant::now();
        while idle
            .conns
            .front()
            .is_some_and(|c| now.duration_since(c.since) >= self.idle_timeout)
        {
            idle.conns.pop_front();
        }
        // Not sooner than 10 ms from now: a burst of expiries is swept together.
        let oldest = idle.conns.front()?.since + self.idle_timeout;
        Some(oldest.max(now + Duration::from_millis(10)))
    }

    /// How many idle connections this thread holds (for tests).
    #[cfg(test)]
    fn idle_here(&self) -> usize {
        self.idle.get().map_or(0, |idle| idle.borrow().conns.len())
    }
}

/// A TCP connection to the first of `addrs` that accepts one by `deadline`. Each address gets
/// an equal share of the time left, so that one that swallows the attempt (a dead IPv6 route,
/// say) leaves time for the next.
async fn connect_any(
    addrs: &[std::net::SocketAddr],
    deadline: Instant,
) -> Result<TcpStream, SendError> {
    let mut last = SendError::Connect(std::io::Error::new(
        std::io::ErrorKind::NotFound,
        "the host has no address",
    ));
    for (tried, addr) in addrs.iter().enumerate() {
        let left = addrs.len() - tried;
        let share = deadline.saturating_duration_since(Instant::now()) / left as u32;
        match tokio::time::timeout(share, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(err)) => last = SendError::Connect(err),
            Err(_) => last = SendError::ConnectTimeout,
        }
    }
    Err(last)
}

/// A response body read in the reader's task; the connection goes back to the pool when the
/// body has ended, and is closed if the body is dropped before.
pub struct LocalBody {
    pool: Weak<H1Pool>,
    /// `None` once the body has ended or failed.
    conn: Option<H1Conn>,
    reader: BodyReader,
}

impl Stream for LocalBody {
    type Item = Result<Bytes, H1Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(conn) = this.conn.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = conn.poll_body(&mut this.reader, cx);
        match &polled {
            Poll::Ready(None) => {
                // Back to the pool if it can take another request (not if the upstream asked
                // to close it, or sent bytes past the answer).
                if let (Some(conn), Some(pool)) = (this.conn.take(), this.pool.upgrade())
                    && this.reader.reusable(&conn)
                {
                    pool.put(conn);
                }
            }
            Poll::Ready(Some(Err(_))) => this.conn = None,
            _ => {}
        }
        polled
    }
}

impl std::fmt::Debug for LocalBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalBody").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    fn get(port: u16) -> impl Fn() -> http::Request<Bytes> {
        move || {
            http::Request::get("/v1/x")
                .header("host", format!("127.0.0.1:{port}"))
                .body(Bytes::new())
                .unwrap()
        }
    }

    /// An upstream that answers every request on a connection with `body`, counting the
    /// connections it accepted.
    async fn upstream(body: &'static str) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
        answering(format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        ))
        .await
    }

    /// An upstream that answers every request on a connection with `answer` (a whole HTTP
    /// answer), counting the connections it accepted.
    async fn answering(answer: String) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        let answer: Arc<str> = answer.into();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0; 4096];
                    while let Ok(n) = socket.read(&mut buf).await {
                        if n == 0 || socket.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (port, accepted)
    }

    fn pool(port: u16, idle: Duration) -> Arc<H1Pool> {
        let base = url::Url::parse(&format!("http://127.0.0.1:{port}/v1")).unwrap();
        H1Pool::new(&base, Duration::from_secs(1), idle).unwrap()
    }

    async fn read_all(mut body: LocalBody) -> String {
        let mut text = Vec::new();
        while let Some(chunk) = body.next().await {
            text.extend_from_slice(&chunk.unwrap());
        }
        String::from_utf8(text).unwrap()
    }

    #[tokio::test]
    async fn sequential_requests_reuse_one_connection() {
        let (port, accepted) = upstream("hello").await;
        let pool = pool(port, Duration::from_secs(60));
        for _ in 0..5 {
            let (head, body) = pool.send(get(port)).await.unwrap();
            assert_eq!(head.status, 200);
            assert_eq!(read_all(body).await, "hello");
            assert_eq!(pool.idle_here(), 1);
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_body_dropped_unread_closes_its_connection_instead_of_pooling_it() {
        let (port, accepted) = upstream("hello").await;
        let pool = pool(port, Duration::from_secs(60));
        let (_, body) = pool.send(get(port)).await.unwrap();
        drop(body);
        assert_eq!(pool.idle_here(), 0);
        let (_, body) = pool.send(get(port)).await.unwrap();
        assert_eq!(read_all(body).await, "hello");
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn idle_connections_are_closed_after_the_idle_timeout() {
        let (port, accepted) = upstream("hello").await;
        let pool = pool(port, Duration::from_millis(200));
        let (_, body) = pool.send(get(port)).await.unwrap();
        read_all(body).await;
        assert_eq!(pool.idle_here(), 1);
        // The sweeper closes it once it has been idle 200 ms, with no request to notice.
        let mut polls = 0;
        while pool.idle_here() > 0 {
            polls += 1;
            assert!(polls < 100, "still pooled after 5 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (_, body) = pool.send(get(port)).await.unwrap();
        read_all(body).await;
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_address_that_swallows_the_connection_leaves_time_for_the_next() {
        // A listener whose accept queue is full: the kernel drops further SYNs, so a connect
        // hangs as on a dead route.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let swallowing = socket.listen(1).unwrap();
        let dead = swallowing.local_addr().unwrap();
        let mut held = Vec::new();
        let mut hangs = false;
        for _ in 0..8 {
            match tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(dead)).await {
                Ok(Ok(stream)) => held.push(stream),
                _ => {
                    hangs = true;
                    break;
                }
            }
        }
        assert!(hangs, "the accept queue never filled");
        let good = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let live = good.local_addr().unwrap();

        let started = std::time::Instant::now();
        let stream = connect_any(&[dead, live], Instant::now() + Duration::from_secs(4))
            .await
            .unwrap_or_else(|e| panic!("{}", e.describe()));

        assert_eq!(stream.peer_addr().unwrap(), live);
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "within the limit"
        );
        // Alone, the dead address fails at the deadline as a timeout.
        let alone = connect_any(&[dead], Instant::now() + Duration::from_millis(300)).await;
        assert!(matches!(alone, Err(SendError::ConnectTimeout)));
    }

    #[tokio::test]
    async fn an_answer_without_a_body_frees_its_connection_unread() {
        let (port, accepted) = answering("HTTP/1.1 204 No Content\r\n\r\n".to_owned()).await;
        let pool = pool(port, Duration::from_secs(60));
        for _ in 0..3 {
            let (head, _unread) = pool.send(get(port)).await.unwrap();
            assert_eq!(head.status, 204);
        }
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_upstream_that_closes_after_answering_leaves_nothing_pooled() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buf = vec![0; 4096];
                let _ = socket.read(&mut buf).await;
                let _ = socket
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
                    )
                    .await;
            }
        });
        let pool = pool(port, Duration::from_secs(60));
        for _ in 0..3 {
            let (_, body) = pool.send(get(port)).await.unwrap();
            assert_eq!(read_all(body).await, "ok");
            assert_eq!(pool.idle_here(), 0);
        }
    }
}
