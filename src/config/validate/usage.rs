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
const MAX_PER_MINUTE: i64 = RateLimit::MAX_PER_MINUTE as i64;
const MAX_CONCURRENT: i64 = RateLimit::MAX_CONCURRENT as i64;

impl Validator<'_> {
    /// `[usage]`; `store` says whether records also have a store to go to.
    pub(super) fn usage(&mut self, raw: &Spanned<RawUsage>, store: bool) -> Option<UsageConfig> {
        let queue = self.bounded(raw.get_ref().queue.as_ref(), "queue", MAX_QUEUE);
        let log = match &raw.get_ref().log {
            Some(log) => Some(self.usage_log(log)?),
            None if store => None,
            None => {
                self.error(
                    raw.span(),
                    "[usage] needs `log` (or [auth], whose store records go to)",
                );
                return None;
            }
        };
        Some(UsageConfig {
            log,
            queue: queue.map_or(DEFAULT_QUEUE, |n| n as usize),
        })
    }

    fn usage_log(&mut self, log: &Spanned<String>) -> Option<UsageLog> {
        let text = self.resolve(log)?;
        match text.trim() {
            "" => {
                self.error(log.span(), "`log` must be \"-\" (stdout) or a file path");
                None
            }
            "-" => Some(UsageLog::Stdout),
            path => Some(UsageLog::File(self.beside_config(path))),
        }
    }

    pub(super) fn limits(&mut self, raw: Option<&RawLimits>) -> LimitsConfig {
        let Some(url) = raw.and_then(|r| r.redis_url.as_ref()) else {
            return LimitsConfig::default();
        };
        let Some(text) = self.resolve(url) else {
            return LimitsConfig::default();
        };
        if !matches!(
            url::Url::parse(&text)
                .map(|u| u.scheme().to_owned())
                .as_deref(),
            Ok("redis" | "rediss")
        ) {
            // Never quote the value: it may hold a password.
            self.error(
                url.span(),
                "`redis_url` must be a redis:// or rediss:// URL",
            );
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
        let concurrent = self.bounded(
            raw.max_concurrent.as_ref(),
            "max_concurrent",
            MAX_CONCURRENT,
        );
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

#[cfg(test)]
mod tests {
    use crate::config::{RateLimit, UsageLog, validate};

    fn errors(source: &str) -> Vec<String> {
        match validate(source, "/etc/sy/routes.toml", &|_| None) {
            Ok(_) => Vec::new(),
            Err(e) => {
                e.0.into_iter()
                    .map(|e| format!("{}:{}: {}", e.line, e.col, e.message))
                    .collect()
            }
        }
    }

    const ROUTE: &str =
        "[backends.e]\nkind = \"echo\"\n[[routes]]\nprefix = \"e/\"\nbackend = \"e\"\n";

    #[test]
    fn usage_limits_and_rate_limits_are_read() {
        let source = format!(
            "[usage]\nlog = \"usage.jsonl\"\nqueue = 5\n[limits]\nredis_url = \"redis://127.0.0.1:1/0\"\n{ROUTE}rate_limit = {{ requests_per_minute = 60, max_concurrent = 2 }}\n"
        );
        let config = validate(&source, "/etc/sy/routes.toml", &|_| None).unwrap();
        let usage = config.usage.unwrap();
        assert_eq!(
            usage.log,
            Some(UsageLog::File("/etc/sy/usage.jsonl".into()))
        );
        assert_eq!(usage.queue, 5);
        assert!(config.limits.redis_url.is_some());
        assert_eq!(
            config.routes[0].rate_limit,
            Some(RateLimit {
                requests_per_minute: Some(60),
                tokens_per_minute: None,
                max_concurrent: Some(2),
            })
        );
    }

    #[test]
    fn negative_huge_and_empty_values_are_refused_at_their_position() {
        let source = format!(
            "[usage]\nlog = \"\"\nqueue = 0\n[limits]\nredis_url = \"http://x\"\n{ROUTE}rate_limit = {{ requests_per_minute = -1, tokens_per_minute = 99999999999, max_concurrent = 0 }}\n"
        );
        assert_eq!(
            errors(&source),
            [
                "11:38: `requests_per_minute` must be from 1 to 60000000",
                "11:62: `tokens_per_minute` must be from 1 to 60000000",
                "11:92: `max_concurrent` must be from 1 to 1000000",
                "3:9: `queue` must be from 1 to 1000000",
                "2:7: `log` must be \"-\" (stdout) or a file path",
                "5:13: `redis_url` must be a redis:// or rediss:// URL",
            ]
        );
    }
}
