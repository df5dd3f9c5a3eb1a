//! Building and running the HTTP server: state, workers, graceful shutdown.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::web::Data;
use actix_web::{App, HttpServer};

mod tls;

use std::sync::Arc;

use secrecy::ExposeSecret;

use crate::auth::Auth;
use crate::auth::clock::{Clock, SystemClock};
use crate::config::{self, ConfigErrors};
use crate::routing::RouteTable;
use crate::routing::reload::{self, ReloadStatus};
use crate::state::AppState;
use crate::store::Store;
use crate::{routes, telemetry};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config file is invalid.
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    /// A backend could not be built.
    #[error("{0}")]
    Backend(String),
    /// The store could not be opened or migrated.
    #[error("store {0}")]
    Store(String),
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
    let (config, source) = config::load(config_path)?;
    let table = RouteTable::build(&config).map_err(StartError::Backend)?;
    let mut status = ReloadStatus::new(config_path, &source);
    status.fixed_at_start = config::fixed_at_start(&config);
    let mut state = AppState::new(table, status);
    // Without [auth] nothing needs a store, and none is opened.
    if let (Some(auth), Some(store)) = (&config.auth, &config.store) {
        let opened = Store::open(store.url.expose_secret())
            .await
            .map_err(|e| StartError::Store(format!("{}: {e}", store.display)))?;
        let auth = Auth::new(opened, auth, clock)
            .await
            .map_err(|e| StartError::Store(format!("{}: {e}", store.display)))?;
        state.auth = Some(Arc::new(auth));
    }
    Ok(state)
}

/// Starts serving `state` on `listener` and watching its routes file; the returned future runs
/// until shutdown. Must be called within a tokio runtime (the watcher is spawned on it).
pub fn start(listener: TcpListener, state: AppState) -> Result<Server, StartError> {
    let (workers, shutdown, tls) = {
        let table = state.routes.load();
        let workers = table
            .server
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        (
            workers,
            table.server.shutdown_timeout,
            table.server.tls.clone(),
        )
    };
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })?;
    warn_if_exposed(addr, state.auth.is_some(), tls.is_some());
    let tls = tls.map(|files| tls::serve_config(&files)).transpose()?;
    reload::spawn_watcher(state.clone());
    if let Some(auth) = &state.auth {
        Auth::spawn_revision_watch(auth);
    }
    let data = Data::new(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .wrap(from_fn(telemetry::request_span))
            .configure(routes::configure)
    })
    // Streams are many small writes: without TCP_NODELAY, Nagle holds each one until the
    // client's delayed ACK (40 ms on Linux) once a keep-alive connection leaves quick-ACK mode.
    .on_connect(|conn, _| set_nodelay(conn))
    .workers(workers)
    // On SIGTERM/SIGINT actix stops accepting and gives in-flight requests, streams included,
    // this long to finish.
    .shutdown_timeout(shutdown.as_secs().max(1))
    .keep_alive(Duration::from_secs(75));
    let server = match tls {
        Some(config) => server.listen_rustls_0_23(listener, config),
        None => server.listen(listener),
    }
    .map_err(|source| StartError::Bind { addr, source })?
    .run();
    Ok(server)
}

/// TCP_NODELAY on an accepted connection, plain or TLS.
fn set_nodelay(conn: &dyn std::any::Any) {
    use actix_tls::accept::rustls_0_23::TlsStream;
    use actix_web::rt::net::TcpStream;
    let tcp = match conn.downcast_ref::<TcpStream>() {
        Some(tcp) => Some(tcp),
        None => conn
            .downcast_ref::<TlsStream<TcpStream>>()
            .map(|tls| tls.get_ref().0),
    };
    if let Some(tcp) = tcp {
        let _ = tcp.set_nodelay(true);
    }
}

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
        start(listener, state)?
            .await
            .map_err(|source| StartError::Bind { addr, source })
    })
}
