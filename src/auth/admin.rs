//! The operator's operations on projects, credentials and keys: one set of functions behind both
//! the admin API (`/admin/v1`) and `switchyard admin`, with every input bounded and checked.

use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Auth, store_unavailable, token};
use crate::error::GatewayError;
use crate::store::{CredentialRow, KeyRow, NewKey, ProjectRow, StoreError};

const MAX_NAME: usize = 128;
const MAX_PREFIXES: usize = 64;
const MAX_CREDENTIAL: usize = 4096;

/// `POST /admin/v1/projects`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectSpec {
    /// Unique name, 1 to 128 characters.
    #[schema(example = "team-a", min_length = 1, max_length = 128)]
    pub name: String,
    /// Model-name prefixes the project's keys may use (`""` is every model); at most 64.
    #[schema(example = json!(["echo/", "openai/"]), max_items = 64)]
    pub models: Vec<String>,
}

/// `PATCH /admin/v1/projects/{id}`: the fields to change.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectPatch {
    /// New name, 1 to 128 characters.
    #[schema(min_length = 1, max_length = 128)]
    pub name: Option<String>,
    /// New model prefixes (at most 64), replacing the list.
    #[schema(max_items = 64)]
    pub models: Option<Vec<String>>,
}

/// A project.
#[derive(Debug, Serialize, ToSchema)]
pub struct Project {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its model prefixes.
    pub models: Vec<String>,
    /// Unix seconds.
    pub created_at: i64,
}

/// `PUT /admin/v1/projects/{id}/credentials/{backend}`: write-only, never returned.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialSpec {
    /// The project's key for that backend, sent upstream as `Authorization: Bearer`: 1 to
    /// 4096 printable ASCII characters, no spaces.
    #[schema(example = "sk-upstream-key", pattern = "^[!-~]{1,4096}$")]
    pub api_key: String,
}

/// `POST /admin/v1/projects/{id}/keys`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    /// A name for people, 1 to 128 characters.
    #[schema(min_length = 1, max_length = 128)]
    pub name: Option<String>,
    /// Its scope: prefixes within the project's (default: the project's); at most 64.
    #[schema(max_items = 64)]
    pub models: Option<Vec<String>>,
    /// Lifetime: a number of seconds, minutes, hours or days (`"90s"`, `"30m"`, `"1h"`,
    /// `"90d"`), at most 9999 days; default: no expiry.
    #[schema(example = "1h", pattern = "^[1-9][0-9]{0,3}[smhd]$")]
    pub expires_in: Option<String>,
    /// How many requests it may make in all; default: no cap.
    #[schema(minimum = 1)]
    pub max_requests: Option<i64>,
}

/// A key just created: the only time `key` is shown.
#[derive(Serialize, ToSchema)]
pub struct CreatedKey {
    /// Its id, to revoke it.
    pub id: String,
    /// The key itself (`sk-sy-…`); store it now, it cannot be shown again.
    pub key: String,
    /// Its visible start, as listings show it.
    pub prefix: String,
    /// Unix seconds, or null.
    pub expires_at: Option<i64>,
    /// Its own scope, or null for the project's.
    pub models: Option<Vec<String>>,
    /// Its request cap, or null.
    pub max_requests: Option<i64>,
}

/// A key as listed: never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyInfo {
    /// Its id.
    pub id: String,
    /// Its project.
    pub project_id: String,
    /// Its name.
    pub name: Option<String>,
    /// Its visible start.
    pub prefix: String,
    /// Its own scope, or null for the project's.
    pub models: Option<Vec<String>>,
    /// Unix seconds, or null.
    pub expires_at: Option<i64>,
    /// Request cap, or null.
    pub max_requests: Option<i64>,
    /// Requests counted against the cap.
    pub used_requests: i64,
    /// Unix seconds.
    pub created_at: i64,
}

fn invalid(param: &str, message: impl Into<String>) -> GatewayError {
    GatewayError::InvalidField {
        param: Some(param.to_owned()),
        message: message.into(),
    }
}

pub(super) fn store_error(err: StoreError) -> GatewayError {
    match err {
        StoreError::Conflict(what) => GatewayError::Conflict {
            message: format!("{what} already exists"),
        },
        other => store_unavailable(other),
    }
}

fn check_name(param: &str, name: &str) -> Result<(), GatewayError> {
    if name.is_empty() || name.chars().count() > MAX_NAME {
        return Err(invalid(
            param,
            format!("must be 1 to {MAX_NAME} characters"),
        ));
    }
    Ok(())
}

