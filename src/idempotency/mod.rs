//! `Idempotency-Key` on the inference endpoints: the first request with a key runs; a repeat
//! while it runs waits for it; a repeat after it finished gets the kept answer without reaching
//! the upstream; the same key with another request is a 409.
//!
//! State lives in the store (`crate::store`), so every gateway instance sharing it agrees:
//! a key is claimed by one run with a lease it renews while it works; a run that ends keeps the
//! answer, or gives the key up when there is nothing worth keeping (a failure worth retrying).
//! Waiters on the same instance are woken the moment the run ends; waiters on other instances
//! poll the store, backing off to `MAX_POLL`. A gateway that dies mid-run stops renewing, and
//! the first repeat after its lease runs out takes the key over.
//!
//! Keys are scoped to the caller (its gateway key with `[auth]`, else a hash of its
//! `Authorization` header), and rows are named by a hash of scope and key, so a caller can
//! never read another's answer and the store holds neither the key nor the credential.
//!
//! Not here: turning HTTP responses into `Answer`s and back (`crate::routes`).

mod answer;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use actix_web::http::header::HeaderMap;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::auth::clock::Clock;
use crate::auth::store_unavailable;
use crate::auth::token::hex;
use crate::config::IdempotencyConfig;
use crate::error::{GatewayError, IdempotencyRefusal, MAX_IDEMPOTENCY_KEY_BYTES};
use crate::store::{AnswerRow, ClaimRow, Claimed, Store};

pub use answer::{Answer, is_kept_header, is_worth_keeping};

/// The request header carrying the client's key.
pub const KEY_HEADER: &str = "idempotency-key";
/// The response header marking an answer that was kept from an earlier run (`true`).
pub const REPLAYED_HEADER: &str = "idempotent-replayed";
/// How long a claim holds without renewal: a dead gateway's keys are free again after it.
const LEASE_SECONDS: i64 = 30;
/// How often a running claim is renewed (well inside the lease).
const RENEW_EVERY: Duration = Duration::from_secs(10);
/// First and longest pause between two reads of a key another instance runs.
const FIRST_POLL: Duration = Duration::from_millis(25);
const MAX_POLL: Duration = Duration::from_secs(1);
/// How often expired answers are purged from the store.
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// The client's `Idempotency-Key`, if it sent one: 400 when it is empty, longer than
/// `MAX_IDEMPOTENCY_KEY_BYTES`, or not visible ASCII (spaces included: a key is a token).
pub fn key_of(headers: &HeaderMap) -> Result<Option<&str>, GatewayError> {
    let Some(value) = headers.get(KEY_HEADER) else {
        return Ok(None);
    };
    let bytes = value.as_bytes();
    let visible = bytes.iter().all(u8::is_ascii_graphic);
    if bytes.is_empty() || bytes.len() > MAX_IDEMPOTENCY_KEY_BYTES || !visible {
        return Err(GatewayError::Idempotency(IdempotencyRefusal::InvalidKey));
    }
    // Visible ASCII is UTF-8.
    Ok(value.to_str().ok())
}

/// Whose keys these are: the gateway key's id with `[auth]`, else (keys off) a hash of the
/// client's `Authorization`, so two clients with different upstream keys never share answers.
pub fn scope_of(gateway_key_id: Option<&str>, headers: &HeaderMap) -> String {
    match gateway_key_id {
        Some(id) => format!("key:{id}"),
        None => {
            let authorization = headers
                .get(actix_web::http::header::AUTHORIZATION)
                .map_or(&[][..], |v| v.as_bytes());
            format!("client:{}", hex(&Sha256::digest(authorization)))
        }
    }
}

/// A request as idempotency sees it.
#[derive(Debug, Clone, Copy)]
pub struct Keyed<'a> {
    /// `scope_of` the caller.
    pub scope: &'a str,
    /// The client's key.
    pub key: &'a str,
    /// HTTP method.
    pub method: &'a str,
    /// URL path.
    pub path: &'a str,
    /// The body as sent.
    pub body: &'a [u8],
}

