//! HTTP/1.1 connections to a plain `http://` upstream, pooled per thread and driven by the
//! request that uses them.
//!
//! A client that drives each connection on a task of its own (reqwest, hyper-util's pool) hands
//! every body chunk from that task to the request's through a channel, and each hand-over goes
//! back through the scheduler: the request sees one chunk, then `Pending`, so actix writes the
//! client one event at a time (a `sendto` per event, plus the wake-ups between the two tasks).
//! Here the request's own task polls the connection while it reads the body: every chunk one
//! socket read brought is decoded in one go and leaves in one write, as nginx relays what one
//! read brought. The connection then goes back to its thread's pool (each actix worker runs
//! its own runtime, so a connection is only ever used by the runtime that registered it, as
//! nginx keeps an upstream keep-alive pool per worker).
//!
//! An idle connection is not polled while it waits: a close the upstream sent meanwhile is
//! seen when it is taken (it is then dropped and another taken), and a timer on the thread's
//! runtime closes connections idle for `pool_idle_timeout`.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use http_body_util::Full;
use hyper::body::{Body as _, Incoming};
use hyper::client::conn::http1::{Builder, Connection, SendRequest};
use hyper_util::rt::TokioIo;
use thread_local::ThreadLocal;
use tokio::net::TcpStream;
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::time::Instant;

/// Boxed once per connection: hyper's connection state is some 700 bytes, moved between the
/// pool and each request's body.
type Conn = Box<Connection<TokioIo<TcpStream>, Full<Bytes>>>;

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
    Http(hyper::Error),
}

impl SendError {
    /// What went wrong, for the client's error message: never the URL.
    pub fn describe(&self) -> String {
        match self {
            SendError::ConnectTimeout => "timed out connecting".to_owned(),
            SendError::Connect(err) => format!("cannot connect: {err}"),
            SendError::Http(err) => describe(err),
        }
    }
}

