//! Building and running the HTTP server: state, workers, graceful shutdown.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::Duration;

use actix_http::error::DispatchError;
use actix_http::{HttpService, Protocol};
use actix_server::Server;
use actix_service::{ServiceFactory, ServiceFactoryExt, fn_service, map_config};
use actix_web::App;
use actix_web::dev::AppConfig;
use actix_web::middleware::from_fn;
use actix_web::rt::net::TcpStream;
use actix_web::web::Data;

use head_deadline::HeadDeadline;

mod cors;
mod tls;

use std::sync::Arc;

use secrecy::ExposeSecret;

use crate::auth::Auth;
use crate::auth::clock::{Clock, SystemClock};
use crate::batches::{BatchSettings, Batches};
use crate::config::{self, ConfigErrors};
use crate::files::{self, Files};
use crate::idempotency::Idempotency;
use crate::limits::rate::{RateLimiter, SharedLimits};
use crate::observe::{self, Metrics};
use crate::routing;
use crate::routing::reload::{self, ReloadStatus};
use crate::state::AppState;
use crate::store::Store;
use crate::usage::Recorder;
use crate::{limits, routes, telemetry};

mod head_deadline;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config file is invalid.
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    /// The store could not be opened or migrated.
    #[error("store {0}")]
    Store(String),
    /// The usage log could not be opened, or `[limits]` is unusable.
    #[error("{0}")]
    Usage(String),
    /// The TLS certificate or key could not be loaded.
    #[error("tls: {0}")]
    Tls(String),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Loads `config_path` into a fresh state; with `[auth]`, opens (and migrates) the store.
pub async fn load_state(config_path: &Path) -> Result<AppState, StartError> {
    load_state_with_clock(config_path, Arc::new(SystemClock)).await
}

/// `load_state` with the clock key expiry is judged by (tests move a manual one).
pub async fn load_state_with_clock(
    config_path: &Path,
    clock: Arc<dyn Clock>,
) -> Result<AppState, StartError> {
    // The same pipeline as `check` and reload.
    let source = config::read(config_path)?;
    let (config, table) = routing::load_table(&source, config_path, None)?;
    let mut status = ReloadStatus::new(config_path, &source);
    status.fixed_at_start = config::fixed_at_start(&config);
    let mut state = AppState::new(table, status);
    if let Some(metrics) = &config.metrics {
        state.metrics = Some(Arc::new(Metrics::new()));
        state.metrics_listen = metrics.listen;
    }
    // A store is opened only when the file has one, or has what defaults one ([auth],
    // [idempotency]); without it, no database at all.
    if let Some(store) = &config.store {
        let opened = Store::open(store.url.expose_secret())
            .await
            .map_err(|e| StartError::Store(format!("{}: {e}", store.display)))?;
        state.idempotency = Some(Arc::new(Idempotency::new(
            opened.clone(),
            clock.clone(),
            config.idempotency,
        )));
        state.batches = Some(own_batches(&opened, &config, store, config_path, &clock)?);
        if let Some(auth) = &config.auth {
            let auth = Auth::new(opened, auth, clock)
                .await
                .map_err(|e| StartError::Store(format!("{}: {e}", store.display)))?;
            state.auth = Some(Arc::new(auth));
        }
    }
    if let Some(usage) = &config.usage {
        let store = state.auth.as_ref().map(|auth| auth.store().clone());
        let recorder = Recorder::start(usage, store)
            .await
            .map_err(|e| StartError::Usage(format!("cannot open the usage log: {e}")))?;
        state.usage = Arc::new(recorder.with_metrics(state.metrics.clone()));
    }
    if let Some(url) = &config.limits.redis_url {
        let shared = SharedLimits::new(url.expose_secret())
            .map_err(|e| StartError::Usage(format!("[limits] redis_url: {e}")))?;
        state.rate = Arc::new(RateLimiter::shared(shared));
    }
    Ok(state)
}

/// The gateway's own Files and Batches API over the open store (`[batches]`).
fn own_batches(
    opened: &Store,
    config: &config::Config,
    store: &config::StoreConfig,
    config_path: &Path,
    clock: &Arc<dyn Clock>,
) -> Result<Arc<Batches>, StartError> {
    let own = &config.batches;
    let dir = own
        .dir
        .clone()
        .unwrap_or_else(|| files::default_dir(store.url.expose_secret(), config_path));
    let files = Files::open(opened.clone(), &dir, clock.clone(), own.max_file_bytes);
    let settings = BatchSettings {
        concurrency: own.concurrency,
        per_batch: own.per_batch,
        max_lines: own.max_lines,
        max_line_bytes: config.server.max_body_bytes,
    };
    Ok(Arc::new(Batches::new(
        opened.clone(),
        Arc::new(files),
        settings,
    )))
}

