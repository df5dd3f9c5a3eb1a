//! `kind = "batch"`: an HTTP upstream with OpenAI's Files + Batches API, and how requests are
//! gathered for it. It always needs a store (waiting requests outlive the process), so one is
//! defaulted for it as for `[auth]`.

use std::time::Duration;

use toml::Spanned;

use super::Validator;
use crate::config::raw::RawBackend;
use crate::config::{BackendConfig, BackendSettings, BatchSettings, StoreConfig, StoreUrl};

const DEFAULT_WINDOW: Duration = Duration::from_secs(60);
const DEFAULT_POLL: Duration = Duration::from_secs(30);
/// OpenAI's own limit on the lines of one batch.
pub(crate) const MAX_LINES: usize = 50_000;

/// Whether any backend is a batch backend (which needs a store).
pub(super) fn any(backends: &[BackendConfig]) -> bool {
    backends
        .iter()
        .any(|b| matches!(b.settings, BackendSettings::Batch(_)))
}

/// Hands the store's URL to every batch backend.
pub(super) fn give_store(backends: &mut [BackendConfig], store: Option<&StoreConfig>) {
    for backend in backends {
        if let BackendSettings::Batch(batch) = &mut backend.settings {
            batch.store_url = StoreUrl(store.map(|s| s.url.clone()));
        }
    }
}

impl Validator<'_> {
    pub(super) fn batch_settings(
        &mut self,
        name: &str,
        raw: &Spanned<RawBackend>,
    ) -> Option<BatchSettings> {
        let backend = raw.get_ref();
        for (value, key) in [
            (&backend.connect_timeout, "connect_timeout"),
            (&backend.request_timeout, "request_timeout"),
            (&backend.first_byte_timeout, "first_byte_timeout"),
            (&backend.idle_timeout, "idle_timeout"),
            (&backend.pool_idle_timeout, "pool_idle_timeout"),
            (&backend.redis_url, "redis_url"),
            (&backend.timeout, "timeout"),
            (&backend.pickup_timeout, "pickup_timeout"),
            (&backend.responses, "responses"),
        ] {
            self.forbid(value, key, "batch");
        }
        if backend.headers.is_some() {
            self.error(
                raw.span(),
                format!("backend `{name}`: `headers` does not apply to kind `batch`"),
            );
        }
        if backend.api_key.is_none() {
            // The batch is sent later, by the gateway itself: no client is there to lend a key.
            self.error(
                backend.kind.span(),
                format!("backend `{name}`: kind `batch` needs an `api_key`"),
            );
        }
        let window = self.duration(backend.window.as_ref(), "window");
        let poll = self.duration(backend.poll.as_ref(), "poll");
        let max_lines = self.max_lines(backend.max_lines.as_ref());
        let http = self.http_settings(name, backend)?;
        http.api_key.as_ref()?;
        Some(BatchSettings {
            http,
            window: window.unwrap_or(DEFAULT_WINDOW),
            poll: poll.unwrap_or(DEFAULT_POLL),
            max_lines,
            store_url: StoreUrl::default(),
        })
    }

    fn max_lines(&mut self, value: Option<&Spanned<i64>>) -> usize {
        match value {
            Some(n) if !(1..=MAX_LINES as i64).contains(n.get_ref()) => {
                self.error(
                    n.span(),
                    format!("`max_lines` must be between 1 and {MAX_LINES}"),
                );
                MAX_LINES
            }
            Some(n) => usize::try_from(*n.get_ref()).unwrap_or(MAX_LINES),
            None => MAX_LINES,
        }
    }

    /// The batch keys on a kind that has no use for them.
    pub(super) fn forbid_batch_keys(&mut self, backend: &RawBackend, kind: &str) {
        self.forbid(&backend.window, "window", kind);
        self.forbid(&backend.poll, "poll", kind);
        self.forbid(&backend.max_lines, "max_lines", kind);
    }
}
