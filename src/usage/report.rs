//! Reading usage back: `GET /admin/v1/usage` and `switchyard admin usage` share this one
//! function, which checks every parameter before the store is asked.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::GatewayError;
use crate::store::{Store, UsageFilter, UsageGroup, UsageSums};

/// The longest project or key id accepted in a filter.
const MAX_ID: usize = 128;

/// Which usage to report, and how to group it.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// Only this project (its id).
    pub project: Option<String>,
    /// Only this key (its id).
    pub key: Option<String>,
    /// From this time on: `2026-11-30` (UTC midnight), RFC 3339, or Unix seconds.
    #[param(
        pattern = r"^([0-9]{1,12}|[0-9]{4}-[0-9]{2}-[0-9]{2}(T.+)?)$",
        example = "2026-11-30"
    )]
    pub from: Option<String>,
    /// Before this time, in the same forms.
    #[param(
        pattern = r"^([0-9]{1,12}|[0-9]{4}-[0-9]{2}-[0-9]{2}(T.+)?)$",
        example = "2026-12-01"
    )]
    pub to: Option<String>,
    /// `model` (default), `key` or `day`.
    #[param(inline, value_type = Option<GroupByName>)]
    pub group_by: Option<String>,
}

/// The values of `group_by` (the document's enum; `report` checks the same).
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
#[allow(dead_code)] // Only its schema is used: the value is read as text for a clear message.
pub enum GroupByName {
    /// By the model asked for.
    Model,
    /// By key id.
    Key,
    /// By UTC day.
    Day,
}

/// Usage grouped as asked.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageReport {
    /// `model`, `key` or `day`.
    pub group_by: &'static str,
    /// One entry per group, in group order (at most 10000).
    pub data: Vec<UsageGroupTotals>,
}

/// One group's sums.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsageGroupTotals {
    /// The model, the key id (`""`: no key) or the day (`2026-11-30`).
    pub group: String,
    /// Requests.
    pub requests: i64,
    /// Prompt tokens.
    pub prompt_tokens: i64,
    /// Completion tokens.
    pub completion_tokens: i64,
    /// Total tokens.
    pub total_tokens: i64,
    /// Prompt tokens served from the upstream's cache.
    pub cached_tokens: i64,
    /// Completion tokens spent on reasoning.
    pub reasoning_tokens: i64,
}

/// The usage `query` selects, from `store`.
pub async fn report(store: &Store, query: &UsageQuery) -> Result<UsageReport, GatewayError> {
    let (group, group_by) = match query.group_by.as_deref().unwrap_or("model") {
        "model" => (UsageGroup::Model, "model"),
        "key" => (UsageGroup::Key, "key"),
        "day" => (UsageGroup::Day, "day"),
        _ => {
            return Err(invalid(
                "group_by",
                "`group_by` must be `model`, `key` or `day`",
            ));
        }
    };
    let filter = UsageFilter {
        project: id(query.project.as_deref(), "project")?,
        key: id(query.key.as_deref(), "key")?,
        from: minute(query.from.as_deref(), "from")?,
        to: minute(query.to.as_deref(), "to")?,
    };
    if let (Some(from), Some(to)) = (filter.from, filter.to)
        && from > to
    {
        return Err(invalid("to", "`to` must not be before `from`"));
    }
    let rows = store
        .usage(&filter, group)
        .await
        .map_err(|e| GatewayError::StoreUnavailable {
            message: e.to_string(),
        })?;
    let data = rows
        .into_iter()
        .map(|(name, sums)| totals(name, sums, group))
        .collect();
    Ok(UsageReport { group_by, data })
}

fn totals(name: String, s: UsageSums, group: UsageGroup) -> UsageGroupTotals {
    let group = match group {
        UsageGroup::Day => day_name(&name).unwrap_or(name),
        UsageGroup::Model | UsageGroup::Key => name,
    };
    UsageGroupTotals {
        group,
        requests: s.requests,
        prompt_tokens: s.prompt_tokens,
        completion_tokens: s.completion_tokens,
        total_tokens: s.total_tokens,
        cached_tokens: s.cached_tokens,
        reasoning_tokens: s.reasoning_tokens,
    }
}

/// `2026-11-30` for the Unix minute of that day's midnight.
fn day_name(minute: &str) -> Option<String> {
    let minute: i64 = minute.parse().ok()?;
    let at = time::OffsetDateTime::from_unix_timestamp(minute.checked_mul(60)?).ok()?;
    Some(at.date().to_string())
}

fn id(value: Option<&str>, param: &'static str) -> Result<Option<String>, GatewayError> {
    match value {
        Some(v) if v.is_empty() || v.len() > MAX_ID => Err(invalid(
            param,
            &format!("`{param}` must be an id of 1 to {MAX_ID} characters"),
        )),
        other => Ok(other.map(str::to_owned)),
    }
}

/// A time parameter as a Unix minute.
fn minute(value: Option<&str>, param: &'static str) -> Result<Option<i64>, GatewayError> {
    let Some(text) = value else {
        return Ok(None);
    };
    let secs = text
        .parse::<i64>()
        .ok()
        .filter(|s| (0..=253_402_300_799).contains(s))
        .or_else(|| {
            let rfc3339 = &time::format_description::well_known::Rfc3339;
            time::OffsetDateTime::parse(text, rfc3339)
                .ok()
                .map(|t| t.unix_timestamp())
        })
        .or_else(|| {
            let format =
                time::format_description::parse_borrowed::<2>("[year]-[month]-[day]").ok()?;
            let date = time::Date::parse(text, &format).ok()?;
            Some(date.midnight().assume_utc().unix_timestamp())
        });
    match secs {
        Some(secs) => Ok(Some(secs.div_euclid(60))),
        None => Err(invalid(
            param,
            &format!("`{param}` must be a date (2026-11-30), an RFC 3339 time or Unix seconds"),
        )),
    }
}

fn invalid(param: &'static str, message: &str) -> GatewayError {
    GatewayError::InvalidField {
        param: Some(param.to_owned()),
        message: message.to_owned(),
    }
}
