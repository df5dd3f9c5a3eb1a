//! The command line: `serve`, `check`, `init`, `worker`, `openapi` and `schema`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod admin;

use clap::{Parser, Subcommand};

use crate::config::{self, BackendSettings, Config};
use crate::routing::RouteTable;
use crate::routing::explain::explain;
use crate::server;
use crate::telemetry::{self, LogFormat};
use crate::worker::{Worker, WorkerConfig};

/// An OpenAI-compatible gateway that routes each request by model-name prefix.
#[derive(Debug, Parser)]
#[command(name = "switchyard", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve {
        /// The routes file.
        #[arg(long, env = "SWITCHYARD_CONFIG", default_value = "routes.toml")]
        config: PathBuf,
        /// Listen address (default: the file's `[server] listen`, else 127.0.0.1:8080).
        #[arg(long, env = "SWITCHYARD_LISTEN")]
        listen: Option<SocketAddr>,
        /// Log format.
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
    },
    /// Validate a routes file and print the resolved route table.
    Check {
        /// The routes file.
        #[arg(env = "SWITCHYARD_CONFIG", default_value = "routes.toml")]
        path: PathBuf,
        /// Also say which route, backend and upstream model name a request for MODEL would get
        /// (repeatable); exits 1 when one has no route.
        #[arg(long = "resolve", value_name = "MODEL")]
        resolve: Vec<String>,
    },
    /// Print the OpenAPI 3.1 document of the gateway's API (what `openapi/openapi.json` holds).
    Openapi,
    /// Print the JSON Schema of routes.toml (what `openapi/routes.schema.json` holds), for
    /// editors: Taplo / Even Better TOML read it through the file's `#:schema` line.
    Schema,
    /// Write a commented starter routes.toml (and its JSON Schema beside it) for the backend
    /// kinds named; `switchyard check` accepts it as written.
    Init {
        /// Backend kind to include (repeatable): openai, ollama, redis, echo, proxy. Default: echo.
        #[arg(long = "backend", value_name = "KIND")]
        backends: Vec<String>,
        /// Where to write the file; `-` prints it instead.
        #[arg(long, default_value = "routes.toml")]
        output: PathBuf,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Manage projects, upstream credentials and gateway keys in the store of `[auth]`, without
    /// a running gateway.
    Admin {
        /// The routes file (its `[store]` and `[auth]` are used).
        #[arg(long, env = "SWITCHYARD_CONFIG", default_value = "routes.toml")]
        config: PathBuf,
        /// What to do.
        #[command(subcommand)]
        command: admin::AdminCommand,
    },
    /// Relay jobs from a Redis queue (openai-rq 0.1.2 protocol) to a local OpenAI-compatible
    /// server. Flags mirror `openai-rq worker`.
    Worker(Box<WorkerArgs>),
}

/// `switchyard worker` flags (the first ten are openai-rq's).
#[derive(clap::Args)]
pub struct WorkerArgs {
    /// Redis URL: redis://[:password@]host:port/db, rediss:// for TLS.
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: String,
    /// The local OpenAI-compatible server; job paths below /v1 are appended to it.
    #[arg(long, default_value = "http://localhost:8000/v1")]
    pub openai_base_url: url::Url,
    /// Sent upstream as `Authorization: Bearer <key>`; never written to Redis.
    #[arg(long, env = "OPENAI_API_KEY", hide_env_values = true)]
    pub openai_api_key: Option<String>,
    /// Extra upstream header (repeatable), replacing the job's header of that name.
    #[arg(long = "openai-header", value_name = "KEY=VALUE", value_parser = parse_header)]
    pub openai_headers: Vec<(String, String)>,
    /// Jobs run at once; no more are taken from the queue than there are free slots.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,
    /// Consumer group.
    #[arg(long, default_value = "openai-rq")]
    pub group: String,
    /// Consumer name (default: <hostname>/<pid>).
    #[arg(long)]
    pub consumer: Option<String>,
    /// Longest time stream bytes are held to batch them into one Redis entry (the first event
    /// of a stream is never held).
    #[arg(long, default_value_t = 50)]
    pub stream_flush_ms: u64,
    /// TTL of result keys, set from their first write.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub result_ttl_s: u64,
    /// A job delivered more times than this is dead-lettered.
    #[arg(long, default_value_t = 3)]
    pub max_retries: u64,
    /// A job pending this long without its worker's claim refresh is reclaimed by another.
    #[arg(long, default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(100..))]
    pub reclaim_idle_ms: u64,
    /// After SIGTERM/SIGINT, how long running jobs may finish ("30s", "2m").
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: std::time::Duration,
    /// Time allowed for upstream response headers, a whole body, and between stream reads.
    #[arg(long, default_value = "600s", value_parser = humantime::parse_duration)]
    pub upstream_timeout: std::time::Duration,
    /// Cap of the dead-letter stream (entries).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub dead_letter_maxlen: u64,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Serve the worker's counters for Prometheus at `http://ADDR/metrics` (no key; bind it to
    /// an address only the scraper reaches).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

impl std::fmt::Debug for WorkerArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password, and the key and header values are credentials.
        f.debug_struct("WorkerArgs")
            .field(
                "openai_base_url",
                &telemetry::redacted_url(&self.openai_base_url),
            )
            .field("concurrency", &self.concurrency)
            .field("group", &self.group)
            .field("consumer", &self.consumer)
            .finish_non_exhaustive()
    }
}

