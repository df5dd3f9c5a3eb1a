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

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use crate::config::BackendSettings;
    use crate::config::validate::validate;

    const ROUTE: &str = "[[routes]]\nprefix = \"cheap/\"\nbackend = \"cheap\"\n";

    fn errors(backend: &str) -> Vec<String> {
        let source = format!("[backends.cheap]\n{backend}{ROUTE}");
        match validate(&source, "routes.toml", &|_| None) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn a_batch_backend_needs_a_key_defaults_a_store_and_refuses_other_kinds_keys() {
        let source = format!(
            "[backends.cheap]\nkind = \"batch\"\nbase_url = \"https://api.openai.com/v1\"\n\
             api_key = \"${{KEY}}\"\nwindow = \"250ms\"\nmax_lines = 10\n{ROUTE}"
        );
        let env = |name: &str| (name == "KEY").then(|| "sk-secret".to_owned());
        let config = validate(&source, "routes.toml", &env).unwrap();
        let BackendSettings::Batch(batch) = &config.backends[0].settings else {
            panic!("a batch backend");
        };
        assert_eq!(batch.window, std::time::Duration::from_millis(250));
        assert_eq!((batch.poll.as_secs(), batch.max_lines), (30, 10));
        // No `[store]`: the default SQLite file, handed to the backend.
        let store = batch.store_url.0.as_ref().unwrap().expose_secret();
        assert!(store.starts_with("sqlite://"), "{store}");
        assert!(!format!("{batch:?}").contains("sk-secret"));

        let errs = errors("kind = \"batch\"\nbase_url = \"http://x\"\n");
        assert!(
            errs[0].contains("kind `batch` needs an `api_key`"),
            "{errs:?}"
        );
        let errs = errors(
            "kind = \"batch\"\nbase_url = \"http://x\"\napi_key = \"k\"\nmax_lines = 50001\ntimeout = \"1s\"\n",
        );
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs.iter()
                .any(|e| e.contains("`max_lines` must be between 1 and 50000"))
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("`timeout` does not apply to kind `batch`"))
        );
        let errs = errors("kind = \"openai\"\nbase_url = \"http://x\"\nwindow = \"1s\"\n");
        assert!(
            errs[0].contains("`window` does not apply to kind `openai`"),
            "{errs:?}"
        );
    }
}
