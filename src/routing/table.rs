//! `RouteTable`: the runtime route table, built once per config load and swapped atomically.
//!
//! Lookup is by longest matching prefix. Prefixes are grouped by length in a hash map per
//! distinct length, longest first, so a lookup costs one hash probe per distinct prefix length
//! rather than a scan over every route.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::budget::RetryBudget;
use super::health::{BackendHealth, HealthView};
use super::weighted::SmoothWeighted;
use crate::backends::AnyBackend;
use crate::config::{BackendSettings, Config, HealthSettings, RouteConfig, ServerConfig};

/// One route at runtime.
#[derive(Debug)]
pub struct Route {
    /// Model-name prefix.
    pub prefix: String,
    /// The primary backend's name (the first of `backends`), for listings.
    pub backend_name: String,
    /// The weighted backends, then the fallbacks, in that order.
    pub members: Vec<Member>,
    /// How many of `members` are weighted (the rest are fallbacks).
    pub(super) weighted: usize,
    pub(super) chooser: SmoothWeighted,
    pub(super) budget: RetryBudget,
    /// Most upstream attempts per request.
    pub max_attempts: usize,
    /// Strip the prefix upstream.
    pub strip_prefix: bool,
    /// Advertised models, without prefix.
    pub models: Vec<String>,
    /// List the backend's own models too.
    pub discover: bool,
    /// Each caller's rate limits on this route.
    pub rate_limit: Option<crate::config::RateLimit>,
}

/// One backend of a route.
#[derive(Debug)]
pub struct Member {
    /// Backend name.
    pub name: String,
    /// The backend (shared by the routes naming it).
    pub backend: Arc<AnyBackend>,
    /// Its passive health (shared by the routes naming it).
    pub health: Arc<BackendHealth>,
    /// The model name this backend serves the route's models under, when it has its own.
    pub upstream_model: Option<String>,
}

impl Route {
    /// The primary backend: the first of `backends` (for listings, and for the decisions a
    /// route makes once for all its backends, such as whether it relays the Responses API).
    pub fn primary(&self) -> &Member {
        // `config::validate` refuses a route without a backend.
        &self.members[0]
    }

    /// Whether `members[index]` is a fallback (tried only after every weighted backend).
    pub fn is_fallback(&self, index: usize) -> bool {
        index >= self.weighted
    }
}

impl Member {
    /// The model name to send this backend, given the route's.
    pub fn model<'a>(&'a self, route_model: &'a str) -> &'a str {
        self.upstream_model.as_deref().unwrap_or(route_model)
    }
}

/// The result of a lookup.
#[derive(Debug, Clone, Copy)]
pub struct Resolved<'a> {
    /// The matching route.
    pub route: &'a Route,
    /// The model name to send upstream.
    pub upstream_model: &'a str,
}

impl Resolved<'_> {
    /// Whether the upstream sees a different model name than the client sent.
    pub fn rewrites(&self, client_model: &str) -> bool {
        self.upstream_model.len() != client_model.len()
    }
}

/// The route table and the backends it uses.
#[derive(Debug)]
pub struct RouteTable {
    routes: Vec<Route>,
    by_length: Vec<(usize, HashMap<String, usize>)>,
    backends: HashMap<String, BuiltBackend>,
    /// `[server]` settings that apply per request.
    pub server: ServerConfig,
    /// When this table was built (Unix seconds), the `created` of models without one.
    pub loaded_at: u64,
    /// Discovered model lists by backend name, cached briefly (see `catalog`).
    pub(super) discovered: DiscoveryCache,
}

/// A backend with the settings it was built from, so a reload can tell whether to keep it.
#[derive(Debug)]
struct BuiltBackend {
    settings: BackendSettings,
    backend: Arc<AnyBackend>,
    health_settings: HealthSettings,
    health: Arc<BackendHealth>,
}

/// Backend name → when listed, and what.
pub(super) type DiscoveryCache = std::sync::Mutex<
    HashMap<
        String,
        (
            std::time::Instant,
            // Whether the listing succeeded (a failure is cached for less time).
            bool,
            Arc<Vec<crate::backends::DiscoveredModel>>,
        ),
    >,