/// Starts serving `state` on `listener` and watching its routes file; the returned future runs
/// until shutdown. Must be called within a tokio runtime (the watcher is spawned on it).
///
/// Built from actix's parts rather than with `HttpServer`, which offers no way to wrap a
/// connection's I/O: each HTTP/1 connection gets a deadline on every request head
/// (`head_deadline`). With `[server] tls`, connections are accepted here too (rustls; HTTP/2
/// or HTTP/1.1 by ALPN), with certificate files re-read when they change (`tls`).
pub fn start(listener: TcpListener, state: AppState) -> Result<Server, StartError> {
    let config = state.routes.load().server.clone();
    let workers = config
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })?;
    warn_if_exposed(addr, state.auth.is_some(), config.tls.is_some());
    let tls = match &config.tls {
        Some(files) => Some(tls::acceptor(files)?),
        None => None,
    };
    reload::spawn_watcher(state.reloadable());
    if let Some(auth) = &state.auth {
        Auth::spawn_revision_watch(auth);
    }
    if let Some(idempotency) = &state.idempotency {
        Idempotency::spawn_purge(idempotency);
    }
    if let Some(batches) = &state.batches {
        Files::spawn_purge(batches.files());
        let lines = routes::batch_lines::LiveLines::start(state.clone())
            .map_err(|e| StartError::Store(format!("cannot start the batch runner: {e}")))?;
        Batches::spawn_runner(batches, lines);
    }
    let builder = Server::build();
    let shutdown_signal = builder.graceful_shutdown_signal();
    let limits = Data::new(state.limits.clone());
    let observer = Data::new(observe::Observer {
        metrics: state.metrics.clone(),
    });
    let data = Data::new(state);
    let head_limit = config.request_head_timeout;
    let builder = builder
        .workers(workers)
        // actix counts connections per worker; the file's limit is for the whole gateway.
        .max_concurrent_connections(config.max_connections.div_ceil(workers))
        // On SIGTERM/SIGINT actix stops accepting and gives in-flight requests, streams
        // included, this long to finish.
        .shutdown_timeout(config.shutdown_timeout.as_secs().max(1));
    let builder = listen_metrics(builder, &data, head_limit)?;
    let parts = move || Parts {
        data: data.clone(),
        limits: limits.clone(),
        observer: observer.clone(),
        shutdown: shutdown_signal.clone(),
        head_limit,
        addr,
    };
    let builder = match tls {
        Some(acceptor) => builder.listen("switchyard", listener, move || {
            let acceptor = acceptor.clone();
            fn_service(move |io| accept_tls(io, acceptor.clone(), head_limit))
                .and_then(http_service(parts()))
        }),
        None => builder.listen("switchyard", listener, move || {
            fn_service(move |io| accept(io, head_limit)).and_then(http_service(parts()))
        }),
    }
    .map_err(|source| StartError::Bind { addr, source })?;
    Ok(builder.run())
}

/// Adds `[metrics] listen`, when set: `/metrics` alone, plain HTTP, no key.
fn listen_metrics(
    builder: actix_server::ServerBuilder,
    data: &Data<AppState>,
    head_limit: Duration,
) -> Result<actix_server::ServerBuilder, StartError> {
    let Some(addr) = data.metrics_listen else {
        return Ok(builder);
    };
    let listener = TcpListener::bind(addr).map_err(|source| StartError::Bind { addr, source })?;
    tracing::info!(addr = %listener.local_addr().unwrap_or(addr), "metrics listening");
    let data = data.clone();
    builder
        .listen("switchyard-metrics", listener, move || {
            let app = App::new().app_data(data.clone()).route(
                "/metrics",
                actix_web::web::get().to(routes::metrics::scrape_apart),
            );
            fn_service(move |io| accept(io, head_limit)).and_then(
                HttpService::build()
                    .keep_alive(Duration::from_secs(75))
                    .client_request_timeout(head_limit)
                    .finish(map_config(app, |_| AppConfig::default())),
            )
        })
        .map_err(|source| StartError::Bind { addr, source })
}

/// What each worker's HTTP service is built from.
struct Parts {
    data: Data<AppState>,
    limits: Data<limits::Limits>,
    observer: Data<observe::Observer>,
    shutdown: actix_server::GracefulShutdownSignal,
    head_limit: Duration,
    addr: SocketAddr,
}

/// actix-http's service over the app, for connections of any transport `T`.
fn http_service<T>(
    parts: Parts,
) -> impl ServiceFactory<
    (T, Protocol, Option<SocketAddr>),
    Config = (),
    Response = (),
    Error = DispatchError,
    InitError = (),
