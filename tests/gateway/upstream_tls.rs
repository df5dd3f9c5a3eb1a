//! HTTPS upstreams: the real `switchyard serve` binary trusting a private CA the way a Linux
//! operator makes any rustls/OpenSSL program trust one (`SSL_CERT_FILE`), chat relayed over
//! HTTP/2 and HTTP/1.1 as ALPN chooses, and an upstream whose certificate nobody vouches for
//! refused before any request goes to it.

use serde_json::{Value, json};

use crate::serve_cli::serve_with_env;
use crate::support::test_ca::{make_ca, self_signed};
use crate::support::tls_upstream::{ANSWER, TlsUpstream};

fn chat(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "over tls"}]})
}

async fn post(base: &str, body: &Value) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(format!("{base}/v1/chat/completions"))
        .json(body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// Both chat shapes through `model`'s HTTPS backend: answered 200 with the upstream's content,
/// which saw each request on `/v1/chat/completions` over `version`.
async fn chats_over(base: &str, model: &str, upstream: &mut TlsUpstream, version: hyper::Version) {
    let (status, body) = post(base, &chat(model, false)).await;
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["choices"][0]["message"]["content"], ANSWER, "{body}");
    let seen = upstream.next().await;
    assert_eq!(
        (seen.version, seen.path.as_str()),
        (version, "/v1/chat/completions")
    );
    assert!(seen.body.contains("over tls"), "{}", seen.body);

    let (status, body) = post(base, &chat(model, true)).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(ANSWER) && body.ends_with("data: [DONE]\n\n"),
        "{body}"
    );
    assert_eq!(upstream.next().await.version, version);
}

#[tokio::test]
async fn https_upstreams_signed_by_a_trusted_ca_serve_chat_and_others_are_refused() {
    // Arrange: a private CA trusted through SSL_CERT_FILE; two upstreams with certificates it
    // signed (one offering HTTP/2 and HTTP/1.1, one HTTP/1.1 only), and one self-signed.
    let dir = tempfile::tempdir().unwrap();
    let ca = make_ca("upstreams");
    let ca_file = dir.path().join("private-ca.pem");
    std::fs::write(&ca_file, &ca.ca_pem).unwrap();
    let mut h2 = TlsUpstream::start(&ca.cert_pem, &ca.key_pem, true).await;
    let mut h1 = TlsUpstream::start(&ca.cert_pem, &ca.key_pem, false).await;
    let (cert, key) = self_signed();
    let mut untrusted = TlsUpstream::start(&cert, &key, true).await;
    let mut routes = String::new();
    for (name, port) in [
        ("h2", h2.port),
        ("h1", h1.port),
        ("untrusted", untrusted.port),
    ] {
        routes.push_str(&format!(
            "[backends.{name}]\nkind = \"openai\"\nbase_url = \"https://localhost:{port}/v1\"\n\
             [[routes]]\nprefix = \"{name}/\"\nbackend = \"{name}\"\n"
        ));
    }
    let served = serve_with_env(&routes, &[("SSL_CERT_FILE", ca_file.to_str().unwrap())]).await;

    // Act + Assert: chat over each protocol ALPN chose.
    chats_over(&served.base, "h2/m", &mut h2, hyper::Version::HTTP_2).await;
    chats_over(&served.base, "h1/m", &mut h1, hyper::Version::HTTP_11).await;

    // Act + Assert: the self-signed upstream is a 502 in OpenAI's shape, saying why, and it
    // never got a request (so never answered one).
    for stream in [false, true] {
        let (status, body) = post(&served.base, &chat("untrusted/m", stream)).await;
        assert_eq!(status, 502, "{body}");
        assert!(!body.contains(ANSWER), "{body}");
        let error: Value = serde_json::from_str(&body).unwrap();
        let error = &error["error"];
        for field in ["message", "type", "param", "code"] {
            assert!(error.get(field).is_some(), "no `{field}`: {body}");
        }
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .to_ascii_lowercase()
                .contains("certificate"),
            "{body}"
        );
    }
    assert!(
        !untrusted.answered_any(),
        "the untrusted upstream was sent a request"
    );
}
