//! Prometheus metrics of one gateway instance (`prometheus-client`), rendered by `GET /metrics`.
//!
//! Label values are bounded by construction: routes and backends by their names in routes.toml
//! (`-` when a request reached none), statuses by number, projects by the store's projects,
//! models only when a route advertises them (`models = [...]`, else `other`), and the rest by
//! closed enums here. No label ever holds a key, a credential, or a model name a client made up.
//!
//! Recording is a read-locked map lookup plus an atomic add; the label sets hold shared names
//! (`Arc<str>`), so recording allocates nothing once a series exists.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use super::exchange::intern;

/// The label value of a request that reached no route or backend.
pub const NONE: &str = "-";

/// `/metrics`'s content type (OpenMetrics text, which Prometheus scrapes natively).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Histogram buckets in seconds: 1 ms to about 2 minutes, doubling.
fn latency_buckets() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.001, 2.0, 18,
    ))
}

/// Gateway-added time is small: 10 µs to about 1.3 s, doubling.
fn gateway_buckets() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.000_01, 2.0, 18,
    ))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: Arc<str>,
    backend: Arc<str>,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    project: Arc<str>,
    model: Arc<str>,
    kind: TokenKind,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    project: Arc<str>,
    limit: RateLimit,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: ReloadOutcome,
}

/// The label a model's series carry: the model when its route (`prefix`) lists it in
/// `advertised`, else `other`, so that a client cannot mint series by inventing names.
pub fn model_label<'a>(model: &'a str, prefix: &str, advertised: &[String]) -> &'a str {
    let listed = model
        .strip_prefix(prefix)
        .is_some_and(|m| advertised.iter().any(|a| a == m));
    if listed { model } else { "other" }
}

impl RateLimit {
    /// The limit named as routes.toml names it, if it is one.
    pub fn named(name: &str) -> Option<Self> {
        match name {
            "requests_per_minute" => Some(RateLimit::requests_per_minute),
            "tokens_per_minute" => Some(RateLimit::tokens_per_minute),
            "max_concurrent" => Some(RateLimit::max_concurrent),
            _ => None,
        }
    }
}

/// Which count of tokens.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // The label values, as written.
pub enum TokenKind {
    /// Prompt (input) tokens.
    prompt,
    /// Completion (output) tokens.
    completion,
    /// Prompt tokens served from the upstream's cache (part of `prompt`).
    cached,
    /// Reasoning tokens (part of `completion`).
    reasoning,
}

/// Which limit refused a request.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // The label values, as written.
pub enum RateLimit {
    /// `requests_per_minute`.
    requests_per_minute,
    /// `tokens_per_minute`.
    tokens_per_minute,
    /// `max_concurrent`.
    max_concurrent,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // The label values, as written.
enum ReloadOutcome {
    swapped,
    refused,
}

/// What one answered request measured, for `Metrics::request`.
#[derive(Debug, Clone)]
pub struct RequestSample {
    /// Route prefix (or `NONE`).
    pub route: Arc<str>,
    /// Backend of the attempt that answered (or `NONE`).
    pub backend: Arc<str>,
    /// Status sent to the client.
    pub status: u16,
    /// Upstream time (send to response headers), when an upstream answered.
    pub upstream: Option<Duration>,
    /// Time from arrival to the response head.
    pub to_head: Duration,
}

/// The gateway's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    total: Family<RouteLabels, Histogram, fn() -> Histogram>,
    upstream: Family<RouteLabels, Histogram, fn() -> Histogram>,
    gateway: Family<RouteLabels, Histogram, fn() -> Histogram>,
    first_token: Family<RouteLabels, Histogram, fn() -> Histogram>,
    in_flight: Gauge,
    open_streams: Gauge,
    reloads: Family<OutcomeLabels, Counter>,
    tokens: Family<TokenLabels, Counter>,
    rate_limited: Family<LimitLabels, Counter>,
    usage_dropped: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh set, every family registered.
    pub fn new() -> Self {
        let mut m = Metrics {
            registry: Registry::with_prefix("switchyard"),
            requests: Family::default(),
            total: Family::new_with_constructor(latency_buckets),
            upstream: Family::new_with_constructor(latency_buckets),
            gateway: Family::new_with_constructor(gateway_buckets),
            first_token: Family::new_with_constructor(latency_buckets),
            in_flight: Gauge::default(),
            open_streams: Gauge::default(),
            reloads: Family::default(),
            tokens: Family::default(),
            rate_limited: Family::default(),
            usage_dropped: Counter::default(),
        };
        m.register_all();
        m
    }

