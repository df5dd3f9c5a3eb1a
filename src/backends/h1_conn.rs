//! One HTTP/1.1 client connection: writes a request, reads the response head, then its body
//! as the head framed it (RFC 9112 §6), with `httparse` doing the parsing.
//!
//! Why not hyper's connection: hyper decodes a chunked body's framing one byte per call, each
//! byte split off its buffer as a reference-counted `Bytes` (about 130 instructions a byte),
//! and hands every chunk to the body through a channel (its own state machine, polled again
//! for each chunk). Inference servers send each token as its own chunk: with hyper, a 20-event
//! stream cost the gateway 189k instructions, 148k without (chat: 89k, 76k). Here a chunk's
//! size line is parsed in place and its data split off the read buffer without a copy, in the
//! reader's own poll.
//!
//! Everything an upstream sends is bounded: the head's size and header count, the number of
//! informational (1xx) heads before the answer, a chunk-size line, the trailers. A response
//! that breaks the framing fails the exchange; the connection is then never reused.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The largest response head (status line and headers) taken in.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// The most headers a response head may have.
const MAX_HEADERS: usize = 128;
/// Informational heads (`100 Continue`, `103 Early Hints`) skipped before the answer, at most.
const MAX_INFORMATIONAL: usize = 8;
/// The longest chunk-size line (size and extensions).
const MAX_CHUNK_LINE: usize = 4096;
/// The largest trailer section.
const MAX_TRAILERS: usize = 16 * 1024;
/// Room made in the read buffer before a read, at first (hyper's first buffer is as large);
/// doubled, up to `MAX_READ_SPACE`, each time a read fills all the room it had.
const READ_SPACE: usize = 8 * 1024;
const MAX_READ_SPACE: usize = 64 * 1024;

/// Why an exchange or its body failed.
#[derive(Debug)]
pub enum H1Error {
    /// The connection closed before any byte of the answer: the upstream never took the
    /// request in (an idle connection it closed as the request went out). Safe to resend.
    ClosedBeforeAnswer,
    /// The connection closed or broke mid-answer.
    Io(io::Error),
    /// The connection closed before the answer was complete.
    Incomplete,
    /// The answer is not valid HTTP/1.1.
    Malformed(&'static str),
}

impl std::fmt::Display for H1Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            H1Error::ClosedBeforeAnswer => f.write_str("connection closed before an answer"),
            H1Error::Io(err) => write!(f, "connection error: {err}"),
            H1Error::Incomplete => f.write_str("connection closed before the answer completed"),
            H1Error::Malformed(what) => write!(f, "invalid HTTP answer: {what}"),
        }
    }
}

impl std::error::Error for H1Error {}

/// How the body of an answer ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// No body (`HEAD`, 1xx, 204, 304), or the body has ended.
    Ended,
    /// `content-length`: this many bytes left.
    Length(u64),
    /// `transfer-encoding: chunked`, at this point of a chunk.
    Chunked(Chunk),
    /// Neither: the body runs until the upstream closes the connection.
    UntilClose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// After a chunk's data, before its CRLF.
    DataEnd,
    /// After the last (zero-size) chunk: trailers, then an empty line.
    Trailers,
}

/// An open connection to an upstream and its read buffer.
#[derive(Debug)]
pub struct H1Conn {
    io: TcpStream,
    buf: BytesMut,
    read_space: usize,
}

/// The body of the answer being read on a connection.
#[derive(Debug)]
pub struct BodyReader {
    framing: Framing,
    /// Whether the connection may carry another request once the body has ended.
    keep_alive: bool,
}

impl H1Conn {
    pub fn new(io: TcpStream) -> Self {
        H1Conn {
            io,
            buf: BytesMut::new(),
            read_space: READ_SPACE,
        }
    }

    /// Whether an idle connection can take a request: the upstream has neither closed it nor
    /// sent anything meanwhile. Reads without waiting (and without a system call when the
    /// socket has not become readable since the last read).
    pub fn is_reusable(&mut self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        self.buf.is_empty() && matches!(self.poll_read(&mut cx), Poll::Pending)
    }

