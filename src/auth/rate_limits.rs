//! Rate limits set on a project (all its keys together) or on one key, through the admin API
//! and `switchyard admin`. Stored with the project or key and carried in its `Grant`, so a
//! change reaches every instance with the next revision poll.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Auth;
use super::admin::store_error;
use crate::config::RateLimit;
use crate::error::GatewayError;
use crate::store::LimitOwner;

/// `PUT /admin/v1/projects/{id}/rate_limit` and `PUT /admin/v1/keys/{id}/rate_limit`: the
/// limits, each optional; `{}` removes them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSpec {
    /// Requests per minute, 1 to 60000000 (a minute's worth may come in a burst).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::schema::integer::optional"
    )]
    #[schema(minimum = 1, maximum = 60_000_000)]
    pub requests_per_minute: Option<i64>,
    /// Tokens per minute, 1 to 60000000, charged from each answer's usage.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::schema::integer::optional"
    )]
    #[schema(minimum = 1, maximum = 60_000_000)]
    pub tokens_per_minute: Option<i64>,
    /// Requests in progress at once (in each instance), 1 to 1000000.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::schema::integer::optional"
    )]
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub max_concurrent: Option<i64>,
}

impl RateLimitSpec {
    /// The limits, each checked against its bounds (400 naming the field otherwise).
    pub fn check(&self) -> Result<Option<RateLimit>, GatewayError> {
        let per_minute = |value: Option<i64>, param: &str| -> Result<Option<u64>, GatewayError> {
            bounded(value, param, RateLimit::MAX_PER_MINUTE)
        };
        let limit = RateLimit {
            requests_per_minute: per_minute(self.requests_per_minute, "requests_per_minute")?,
            tokens_per_minute: per_minute(self.tokens_per_minute, "tokens_per_minute")?,
            max_concurrent: bounded(
                self.max_concurrent,
                "max_concurrent",
                u64::from(RateLimit::MAX_CONCURRENT),
            )?
            .and_then(|n| u32::try_from(n).ok()),
        };
        Ok((limit != RateLimit::default()).then_some(limit))
    }

    /// The limits as stored, or `None` (logged) when the text is not what this version writes.
    pub fn decode(text: Option<&str>) -> Option<RateLimit> {
        let spec: RateLimitSpec = match serde_json::from_str(text?) {
            Ok(spec) => spec,
            Err(err) => {
                tracing::error!(error = %err, "a stored rate limit is unreadable: ignored");
                return None;
            }
        };
        spec.check().ok().flatten()
    }
}

fn bounded(value: Option<i64>, param: &str, max: u64) -> Result<Option<u64>, GatewayError> {
    match value {
        None => Ok(None),
        Some(n) => match u64::try_from(n) {
            Ok(n) if (1..=max).contains(&n) => Ok(Some(n)),
            _ => Err(GatewayError::InvalidField {
                param: Some(param.to_owned()),
                message: format!("`{param}` must be from 1 to {max}"),
            }),
        },
    }
}

impl Auth {
    /// Sets the rate limit of a project or key (`{}` removes it); 404 when it does not exist.
    pub async fn set_rate_limit(
        &self,
        owner: LimitOwner,
        id: &str,
        spec: RateLimitSpec,
    ) -> Result<RateLimitSpec, GatewayError> {
        let text = match spec.check()? {
            Some(_) => Some(
                serde_json::to_string(&spec).map_err(|e| GatewayError::Internal {
                    message: e.to_string(),
                })?,
            ),
            None => None,
        };
        let found = self
            .store()
            .set_rate_limit(owner, id, text.as_deref())
            .await
            .map_err(store_error)?;
        if !found {
            return Err(GatewayError::NotFound {
                what: match owner {
                    LimitOwner::Project => "project",
                    LimitOwner::Key => "key",
                },
                id: id.to_owned(),
            });
        }
        self.retire_cache();
        Ok(spec)
    }
}