>;

/// A backend that could not be built, at the position of its table in routes.toml.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct BuildError {
    /// 1-based line of the backend's table.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// What went wrong.
    pub message: String,
}

impl RouteTable {
    /// Builds the table and every backend's HTTP client (connecting to nothing).
    pub fn build(config: &Config) -> Result<Self, BuildError> {
        Self::rebuild(config, None)
    }

    /// Builds the table, keeping from `previous` every backend whose settings did not change,
    /// and with it its connection pool and warm connections.
    pub fn rebuild(config: &Config, previous: Option<&RouteTable>) -> Result<Self, BuildError> {
        let mut backends = HashMap::with_capacity(config.backends.len());
        for b in &config.backends {
            let old = previous.and_then(|p| p.backends.get(&b.name));
            let kept = old
                .filter(|old| old.settings == b.settings)
                .map(|old| old.backend.clone());
            let backend = match kept {
                Some(backend) => backend,
                None => Arc::new(AnyBackend::build(b).map_err(|message| BuildError {
                    line: b.line,
                    col: b.col,
                    message,
                })?),
            };
            // Health is learnt about the upstream, so it survives a reload that keeps the
            // backend's settings; a changed threshold starts afresh.
            let health = old
                .filter(|old| old.settings == b.settings && old.health_settings == b.health)
                .map_or_else(
                    || Arc::new(BackendHealth::new(b.health)),
                    |old| old.health.clone(),
                );
            backends.insert(
                b.name.clone(),
                BuiltBackend {
                    settings: b.settings.clone(),
                    backend,
                    health_settings: b.health,
                    health,
                },
            );
        }
        let mut routes = Vec::with_capacity(config.routes.len());
        for r in &config.routes {
            routes.push(build_route(r, &backends)?);
        }
        let mut by_length: Vec<(usize, HashMap<String, usize>)> = Vec::new();
        for (i, route) in routes.iter().enumerate() {
            let len = route.prefix.len();
            match by_length.iter_mut().find(|(l, _)| *l == len) {
                Some((_, map)) => {
                    map.insert(route.prefix.clone(), i);
                }
                None => by_length.push((len, HashMap::from([(route.prefix.clone(), i)]))),
            }
        }
        by_length.sort_by_key(|(len, _)| std::cmp::Reverse(*len));
        let loaded_at = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Ok(RouteTable {
            routes,
            by_length,
            backends,
            server: config.server.clone(),
            loaded_at,
            discovered: DiscoveryCache::default(),
        })
    }

    /// The route serving `model`: the longest matching prefix.
    pub fn resolve<'a>(&'a self, model: &'a str) -> Option<Resolved<'a>> {
        self.by_length.iter().find_map(|(len, map)| {
            let prefix = model.get(..*len)?;
            let route = &self.routes[*map.get(prefix)?];
            Some(Resolved {
                route,
                upstream_model: if route.strip_prefix {
                    &model[*len..]
                } else {
                    model
                },
            })
        })
    }

    /// Routes in file order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// Every backend's name and the settings it was built from.
    pub fn backend_settings(&self) -> impl Iterator<Item = (&str, &BackendSettings)> {
        self.backends
            .iter()
            .map(|(name, built)| (name.as_str(), &built.settings))
    }

    /// A backend by name.
    pub fn backend(&self, name: &str) -> Option<&Arc<AnyBackend>> {
        self.backends.get(name).map(|b| &b.backend)
    }

