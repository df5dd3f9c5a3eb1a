//! `[server] tls`: HTTPS with a test CA made here (rcgen), HTTP/1.1 and HTTP/2 by ALPN, the
//! official SDK over it, and certificate files replaced while the gateway runs.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::python::run_pytest;
use crate::support::spawn_gateway_in;
use crate::support::test_ca::{TestCa, make_ca};

/// Writes the pair the way renewers do: to temporary files renamed over the served ones.
fn install(dir: &Path, ca: &TestCa) {
    for (name, text) in [("cert.pem", &ca.cert_pem), ("key.pem", &ca.key_pem)] {
        let tmp = dir.join(format!("{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, dir.join(name)).unwrap();
    }
}

/// A client trusting only `ca`, on a fresh connection pool.
fn client_trusting(ca: &TestCa, http1_only: bool) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(ca.ca_pem.as_bytes()).unwrap()])
        .timeout(Duration::from_secs(10));
    if http1_only {
        builder = builder.http1_only();
    }
    builder.build().unwrap()
}

#[tokio::test]
async fn https_serves_http1_and_http2_and_new_connections_get_a_renewed_certificate() {
    // Arrange: a gateway serving the first CA's certificate.
    let dir = tempfile::tempdir().unwrap();
    let first = make_ca("one");
    install(dir.path(), &first);
    let routes = "[server]\ntls = { cert = \"cert.pem\", key = \"key.pem\" }\n\
                  [backends.echo]\nkind = \"echo\"\n[[routes]]\nprefix = \"echo/\"\nbackend = \"echo\"\n";
    let dir_path = dir.path().to_owned();
    let gw = spawn_gateway_in(
        routes,
        std::sync::Arc::new(switchyard::auth::clock::SystemClock),
        dir,
    )
    .await;
    let base = format!("https://127.0.0.1:{}", gw.addr.port());

    // Act + Assert: both protocols by ALPN, and plain HTTP is not served.
    let h2 = client_trusting(&first, false)
        .get(format!("{base}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (h2.status().as_u16(), h2.version()),
        (200, reqwest::Version::HTTP_2)
    );
    let h1 = client_trusting(&first, true)
        .get(format!("{base}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (h1.status().as_u16(), h1.version()),
        (200, reqwest::Version::HTTP_11)
    );
    assert!(
        gw.client
            .get(format!("{}/health", gw.base))
            .send()
            .await
            .map_or(true, |r| !r.status().is_success())
    );
    let ca_file = dir_path.join("ca-one.pem");
    std::fs::write(&ca_file, &first.ca_pem).unwrap();
    let env = |ca: &Path| {
        vec![
            ("SWITCHYARD_BASE_URL", format!("{base}/v1")),
            ("SWITCHYARD_CA", ca.display().to_string()),
        ]
    };
    run_pytest("test_tls.py", &env(&ca_file)).await;

    // The renewal: another CA's certificate written over the files while the gateway runs.
    let second = make_ca("two");
    install(&dir_path, &second);
    let renewed = Instant::now();
    loop {
        if client_trusting(&second, false)
            .get(format!("{base}/health"))
            .send()
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            renewed.elapsed() < Duration::from_secs(10),
            "the renewed certificate was not served"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        client_trusting(&first, false)
            .get(format!("{base}/health"))
            .send()
            .await
            .is_err(),
        "new connections still get the old certificate"
    );
    let ca_file = dir_path.join("ca-two.pem");
    std::fs::write(&ca_file, &second.ca_pem).unwrap();
    run_pytest("test_tls.py", &env(&ca_file)).await;
}