    fn register_all(&mut self) {
        let r = &mut self.registry;
        r.register(
            "requests",
            "Requests answered, by route, backend of the attempt that answered, and status",
            self.requests.clone(),
        );
        r.register(
            "request_duration_seconds",
            "Time from arrival to the end of the answer (a stream's last byte)",
            self.total.clone(),
        );
        r.register(
            "upstream_duration_seconds",
            "Time from the upstream send to its response headers, for the attempt that answered",
            self.upstream.clone(),
        );
        r.register("gateway_duration_seconds", "Time the gateway added before the response head: arrival to head, minus the upstream's time", self.gateway.clone());
        r.register(
            "time_to_first_token_seconds",
            "Time from arrival to a stream's first bytes",
            self.first_token.clone(),
        );
        r.register(
            "requests_in_flight",
            "Requests in progress, a stream counting until it ends",
            self.in_flight.clone(),
        );
        r.register(
            "open_streams",
            "Event streams being relayed",
            self.open_streams.clone(),
        );
        r.register(
            "reloads",
            "Reloads of routes.toml: swapped in, or refused as invalid",
            self.reloads.clone(),
        );
        r.register(
            "tokens",
            "Tokens used, by project, model (as advertised by its route, else `other`) and kind",
            self.tokens.clone(),
        );
        r.register(
            "rate_limited_requests",
            "Requests refused by a project's or key's rate limit",
            self.rate_limited.clone(),
        );
        r.register(
            "usage_records_dropped",
            "Usage records dropped because their queue was full",
            self.usage_dropped.clone(),
        );
    }

    /// The whole set in OpenMetrics text.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// A request has started (until its answer's body ends).
    pub fn request_started(&self) {
        self.in_flight.inc();
    }

    /// A request's response head is ready.
    pub fn request_answered(&self, sample: &RequestSample) {
        let route = RouteLabels {
            route: sample.route.clone(),
        };
        let labels = RequestLabels {
            route: sample.route.clone(),
            backend: sample.backend.clone(),
            status: sample.status,
        };
        self.requests.get_or_create(&labels).inc();
        let upstream = sample.upstream.unwrap_or_default();
        if let Some(up) = sample.upstream {
            self.upstream
                .get_or_create(&route)
                .observe(up.as_secs_f64());
        }
        self.gateway
            .get_or_create(&route)
            .observe(sample.to_head.saturating_sub(upstream).as_secs_f64());
    }

    /// A stream's first bytes went out, `after` its request arrived.
    pub fn first_token(&self, route: &Arc<str>, after: Duration) {
        let labels = RouteLabels {
            route: route.clone(),
        };
        self.first_token
            .get_or_create(&labels)
            .observe(after.as_secs_f64());
    }

    /// An event stream started being relayed.
    pub fn stream_opened(&self) {
        self.open_streams.inc();
    }

    /// A request's answer ended (its last byte went out, or the client left) `after` it
    /// arrived; `stream` when it was an event stream.
    pub fn request_ended(&self, route: &Arc<str>, after: Duration, stream: bool) {
        self.in_flight.dec();
        if stream {
            self.open_streams.dec();
        }
        let labels = RouteLabels {
            route: route.clone(),
        };
        self.total
            .get_or_create(&labels)
            .observe(after.as_secs_f64());
    }

    /// A reload of routes.toml: `swapped` in, or refused.
    pub fn reload(&self, swapped: bool) {
        let outcome = if swapped {
            ReloadOutcome::swapped
        } else {
            ReloadOutcome::refused
        };
        self.reloads.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// `n` tokens of `kind` used by `project` on a request for `model`. `advertised` is the
    /// route's `models` list (without its prefix, as in routes.toml) and `prefix` the route's
    /// prefix: a model outside it is counted as `other`, so a client cannot mint series.
    ///
    /// To be called by usage accounting, once per kind, when a request's usage is known.
    pub fn tokens(
        &self,
        project: &str,
        model: &str,
        prefix: &str,
        advertised: &[String],
        kind: TokenKind,
        n: u64,
    ) {
        self.tokens_of(project, model_label(model, prefix, advertised), kind, n);
    }

    /// `n` tokens of `kind` for `project` and a model already reduced to its label
    /// (`model_label`).
    pub fn tokens_of(&self, project: &str, model_label: &str, kind: TokenKind, n: u64) {
        let labels = TokenLabels {
            project: intern(project),
            model: intern(model_label),
            kind,
        };
        self.tokens.get_or_create(&labels).inc_by(n);
    }

    /// A request of `project` refused by `limit`. To be called by the rate limiter where it
    /// answers 429.
    pub fn rate_limited(&self, project: &str, limit: RateLimit) {
        let labels = LimitLabels {
            project: intern(project),
            limit,
        };
        self.rate_limited.get_or_create(&labels).inc();
    }

    /// A usage record dropped because its queue was full. To be called by usage accounting
    /// where its bounded queue refuses a record.
    pub fn usage_dropped(&self) {
        self.usage_dropped.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, start: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(start))
    }