impl Keyed<'_> {
    /// The row's name: scope and key, hashed.
    fn id(&self) -> String {
        hex(&digest(&[self.scope.as_bytes(), self.key.as_bytes()]))
    }

    /// What makes two requests "the same": method, path and body.
    fn fingerprint(&self) -> String {
        hex(&digest(&[
            self.method.as_bytes(),
            self.path.as_bytes(),
            self.body,
        ]))
    }
}

/// What to do with a keyed request.
pub enum Begun {
    /// Run it; the `Run` keeps or gives up the key when done.
    Run(Run),
    /// Answer with this, kept from an earlier run.
    Replay(Answer),
}

/// Idempotency for a running gateway.
pub struct Idempotency {
    store: Store,
    clock: Arc<dyn Clock>,
    config: IdempotencyConfig,
    /// Runs in progress on this instance, by row id: the receiver sees its sender dropped when
    /// the run ends, which wakes local waiters at once.
    running: Mutex<HashMap<String, watch::Receiver<()>>>,
}

impl std::fmt::Debug for Idempotency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Idempotency")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Idempotency {
    /// Idempotency over an open store.
    pub fn new(store: Store, clock: Arc<dyn Clock>, config: IdempotencyConfig) -> Self {
        Idempotency {
            store,
            clock,
            config,
            running: Mutex::new(HashMap::new()),
        }
    }

    /// The largest answer body kept.
    pub fn max_answer_bytes(&self) -> usize {
        self.config.max_answer_bytes
    }

    /// Claims `request`'s key, waits for whoever holds it, or finds its kept answer.
    pub async fn begin(self: &Arc<Self>, request: Keyed<'_>) -> Result<Begun, GatewayError> {
        let id = request.id();
        let fingerprint = request.fingerprint();
        let owner = uuid::Uuid::new_v4().to_string();
        let mut pause = FIRST_POLL;
        loop {
            let now = self.clock.now();
            let claim = ClaimRow {
                id: id.clone(),
                fingerprint: fingerprint.clone(),
                owner: owner.clone(),
                lease_until: now + LEASE_SECONDS,
                expires_at: now + ttl_seconds(self.config.ttl),
            };
            let found = self.store.claim_idempotent(&claim, now).await;
            match found.map_err(store_unavailable)? {
                Claimed::Owner => return Ok(Begun::Run(self.start_run(id, owner))),
                Claimed::Existing(row) if row.fingerprint != fingerprint => {
                    return Err(GatewayError::Idempotency(
                        IdempotencyRefusal::DifferentRequest,
                    ));
                }
                Claimed::Existing(row) => {
                    if let Some(outcome) = finished(row) {
                        return outcome.map(Begun::Replay);
                    }
                }
                Claimed::Gone => continue,
            }
            self.wait_for(&id, pause).await;
            pause = (pause * 2).min(MAX_POLL);
        }
    }

    fn start_run(self: &Arc<Self>, id: String, owner: String) -> Run {
        let (ended, receiver) = watch::channel(());
        self.lock_running().insert(id.clone(), receiver);
        Run {
            idempotency: Arc::clone(self),
            id,
            owner,
            _ended: ended,
            settled: false,
        }
    }

    /// Waits until the local run of `id` ends, or `pause` passes (a run on another instance).
    async fn wait_for(&self, id: &str, pause: Duration) {
        let local = self.lock_running().get(id).cloned();
        match local {
            // `changed` fails once the run's sender is dropped: the run has ended.
            Some(mut ended) => {
                let _ = tokio::time::timeout(pause.max(MAX_POLL), ended.changed()).await;
            }
            None => tokio::time::sleep(pause).await,
        }
    }

    fn lock_running(&self) -> std::sync::MutexGuard<'_, HashMap<String, watch::Receiver<()>>> {
        // A panic elsewhere while holding the lock leaves the map usable: recover it.
        self.running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Purges expired answers every `PURGE_EVERY` for as long as the gateway holds `this`.
    pub fn spawn_purge(this: &Arc<Idempotency>) {
        let weak: Weak<Idempotency> = Arc::downgrade(this);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PURGE_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(this) = weak.upgrade() else { return };
                if let Err(err) = this.store.purge_idempotent(this.clock.now()).await {
                    tracing::warn!(error = %err, "cannot purge expired idempotent answers");
                }
            }
        });
    }
}