    /// Sends `request` (its head and body serialized by `write_request`) and reads the answer's
    /// head, skipping informational ones. `bodiless` says the request was `HEAD`: its answer
    /// has no body whatever its headers say.
    pub async fn exchange(
        &mut self,
        request: Bytes,
        body: Bytes,
        bodiless: bool,
    ) -> Result<(http::response::Parts, BodyReader), H1Error> {
        let mut out = request.chain(body);
        if let Err(err) = self.io.write_all_buf(&mut out).await {
            return Err(if is_closed(&err) {
                H1Error::ClosedBeforeAnswer
            } else {
                H1Error::Io(err)
            });
        }
        let mut received_any = false;
        for _ in 0..=MAX_INFORMATIONAL {
            let (head, framing) = loop {
                if let Some(parsed) = parse_head(&mut self.buf, bodiless)? {
                    break parsed;
                }
                if self.buf.len() >= MAX_HEAD_BYTES {
                    return Err(H1Error::Malformed("response head too large"));
                }
                match std::future::poll_fn(|cx| self.poll_read(cx)).await {
                    Ok(0) if received_any => return Err(H1Error::Incomplete),
                    Ok(0) => return Err(H1Error::ClosedBeforeAnswer),
                    Ok(_) => received_any = true,
                    Err(err) if !received_any && is_closed(&err) => {
                        return Err(H1Error::ClosedBeforeAnswer);
                    }
                    Err(err) => return Err(H1Error::Io(err)),
                }
            };
            if head.status.is_informational() {
                if head.status == http::StatusCode::SWITCHING_PROTOCOLS {
                    return Err(H1Error::Malformed("an unasked-for protocol switch"));
                }
                continue;
            }
            // A length beside `transfer-encoding` may have been meant for something between
            // us and the upstream: the connection is not trusted with another request.
            let both = head.headers.contains_key(http::header::TRANSFER_ENCODING)
                && head.headers.contains_key(http::header::CONTENT_LENGTH);
            let keep_alive = keeps_alive(&head) && framing != Framing::UntilClose && !both;
            return Ok((
                head,
                BodyReader {
                    framing,
                    keep_alive,
                },
            ));
        }
        Err(H1Error::Malformed("too many informational answers"))
    }

    /// The next piece of the body: `None` at its end (then `reader.reusable` says whether the
    /// connection may serve another request). Each chunk's data is split off the read buffer,
    /// not copied.
    pub fn poll_body(
        &mut self,
        reader: &mut BodyReader,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, H1Error>>> {
        loop {
            match decode(&mut self.buf, &mut reader.framing) {
                Err(err) => {
                    reader.keep_alive = false;
                    return Poll::Ready(Some(Err(err)));
                }
                Ok(Some(data)) => return Poll::Ready(Some(Ok(data))),
                Ok(None) if reader.framing == Framing::Ended => return Poll::Ready(None),
                Ok(None) => {}
            }
            match ready!(self.poll_read(cx)) {
                Ok(0) if reader.framing == Framing::UntilClose => {
                    reader.framing = Framing::Ended;
                    reader.keep_alive = false;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    reader.keep_alive = false;
                    return Poll::Ready(Some(Err(H1Error::Incomplete)));
                }
                Ok(_) => {}
                Err(err) => {
                    reader.keep_alive = false;
                    return Poll::Ready(Some(Err(H1Error::Io(err))));
                }
            }
        }
    }

    /// Reads what the socket has into the buffer.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.buf.capacity() - self.buf.len() < self.read_space / 4 {
            self.buf.reserve(self.read_space);
        }
        let room = self.buf.capacity() - self.buf.len();
        let read = ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut self.io),
            cx,
            &mut self.buf
        ));
        if read.as_ref().is_ok_and(|&n| n == room) {
            self.read_space = (self.read_space * 2).min(MAX_READ_SPACE);
        }
        Poll::Ready(read)
    }
}

impl BodyReader {
    /// Whether the body has ended and the connection can carry another request: the upstream
    /// did not ask to close it and sent nothing past the answer.
    pub fn reusable(&self, conn: &H1Conn) -> bool {
        self.framing == Framing::Ended && self.keep_alive && conn.buf.is_empty()
    }
}