> + 'static
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
{
    let Parts {
        data,
        limits,
        observer,
        shutdown,
        head_limit,
        addr,
    } = parts;
    let cors = cors::middleware(data.routes.load().server.cors.as_ref());
    // The last `wrap` is the outermost layer.
    let app = App::new()
        .app_data(data)
        .app_data(limits)
        .app_data(observer)
        // Inside the request span, so a refused request has its id and log line too.
        .wrap(from_fn(limits::admit))
        // A preflight is answered here, before admission and before any key is asked for.
        .wrap(cors)
        // Outside CORS and admission, so every answer is timed and counted.
        .wrap(from_fn(observe::observe))
        .wrap(from_fn(telemetry::request_span));
    HttpService::build()
        // Idle keep-alive connections are closed at once on a graceful shutdown.
        .graceful_shutdown_signal(move || {
            let signal = shutdown.clone();
            async move { signal.notified().await }
        })
        .keep_alive(Duration::from_secs(75))
        // Covers the first head too; `HeadDeadline` covers every head after it.
        .client_request_timeout(head_limit)
        // A client that closes its side while its request is in progress has gone: actix then
        // drops the handler, and with it the upstream request it waits on. (A client that
        // half-closed on purpose after its request would lose its answer; HTTP clients do not
        // do that.)
        .h1_allow_half_closed(false)
        .local_addr(addr)
        .finish(map_config(app.configure(routes::configure), |_| {
            AppConfig::default()
        }))
}

/// An accepted connection, ready for actix-http: HTTP/1, with a deadline on each request head.
async fn accept(
    io: TcpStream,
    head_limit: Duration,
) -> Result<(HeadDeadline<TcpStream>, Protocol, Option<SocketAddr>), DispatchError> {
    // Streams are many small writes: without TCP_NODELAY, Nagle holds each one until the
    // client's delayed ACK (40 ms on Linux) once a keep-alive connection leaves quick-ACK mode.
    let _ = io.set_nodelay(true);
    let peer = io.peer_addr().ok();
    Ok((HeadDeadline::new(io, head_limit), Protocol::Http1, peer))
}

/// An accepted TLS connection: the handshake (bounded by the head limit: a client that never
/// finishes it holds nothing for longer), then HTTP/2 or HTTP/1.1 as ALPN chose.
async fn accept_tls(
    io: TcpStream,
    acceptor: tokio_rustls::TlsAcceptor,
    head_limit: Duration,
) -> Result<(HeadDeadline<TlsStream>, Protocol, Option<SocketAddr>), DispatchError> {
    let _ = io.set_nodelay(true);
    let peer = io.peer_addr().ok();
    let stream = match tokio::time::timeout(head_limit, acceptor.accept(io)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(err)) => return Err(DispatchError::Io(err)),
        Err(_) => {
            return Err(DispatchError::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the TLS handshake did not finish within request_head_timeout",
            )));
        }
    };
    if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
        Ok((HeadDeadline::off(stream), Protocol::Http2, peer))
    } else {
        Ok((HeadDeadline::new(stream, head_limit), Protocol::Http1, peer))
    }
}

/// An accepted TLS connection.
type TlsStream = tokio_rustls::server::TlsStream<TcpStream>;

/// Says loudly when a gateway is reachable beyond loopback without keys, or hands keys over a
/// network in clear text (a TLS-terminating proxy in front is a valid setup, hence a warning).
fn warn_if_exposed(addr: SocketAddr, auth: bool, tls: bool) {
    if addr.ip().is_loopback() {
        return;
    }
    if !auth {
        tracing::warn!(%addr, "listening beyond loopback with no [auth]: anyone who can reach this address can use every route and its backend credentials");
    } else if !tls {
        tracing::warn!(%addr, "[auth] is on but [server] tls is not: gateway keys cross the network in clear text unless a TLS-terminating proxy stands in front");
    }
}

/// `switchyard serve`: load, bind, serve until a signal.
pub fn serve(config_path: &Path, listen: Option<SocketAddr>) -> Result<(), StartError> {
    actix_web::rt::System::new().block_on(async move {
        let state = load_state(config_path).await?;
        let addr = listen
            .or(state.routes.load().server.listen)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
        let listener =
            TcpListener::bind(addr).map_err(|source| StartError::Bind { addr, source })?;
        // The bound address, not the requested one: with port 0 the OS picks it.
        let bound = listener.local_addr().unwrap_or(addr);
        tracing::info!(addr = %bound, config = %config_path.display(), "switchyard listening");
        let usage = state.usage.clone();
        let served = start(listener, state)?.await;
        // In-flight requests have ended: their records are queued; write them out.
        usage.close().await;
        served.map_err(|source| StartError::Bind { addr, source })
    })
}
