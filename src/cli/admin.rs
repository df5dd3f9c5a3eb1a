//! `switchyard admin`: the admin API's operations run on the store directly (the same
//! `crate::auth::admin` functions), for operators without a running gateway. Answers are printed
//! as the API's JSON; errors go to stderr with exit code 1 (2 when the store cannot be opened).

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Subcommand;
use secrecy::ExposeSecret;
use serde::Serialize;

use crate::auth::Auth;
use crate::auth::admin::{CredentialSpec, KeySpec, ProjectPatch, ProjectSpec};
use crate::auth::clock::SystemClock;
use crate::auth::rate_limits::RateLimitSpec;
use crate::config;
use crate::error::GatewayError;
use crate::store::{LimitOwner, Store};
use crate::usage::report::{UsageQuery, report};

/// What `switchyard admin` does.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create a project.
    CreateProject {
        /// Unique name.
        #[arg(long)]
        name: String,
        /// Model prefixes its keys may use (repeatable; `""` is every model).
        #[arg(long = "model", required = true)]
        models: Vec<String>,
    },
    /// List the projects.
    ListProjects,
    /// Rename a project or replace its model prefixes.
    UpdateProject {
        /// Project id.
        id: String,
        /// New name.
        #[arg(long)]
        name: Option<String>,
        /// New model prefixes (repeatable; replaces the list).
        #[arg(long = "model")]
        models: Vec<String>,
    },
    /// Delete a project with its keys and credentials.
    DeleteProject {
        /// Project id.
        id: String,
    },
    /// Store a project's upstream credential for a backend, read from stdin (never an argument:
    /// arguments show in `ps` and shell history).
    SetCredential {
        /// Project id.
        id: String,
        /// Backend name.
        backend: String,
    },
    /// Remove a project's upstream credential for a backend.
    DeleteCredential {
        /// Project id.
        id: String,
        /// Backend name.
        backend: String,
    },
    /// Mint a gateway key (printed once).
    CreateKey {
        /// Project id.
        id: String,
        /// A name for people.
        #[arg(long)]
        name: Option<String>,
        /// Scope within the project's prefixes (repeatable; default: the project's).
        #[arg(long = "model")]
        models: Vec<String>,
        /// Lifetime, e.g. `1h`.
        #[arg(long)]
        expires_in: Option<String>,
        /// Request cap.
        #[arg(long)]
        max_requests: Option<i64>,
    },
    /// List a project's keys (never their secrets).
    ListKeys {
        /// Project id.
        id: String,
    },
    /// Revoke a key.
    RevokeKey {
        /// Key id.
        id: String,
    },
    /// Set the rate limit of a project (all its keys together) or of one key; no limit given
    /// removes it.
    SetRateLimit {
        /// A project id.
        #[arg(long, conflicts_with = "key", required_unless_present = "key")]
        project: Option<String>,
        /// A key id.
        #[arg(long)]
        key: Option<String>,
        /// Requests per minute.
        #[arg(long)]
        requests_per_minute: Option<i64>,
        /// Tokens per minute.
        #[arg(long)]
        tokens_per_minute: Option<i64>,
        /// Requests in progress at once.
        #[arg(long)]
        max_concurrent: Option<i64>,
    },
    /// Usage summed from the store, per model, key or day.
    Usage {
        /// Only this project (id).
        #[arg(long)]
        project: Option<String>,
        /// Only this key (id).
        #[arg(long)]
        key: Option<String>,
        /// From this time: `2026-11-30`, RFC 3339 or Unix seconds.
        #[arg(long)]
        from: Option<String>,
        /// Before this time.
        #[arg(long)]
        to: Option<String>,
        /// `model` (default), `key` or `day`.
        #[arg(long)]
        group_by: Option<String>,
    },
    /// Re-seal every upstream credential under `[auth] master_key`, opening those sealed under
    /// a key of `previous_master_keys`.
    RotateMasterKey,
}

/// Runs one admin command against the store of the config at `path`.
pub fn run(path: &Path, command: AdminCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return fail(2, &err),
    };
    runtime.block_on(async move {
        let auth = match open(path).await {
            Ok(auth) => auth,
            Err(err) => return fail(2, &err),
        };
        let result = execute(&auth, command).await;
        auth.store().close().await;
        match result {
            Ok(json) => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{json}");
                ExitCode::SUCCESS
            }
            Err(err) => fail(1, &err),
        }
    })
}

