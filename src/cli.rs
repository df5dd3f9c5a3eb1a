//! The command line: `serve`, `check` and `openapi` (and `worker` in a later issue).

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, BackendSettings, Config};
use crate::server;
use crate::telemetry::{self, LogFormat};

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
    },
    /// Print the OpenAPI 3.1 document of the gateway's API (what `openapi/openapi.json` holds).
    Openapi,
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
        Command::Check { path } => check(&path),
        Command::Openapi => {
            let mut out = std::io::stdout().lock();
            match out
                .write_all(crate::openapi::to_json().as_bytes())
                .and_then(|()| out.flush())
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    let _ = writeln!(std::io::stderr(), "switchyard: {err}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn check(path: &Path) -> ExitCode {
    match config::load(path) {
        Ok((config, _)) => {
            let mut out = std::io::stdout().lock();
            let _ = write_table(&mut out, path, &config);
            ExitCode::SUCCESS
        }
        Err(errors) => {
            let _ = writeln!(std::io::stderr(), "{errors}");
            ExitCode::FAILURE
        }
    }
}

/// A URL for display: a password in it (`https://user:pw@host`) is never printed.
fn redacted(url: &url::Url) -> String {
    if url.password().is_none() {
        return url.to_string();
    }
    let mut shown = url.clone();
    let _ = shown.set_password(Some("<redacted>"));
    shown.to_string()
}

fn write_table(out: &mut impl Write, path: &Path, config: &Config) -> std::io::Result<()> {
    writeln!(
        out,
        "{}: OK ({} backends, {} routes)",
        path.display(),
        config.backends.len(),
        config.routes.len()
    )?;
    writeln!(out, "\nbackends:")?;
    for b in &config.backends {
        match &b.settings {
            BackendSettings::OpenAI(http)
            | BackendSettings::Proxy(http)
            | BackendSettings::Ollama(http) => {
                let key = match &http.api_key_source {
                    Some(source) if config::has_reference(source) => source.clone(),
                    Some(_) => "<set>".to_owned(),
                    None => "<client's Authorization>".to_owned(),
                };
                let headers: Vec<&str> = http.headers.iter().map(|(n, _)| n.as_str()).collect();
                writeln!(
                    out,
                    "  {:<16} {:<6} {}  api_key={}{}",
                    b.name,
                    b.settings.kind(),
                    redacted(&http.base_url),
                    key,
                    if headers.is_empty() {
                        String::new()
                    } else {
                        format!("  headers={}", headers.join(","))
                    }
                )?;
            }
            BackendSettings::Echo => writeln!(out, "  {:<16} {:<6}", b.name, b.settings.kind())?,
        }
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
            r.backend,
            r.strip_prefix,
            r.discover,
            r.models.join(", ")
        )?;
    }
    Ok(())
}
