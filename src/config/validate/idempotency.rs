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