/// What a finished row means for a repeat; `None` while it still runs.
fn finished(row: AnswerRow) -> Option<Result<Answer, GatewayError>> {
    match row.state.as_str() {
        "done" => Some(Answer::from_row(&row)),
        "not_kept" => Some(Err(GatewayError::Idempotency(
            IdempotencyRefusal::AnswerNotKept,
        ))),
        _ => None,
    }
}

/// One run holding a key. Settle it with `keep`, `not_kept` or `give_up`; dropped unsettled
/// (the client went away and took the request with it), it gives the key up in the background.
pub struct Run {
    idempotency: Arc<Idempotency>,
    id: String,
    owner: String,
    _ended: watch::Sender<()>,
    settled: bool,
}

impl Run {
    /// Runs `work` while renewing the claim, so that no other instance takes the key over.
    pub async fn renewing<T>(&self, work: impl Future<Output = T>) -> T {
        let renew = async {
            let mut tick = tokio::time::interval(RENEW_EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                let until = self.idempotency.clock.now() + LEASE_SECONDS;
                let store = &self.idempotency.store;
                if let Err(err) = store.renew_idempotent(&self.id, &self.owner, until).await {
                    tracing::warn!(error = %err, "cannot renew an idempotency claim");
                }
            }
        };
        tokio::select! {
            out = work => out,
            never = renew => never,
        }
    }

    /// Keeps `answer` for repeats, for the TTL from now.
    pub async fn keep(self, answer: &Answer) -> Result<(), GatewayError> {
        let (status, headers, body) = answer.to_row();
        self.finish("done", Some((status, &headers, &body))).await
    }

    /// Records that the run answered, but too much to keep: repeats get a 409.
    pub async fn not_kept(self) -> Result<(), GatewayError> {
        self.finish("not_kept", None).await
    }

    async fn finish(
        mut self,
        state: &str,
        answer: Option<(i64, &str, &str)>,
    ) -> Result<(), GatewayError> {
        self.settled = true;
        let this = &self.idempotency;
        let expires_at = this.clock.now() + ttl_seconds(this.config.ttl);
        this.store
            .finish_idempotent(&self.id, &self.owner, state, answer, expires_at)
            .await
            .map_err(store_unavailable)
    }

    /// Gives the key up: the next request with it runs.
    pub async fn give_up(mut self) {
        self.settled = true;
        if let Err(err) = self
            .idempotency
            .store
            .release_idempotent(&self.id, &self.owner)
            .await
        {
            // The lease runs out in `LEASE_SECONDS` and frees the key anyway.
            tracing::warn!(error = %err, "cannot release an idempotency claim");
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        {
            let mut running = self.idempotency.lock_running();
            // Only this run's entry: a later run of the key may have replaced it.
            let ours = self._ended.subscribe();
            if running.get(&self.id).is_some_and(|r| r.same_channel(&ours)) {
                running.remove(&self.id);
            }
        }
        if self.settled {
            return;
        }
        // Without a runtime (the process is ending) the lease frees the key instead.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let store = self.idempotency.store.clone();
        let (id, owner) = (
            std::mem::take(&mut self.id),
            std::mem::take(&mut self.owner),
        );
        // Dropped mid-run: the client went away. Free the key for its retry.
        runtime.spawn(async move {
            if let Err(err) = store.release_idempotent(&id, &owner).await {
                tracing::warn!(error = %err, "cannot release an abandoned idempotency claim");
            }
        });
    }
}

fn ttl_seconds(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX / 2)
}

/// SHA-256 over `parts`, each length-prefixed so that no two part lists collide.
pub(crate) fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update((part.len() as u64).to_le_bytes());
        hash.update(part);
    }
    hash.finalize().into()
}
