//! Who may call, for which models, with whose upstream credentials (`[auth]`).
//!
//! A request's `Authorization: Bearer sk-sy-…` is hashed (SHA-256) and looked up in a bounded
//! in-process cache (moka), then in the store on a miss. The answer, a `Grant`, carries the key's
//! scope, expiry, request cap and its project's upstream credentials, opened once and kept in
//! memory as sensitive header values. A background task polls the store's revision counter every
//! 250 ms and retires every cached answer when it moves, so a key revoked through any instance is
//! refused by all within a second, on SQLite and PostgreSQL alike. When the store is down, cached
//! keys keep working and unknown ones get a 503.
//!
//! Not here: the database itself (`crate::store`), HTTP handlers (`crate::routes::admin`).

pub mod admin;
pub mod clock;
pub mod rate_limits;
pub mod seal;
pub mod token;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use actix_web::http::header::HeaderMap;
// The upstream client's (http 1) type: a credential goes upstream as is, with no conversion
// from actix's http 0.2 type on each request.
use reqwest::header::HeaderValue;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{AuthConfig, RateLimit};
use crate::error::GatewayError;
use crate::store::{KeyGrantRow, Store, StoreError};
use clock::Clock;
use rate_limits::RateLimitSpec;
use seal::MasterKey;

/// How often each instance reads the store's revision: revocations take effect within this
/// (plus one query), well inside the promised second.
pub const REVISION_POLL: Duration = Duration::from_millis(250);
/// Cached answers (known and unknown keys alike): bounded, least-useful evicted first.
const CACHE_CAPACITY: u64 = 100_000;

/// What a valid key may do. Shared by every request made with it until the cache retires it.
#[derive(Debug)]
pub struct Grant {
    /// The key's id.
    pub key_id: String,
    /// Its project.
    pub project_id: String,
    key_models: Option<Box<[String]>>,
    project_models: Box<[String]>,
    expires_at: Option<i64>,
    capped: bool,
    /// Backend name → `Bearer <credential>`, marked sensitive.
    credentials: HashMap<String, HeaderValue>,
    /// The key's own rate limit, if set.
    pub key_rate_limit: Option<RateLimit>,
    /// Its project's rate limit (shared by the project's keys), if set.
    pub project_rate_limit: Option<RateLimit>,
}

impl Grant {
    /// Whether the key may use `model`: within its project's prefixes and, when the key has a
    /// scope of its own, within that too.
    pub fn permits(&self, model: &str) -> bool {
        let within = |prefixes: &[String]| prefixes.iter().any(|p| model.starts_with(p.as_str()));
        within(&self.project_models) && self.key_models.as_deref().is_none_or(within)
    }

    /// The project's credential for `backend`, as an `Authorization` value.
    pub fn credential(&self, backend: &str) -> Option<&HeaderValue> {
        self.credentials.get(backend)
    }
}

/// A cached lookup: the grant (or `None` for an unknown key) and the cache generation it was
/// read in; an answer from an older generation is ignored, so a lookup racing a revocation can
/// never re-insert a stale grant.
#[derive(Clone)]
struct Cached {
    generation: u64,
    grant: Option<Arc<Grant>>,
}

/// The key checker of a running gateway.
pub struct Auth {
    store: Store,
    clock: Arc<dyn Clock>,
    master: MasterKey,
    previous: Vec<MasterKey>,
    admin_token_hash: [u8; 32],
    cache: moka::sync::Cache<[u8; 32], Cached>,
    generation: AtomicU64,
    revision: std::sync::atomic::AtomicI64,
    store_down: AtomicBool,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("master", &self.master)
            .finish_non_exhaustive()
    }
}

impl Auth {
    /// Key checking over an open store.
    pub async fn new(
        store: Store,
        config: &AuthConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Auth, StoreError> {
        let revision = store.auth_revision().await?;
        Ok(Auth {
            store,
            clock,
            master: MasterKey::new(*config.master_key.expose_secret()),
            previous: config
                .previous_master_keys
                .iter()
                .map(|k| MasterKey::new(*k.expose_secret()))
                .collect(),
            admin_token_hash: Sha256::digest(config.admin_token.expose_secret().as_bytes()).into(),
            cache: moka::sync::Cache::new(CACHE_CAPACITY),
            generation: AtomicU64::new(0),
            revision: std::sync::atomic::AtomicI64::new(revision),
            store_down: AtomicBool::new(false),
        })
    }

    /// The store (for the admin functions).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The clock expiry is judged by.
    pub fn clock(&self) -> &dyn Clock {
        self.clock.as_ref()
    }

    /// The master key credentials are sealed with.
    pub fn master_key(&self) -> &MasterKey {
        &self.master
    }

    /// Checks the request's gateway key: 401 when missing, unknown or expired; 503 when it is
    /// not cached and the store cannot be asked.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<Grant>, GatewayError> {
        let token = token::bearer(headers).ok_or(GatewayError::InvalidApiKey)?;
        self.grant_of_hash(token::hash(token)).await
    }

    /// The grant of the key whose hex SHA-256 is `hash_hex`, checked as `authenticate` checks
    /// a key: a batch runs its lines under the key that created it without holding the key.
    pub async fn grant_of_hex(&self, hash_hex: &str) -> Result<Arc<Grant>, GatewayError> {
        let hash = token::unhex(hash_hex).ok_or(GatewayError::InvalidApiKey)?;
        self.grant_of_hash(hash).await
    }

