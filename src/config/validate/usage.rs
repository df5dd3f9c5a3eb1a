//! `[usage]`, `[limits]` and a route's `rate_limit`: usage records and rate limits.

use secrecy::SecretString;
use toml::Spanned;

use super::Validator;
use crate::config::raw::{RawLimits, RawRateLimit, RawUsage};
use crate::config::{LimitsConfig, RateLimit, UsageConfig, UsageLog};

/// Records waiting for the writer by default.
const DEFAULT_QUEUE: usize = 10_000;
/// The most records allowed to wait (each is a few hundred bytes).
const MAX_QUEUE: i64 = 1_000_000;
/// The largest per-minute budget: one request or token per microsecond, the resolution the
/// shared (Redis) budgets keep.
const MAX_PER_MINUTE: i64 = 60_000_000;
/// The most requests in progress one caller may be allowed.
const MAX_CONCURRENT: i64 = 1_000_000;

impl Validator<'_> {
    pub(super) fn usage(&mut self, raw: &RawUsage) -> Option<UsageConfig> {
        let queue = self.bounded(raw.queue.as_ref(), "queue", MAX_QUEUE);
        let text = self.resolve(&raw.log)?;
        let log = match text.trim() {
            "" => {
                self.error(raw.log.span(), "`log` must be \"-\" (stdout) or a file path");
                return None;
            }
            "-" => UsageLog::Stdout,
            path => UsageLog::File(self.beside_config(path)),
        };
        Some(UsageConfig {
            log,
            queue: queue.map_or(DEFAULT_QUEUE, |n| n as usize),
        })
    }

    pub(super) fn limits(&mut self, raw: Option<&RawLimits>) -> LimitsConfig {
        let Some(url) = raw.and_then(|r| r.redis_url.as_ref()) else {
            return LimitsConfig::default();
        };
        let Some(text) = self.resolve(url) else {
            return LimitsConfig::default();
        };
        if !matches!(
            url::Url::parse(&text).map(|u| u.scheme().to_owned()).as_deref(),
            Ok("redis" | "rediss")
        ) {
            // Never quote the value: it may hold a password.
            self.error(url.span(), "`redis_url` must be a redis:// or rediss:// URL");
        }
        LimitsConfig {
            redis_url: Some(SecretString::from(text)),
        }
    }

    pub(super) fn rate_limit(&mut self, raw: &RawRateLimit) -> RateLimit {
        let requests = self.bounded(
            raw.requests_per_minute.as_ref(),
            "requests_per_minute",
            MAX_PER_MINUTE,
        );
        let tokens = self.bounded(
            raw.tokens_per_minute.as_ref(),
            "tokens_per_minute",
            MAX_PER_MINUTE,
        );
        let concurrent = self.bounded(raw.max_concurrent.as_ref(), "max_concurrent", MAX_CONCURRENT);
        RateLimit {
            requests_per_minute: requests,
            tokens_per_minute: tokens,
            max_concurrent: concurrent.and_then(|n| u32::try_from(n).ok()),
        }
    }

    /// A whole number from 1 to `max`, or `None` (absent, or wrong after the error is noted).
    fn bounded(&mut self, value: Option<&Spanned<i64>>, key: &str, max: i64) -> Option<u64> {
        let value = value?;
        let n = *value.get_ref();
        if (1..=max).contains(&n) {
            u64::try_from(n).ok()
        } else {
            self.error(value.span(), format!("`{key}` must be from 1 to {max}"));
            None
        }
    }
}
