//! Loopback plumbing shared by the tests and their in-test servers: a free port, and one reader
//! of raw HTTP/1.1 requests.

use std::net::TcpListener;

use tokio::io::AsyncReadExt;

/// A loopback port that nothing listens on once this returns: free for a server the test starts
/// (redis-server, PostgreSQL), and refused to a client (an upstream that is down).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Reads one HTTP/1.1 request (head and `content-length` body) from `socket`: its raw bytes, or
/// what came before the connection closed.
pub async fn read_request(socket: &mut tokio::net::TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    while let Ok(n) = socket.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + length {
                break;
            }
        }
    }
    buf
}

/// A request's path, headers (names lowercase) and body.
pub type Request = (String, Vec<(String, String)>, Vec<u8>);

/// The parts of a whole request read by `read_request`; `None` when it is incomplete.
pub fn parse_request(raw: &[u8]) -> Option<Request> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    let mut lines = head.split("\r\n");
    let path = lines.next()?.split(' ').nth(1)?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let body = raw.get(end + 4..end + 4 + length)?.to_vec();
    Some((path, headers, body))
}