/// A hyper error with its causes ("connection closed before message completed", or "error
/// reading a body from connection: Connection reset by peer").
pub fn describe(err: &hyper::Error) -> String {
    let mut message = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
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
    sender: SendRequest<Full<Bytes>>,
    conn: Conn,
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
        build: impl Fn() -> http::Request<Full<Bytes>>,
    ) -> Result<(http::response::Parts, LocalBody), SendError> {
        let first = match self.checkout() {
            Some(pooled) => (pooled.sender, pooled.conn),
            None => self.connect().await?,
        };
        match self.exchange(first, build()).await {
            Err(SendError::Http(err)) if err.is_incomplete_message() || err.is_canceled() => {
                tracing::debug!(
                    "upstream connection closed under the request; resending on a new one"
                );
                let fresh = self.connect().await?;
                self.exchange(fresh, build()).await
            }
            sent => sent,
        }
    }

    /// Sends on one connection, polling it until the response head is in.
    async fn exchange(
        self: &Arc<Self>,
        (mut sender, conn): (SendRequest<Full<Bytes>>, Conn),
        request: http::Request<Full<Bytes>>,
    ) -> Result<(http::response::Parts, LocalBody), SendError> {
        let mut conn = Some(conn);
        let mut response = std::pin::pin!(sender.send_request(request));
        // A connection that fails also fails the response, with its error: its own is moot.
        let head = poll_fn(|cx| {
            drive(&mut conn, cx);
            response.as_mut().poll(cx)
        })
        .await
        .map_err(SendError::Http)?;
        let (parts, body) = head.into_parts();
        Ok((
            parts,
            LocalBody {
                pool: Arc::downgrade(self),
                sender: Some(sender),
                conn,
                body,
                ended: false,
            },
        ))
    }

    async fn connect(&self) -> Result<(SendRequest<Full<Bytes>>, Conn), SendError> {
        let deadline = Instant::now() + self.connect_timeout;
        // The name lookup counts against the same limit.
        let stream = tokio::time::timeout_at(deadline, self.tcp(deadline))
            .await
            .map_err(|_| SendError::ConnectTimeout)??;
        // Each event is written as soon as it is ready: no Nagle delay.
        stream.set_nodelay(true).map_err(SendError::Connect)?;
        let (sender, conn) = Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(SendError::Http)?;
        Ok((sender, Box::new(conn)))
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
    fn checkout(&self) -> Option<Pooled> {
        let idle = self.idle.get()?;
        let mut idle = idle.borrow_mut();
        let now = Instant::now();
        while let Some(mut pooled) = idle.conns.pop_back() {
            if now.duration_since(pooled.since) >= self.idle_timeout {
                // Older ones are more expired still.
                idle.conns.clear();
                return None;
            }
            // One poll lets the connection take in a close (or stray bytes) that arrived while
            // it waited; nothing is left registered that matters, the next poll re-registers.
            let mut cx = Context::from_waker(Waker::noop());
            if Pin::new(&mut *pooled.conn).poll(&mut cx).is_pending() && pooled.sender.is_ready() {
                return Some(pooled);
            }
        }
        None
    }

    /// Puts a connection whose exchange ended back in this thread's pool.
    fn put(self: &Arc<Self>, sender: SendRequest<Full<Bytes>>, conn: Conn) {
        let idle = self.idle.get_or_default();
        let mut idle = idle.borrow_mut();
        if idle.conns.len() >= MAX_IDLE_PER_THREAD {
            idle.conns.pop_front();
        }
        idle.conns.push_back(Pooled {
            sender,
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

/// Polls a connection that has not ended; forgets it once it has.
fn drive(conn: &mut Option<Conn>, cx: &mut Context<'_>) {
    if let Some(c) = conn
        && Pin::new(&mut **c).poll(cx).is_ready()
    {
        *conn = None;
    }
}

/// A response body read by polling its connection in the reader's task; the connection goes
/// back to the pool when the body has ended, and is closed if the body is dropped before.
pub struct LocalBody {
    pool: Weak<H1Pool>,
    sender: Option<SendRequest<Full<Bytes>>>,
    conn: Option<Conn>,
    body: Incoming,
    ended: bool,
}

impl LocalBody {
    /// The body has been read to its end: the connection goes back to the pool if it can take
    /// another request (not if the upstream asked to close it, or it broke).
    fn finish(&mut self, cx: &mut Context<'_>) {
        self.ended = true;
        // Lets the connection see the message end and turn idle.
        drive(&mut self.conn, cx);
        if let (Some(sender), Some(conn), Some(pool)) =
            (self.sender.take(), self.conn.take(), self.pool.upgrade())
            && sender.is_ready()
        {
            pool.put(sender, conn);
        }
    }
}

impl Stream for LocalBody {
    type Item = Result<Bytes, hyper::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        loop {
            // The connection reads the socket and decodes into the body's channel, which holds
            // one chunk: polled before each chunk is taken, it decodes the next from what the
            // last read brought without another read.
            drive(&mut this.conn, cx);
            match Pin::new(&mut this.body).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) if !data.is_empty() => return Poll::Ready(Some(Ok(data))),
                    // Empty data, or trailers: nothing for the client.
                    _ => continue,
                },
                Poll::Ready(Some(Err(err))) => {
                    this.ended = true;
                    this.conn = None;
                    return Poll::Ready(Some(Err(err)));
                }
                Poll::Ready(None) => {
                    this.finish(cx);
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            }
        }
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

    fn get(port: u16) -> impl Fn() -> http::Request<Full<Bytes>> {
        move || {
            http::Request::get("/v1/x")
                .header("host", format!("127.0.0.1:{port}"))
                .body(Full::new(Bytes::new()))
                .unwrap()
        }
    }

    /// An upstream that answers every request on a connection with `body`, counting the
    /// connections it accepted.
    async fn upstream(body: &'static str) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = vec![0; 4096];
                    while let Ok(n) = socket.read(&mut buf).await {
                        if n == 0 {
                            return;
                        }
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if socket.write_all(answer.as_bytes()).await.is_err() {
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