fn parse_header(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_owned(), value.trim().to_owned()))
        }
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

impl WorkerArgs {
    /// The worker's configuration.
    pub fn config(self) -> WorkerConfig {
        let mut cfg = WorkerConfig::new(self.redis_url.into(), self.openai_base_url);
        cfg.openai_api_key = self
            .openai_api_key
            .filter(|k| !k.is_empty())
            .map(Into::into);
        cfg.openai_headers = self
            .openai_headers
            .into_iter()
            .map(|(k, v)| (k, v.into()))
            .collect();
        cfg.concurrency = usize::from(self.concurrency);
        cfg.group = self.group;
        if let Some(consumer) = self.consumer {
            cfg.consumer = consumer;
        }
        cfg.stream_flush = std::time::Duration::from_millis(self.stream_flush_ms);
        cfg.result_ttl_s = self.result_ttl_s;
        cfg.max_retries = self.max_retries;
        cfg.reclaim_idle = std::time::Duration::from_millis(self.reclaim_idle_ms);
        cfg.shutdown_timeout = self.shutdown_timeout;
        cfg.upstream_timeout = self.upstream_timeout;
        cfg.dead_letter_maxlen = self.dead_letter_maxlen;
        cfg
    }
}

/// `switchyard worker`: runs until SIGTERM or SIGINT, then drains.
fn worker(args: WorkerArgs) -> ExitCode {
    telemetry::init(args.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            let _ = writeln!(std::io::stderr(), "switchyard worker: {err}");
            return ExitCode::from(2);
        }
    };
    let metrics_listen = args.metrics_listen;
    runtime.block_on(async move {
        let worker = match Worker::new(args.config()) {
            Ok(worker) => worker,
            Err(err) => {
                let _ = writeln!(std::io::stderr(), "switchyard worker: {err}");
                return ExitCode::from(2);
            }
        };
        if let Some(addr) = metrics_listen
            && let Err(err) = serve_worker_metrics(addr, worker.stats_reader())
        {
            let _ = writeln!(
                std::io::stderr(),
                "switchyard worker: metrics on {addr}: {err}"
            );
            return ExitCode::from(2);
        }
        let stop = worker.stop_token();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("signal received: stopping");
            stop.cancel();
        });
        let _ = worker.run_until_stopped().await;
        ExitCode::SUCCESS
    })
}

