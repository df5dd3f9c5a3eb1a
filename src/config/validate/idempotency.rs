//! `[idempotency]`: how long and how large answers kept for `Idempotency-Key` repeats are.

use toml::Spanned;

use super::Validator;
use crate::config::IdempotencyConfig;
use crate::config::raw::RawIdempotency;

impl Validator<'_> {
    pub(super) fn idempotency(
        &mut self,
        raw: Option<&Spanned<RawIdempotency>>,
    ) -> IdempotencyConfig {
        let defaults = IdempotencyConfig::default();
        let Some(raw) = raw.map(Spanned::get_ref) else {
            return defaults;
        };
        IdempotencyConfig {
            ttl: self
                .duration(raw.ttl.as_ref(), "ttl")
                .unwrap_or(defaults.ttl),
            max_answer_bytes: self.positive(
                raw.max_answer_bytes.as_ref(),
                "max_answer_bytes",
                defaults.max_answer_bytes,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::validate;

    const ROUTES: &str =
        "[backends.e]\nkind = \"echo\"\n[[routes]]\nprefix = \"\"\nbackend = \"e\"\n";

    fn check(section: &str) -> Result<crate::config::Config, Vec<String>> {
        let source = format!("{section}\n{ROUTES}");
        validate(&source, "/etc/switchyard/routes.toml", &|_| None)
            .map_err(|e| e.0.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn the_section_opens_the_default_store_and_its_bounds_are_checked() {
        let none = check("").unwrap();
        assert!(none.store.is_none(), "no store, no database");
        let tuned = check("[idempotency]\nttl = \"2h\"\nmax_answer_bytes = 100").unwrap();
        assert_eq!(tuned.idempotency.ttl.as_secs(), 7200);
        assert_eq!(tuned.idempotency.max_answer_bytes, 100);
        let store = tuned.store.unwrap();
        assert_eq!(store.display, "sqlite:///etc/switchyard/switchyard.db");
        let errors =
            check("[idempotency]\nttl = \"0s\"\nmax_answer_bytes = 0\nkeep = 1").unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("unknown field `keep`"), "{errors:?}");
        let errors = check("[idempotency]\nttl = \"0s\"\nmax_answer_bytes = 0").unwrap_err();
        assert!(
            errors[0]
                .starts_with("/etc/switchyard/routes.toml:2:7: `ttl` must be longer than zero"),
            "{errors:?}"
        );
        assert!(
            errors[1].contains("`max_answer_bytes` must be a positive number"),
            "{errors:?}"
        );
    }
}