fn check_prefixes(param: &str, models: &[String]) -> Result<(), GatewayError> {
    // Each prefix is bounded by the admin body limit (64 KiB).
    if models.len() > MAX_PREFIXES {
        return Err(invalid(param, format!("at most {MAX_PREFIXES} prefixes")));
    }
    Ok(())
}

fn project_out(row: ProjectRow) -> Project {
    Project {
        id: row.id,
        name: row.name,
        models: row.models,
        created_at: row.created_at,
    }
}

impl Auth {
    async fn project_row(&self, id: &str) -> Result<ProjectRow, GatewayError> {
        self.store()
            .project(id)
            .await
            .map_err(store_error)?
            .ok_or_else(|| GatewayError::NotFound {
                what: "project",
                id: id.to_owned(),
            })
    }

    /// Creates a project.
    pub async fn create_project(&self, spec: ProjectSpec) -> Result<Project, GatewayError> {
        check_name("name", &spec.name)?;
        check_prefixes("models", &spec.models)?;
        let row = ProjectRow {
            id: uuid::Uuid::new_v4().to_string(),
            name: spec.name,
            models: spec.models,
            created_at: self.clock().now(),
        };
        self.store()
            .insert_project(&row)
            .await
            .map_err(store_error)?;
        Ok(project_out(row))
    }

    /// Every project.
    pub async fn list_projects(&self) -> Result<Vec<Project>, GatewayError> {
        let rows = self.store().projects().await.map_err(store_error)?;
        Ok(rows.into_iter().map(project_out).collect())
    }

    /// One project.
    pub async fn get_project(&self, id: &str) -> Result<Project, GatewayError> {
        self.project_row(id).await.map(project_out)
    }

    /// Renames a project or changes its prefixes.
    pub async fn update_project(
        &self,
        id: &str,
        patch: ProjectPatch,
    ) -> Result<Project, GatewayError> {
        let mut row = self.project_row(id).await?;
        if let Some(name) = patch.name {
            check_name("name", &name)?;
            row.name = name;
        }
        if let Some(models) = patch.models {
            check_prefixes("models", &models)?;
            row.models = models;
        }
        if !self
            .store()
            .update_project(&row)
            .await
            .map_err(store_error)?
        {
            return Err(GatewayError::NotFound {
                what: "project",
                id: id.to_owned(),
            });
        }
        Ok(project_out(row))
    }

    /// Deletes a project, its keys (refused from then on) and its credentials.
    pub async fn delete_project(&self, id: &str) -> Result<(), GatewayError> {
        if !self.store().delete_project(id).await.map_err(store_error)? {
            return Err(GatewayError::NotFound {
                what: "project",
                id: id.to_owned(),
            });
        }
        Ok(())
    }

    /// Seals and stores the project's credential for `backend`.
    pub async fn put_credential(
        &self,
        id: &str,
        backend: &str,
        spec: CredentialSpec,
    ) -> Result<(), GatewayError> {
        check_backend(backend)?;
        let key = spec.api_key.as_str();
        if key.is_empty()
            || key.len() > MAX_CREDENTIAL
            || !key.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(invalid(
                "api_key",
                format!("must be 1 to {MAX_CREDENTIAL} printable ASCII characters without spaces"),
            ));
        }
        self.project_row(id).await?;
        let sealed =
            self.master_key()
                .seal(id, backend, key)
                .map_err(|e| GatewayError::Internal {
                    message: e.to_string(),
                })?;
        let row = CredentialRow {
            project_id: id.to_owned(),
            backend: backend.to_owned(),
            sealed,
        };
        self.store()
            .put_credential(&row, self.clock().now())
            .await
            .map_err(store_error)
    }

    /// Removes the project's credential for `backend`.
    pub async fn delete_credential(&self, id: &str, backend: &str) -> Result<(), GatewayError> {
        if !self
            .store()
            .delete_credential(id, backend)
            .await
            .map_err(store_error)?
        {
            return Err(GatewayError::NotFound {
                what: "credential",
                id: format!("{id}/{backend}"),
            });
        }
        Ok(())
    }

    /// Mints a key for a project.
    pub async fn create_key(&self, id: &str, spec: KeySpec) -> Result<CreatedKey, GatewayError> {
        let project = self.project_row(id).await?;
        check_key_spec(&project, &spec)?;
        let now = self.clock().now();
        let expires_at = match &spec.expires_in {
            Some(text) => Some(now.saturating_add(parse_lifetime(text)?)),
            None => None,
        };
        let token = token::generate().map_err(|e| GatewayError::Internal {
            message: format!("no randomness: {e}"),
        })?;
        let key = NewKey {
            id: uuid::Uuid::new_v4().to_string(),
            project_id: project.id,
            name: spec.name,
            prefix: token.prefix,
            hash: token.hash_hex,
            models: spec.models,
            expires_at,
            max_requests: spec.max_requests,
            created_at: now,
        };
        self.store().insert_key(&key).await.map_err(store_error)?;
        Ok(CreatedKey {
            id: key.id,
            key: token.secret.expose_secret().to_owned(),
            prefix: key.prefix,
            expires_at,
            models: key.models,
            max_requests: key.max_requests,
        })
    }

    /// A project's keys, without their secrets.
    pub async fn list_keys(&self, id: &str) -> Result<Vec<KeyInfo>, GatewayError> {
        self.project_row(id).await?;
        let rows = self.store().keys(id).await.map_err(store_error)?;
        Ok(rows.into_iter().map(key_out).collect())
    }

    /// Revokes a key: every instance refuses it within a second.
    pub async fn revoke_key(&self, key_id: &str) -> Result<(), GatewayError> {
        if !self.store().delete_key(key_id).await.map_err(store_error)? {
            return Err(GatewayError::NotFound {
                what: "key",
                id: key_id.to_owned(),
            });
        }
        // This instance need not wait for its own poll.
        self.retire_cache();
        Ok(())
    }

    /// Re-seals every credential not sealed under the current master key (opened with a
    /// `previous_master_keys` entry), in one transaction. Returns how many were re-sealed.
    pub async fn rotate_master_key(&self) -> Result<usize, GatewayError> {
        let rows = self.store().credentials(None).await.map_err(store_error)?;
        let mut resealed = Vec::new();
        for row in rows {
            if super::seal::sealed_key_id(&row.sealed) == Some(self.master_key().id()) {
                continue;
            }
            let plain = self.open(&row.project_id, &row.backend, &row.sealed)?;
            let sealed = self
                .master_key()
                .seal(&row.project_id, &row.backend, plain.expose_secret())
                .map_err(|e| GatewayError::Internal {
                    message: e.to_string(),
                })?;
            resealed.push(CredentialRow { sealed, ..row });
        }
        self.store()
            .reseal_credentials(&resealed)
            .await
            .map_err(store_error)?;
        Ok(resealed.len())
    }
}