fn fail(code: u8, err: &dyn std::fmt::Display) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "switchyard admin: {err}");
    ExitCode::from(code)
}

async fn open(path: &Path) -> Result<Auth, String> {
    let source = config::read(path).map_err(|e| e.to_string())?;
    let config = config::parse(&source, path).map_err(|e| e.to_string())?;
    let (Some(auth), Some(store)) = (&config.auth, &config.store) else {
        return Err(format!(
            "{}: no [auth] table, so there are no keys to manage",
            path.display()
        ));
    };
    let opened = Store::open(store.url.expose_secret())
        .await
        .map_err(|e| format!("store {}: {e}", store.display))?;
    Auth::new(opened, auth, Arc::new(SystemClock))
        .await
        .map_err(|e| format!("store {}: {e}", store.display))
}

fn json(value: &impl Serialize) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

async fn execute(auth: &Auth, command: AdminCommand) -> Result<String, GatewayError> {
    use AdminCommand::*;
    Ok(match command {
        CreateProject { name, models } => {
            json(&auth.create_project(ProjectSpec { name, models }).await?)
        }
        ListProjects => json(&auth.list_projects().await?),
        UpdateProject { id, name, models } => {
            let models = (!models.is_empty()).then_some(models);
            json(
                &auth
                    .update_project(&id, ProjectPatch { name, models })
                    .await?,
            )
        }
        DeleteProject { id } => {
            auth.delete_project(&id).await?;
            json(&serde_json::json!({"deleted": id}))
        }
        SetCredential { id, backend } => {
            let api_key = read_stdin()?;
            auth.put_credential(&id, &backend, CredentialSpec { api_key })
                .await?;
            json(&serde_json::json!({"project": id, "backend": backend, "stored": true}))
        }
        DeleteCredential { id, backend } => {
            auth.delete_credential(&id, &backend).await?;
            json(&serde_json::json!({"project": id, "backend": backend, "deleted": true}))
        }
        CreateKey {
            id,
            name,
            models,
            expires_in,
            max_requests,
        } => {
            let models = (!models.is_empty()).then_some(models);
            let spec = KeySpec {
                name,
                models,
                expires_in,
                max_requests,
            };
            json(&auth.create_key(&id, spec).await?)
        }
        ListKeys { id } => json(&auth.list_keys(&id).await?),
        RevokeKey { id } => {
            auth.revoke_key(&id).await?;
            json(&serde_json::json!({"revoked": id}))
        }
        SetRateLimit {
            project,
            key,
            requests_per_minute,
            tokens_per_minute,
            max_concurrent,
        } => {
            let spec = RateLimitSpec {
                requests_per_minute,
                tokens_per_minute,
                max_concurrent,
            };
            let (owner, id) = limit_owner(project, key);
            json(&auth.set_rate_limit(owner, &id, spec).await?)
        }
        Usage {
            project,
            key,
            from,
            to,
            group_by,
        } => {
            let query = UsageQuery {
                project,
                key,
                from,
                to,
                group_by,
            };
            json(&report(auth.store(), &query).await?)
        }
        RotateMasterKey => json(&serde_json::json!({"resealed": auth.rotate_master_key().await?})),
    })
}

/// Whose rate limit `set-rate-limit` sets: the project's when given, else the key's.
fn limit_owner(project: Option<String>, key: Option<String>) -> (LimitOwner, String) {
    match (project, key) {
        (Some(project), _) => (LimitOwner::Project, project),
        (None, key) => (LimitOwner::Key, key.unwrap_or_default()),
    }
}

/// The credential from stdin: one line, at most 4 KiB (more is refused, not truncated).
fn read_stdin() -> Result<String, GatewayError> {
    let mut text = String::new();
    std::io::stdin()
        .take(4097)
        .read_to_string(&mut text)
        .map_err(|e| GatewayError::InvalidField {
            param: Some("api_key".into()),
            message: format!("cannot read stdin: {e}"),
        })?;
    Ok(text.trim().to_owned())
}