/// `--metrics-listen`: `/metrics` on a thread of its own (an actix system), for as long as the
/// process lives.
fn serve_worker_metrics(
    addr: std::net::SocketAddr,
    stats: impl Fn() -> crate::worker::StatsSnapshot + Send + Sync + 'static,
) -> std::io::Result<()> {
    use actix_web::{App, HttpResponse, HttpServer, web};
    let stats = std::sync::Arc::new(stats);
    let listener = std::net::TcpListener::bind(addr)?;
    tracing::info!(addr = %listener.local_addr().unwrap_or(addr), "worker metrics listening");
    std::thread::Builder::new()
        .name("worker-metrics".to_owned())
        .spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = HttpServer::new(move || {
                    let stats = stats.clone();
                    App::new().route(
                        "/metrics",
                        web::get().to(move || {
                            let text = crate::worker::metrics::render(&stats());
                            async move {
                                HttpResponse::Ok()
                                    .content_type(crate::observe::metrics::CONTENT_TYPE)
                                    .body(text)
                            }
                        }),
                    )
                })
                .workers(1)
                .disable_signals()
                .listen(listener);
                match server {
                    Ok(server) => {
                        let _ = server.run().await;
                    }
                    Err(err) => tracing::error!(error = %err, "worker metrics stopped"),
                }
            });
        })?;
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Serve {
            config,
            listen,
            log_format,
        } => {
            telemetry::init(log_format);
            match server::serve(&config, listen) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    let _ = writeln!(std::io::stderr(), "switchyard: {err}");
                    ExitCode::from(2)
                }
            }
        }
        Command::Check { path, resolve } => check(&path, &resolve),
        Command::Openapi => print(&crate::routes::openapi::to_json()),
        Command::Schema => print(&config::schema::to_json()),
        Command::Init {
            backends,
            output,
            force,
        } => init(&backends, &output, force),
        Command::Worker(args) => worker(*args),
        Command::Admin { config, command } => admin::run(&config, command),
    }
}

