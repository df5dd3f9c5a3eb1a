//! Building and running the HTTP server: state, workers, graceful shutdown.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::Duration;

use actix_http::error::DispatchError;
use actix_http::{HttpService, Protocol};
use actix_server::Server;
use actix_service::{ServiceFactoryExt, fn_service, map_config};
use actix_web::App;
use actix_web::dev::AppConfig;
use actix_web::middleware::from_fn;
use actix_web::rt::net::TcpStream;
use actix_web::web::Data;

use head_deadline::HeadDeadline;

use crate::config::{self, ConfigErrors};
use crate::routing;
use crate::routing::reload::{self, ReloadStatus};
use crate::state::AppState;
use crate::{limits, routes, telemetry};

mod head_deadline;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config file is invalid.
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Loads `config_path` into a fresh state (the same pipeline as `check` and reload).
pub fn load_state(config_path: &Path) -> Result<AppState, StartError> {
    let source = config::read(config_path)?;
    let (_, table) = routing::load_table(&source, config_path, None)?;
    Ok(AppState::new(
        table,
        ReloadStatus::new(config_path, &source),
    ))
}

/// Starts serving `state` on `listener` and watching its routes file; the returned future runs
/// until shutdown. Must be called within a tokio runtime (the watcher is spawned on it).
///
/// Built from actix's parts rather than with `HttpServer`, which offers no way to wrap a
/// connection's I/O: each connection gets a deadline on every request head (`head_deadline`).
pub fn start(listener: TcpListener, state: AppState) -> std::io::Result<Server> {
    reload::spawn_watcher(state.clone());
    let config = state.routes.load().server.clone();
    let workers = config
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let addr = listener.local_addr()?;
    let builder = Server::build();
    let shutdown_signal = builder.graceful_shutdown_signal();
    let limits = Data::new(state.limits.clone());
    let data = Data::new(state);
    let server = builder
        .workers(workers)
        // actix counts connections per worker; the file's limit is for the whole gateway.
        .max_concurrent_connections(config.max_connections.div_ceil(workers))
        // On SIGTERM/SIGINT actix stops accepting and gives in-flight requests, streams
        // included, this long to finish.
        .shutdown_timeout(config.shutdown_timeout.as_secs().max(1))
        .listen("switchyard", listener, move || {
            let app = App::new()
                .app_data(data.clone())
                .app_data(limits.clone())
                // Inside the request span, so a refused request has its id and log line too.
                .wrap(from_fn(limits::admit))
                .wrap(from_fn(telemetry::request_span));
            let signal = shutdown_signal.clone();
            let http = HttpService::build()
                // Idle keep-alive connections are closed at once on a graceful shutdown.
                .graceful_shutdown_signal(move || {
                    let signal = signal.clone();
                    async move { signal.notified().await }
                })
                .keep_alive(Duration::from_secs(75))
                // Covers the first head too; `HeadDeadline` covers every head after it.
                .client_request_timeout(config.request_head_timeout)
                // A client that closes its side while its request is in progress has gone:
                // actix then drops the handler, and with it the upstream request it waits on.
                // (A client that half-closed on purpose after its request would lose its
                // answer; HTTP clients do not do that.)
                .h1_allow_half_closed(false)
                .local_addr(addr)
                .finish(map_config(app.configure(routes::configure), |_| {
                    AppConfig::default()
                }));
            let head_limit = config.request_head_timeout;
            fn_service(move |io| accept(io, head_limit)).and_then(http)
        })?
        .run();
    Ok(server)
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

/// `switchyard serve`: load, bind, serve until a signal.
pub fn serve(config_path: &Path, listen: Option<SocketAddr>) -> Result<(), StartError> {
    let state = load_state(config_path)?;
    let addr = listen
        .or(state.routes.load().server.listen)
        .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080)));
    let listener = TcpListener::bind(addr).map_err(|source| StartError::Bind { addr, source })?;
    // The bound address, not the requested one: with port 0 the OS picks it.
    let bound = listener.local_addr().unwrap_or(addr);
    tracing::info!(addr = %bound, config = %config_path.display(), "switchyard listening");
    actix_web::rt::System::new()
        .block_on(async move { start(listener, state)?.await })
        .map_err(|source| StartError::Bind { addr, source })
}
