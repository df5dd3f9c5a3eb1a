//! Building and running the HTTP server: state, workers, graceful shutdown.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::web::Data;
use actix_web::{App, HttpServer};

use crate::config::{self, ConfigErrors};
use crate::routing::RouteTable;
use crate::routing::reload::{self, ReloadStatus};
use crate::state::AppState;
use crate::{limits, routes, telemetry};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config file is invalid.
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    /// A backend could not be built.
    #[error("{0}")]
    Backend(String),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Loads `config_path` into a fresh state.
pub fn load_state(config_path: &Path) -> Result<AppState, StartError> {
    let (config, source) = config::load(config_path)?;
    let table = RouteTable::build(&config).map_err(StartError::Backend)?;
    Ok(AppState::new(
        table,
        ReloadStatus::new(config_path, &source),
    ))
}

/// Starts serving `state` on `listener` and watching its routes file; the returned future runs
/// until shutdown. Must be called within a tokio runtime (the watcher is spawned on it).
pub fn start(listener: TcpListener, state: AppState) -> std::io::Result<Server> {
    reload::spawn_watcher(state.clone());
    let server_config = state.routes.load().server.clone();
    let workers = server_config
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let limits = Data::new(state.limits.clone());
    let data = Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(limits.clone())
            // Admission first: a refused request costs no span and no handler.
            .wrap(from_fn(telemetry::request_span))
            .wrap(from_fn(limits::admit))
            .configure(routes::configure)
    })
    // Streams are many small writes: without TCP_NODELAY, Nagle holds each one until the
    // client's delayed ACK (40 ms on Linux) once a keep-alive connection leaves quick-ACK mode.
    .on_connect(|conn, _| {
        if let Some(tcp) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
            let _ = tcp.set_nodelay(true);
        }
    })
    .workers(workers)
    // actix counts connections per worker; the file's limit is for the whole gateway.
    .max_connections(server_config.max_connections.div_ceil(workers))
    // actix's own head timeout, which covers the first request of a connection.
    .client_request_timeout(server_config.request_head_timeout)
    // A client that closes its side while its request is in progress has gone: actix then
    // drops the handler, and with it the upstream request it was waiting on. (A client that
    // half-closes on purpose after sending its request would lose its answer; HTTP clients
    // do not do that.)
    .h1_allow_half_closed(false)
    // On SIGTERM/SIGINT actix stops accepting and gives in-flight requests, streams included,
    // this long to finish.
    .shutdown_timeout(server_config.shutdown_timeout.as_secs().max(1))
    .keep_alive(Duration::from_secs(75))
    .listen(listener)?
    .run();
    Ok(server)
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