fn print(text: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let _ = writeln!(std::io::stderr(), "switchyard: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The schema's file name beside a file written by `init`.
const INIT_SCHEMA_FILE: &str = "routes.schema.json";

fn init(backends: &[String], output: &Path, force: bool) -> ExitCode {
    let kinds: Vec<&str> = backends.iter().map(String::as_str).collect();
    let text = match config::starter::starter(&kinds, &format!("./{INIT_SCHEMA_FILE}")) {
        Ok(text) => text,
        Err(err) => {
            let _ = writeln!(std::io::stderr(), "switchyard init: {err}");
            return ExitCode::from(2);
        }
    };
    if output == Path::new("-") {
        return print(&text);
    }
    let schema = output.with_file_name(INIT_SCHEMA_FILE);
    let written = write_new(output, &text, force)
        .and_then(|()| std::fs::write(&schema, config::schema::to_json()));
    match written {
        Ok(()) => {
            let _ = writeln!(
                std::io::stdout(),
                "wrote {} and {}; check it with: switchyard check {}",
                output.display(),
                schema.display(),
                output.display()
            );
            ExitCode::SUCCESS
        }
        Err(err) => {
            let _ = writeln!(
                std::io::stderr(),
                "switchyard init: {}: {err}",
                output.display()
            );
            ExitCode::FAILURE
        }
    }
}

/// Writes `text` to `path`, refusing to replace an existing file unless `force`.
fn write_new(path: &Path, text: &str, force: bool) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut file = options.open(path)?;
    file.write_all(text.as_bytes())
}

/// `switchyard check`: the pipeline of `serve` and reload (`routing::load_table`), backends
/// built but nothing connected, so it accepts exactly the files they accept.
fn check(path: &Path, models: &[String]) -> ExitCode {
    match config::read(path).and_then(|source| crate::routing::load_table(&source, path, None)) {
        Ok((config, table)) => {
            let mut out = std::io::stdout().lock();
            let _ = write_table(&mut out, path, &config);
            if models.is_empty() {
                return ExitCode::SUCCESS;
            }
            resolve(&mut out, &table, models)
        }
        Err(errors) => {
            let _ = writeln!(std::io::stderr(), "{errors}");
            ExitCode::FAILURE
        }
    }
}

/// `check --resolve`: each model's route, through the table serving would build.
fn resolve(out: &mut impl Write, table: &RouteTable, models: &[String]) -> ExitCode {
    let _ = writeln!(out, "\nresolve:");
    let mut all_routed = true;
    for model in models {
        let _ = match explain(table, model) {
            Some(a) => writeln!(
                out,
                "  {model} -> route {:?} -> backend {} ({}) as model {:?}",
                a.prefix, a.backend, a.kind, a.upstream_model
            ),
            None => {
                all_routed = false;
                writeln!(
                    out,
                    "  {model} -> no route (a request gets 404 model_not_found)"
                )
            }
        };
    }
    if all_routed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// A Redis URL for display: as written when it refers to the environment (defaults and any
/// password redacted), else with any password redacted.
fn redacted_redis_url(source: &str) -> String {
    if config::has_reference(source) {
        return telemetry::redacted_url_text(&config::redacted_defaults(source));
    }
    url::Url::parse(source).map_or_else(
        |_| "<invalid>".to_owned(),
        |url| telemetry::redacted_url(&url),
    )
}

/// The backends part of `check`'s table, never a secret.
fn write_backends(out: &mut impl Write, config: &Config) -> std::io::Result<()> {
    writeln!(out, "\nbackends:")?;
    for b in &config.backends {
        match &b.settings {
            BackendSettings::OpenAI(http)
            | BackendSettings::Proxy(http)
            | BackendSettings::Ollama(http) => {
                let key = match &http.api_key_source {
                    // `${KEY}` (default redacted); literal text around a reference is key text.
                    Some(source) if config::is_one_reference(source) => {
                        config::redacted_defaults(source)
                    }
                    Some(_) => "<set>".to_owned(),
                    None => "<client's Authorization>".to_owned(),
                };
                let headers: Vec<&str> = http.headers.iter().map(|(n, _)| n.as_str()).collect();
                writeln!(
                    out,
                    "  {:<16} {:<6} {}  api_key={}{}",
                    b.name,
                    b.settings.kind(),
                    telemetry::redacted_url(&http.base_url),
                    key,
                    if headers.is_empty() {
                        String::new()
                    } else {
                        format!("  headers={}", headers.join(","))
                    }
                )?;
            }
            BackendSettings::Echo => writeln!(out, "  {:<16} {:<6}", b.name, b.settings.kind())?,
            BackendSettings::Redis(redis) => writeln!(
                out,
                "  {:<16} {:<6} {}  timeout={} pickup_timeout={}",
                b.name,
                b.settings.kind(),
                redacted_redis_url(&redis.url_source),
                humantime::format_duration(redis.timeout),
                humantime::format_duration(redis.pickup_timeout)
            )?,
            BackendSettings::Batch(batch) => writeln!(
                out,
                "  {:<16} {:<6} {}  window={} poll={} max_lines={}",
                b.name,
                b.settings.kind(),
                crate::telemetry::redacted_url(&batch.http.base_url),
                humantime::format_duration(batch.window),
                humantime::format_duration(batch.poll),
                batch.max_lines
            )?,
        }
    }
    Ok(())
}

fn write_table(out: &mut impl Write, path: &Path, config: &Config) -> std::io::Result<()> {
    writeln!(
        out,
        "{}: OK ({} backends, {} routes)",
        path.display(),
        config.backends.len(),
        config.routes.len()
    )?;
    write_backends(out, config)?;
    if let (Some(auth), Some(store)) = (&config.auth, &config.store) {
        writeln!(
            out,
            "\nauth: on (store {}, master_key <set>, {} previous master keys, admin_token <set>)",
            store.display,
            auth.previous_master_keys.len()
        )?;
    }
    writeln!(out, "\nroutes (longest prefix wins):")?;
    let mut routes: Vec<_> = config.routes.iter().collect();
    routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
    for r in routes {
        let prefix = if r.prefix.is_empty() {
            "\"\" (catch-all)".to_owned()
        } else {
            r.prefix.clone()
        };
        writeln!(
            out,
            "  {:<20} -> {:<16} strip_prefix={:<5} discover={:<5} models=[{}]",
            prefix,
            describe_backends(r),
            r.strip_prefix,
            r.discover,
            r.models.join(", ")
        )?;
    }
    Ok(())
}

/// A route's backends as `check` shows them: `a`, or `a*3, b*1 then c` with fallbacks.
fn describe_backends(route: &crate::config::RouteConfig) -> String {
    let mut text = if route.backends.len() == 1 {
        route.backends[0].name.clone()
    } else {
        let weighted: Vec<String> = route
            .backends
            .iter()
            .map(|b| format!("{}*{}", b.name, b.weight))
            .collect();
        weighted.join(", ")
    };
    if !route.fallback.is_empty() {
        text.push_str(" then ");
        text.push_str(&route.fallback.join(", "));
    }
    text
}
