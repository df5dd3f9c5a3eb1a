//! `RouteTable`: the runtime route table, built once per config load and swapped atomically.
//!
//! Lookup is by longest matching prefix. Prefixes are grouped by length in a hash map per
//! distinct length, longest first, so a lookup costs one hash probe per distinct prefix length
//! rather than a scan over every route.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use crate::backends::AnyBackend;
use crate::config::{BackendSettings, Config, ServerConfig};

/// One route at runtime.
#[derive(Debug)]
pub struct Route {
    /// Model-name prefix.
    pub prefix: String,
    /// Backend name.
    pub backend_name: String,
    /// The backend (shared by the routes naming it).
    pub backend: Arc<AnyBackend>,
    /// Strip the prefix upstream.
    pub strip_prefix: bool,
    /// Advertised models, without prefix.
    pub models: Vec<String>,
    /// List the backend's own models too.
    pub discover: bool,
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
}

/// Backend name → when listed, and what.
pub(super) type DiscoveryCache = std::sync::Mutex<
    HashMap<
        String,
        (
            std::time::Instant,
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
            let kept = previous
                .and_then(|p| p.backends.get(&b.name))
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
            backends.insert(
                b.name.clone(),
                BuiltBackend {
                    settings: b.settings.clone(),
                    backend,
                },
            );
        }
        let mut routes = Vec::with_capacity(config.routes.len());
        for r in &config.routes {
            let backend = backends
                .get(&r.backend)
                .map(|b| b.backend.clone())
                // Unreachable after `config::validate`, which checks every route's backend.
                .ok_or_else(|| BuildError {
                    line: 0,
                    col: 0,
                    message: format!("route `{}` names unknown backend `{}`", r.prefix, r.backend),
                })?;
            routes.push(Route {
                prefix: r.prefix.clone(),
                backend_name: r.backend.clone(),
                backend,
                strip_prefix: r.strip_prefix,
                models: r.models.clone(),
                discover: r.discover,
            });
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
    fn no_catch_all_means_no_route_and_multibyte_names_do_not_panic() {
        let t =
            table("[backends.e]\nkind = \"echo\"\n[[routes]]\nprefix = \"é/\"\nbackend = \"e\"\n");
        assert!(t.resolve("x/y").is_none());
        assert!(t.resolve("€").is_none());
        assert_eq!(t.resolve("é/m").unwrap().upstream_model, "m");
    }
}
