//! `[batches]` (the gateway's own Files and Batches API) and the backend key `batch`.

use std::path::Path;

use toml::Spanned;

use super::Validator;
use crate::config::BatchesConfig;
use crate::config::raw::{RawBatches, RawConfig, RawServer};

/// Whether `default_backend` declares a Batch API of its own (`batch = "upstream"`).
pub(super) fn upstream(server: &RawServer, whole: &RawConfig) -> bool {
    server
        .default_backend
        .as_ref()
        .and_then(|name| whole.backends.get(name.get_ref()))
        .and_then(|backend| backend.get_ref().batch.as_ref())
        .is_some_and(|batch| batch.get_ref() == "upstream")
}

impl Validator<'_> {
    /// `batch = "upstream"` is the one value.
    pub(super) fn batch_api(&mut self, value: Option<&Spanned<String>>) {
        if let Some(value) = value
            && value.get_ref() != "upstream"
        {
            let message = format!("`batch` must be \"upstream\", not `{}`", value.get_ref());
            self.error(value.span(), message);
        }
    }

    pub(super) fn batches(&mut self, raw: Option<&Spanned<RawBatches>>) -> BatchesConfig {
        let defaults = BatchesConfig::default();
        let Some(raw) = raw.map(Spanned::get_ref) else {
            return defaults;
        };
        let dir = raw.dir.as_ref().map(|dir| {
            let path = Path::new(dir.get_ref());
            match Path::new(self.file).parent() {
                Some(base) if path.is_relative() => base.join(path),
                _ => path.to_owned(),
            }
        });
        let max_lines = self.positive(raw.max_lines.as_ref(), "max_lines", defaults.max_lines);
        if max_lines > defaults.max_lines
            && let Some(n) = &raw.max_lines
        {
            self.error(
                n.span(),
                "`max_lines` must be at most 50000 (OpenAI's limit)",
            );
        }
        let max_file_bytes = self.positive(
            raw.max_file_bytes.as_ref(),
            "max_file_bytes",
            usize::try_from(defaults.max_file_bytes).unwrap_or(usize::MAX),
        );
        BatchesConfig {
            dir,
            max_file_bytes: max_file_bytes as u64,
            max_lines,
            concurrency: self.positive(
                raw.concurrency.as_ref(),
                "concurrency",
                defaults.concurrency,
            ),
            per_batch: self.positive(raw.per_batch.as_ref(), "per_batch", defaults.per_batch),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::validate;

    const ROUTES: &str =
        "[backends.e]\nkind = \"echo\"\n[[routes]]\nprefix = \"\"\nbackend = \"e\"\n";

    fn check(text: &str) -> Result<crate::config::Config, Vec<String>> {
        validate(text, "/etc/switchyard/routes.toml", &|_| None)
            .map_err(|e| e.0.into_iter().map(|e| e.to_string()).collect())
    }

    #[test]
    fn batches_defaults_open_a_store_and_resolve_the_dir() {
        let config = check(&format!(
            "[batches]\ndir = \"files\"\nper_batch = 3\n{ROUTES}"
        ))
        .unwrap();
        assert!(config.store.is_some());
        assert_eq!(config.batches.per_batch, 3);
        assert_eq!(config.batches.concurrency, 4);
        assert_eq!(
            config.batches.dir.as_deref(),
            Some(std::path::Path::new("/etc/switchyard/files"))
        );
    }

    #[test]
    fn batch_upstream_is_one_value_on_http_kinds_and_marks_the_default_backend() {
        let up = "[server]\ndefault_backend = \"o\"\n[backends.o]\nkind = \"openai\"\n\
                  base_url = \"http://127.0.0.1:1/v1\"\nbatch = \"upstream\"\n";
        let config = check(&format!("{up}{ROUTES}")).unwrap();
        assert!(config.server.batches_upstream);
        let wrong = up.replace("\"upstream\"", "\"own\"");
        let errors = check(&format!("{wrong}{ROUTES}")).unwrap_err();
        assert!(
            errors[0].contains("`batch` must be \"upstream\""),
            "{errors:?}"
        );
        let on_echo = "[backends.x]\nkind = \"echo\"\nbatch = \"upstream\"\n";
        let errors = check(&format!("{on_echo}{ROUTES}")).unwrap_err();
        assert!(
            errors[0].contains("`batch` does not apply to kind `echo`"),
            "{errors:?}"
        );
    }
}
