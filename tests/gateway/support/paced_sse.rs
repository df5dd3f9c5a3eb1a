//! A tiny upstream that writes SSE events one at a time, under the test's control.
//!
//! wiremock holds a whole response body, so it cannot show that the gateway relays an event
//! before the upstream has sent the next one. This server writes event N only when the test
//! releases it, records the request it received, and reports when the client has gone away.

use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::net::read_request;

/// Handle to a running paced server (one connection).
pub struct PacedSse {
    /// `http://127.0.0.1:port/v1`.
    pub base_url: String,
    release: mpsc::Sender<()>,
    /// What the server saw: the request, each event written, the client leaving.
    pub log: mpsc::Receiver<Seen>,
}

/// Something the paced server observed.
#[derive(Debug, PartialEq, Eq)]
pub enum Seen {
    /// The raw request (head and body).
    Request(Vec<u8>),
    /// Event i was written.
    Wrote(usize),
    /// A write failed: the gateway closed the upstream connection.
    ClientGone,
    /// All events written and the connection closed normally.
    Finished,
}

impl PacedSse {
    /// Starts a server that will send `events` (each a complete `data: …\n\n` frame, or any
    /// bytes) on the first connection, each after one `release()`; after the last it closes.
    /// With `keep_writing`, once events run out it keeps writing keep-alive comments every
    /// 20 ms until a write fails (to observe cancellation).
    pub async fn start(events: Vec<Vec<u8>>, keep_writing: bool) -> PacedSse {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base_url = format!("http://{}/v1", listener.local_addr().expect("addr"));
        let (release, mut released) = mpsc::channel::<()>(64);
        let (log_tx, log) = mpsc::channel::<Seen>(256);
        tokio::spawn(async move {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let request = read_request(&mut socket).await;
            let _ = log_tx.send(Seen::Request(request)).await;
            let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\nx-upstream: paced\r\n\r\n";
            if socket.write_all(head.as_bytes()).await.is_err() {
                let _ = log_tx.send(Seen::ClientGone).await;
                return;
            }
            for (i, event) in events.iter().enumerate() {
                if released.recv().await.is_none() {
                    return;
                }
                if socket.write_all(event).await.is_err() || socket.flush().await.is_err() {
                    let _ = log_tx.send(Seen::ClientGone).await;
                    return;
                }
                let _ = log_tx.send(Seen::Wrote(i)).await;
            }
            if keep_writing {
                // Bounded: 500 × 20 ms = 10 s at most.
                for _ in 0..500 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    if socket.write_all(b": keep-alive\n\n").await.is_err()
                        || socket.flush().await.is_err()
                    {
                        let _ = log_tx.send(Seen::ClientGone).await;
                        return;
                    }
                }
            }
            let _ = socket.shutdown().await;
            let _ = log_tx.send(Seen::Finished).await;
        });
        PacedSse {
            base_url,
            release,
            log,
        }
    }

    /// Lets the server write its next event.
    pub async fn release(&self) {
        self.release.send(()).await.expect("paced server alive");
    }

    /// Lets the server write all remaining events.
    pub async fn release_all(&self, n: usize) {
        for _ in 0..n {
            self.release().await;
        }
    }

    /// The next thing the server saw, waiting at most 10 s.
    pub async fn next_seen(&mut self) -> Seen {
        tokio::time::timeout(Duration::from_secs(10), self.log.recv())
            .await
            .expect("paced server reported within 10 s")
            .expect("paced server log open")
    }
}
