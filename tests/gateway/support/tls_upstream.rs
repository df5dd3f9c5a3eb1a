//! An HTTPS upstream speaking the OpenAI chat API: rustls with a given certificate, HTTP/2 or
//! HTTP/1.1 as ALPN negotiates (hyper), reporting each request it answers.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// The reply's content, recognisable in what the gateway relays.
pub const ANSWER: &str = "answered over TLS";

/// A request the upstream answered: the HTTP version used, its path and body.
#[derive(Debug)]
pub struct Answered {
    pub version: hyper::Version,
    pub path: String,
    pub body: String,
}

/// A running HTTPS upstream.
pub struct TlsUpstream {
    /// The port it listens on, on 127.0.0.1.
    pub port: u16,
    answered: mpsc::UnboundedReceiver<Answered>,
}

impl TlsUpstream {
    /// Serves with the PEM certificate chain `cert_pem` and key `key_pem`, offering HTTP/2 and
    /// HTTP/1.1 by ALPN, or HTTP/1.1 only unless `h2`.
    pub async fn start(cert_pem: &str, key_pem: &str, h2: bool) -> TlsUpstream {
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(cert_pem.as_bytes())
                .collect::<Result<_, _>>()
                .unwrap();
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        if h2 {
            config.alpn_protocols.insert(0, b"h2".to_vec());
        }
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, answered) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(serve_connection(acceptor.clone(), socket, tx.clone()));
            }
        });
        TlsUpstream { port, answered }
    }

    /// The next request answered, waiting at most 10 s.
    pub async fn next(&mut self) -> Answered {
        tokio::time::timeout(Duration::from_secs(10), self.answered.recv())
            .await
            .expect("the upstream answered a request within 10 s")
            .expect("upstream running")
    }

    /// Whether a request was answered (without waiting).
    pub fn answered_any(&mut self) -> bool {
        self.answered.try_recv().is_ok()
    }
}

/// One connection: the handshake (a client refusing the certificate ends it), then HTTP/2 or
/// HTTP/1.1 as ALPN chose.
async fn serve_connection(
    acceptor: tokio_rustls::TlsAcceptor,
    socket: tokio::net::TcpStream,
    tx: mpsc::UnboundedSender<Answered>,
) {
    let Ok(tls) = acceptor.accept(socket).await else {
        return;
    };
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let service = hyper::service::service_fn(move |request| answer(request, tx.clone()));
    let io = TokioIo::new(tls);
    let _ = if h2 {
        hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(io, service)
            .await
    } else {
        hyper::server::conn::http1::Builder::new()
            .serve_connection(io, service)
            .await
    };
}

/// A chat completion, as one JSON body or (when the request asks to stream) as SSE.
async fn answer(
    request: Request<hyper::body::Incoming>,
    tx: mpsc::UnboundedSender<Answered>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let version = request.version();
    let path = request.uri().path().to_owned();
    let body = match request.into_body().collect().await {
        Ok(collected) => String::from_utf8_lossy(&collected.to_bytes()).into_owned(),
        Err(_) => String::new(),
    };
    let stream = body.replace(' ', "").contains("\"stream\":true");
    let _ = tx.send(Answered {
        version,
        path,
        body,
    });
    let (content_type, text) = if stream {
        let chunk = serde_json::json!({"id":"c1","object":"chat.completion.chunk","created":1,"model":"m",
            "choices":[{"index":0,"delta":{"content":ANSWER},"finish_reason":null}]});
        (
            "text/event-stream",
            format!("data: {chunk}\n\ndata: [DONE]\n\n"),
        )
    } else {
        let whole = serde_json::json!({"id":"c1","object":"chat.completion","created":1,"model":"m",
            "choices":[{"index":0,"message":{"role":"assistant","content":ANSWER},"finish_reason":"stop"}]});
        ("application/json", whole.to_string())
    };
    Ok(Response::builder()
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(text)))
        .unwrap())
}