    async fn grant_of_hash(&self, hash: [u8; 32]) -> Result<Arc<Grant>, GatewayError> {
        let generation = self.generation.load(Ordering::Acquire);
        let grant = match self.cache.get(&hash) {
            Some(hit) if hit.generation == generation => hit.grant,
            _ => {
                let grant = self.load_grant(&hash).await?;
                self.cache.insert(
                    hash,
                    Cached {
                        generation,
                        grant: grant.clone(),
                    },
                );
                grant
            }
        };
        let grant = grant.ok_or(GatewayError::InvalidApiKey)?;
        if grant.expires_at.is_some_and(|at| self.clock.now() >= at) {
            return Err(GatewayError::InvalidApiKey);
        }
        Ok(grant)
    }

    /// Lets `grant` make one request for `model`: 403 outside its scope, 429 when its request
    /// cap is used up (counted in the store, atomically across instances).
    pub async fn admit(&self, grant: &Grant, model: &str) -> Result<(), GatewayError> {
        if !grant.permits(model) {
            return Err(GatewayError::ModelNotPermitted {
                model: model.to_owned(),
            });
        }
        if grant.capped {
            match self.store.consume_request(&grant.key_id).await {
                Ok(true) => {}
                Ok(false) => return Err(GatewayError::RequestLimitReached),
                Err(err) => return Err(store_unavailable(err)),
            }
        }
        Ok(())
    }

    /// Checks `/admin/v1`'s bearer token, in constant time.
    pub fn check_admin(&self, headers: &HeaderMap) -> Result<(), GatewayError> {
        let given = token::bearer(headers).ok_or(GatewayError::InvalidAdminToken)?;
        let given: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        if bool::from(given.ct_eq(&self.admin_token_hash)) {
            Ok(())
        } else {
            Err(GatewayError::InvalidAdminToken)
        }
    }

    async fn load_grant(&self, hash: &[u8; 32]) -> Result<Option<Arc<Grant>>, GatewayError> {
        let hex = token::hex(hash);
        let row = self
            .store
            .key_grant(&hex)
            .await
            .map_err(store_unavailable)?;
        // The database found the row by an index on the hash; compare again in constant time so
        // nothing about how far two hashes agree leaks through timing.
        let Some(row) = row.filter(|r| bool::from(r.hash.as_bytes().ct_eq(hex.as_bytes()))) else {
            return Ok(None);
        };
        let credentials = self.open_credentials(&row.project_id).await?;
        Ok(Some(Arc::new(grant(row, credentials))))
    }

    async fn open_credentials(
        &self,
        project: &str,
    ) -> Result<HashMap<String, HeaderValue>, GatewayError> {
        let rows = self
            .store
            .credentials(Some(project))
            .await
            .map_err(store_unavailable)?;
        let mut out = HashMap::with_capacity(rows.len());
        for row in rows {
            let secret = self.open(&row.project_id, &row.backend, &row.sealed)?;
            let mut value = HeaderValue::from_str(&format!("Bearer {}", secret.expose_secret()))
                .map_err(|_| GatewayError::Internal {
                    message: format!(
                        "project {project}: credential for `{}` is not a header value",
                        row.backend
                    ),
                })?;
            value.set_sensitive(true);
            out.insert(row.backend, value);
        }
        Ok(out)
    }

    /// Opens a sealed credential with the master key, or a previous one during a rotation.
    pub fn open(
        &self,
        project: &str,
        backend: &str,
        sealed: &str,
    ) -> Result<secrecy::SecretString, GatewayError> {
        let id = seal::sealed_key_id(sealed);
        let key = std::iter::once(&self.master)
            .chain(&self.previous)
            .find(|k| Some(k.id()) == id)
            .unwrap_or(&self.master);
        key.open(project, backend, sealed)
            .map_err(|err| GatewayError::Internal {
                message: format!("project {project}: credential for `{backend}`: {err}"),
            })
    }

    /// The previous master keys (`[auth] previous_master_keys`), for re-sealing.
    pub fn previous_master_keys(&self) -> &[MasterKey] {
        &self.previous
    }

    /// Reads the store's revision once; retires every cached answer when it moved.
    pub async fn poll_revision(&self) {
        match self.store.auth_revision().await {
            Ok(revision) => {
                if self.store_down.swap(false, Ordering::Relaxed) {
                    tracing::info!("the store is reachable again");
                }
                if self.revision.swap(revision, Ordering::AcqRel) != revision {
                    self.retire_cache();
                }
            }
            Err(err) => {
                if !self.store_down.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %err, "the store is unreachable: cached keys keep working, unknown keys get 503");
                }
            }
        }
    }

    /// Drops every cached answer (after a change made anywhere).
    pub fn retire_cache(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.cache.invalidate_all();
    }

    /// Polls the revision every `REVISION_POLL` for as long as the gateway holds `auth`.
    pub fn spawn_revision_watch(auth: &Arc<Auth>) {
        let weak: Weak<Auth> = Arc::downgrade(auth);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REVISION_POLL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(auth) = weak.upgrade() else { return };
                auth.poll_revision().await;
            }
        });
    }
}

fn grant(row: KeyGrantRow, credentials: HashMap<String, HeaderValue>) -> Grant {
    Grant {
        key_id: row.id,
        project_id: row.project_id,
        key_models: row.models.map(Vec::into_boxed_slice),
        project_models: row.project_models.into_boxed_slice(),
        expires_at: row.expires_at,
        capped: row.max_requests.is_some(),
        credentials,
        key_rate_limit: RateLimitSpec::decode(row.rate_limit.as_deref()),
        project_rate_limit: RateLimitSpec::decode(row.project_rate_limit.as_deref()),
    }
}

/// The store failed while serving a request: a 503, its cause logged at the edge.
pub fn store_unavailable(err: StoreError) -> GatewayError {
    GatewayError::StoreUnavailable {
        message: err.to_string(),
    }
}