    #[test]
    fn answered_requests_are_counted_by_route_backend_and_status() {
        let m = Metrics::new();
        let sample = RequestSample {
            route: Arc::from("openai/"),
            backend: Arc::from("vllm-a"),
            status: 200,
            upstream: Some(Duration::from_millis(30)),
            to_head: Duration::from_millis(31),
        };
        m.request_started();
        m.request_answered(&sample);
        m.request_answered(&sample);
        let text = m.render();
        assert_eq!(
            line(&text, "switchyard_requests_total{"),
            Some(r#"switchyard_requests_total{route="openai/",backend="vllm-a",status="200"} 2"#)
        );
        assert_eq!(
            line(&text, "switchyard_requests_in_flight "),
            Some("switchyard_requests_in_flight 1")
        );
        assert!(text.contains(r#"switchyard_upstream_duration_seconds_count{route="openai/"} 2"#));
    }

    #[test]
    fn token_counts_name_only_models_the_route_advertises() {
        let m = Metrics::new();
        let listed = ["gpt-4o".to_owned()];
        m.tokens(
            "acme",
            "openai/gpt-4o",
            "openai/",
            &listed,
            TokenKind::prompt,
            12,
        );
        m.tokens(
            "acme",
            "openai/made-up-by-a-client",
            "openai/",
            &listed,
            TokenKind::prompt,
            5,
        );
        m.tokens(
            "acme",
            "openai/gpt-4o",
            "openai/",
            &listed,
            TokenKind::completion,
            7,
        );
        let text = m.render();
        assert!(
            text.contains(
                r#"switchyard_tokens_total{project="acme",model="openai/gpt-4o",kind="prompt"} 12"#
            ),
            "{text}"
        );
        assert!(
            text.contains(
                r#"switchyard_tokens_total{project="acme",model="other",kind="prompt"} 5"#
            )
        );
        assert!(text.contains(
            r#"switchyard_tokens_total{project="acme",model="openai/gpt-4o",kind="completion"} 7"#
        ));
        assert!(!text.contains("made-up"));
    }

    #[test]
    fn rate_limits_usage_drops_and_reloads_are_counted() {
        let m = Metrics::new();
        m.rate_limited("acme", RateLimit::tokens_per_minute);
        m.rate_limited("acme", RateLimit::tokens_per_minute);
        m.usage_dropped();
        m.reload(true);
        m.reload(false);
        let text = m.render();
        assert!(text.contains(r#"switchyard_rate_limited_requests_total{project="acme",limit="tokens_per_minute"} 2"#), "{text}");
        assert!(text.contains("switchyard_usage_records_dropped_total 1"));
        assert!(text.contains(r#"switchyard_reloads_total{outcome="swapped"} 1"#));
        assert!(text.contains(r#"switchyard_reloads_total{outcome="refused"} 1"#));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn a_stream_counts_as_open_until_it_ends() {
        let m = Metrics::new();
        let route: Arc<str> = Arc::from("r/");
        m.request_started();
        m.stream_opened();
        m.first_token(&route, Duration::from_millis(5));
        assert!(m.render().contains("switchyard_open_streams 1"));
        m.request_ended(&route, Duration::from_millis(50), true);
        let text = m.render();
        assert!(text.contains("switchyard_open_streams 0"));
        assert!(text.contains("switchyard_requests_in_flight 0"));
        assert!(text.contains(r#"switchyard_request_duration_seconds_count{route="r/"} 1"#));
        assert!(text.contains(r#"switchyard_time_to_first_token_seconds_count{route="r/"} 1"#));
    }
}