/// A key's name, scope (within its project's prefixes) and cap.
fn check_key_spec(project: &ProjectRow, spec: &KeySpec) -> Result<(), GatewayError> {
    if let Some(name) = &spec.name {
        check_name("name", name)?;
    }
    if let Some(models) = &spec.models {
        check_prefixes("models", models)?;
        let within = |m: &&String| project.models.iter().any(|p| m.starts_with(p.as_str()));
        if let Some(outside) = models.iter().find(|m| !within(m)) {
            return Err(invalid(
                "models",
                format!("`{outside}` is outside the project's prefixes"),
            ));
        }
    }
    if spec.max_requests.is_some_and(|n| n < 1) {
        return Err(invalid("max_requests", "must be at least 1"));
    }
    Ok(())
}

fn key_out(row: KeyRow) -> KeyInfo {
    KeyInfo {
        id: row.id,
        project_id: row.project_id,
        name: row.name,
        prefix: row.prefix,
        models: row.models,
        expires_at: row.expires_at,
        max_requests: row.max_requests,
        used_requests: row.used_requests,
        created_at: row.created_at,
    }
}

/// A backend name as routes.toml's `[backends.<name>]` keys are written: it is part of the
/// associated data of the sealed credential, so it is kept to a plain, NUL-free alphabet.
fn check_backend(backend: &str) -> Result<(), GatewayError> {
    let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.');
    if backend.is_empty() || backend.len() > MAX_NAME || !backend.bytes().all(plain) {
        return Err(invalid(
            "backend",
            format!("must be 1 to {MAX_NAME} letters, digits, `_`, `-` or `.`"),
        ));
    }
    Ok(())
}

/// `"1h"` → seconds: 1 to 4 digits (no leading zero) and one of `s`, `m`, `h`, `d`: exactly the
/// documented pattern, so what the schema allows is what is accepted.
fn parse_lifetime(text: &str) -> Result<i64, GatewayError> {
    let refuse = || {
        invalid(
            "expires_in",
            format!("`{text}` is not a lifetime such as \"1h\" (1 to 9999 s, m, h or d)"),
        )
    };
    let (digits, unit) = text
        .split_at_checked(text.len().saturating_sub(1))
        .ok_or_else(refuse)?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(refuse()),
    };
    let well_formed = (1..=4).contains(&digits.len())
        && !digits.starts_with('0')
        && digits.bytes().all(|b| b.is_ascii_digit());
    let n: i64 = digits
        .parse()
        .ok()
        .filter(|_| well_formed)
        .ok_or_else(refuse)?;
    Ok(n * unit)
}
