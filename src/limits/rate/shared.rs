//! Request and token budgets in Redis, shared by every gateway instance using it
//! (`[limits] redis_url`).
//!
//! Each check is one Lua script, atomic in Redis, timed by Redis's own clock (instances'
//! clocks may differ): the token budget is looked at, the request budget taken. Charging tokens
//! after an answer is a second script, run off the request path. Both budgets are GCRA as in
//! the parent module, in microseconds; keys expire when their budget is whole again.
//!
//! When Redis cannot be reached within the timeout, the request is admitted (and a warning
//! logged): a rate limiter that is down must not take the gateway down with it.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisResult, Script};

use super::{Budget, MAX_DEBT, MINUTE, refusal};
use crate::config::RateLimit;
use crate::error::GatewayError;

/// KEYS: requests TAT, tokens TAT (µs). ARGV: request interval, token interval (µs; 0 = no
/// such limit). Returns {refused (0, 1 requests, 2 tokens), wait, requests reset, tokens reset}.
const CHECK: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = 60000000
local req_i, tok_i = tonumber(ARGV[1]), tonumber(ARGV[2])
local tok_tat = tonumber(redis.call('GET', KEYS[2]) or '0')
local tok_reset = math.max(tok_tat - now, 0)
if tok_i > 0 then
  local allowed_at = math.max(tok_tat, now) + tok_i - window
  if allowed_at > now then return {2, allowed_at - now, 0, tok_reset} end
end
local req_reset = 0
if req_i > 0 then
  local req_tat = tonumber(redis.call('GET', KEYS[1]) or '0')
  local next = math.max(req_tat, now) + req_i
  if next - window > now then return {1, next - window - now, math.max(req_tat - now, 0), tok_reset} end
  req_reset = next - now
  redis.call('SET', KEYS[1], string.format('%.0f', next), 'PX', string.format('%.0f', req_reset / 1000 + 1000))
end
return {0, 0, req_reset, tok_reset}
";

/// KEYS: tokens TAT. ARGV: cost (µs), largest debt (µs).
const CHARGE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local next = math.min(math.max(tat, now) + tonumber(ARGV[1]), now + tonumber(ARGV[2]))
redis.call('SET', KEYS[1], string.format('%.0f', next), 'PX', string.format('%.0f', (next - now) / 1000 + 1000))
return 1
";

/// KEYS: requests TAT. ARGV: one request's interval (µs). Gives a request back.
const REFUND: &str = r"
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat == 0 then return 0 end
redis.call('SET', KEYS[1], string.format('%.0f', math.max(tat - tonumber(ARGV[1]), 0)), 'KEEPTTL')
return 1
";

/// A connection to the Redis holding the shared budgets.
#[derive(Clone)]
pub struct SharedLimits {
    conn: ConnectionManager,
    check: Script,
    charge: Script,
    refund: Script,
}

impl std::fmt::Debug for SharedLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the connection: its info holds the password.
        f.debug_struct("SharedLimits").finish_non_exhaustive()
    }
}

impl SharedLimits {
    /// Budgets at `url`; connects on first use (and reconnects by itself).
    pub fn new(url: &str) -> RedisResult<Self> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(1)))
            .set_number_of_retries(1);
        let client = redis::Client::open(url)?;
        Ok(SharedLimits {
            conn: ConnectionManager::new_lazy_with_config(client, config)?,
            check: Script::new(CHECK),
            charge: Script::new(CHARGE),
            refund: Script::new(REFUND),
        })
    }

    /// Takes one request from `scope`'s budgets: their state, or the 429.
    pub async fn check(
        &self,
        scope: &str,
        limit: &RateLimit,
    ) -> Result<(Option<Budget>, Option<Budget>), GatewayError> {
        let (req_key, tok_key) = keys(scope);
        let answer: RedisResult<(u8, u64, u64, u64)> = self
            .check
            .key(req_key)
            .key(tok_key)
            .arg(interval_us(limit.requests_per_minute))
            .arg(interval_us(limit.tokens_per_minute))
            .invoke_async(&mut self.conn.clone())
            .await;
        let (refused, wait, req_reset, tok_reset) = match answer {
            Ok(answer) => answer,
            Err(err) => {
                tracing::warn!(error = %err, "the shared rate limits cannot be read: admitted");
                return Ok((None, None));
            }
        };
        let budget = |reset_us: u64, limit: u64| super::budget(reset_us * 1000, 0, limit);
        let requests = limit.requests_per_minute.map(|l| budget(req_reset, l));
        let tokens = limit.tokens_per_minute.map(|l| budget(tok_reset, l));
        match refused {
            1 => Err(refusal(
                "requests_per_minute",
                wait * 1000,
                requests,
                tokens,
            )),
            2 => Err(refusal("tokens_per_minute", wait * 1000, requests, tokens)),
            _ => Ok((requests, tokens)),
        }
    }

    /// Gives one request back to `scope`'s request budget (before the refusal is answered,
    /// so the client's next request finds it back).
    pub async fn refund(&self, scope: &str, per_minute: u64) {
        let refunded: RedisResult<i64> = self
            .refund
            .key(keys(scope).0)
            .arg(interval_us(Some(per_minute)))
            .invoke_async(&mut self.conn.clone())
            .await;
        if let Err(err) = refunded {
            tracing::warn!(error = %err, "a request could not be given back to the shared budget");
        }
    }

    /// Charges `tokens` to `scope`'s token budget, in the background.
    pub fn charge(&self, scope: &str, per_minute: u64, tokens: u64) {
        let max_debt = MAX_DEBT / 1000;
        let cost = interval_us(Some(per_minute))
            .saturating_mul(tokens)
            .min(max_debt);
        let key = keys(scope).1;
        let script = self.charge.clone();
        let mut conn = self.conn.clone();
        tokio::spawn(async move {
            let charged: RedisResult<i64> = script
                .key(key)
                .arg(cost)
                .arg(max_debt)
                .invoke_async(&mut conn)
                .await;
            if let Err(err) = charged {
                tracing::warn!(error = %err, "tokens could not be charged to the shared budget");
            }
        });
    }
}

/// The Redis keys of `scope`'s budgets; the braces keep both in one cluster slot.
fn keys(scope: &str) -> (String, String) {
    (
        format!("switchyard:rate:{{{scope}}}:requests"),
        format!("switchyard:rate:{{{scope}}}:tokens"),
    )
}

/// A minute divided by the limit, in microseconds; 0 when there is no limit.
fn interval_us(per_minute: Option<u64>) -> u64 {
    per_minute.map_or(0, |l| (MINUTE / 1000 / l.max(1)).max(1))
}
