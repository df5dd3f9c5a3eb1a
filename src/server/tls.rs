//! HTTPS with rustls (HTTP/1.1 and HTTP/2, chosen by ALPN), for `[server] tls`. The certificate
//! and key files are re-read every `CHECK_EVERY`; when their bytes change and the new pair loads,
//! new connections get the new certificate (cert-manager and ACME clients renew them in place),
//! connections already open keep theirs. A pair that does not load is logged and the previous one
//! keeps serving.

use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::StartError;
use crate::config::TlsConfig;

/// How often the files are compared with what is loaded.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The certificate in force, swapped atomically when the files change.
#[derive(Debug)]
struct ReloadingCert {
    current: ArcSwap<CertifiedKey>,
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The files' bytes, to notice a change.
type Loaded = (Vec<u8>, Vec<u8>);

fn read(files: &TlsConfig) -> Result<Loaded, String> {
    let cert = std::fs::read(&files.cert)
        .map_err(|e| format!("cannot read {}: {e}", files.cert.display()))?;
    let key = std::fs::read(&files.key)
        .map_err(|e| format!("cannot read {}: {e}", files.key.display()))?;
    Ok((cert, key))
}

fn certified(provider: &CryptoProvider, (cert, key): &Loaded) -> Result<CertifiedKey, String> {
    let chain = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate file: {e}"))?;
    if chain.is_empty() {
        return Err("the certificate file holds no certificate".to_owned());
    }
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("key file: {e}"))?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| format!("certificate and key: {e}"))
}

/// The rustls configuration for `files`, and a task that reloads them when they change. Must be
/// called within a tokio runtime.
/// The acceptor of `[server] tls`: `serve_config` offering HTTP/2 and HTTP/1.1 by ALPN.
pub fn acceptor(files: &TlsConfig) -> Result<tokio_rustls::TlsAcceptor, StartError> {
    let mut config = serve_config(files)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// The rustls configuration, its certificate re-read when the files change.
pub fn serve_config(files: &TlsConfig) -> Result<rustls::ServerConfig, StartError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let loaded = read(files).map_err(StartError::Tls)?;
    let key = certified(&provider, &loaded).map_err(StartError::Tls)?;
    let resolver = Arc::new(ReloadingCert {
        current: ArcSwap::from_pointee(key),
    });
    let config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| StartError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
    spawn_reloader(Arc::downgrade(&resolver), files.clone(), provider, loaded);
    Ok(config)
}

fn spawn_reloader(
    resolver: Weak<ReloadingCert>,
    files: TlsConfig,
    provider: Arc<CryptoProvider>,
    mut loaded: Loaded,
) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECK_EVERY);
        let mut refused: Option<Loaded> = None;
        loop {
            tick.tick().await;
            let Some(resolver) = resolver.upgrade() else {
                return;
            };
            // A renewal writes two files: an unreadable or mismatched pair is usually one caught
            // half-way, so it is retried at the next tick rather than reported as final.
            let Ok(now) = read(&files) else { continue };
            if now == loaded || refused.as_ref() == Some(&now) {
                continue;
            }
            match certified(&provider, &now) {
                Ok(key) => {
                    resolver.current.store(Arc::new(key));
                    tracing::info!(cert = %files.cert.display(), "TLS certificate reloaded");
                    loaded = now;
                    refused = None;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "TLS files changed but do not load; the previous certificate keeps serving");
                    // Reported once per version of the files, not at every tick.
                    refused = Some(now);
                }
            }
        }
    });
}