/// The request head: request line, `headers` (minus any framing header, which is written
/// here from `body_len`), blank line.
pub fn write_request(
    method: &http::Method,
    target: &str,
    headers: &http::HeaderMap,
    body_len: usize,
) -> Bytes {
    let mut head = BytesMut::with_capacity(256 + headers.len() * 48);
    head.extend_from_slice(method.as_str().as_bytes());
    head.extend_from_slice(b" ");
    head.extend_from_slice(target.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        if name == http::header::CONTENT_LENGTH || name == http::header::TRANSFER_ENCODING {
            continue;
        }
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    let expects_body = matches!(
        *method,
        http::Method::POST | http::Method::PUT | http::Method::PATCH
    );
    if body_len > 0 || expects_body {
        head.extend_from_slice(b"content-length: ");
        head.extend_from_slice(itoa::Buffer::new().format(body_len).as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head.freeze()
}

/// A complete response head at the start of `buf`, taken out of it, with its body's framing;
/// `None` while the head is incomplete.
fn parse_head(
    buf: &mut BytesMut,
    bodiless: bool,
) -> Result<Option<(http::response::Parts, Framing)>, H1Error> {
    // Before the first read: not worth filling the header slots (4 KiB) to learn that.
    if buf.is_empty() {
        return Ok(None);
    }
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut slots);
    let used = match response.parse(buf) {
        Ok(httparse::Status::Complete(used)) => used,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(H1Error::Malformed("too many response headers"));
        }
        Err(_) => return Err(H1Error::Malformed("not an HTTP/1 response head")),
    };
    let status = response
        .code
        .and_then(|code| http::StatusCode::from_u16(code).ok())
        .ok_or(H1Error::Malformed("invalid status code"))?;
    let mut parts = http::Response::new(()).into_parts().0;
    parts.status = status;
    parts.version = match response.version {
        Some(0) => http::Version::HTTP_10,
        _ => http::Version::HTTP_11,
    };
    parts.headers.reserve(response.headers.len());
    for header in response.headers.iter() {
        let name = http::HeaderName::from_bytes(header.name.as_bytes())
            .map_err(|_| H1Error::Malformed("invalid header name"))?;
        let value = http::HeaderValue::from_bytes(header.value)
            .map_err(|_| H1Error::Malformed("invalid header value"))?;
        parts.headers.append(name, value);
    }
    buf.advance(used);
    let framing = framing(&parts, bodiless)?;
    Ok(Some((parts, framing)))
}

/// How the body of the answer `head` ends (RFC 9112 §6.3).
fn framing(head: &http::response::Parts, bodiless: bool) -> Result<Framing, H1Error> {
    let status = head.status;
    if bodiless
        || status.is_informational()
        || status == http::StatusCode::NO_CONTENT
        || status == http::StatusCode::NOT_MODIFIED
    {
        return Ok(Framing::Ended);
    }
    let mut codings = head
        .headers
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .peekable();
    if codings.peek().is_some() {
        // Chunked only when it is the last coding; otherwise the body runs to the close.
        let last = codings
            .last()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .map(str::trim);
        return Ok(match last {
            Some(coding) if coding.eq_ignore_ascii_case("chunked") => Framing::Chunked(Chunk::Size),
            _ => Framing::UntilClose,
        });
    }
    let mut length = None;
    for value in head.headers.get_all(http::header::CONTENT_LENGTH) {
        let text = value
            .to_str()
            .map_err(|_| H1Error::Malformed("invalid content-length"))?;
        for item in text.split(',') {
            let item = item.trim();
            if item.is_empty() || !item.bytes().all(|b| b.is_ascii_digit()) {
                return Err(H1Error::Malformed("invalid content-length"));
            }
            let n: u64 = item
                .parse()
                .map_err(|_| H1Error::Malformed("invalid content-length"))?;
            if length.is_some_and(|seen| seen != n) {
                return Err(H1Error::Malformed("conflicting content-length values"));
            }
            length = Some(n);
        }
    }
    Ok(match length {
        Some(0) => Framing::Ended,
        Some(n) => Framing::Length(n),
        None => Framing::UntilClose,
    })
}

/// Whether the connection stays open after this answer: HTTP/1.1 without `connection: close`.
fn keeps_alive(head: &http::response::Parts) -> bool {
    head.version == http::Version::HTTP_11
        && !head
            .headers
            .get_all(http::header::CONNECTION)
            .iter()
            .any(|v| {
                v.to_str().is_ok_and(|v| {
                    v.split(',')
                        .any(|token| token.trim().eq_ignore_ascii_case("close"))
                })
            })
}

/// Takes the next body data out of `buf`, advancing `framing` over the framing bytes it
/// consumes: `Some(data)`, or `None` when more bytes are needed (or the body has ended:
/// `framing` is then `Ended`).
fn decode(buf: &mut BytesMut, framing: &mut Framing) -> Result<Option<Bytes>, H1Error> {
    loop {
        match *framing {
            Framing::Ended => return Ok(None),
            Framing::UntilClose => {
                return Ok((!buf.is_empty()).then(|| buf.split().freeze()));
            }
            Framing::Length(left) | Framing::Chunked(Chunk::Data(left)) => {
                if buf.is_empty() {
                    return Ok(None);
                }
                let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                let rest = left - n as u64;
                *framing = match *framing {
                    Framing::Length(_) if rest == 0 => Framing::Ended,
                    Framing::Length(_) => Framing::Length(rest),
                    _ if rest == 0 => Framing::Chunked(Chunk::DataEnd),
                    _ => Framing::Chunked(Chunk::Data(rest)),
                };
                return Ok(Some(buf.split_to(n).freeze()));
            }
            Framing::Chunked(Chunk::Size) => match httparse::parse_chunk_size(buf) {
                Ok(httparse::Status::Complete((used, size))) => {
                    buf.advance(used);
                    *framing = Framing::Chunked(if size == 0 {
                        Chunk::Trailers
                    } else {
                        Chunk::Data(size)
                    });
                }
                Ok(httparse::Status::Partial) if buf.len() > MAX_CHUNK_LINE => {
                    return Err(H1Error::Malformed("chunk-size line too long"));
                }
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(_) => return Err(H1Error::Malformed("invalid chunk size")),
            },
            Framing::Chunked(Chunk::DataEnd) => {
                if buf.len() < 2 {
                    return Ok(None);
                }
                if &buf[..2] != b"\r\n" {
                    return Err(H1Error::Malformed("chunk data longer than its size"));
                }
                buf.advance(2);
                *framing = Framing::Chunked(Chunk::Size);
            }
            Framing::Chunked(Chunk::Trailers) => {
                // No trailers: the empty line alone. Otherwise they run to an empty line; the
                // client gets none of them, as through any other transport.
                let end = if buf.starts_with(b"\r\n") {
                    Some(2)
                } else {
                    memchr::memmem::find(buf, b"\r\n\r\n").map(|at| at + 4)
                };
                match end {
                    Some(end) => {
                        buf.advance(end);
                        *framing = Framing::Ended;
                    }
                    None if buf.len() > MAX_TRAILERS => {
                        return Err(H1Error::Malformed("trailers too large"));
                    }
                    None => return Ok(None),
                }
            }
        }
    }
}

/// Whether a write or read failed because the upstream had closed the connection.
fn is_closed(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
    )
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    use super::*;

    /// The body `framing` frames in `wire`, fed in pieces of `piece` bytes; `Err` on a framing
    /// error, and what is left after the body.
    fn decode_in_pieces(
        wire: &[u8],
        mut framing: Framing,
        piece: usize,
    ) -> Result<(Vec<u8>, Vec<u8>), H1Error> {
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        for part in wire.chunks(piece.max(1)) {
            buf.extend_from_slice(part);
            while let Some(data) = decode(&mut buf, &mut framing)? {
                body.extend_from_slice(&data);
            }
        }
        if framing != Framing::Ended {
            return Err(H1Error::Incomplete);
        }
        Ok((body, buf.to_vec()))
    }

    fn chunked(body: &[u8], sizes: &[usize]) -> Vec<u8> {
        let mut wire = Vec::new();
        let mut rest = body;
        let mut sizes = sizes.iter().cycle();
        while !rest.is_empty() {
            let n = (*sizes.next().unwrap()).clamp(1, rest.len());
            wire.extend_from_slice(format!("{n:x}\r\n").as_bytes());
            wire.extend_from_slice(&rest[..n]);
            wire.extend_from_slice(b"\r\n");
            rest = &rest[n..];
        }
        wire.extend_from_slice(b"0\r\n\r\n");
        wire
    }

    const CHUNKED: Framing = Framing::Chunked(Chunk::Size);

    proptest! {
        #[test]
        fn a_chunked_body_decodes_whole_however_the_reads_split_it(
            body in proptest::collection::vec(any::<u8>(), 0..600),
            sizes in proptest::collection::vec(1usize..80, 1..6),
            piece in 1usize..64,
        ) {
            let mut wire = chunked(&body, &sizes);
            wire.extend_from_slice(b"HTTP/1.1");
            let (decoded, left) = decode_in_pieces(&wire, CHUNKED, piece).unwrap();
            prop_assert_eq!(decoded, body);
            prop_assert_eq!(left, b"HTTP/1.1".to_vec());
        }

        #[test]
        fn a_length_framed_body_stops_at_its_length(
            body in proptest::collection::vec(any::<u8>(), 1..300),
            piece in 1usize..64,
        ) {
            let mut wire = body.clone();
            wire.extend_from_slice(b"extra");
            let framing = Framing::Length(body.len() as u64);
            let (decoded, left) = decode_in_pieces(&wire, framing, piece).unwrap();
            prop_assert_eq!(decoded, body);
            prop_assert_eq!(left, b"extra".to_vec());
        }
    }

    #[test]
    fn chunk_extensions_and_trailers_are_read_past() {
        let wire = b"3;name=value\r\nabc\r\n2 ; x\r\nde\r\n0\r\nx-checksum: 1\r\nx-b: 2\r\n\r\n";
        let (body, left) = decode_in_pieces(wire, CHUNKED, 5).unwrap();
        assert_eq!(body, b"abcde");
        assert!(left.is_empty());
    }

    #[test]
    fn broken_chunk_framing_is_an_error_not_data() {
        let cases: &[&[u8]] = &[
            b"zz\r\nabc\r\n0\r\n\r\n",
            // More data than the size said.
            b"2\r\nabc\r\n0\r\n\r\n",
            // A size past what 64 bits hold.
            b"fffffffffffffffff\r\n",
        ];
        for wire in cases {
            assert!(
                matches!(
                    decode_in_pieces(wire, CHUNKED, 64),
                    Err(H1Error::Malformed(_))
                ),
                "{}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn an_endless_chunk_size_line_or_trailer_section_is_refused_at_its_bound() {
        let mut line = b"1;".to_vec();
        line.resize(MAX_CHUNK_LINE + 10, b'x');
        assert!(matches!(
            decode_in_pieces(&line, CHUNKED, 512),
            Err(H1Error::Malformed("chunk-size line too long"))
        ));
        let mut trailers = b"0\r\nx-a: ".to_vec();
        trailers.resize(MAX_TRAILERS + 10, b'a');
        assert!(matches!(
            decode_in_pieces(&trailers, CHUNKED, 512),
            Err(H1Error::Malformed("trailers too large"))
        ));
    }

    fn head(text: &str) -> Result<Option<(http::response::Parts, Framing)>, H1Error> {
        parse_head(&mut BytesMut::from(text.as_bytes()), false)
    }

    fn framing_of(text: &str) -> Framing {
        head(text).unwrap().unwrap().1
    }

    #[test]
    fn the_head_says_how_the_body_ends() {
        assert_eq!(
            framing_of("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"),
            Framing::Length(5)
        );
        assert_eq!(
            framing_of("HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\n"),
            Framing::Length(5)
        );
        assert_eq!(
            framing_of("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"),
            Framing::Ended
        );
        assert_eq!(
            framing_of(
                "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, Chunked\r\ncontent-length: 9\r\n\r\n"
            ),
            CHUNKED
        );
        assert_eq!(
            framing_of("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n"),
            Framing::UntilClose
        );
        assert_eq!(framing_of("HTTP/1.1 200 OK\r\n\r\n"), Framing::UntilClose);
        assert_eq!(
            framing_of("HTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n"),
            Framing::Ended
        );
        let (_, bodiless) = parse_head(
            &mut BytesMut::from(&b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"[..]),
            true,
        )
        .unwrap()
        .unwrap();
        assert_eq!(bodiless, Framing::Ended);
        assert!(
            head("HTTP/1.1 200 OK\r\ncontent-length: 5")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_head_that_lies_about_its_length_or_breaks_http_is_refused() {
        for text in [
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999999\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: +5\r\n\r\n",
            "SSH-2.0-OpenSSH_9.2\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
        ] {
            assert!(matches!(head(text), Err(H1Error::Malformed(_))), "{text:?}");
        }
        let many: String = (0..=MAX_HEADERS).map(|i| format!("x-{i}: 1\r\n")).collect();
        assert!(matches!(
            head(&format!("HTTP/1.1 200 OK\r\n{many}\r\n")),
            Err(H1Error::Malformed("too many response headers"))
        ));
    }

    #[test]
    fn the_request_head_carries_its_own_length_not_the_clients() {
        let mut headers = http::HeaderMap::new();
        headers.insert("host", http::HeaderValue::from_static("up:8000"));
        headers.insert("content-length", http::HeaderValue::from_static("999"));
        headers.insert(
            "transfer-encoding",
            http::HeaderValue::from_static("chunked"),
        );
        let head = write_request(
            &http::Method::POST,
            "/v1/chat/completions?a=1",
            &headers,
            12,
        );
        assert_eq!(
            head,
            "POST /v1/chat/completions?a=1 HTTP/1.1\r\nhost: up:8000\r\ncontent-length: 12\r\n\r\n"
        );
        let get = write_request(&http::Method::GET, "/v1/models", &http::HeaderMap::new(), 0);
        assert_eq!(get, "GET /v1/models HTTP/1.1\r\n\r\n");
    }

    /// An upstream that reads one request, then writes `answer` and closes.
    async fn answering(answer: &'static [u8]) -> TcpStream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = vec![0; 4096];
            let _ = socket.read(&mut buf).await;
            let _ = socket.write_all(answer).await;
        });
        TcpStream::connect(addr).await.unwrap()
    }

    async fn exchange_with(
        answer: &'static [u8],
    ) -> (Result<(http::response::Parts, BodyReader), H1Error>, H1Conn) {
        let mut conn = H1Conn::new(answering(answer).await);
        let head = write_request(&http::Method::GET, "/", &http::HeaderMap::new(), 0);
        let result = conn.exchange(head, Bytes::new(), false).await;
        (result, conn)
    }

    async fn body_of(conn: &mut H1Conn, reader: &mut BodyReader) -> Result<Vec<u8>, H1Error> {
        let mut body = Vec::new();
        while let Some(data) = std::future::poll_fn(|cx| conn.poll_body(reader, cx)).await {
            body.extend_from_slice(&data?);
        }
        Ok(body)
    }

    #[tokio::test]
    async fn informational_heads_are_skipped_and_the_answer_read() {
        let (result, mut conn) = exchange_with(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        )
        .await;
        let (head, mut reader) = result.unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(body_of(&mut conn, &mut reader).await.unwrap(), b"ok");
        assert!(reader.reusable(&conn));
    }

    #[tokio::test]
    async fn a_close_before_any_answer_is_told_apart_from_one_mid_answer() {
        let (before, _) = exchange_with(b"").await;
        assert!(
            matches!(before, Err(H1Error::ClosedBeforeAnswer)),
            "{before:?}"
        );
        let (mid_head, _) = exchange_with(b"HTTP/1.1 200 OK\r\ncontent-").await;
        assert!(matches!(mid_head, Err(H1Error::Incomplete)), "{mid_head:?}");
        let (result, mut conn) =
            exchange_with(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort").await;
        let (_, mut reader) = result.unwrap();
        assert!(matches!(
            body_of(&mut conn, &mut reader).await,
            Err(H1Error::Incomplete)
        ));
        assert!(!reader.reusable(&conn));
    }

    #[tokio::test]
    async fn a_body_without_length_runs_to_the_close_and_leaves_nothing_reusable() {
        let (result, mut conn) =
            exchange_with(b"HTTP/1.1 200 OK\r\n\r\neverything until close").await;
        let (_, mut reader) = result.unwrap();
        assert_eq!(
            body_of(&mut conn, &mut reader).await.unwrap(),
            b"everything until close"
        );
        assert!(!reader.reusable(&conn));
    }

    #[tokio::test]
    async fn an_answer_asking_to_close_or_framed_twice_is_not_reused() {
        for answer in [
            &b"HTTP/1.1 200 OK\r\nconnection: keep-alive, close\r\ncontent-length: 2\r\n\r\nok"[..],
            b"HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 2\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        ] {
            let (result, mut conn) = exchange_with(answer).await;
            let (_, mut reader) = result.unwrap();
            assert_eq!(body_of(&mut conn, &mut reader).await.unwrap(), b"ok");
            assert!(!reader.reusable(&conn), "{}", String::from_utf8_lossy(answer));
        }
    }
}
