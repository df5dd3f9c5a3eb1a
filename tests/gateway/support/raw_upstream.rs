//! A scripted upstream for what neither wiremock nor the paced server can do: answer with any
//! bytes at any pace, never answer, hold a connection open, and report what happened.

use std::future::Future;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::net::read_request;

/// What the scripted upstream observed, in order.
#[derive(Debug, PartialEq, Eq)]
pub enum Saw {
    /// A request (head and body), as received.
    Request(String),
    /// The gateway closed the connection while the upstream was waiting on it.
    Closed,
}

/// A running scripted upstream.
pub struct RawUpstream {
    /// `http://127.0.0.1:port/v1`.
    pub base_url: String,
    seen: mpsc::Receiver<Saw>,
}

impl RawUpstream {
    /// Serves every connection with `script`, which gets the socket after the request was read
    /// (and reported).
    pub async fn start<F, Fut>(script: F) -> RawUpstream
    where
        F: Fn(TcpStream, mpsc::Sender<Saw>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base_url = format!("http://{}/v1", listener.local_addr().expect("addr"));
        let (tx, seen) = mpsc::channel(64);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let tx = tx.clone();
                let request = read_request(&mut socket).await;
                let _ = tx
                    .send(Saw::Request(String::from_utf8_lossy(&request).into_owned()))
                    .await;
                tokio::spawn(script(socket, tx));
            }
        });
        RawUpstream { base_url, seen }
    }

    /// The next observation, waiting at most 10 s.
    pub async fn next(&mut self) -> Saw {
        tokio::time::timeout(Duration::from_secs(10), self.seen.recv())
            .await
            .expect("the upstream saw something within 10 s")
            .expect("upstream running")
    }
}

/// A script: never answer; report when the gateway closes the connection (bounded: 60 s).
pub async fn never_answer(mut socket: TcpStream, seen: mpsc::Sender<Saw>) {
    let mut buf = [0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(60), socket.read(&mut buf)).await;
    if matches!(read, Ok(Ok(0) | Err(_))) {
        let _ = seen.send(Saw::Closed).await;
    }
}

/// Writes `bytes`, then keeps the connection open until the gateway closes it (bounded: 60 s).
pub async fn write_then_hold(mut socket: TcpStream, bytes: &[u8]) {
    if socket.write_all(bytes).await.is_err() {
        return;
    }
    let mut buf = [0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_secs(60), socket.read(&mut buf)).await;
}
