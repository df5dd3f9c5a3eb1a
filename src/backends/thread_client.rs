//! One pooled HTTP client per thread for each upstream, so that a request and its upstream
//! connection live on one thread.
//!
//! Each actix worker runs its own single-threaded runtime, and an HTTP/1 connection is driven
//! by a task on the runtime that opened it. With one pool shared by all workers, a request
//! handled by one worker often borrows a connection opened by another: then every body chunk
//! wakes the other thread and back (an eventfd write and an `epoll_wait` each way). With a
//! pool per thread, as nginx keeps an upstream keep-alive pool per worker process, requests
//! only ever take connections their own runtime drives. Clients are built on a thread's first
//! request, from the same settings; a hot reload that keeps a backend keeps its clients.

use std::sync::Arc;

use thread_local::ThreadLocal;

/// The TLS settings reqwest builds by default (its default crypto provider, the platform's
/// certificate verifier, ALPN `h2` then `http/1.1`), built once so that all the clients of an
/// upstream share them: building them reads and parses the system's root certificates, some
/// 3 MB of memory and milliseconds per client otherwise.
pub fn shared_tls() -> Result<rustls::ClientConfig, String> {
    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    let verifier = rustls_platform_verifier::Verifier::new(provider.clone())
        .map_err(|e| format!("cannot set up TLS certificate verification: {e}"))?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .map_err(|e| format!("cannot set up TLS: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tls)
}

/// The clients of one upstream, one per thread that has sent through it.
pub struct ThreadClients {
    clients: ThreadLocal<reqwest::Client>,
    build: Box<dyn Fn() -> reqwest::Result<reqwest::Client> + Send + Sync>,
    /// Built with the first, to refuse bad settings at start; also the fallback should a
    /// thread's own client fail to build.
    shared: reqwest::Client,
}

impl ThreadClients {
    /// Clients from `build`, which is called once now (its error refuses the settings) and
    /// then once per thread.
    pub fn new(
        build: impl Fn() -> reqwest::Result<reqwest::Client> + Send + Sync + 'static,
    ) -> reqwest::Result<Self> {
        Ok(ThreadClients {
            shared: build()?,
            clients: ThreadLocal::new(),
            build: Box::new(build),
        })
    }

    /// This thread's client, built on first use.
    pub fn get(&self) -> &reqwest::Client {
        self.clients
            .get_or_try(|| (self.build)())
            .unwrap_or(&self.shared)
    }
}

impl std::fmt::Debug for ThreadClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadClients").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_thread_gets_its_own_client_and_keeps_it() {
        let built = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = built.clone();
        let clients = ThreadClients::new(move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            reqwest::Client::builder().build()
        })
        .unwrap();
        let here = clients.get() as *const reqwest::Client;
        assert_eq!(
            clients.get() as *const _,
            here,
            "the same client on one thread"
        );
        let there = std::thread::scope(|s| {
            s.spawn(|| clients.get() as *const reqwest::Client as usize)
                .join()
                .unwrap()
        });
        assert_ne!(there, here as usize, "another thread has its own");
        // One at start (the settings check), one per thread that sent.
        assert_eq!(built.load(std::sync::atomic::Ordering::SeqCst), 3);
    }
}