    /// Every backend's passive health, by name.
    pub fn health(&self, now: Instant) -> Vec<(String, HealthView)> {
        let mut out: Vec<(String, HealthView)> = self
            .backends
            .iter()
            .map(|(name, b)| (name.clone(), b.health.view(now)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

fn build_route(
    r: &RouteConfig,
    backends: &HashMap<String, BuiltBackend>,
) -> Result<Route, BuildError> {
    let mut members = Vec::with_capacity(r.backends.len() + r.fallback.len());
    for name in r.backend_names() {
        let built = backends
            .get(name)
            // Unreachable after `config::validate`, which checks every route's backends.
            .ok_or_else(|| BuildError {
                line: 0,
                col: 0,
                message: format!("route `{}` names unknown backend `{name}`", r.prefix),
            })?;
        members.push(Member {
            name: name.to_owned(),
            backend: built.backend.clone(),
            health: built.health.clone(),
            upstream_model: r.upstream_models.get(name).cloned(),
        });
    }
    Ok(Route {
        prefix: r.prefix.clone(),
        backend_name: members.first().map(|m| m.name.clone()).unwrap_or_default(),
        members,
        weighted: r.backends.len(),
        chooser: SmoothWeighted::new(r.backends.iter().map(|b| b.weight)),
        budget: RetryBudget::new(Instant::now(), r.retry_budget_percent),
        max_attempts: r.max_attempts,
        strip_prefix: r.strip_prefix,
        models: r.models.clone(),
        discover: r.discover,
        rate_limit: r.rate_limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(src: &str) -> RouteTable {
        let config = crate::config::validate(src, "t.toml", &|_| None).unwrap();
        RouteTable::build(&config).unwrap()
    }

    const SRC: &str = r#"
[backends.e]
kind = "echo"
[[routes]]
prefix = "a/"
backend = "e"
[[routes]]
prefix = "a/b/"
backend = "e"
strip_prefix = false
[[routes]]
prefix = ""
backend = "e"
"#;

    #[test]
    fn the_longest_prefix_wins_and_strip_is_per_route() {
        let t = table(SRC);
        let r = t.resolve("a/b/c").unwrap();
        assert_eq!(
            (r.route.prefix.as_str(), r.upstream_model),
            ("a/b/", "a/b/c")
        );
        let r = t.resolve("a/x").unwrap();
        assert_eq!((r.route.prefix.as_str(), r.upstream_model), ("a/", "x"));
        assert!(r.rewrites("a/x"));
        let r = t.resolve("gpt-4o").unwrap();
        assert_eq!((r.route.prefix.as_str(), r.upstream_model), ("", "gpt-4o"));
    }

    #[test]
    fn a_rebuild_keeps_unchanged_backends_and_replaces_changed_ones() {
        let src = |port: u16| {
            format!(
                "[backends.a]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:{port}/v1\"\n[backends.b]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:1/v1\"\n[[routes]]\nprefix = \"\"\nbackend = \"a\"\n"
            )
        };
        let load = |s: &str| crate::config::validate(s, "t.toml", &|_| None).unwrap();
        let first = RouteTable::build(&load(&src(2))).unwrap();
        let second = RouteTable::rebuild(&load(&src(3)), Some(&first)).unwrap();
        assert!(Arc::ptr_eq(
            first.backend("b").unwrap(),
            second.backend("b").unwrap()
        ));
        assert!(!Arc::ptr_eq(
            first.backend("a").unwrap(),
            second.backend("a").unwrap()
        ));
    }

    #[test]
    fn learnt_health_survives_a_reload_unless_its_backend_or_thresholds_change() {
        let src = |extra: &str| {
            format!(
                "[backends.a]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:2/v1\"\n{extra}\n[[routes]]\nprefix = \"\"\nbackends = [{{ name = \"a\" }}]\n"
            )
        };
        let load = |s: &str| crate::config::validate(s, "t.toml", &|_| None).unwrap();
        let health = |t: &RouteTable| t.routes()[0].members[0].health.clone();
        let first = RouteTable::build(&load(&src(""))).unwrap();
        let same = RouteTable::rebuild(&load(&src("")), Some(&first)).unwrap();
        assert!(Arc::ptr_eq(&health(&first), &health(&same)));
        let stricter = RouteTable::rebuild(&load(&src("eject_after = 1")), Some(&same)).unwrap();
        assert!(!Arc::ptr_eq(&health(&same), &health(&stricter)));
    }

    #[test]
    fn no_catch_all_means_no_route_and_multibyte_names_do_not_panic() {
        let t =
            table("[backends.e]\nkind = \"echo\"\n[[routes]]\nprefix = \"é/\"\nbackend = \"e\"\n");
        assert!(t.resolve("x/y").is_none());
        assert!(t.resolve("€").is_none());
        assert_eq!(t.resolve("é/m").unwrap().upstream_model, "m");
    }
}
