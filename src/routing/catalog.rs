//! The model catalogue behind `/v1/models`: every route's listed models, plus the backend's own
//! models for `discover = true` routes, all under the route's prefix.
//!
//! Discovered lists are cached per backend for `DISCOVERY_TTL` and fetched with a short
//! deadline; a backend that is down or slow contributes nothing, it never fails the listing.
//! A failure is cached for `FAILED_DISCOVERY_TTL` only, so a backend that comes back is listed
//! again within seconds. A route with several backends lists what each weighted one reports.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;

use super::table::RouteTable;
use crate::backends::{Backend, DiscoveredModel};
use crate::schema::Model;

const DISCOVERY_TTL: Duration = Duration::from_secs(30);
const FAILED_DISCOVERY_TTL: Duration = Duration::from_secs(2);
const DISCOVERY_DEADLINE: Duration = Duration::from_secs(3);

impl RouteTable {
    /// Every model the table routes, deduplicated, in route order.
    pub async fn models(&self) -> Vec<Model> {
        let discovered = join_all(self.routes().iter().map(|r| async move {
            if !r.discover {
                return Vec::new();
            }
            join_all(
                r.members[..r.weighted]
                    .iter()
                    .map(|m| self.discover(&m.name)),
            )
            .await
        }))
        .await;
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for (route, found) in self.routes().iter().zip(discovered) {
            let listed = route.models.iter().map(|id| (id.as_str(), None, None));
            let found = found
                .iter()
                .flat_map(|list| list.iter())
                .map(|m| (m.id.as_str(), m.created, m.owned_by.as_deref()));
            for (id, created, owner) in listed.chain(found) {
                let full = format!("{}{}", route.prefix, id);
                if seen.insert(full.clone()) {
                    out.push(Model {
                        id: full,
                        object: "model".to_owned(),
                        created: created.unwrap_or(self.loaded_at),
                        owned_by: owner.unwrap_or(&route.backend_name).to_owned(),
                    });
                }
            }
        }
        out
    }

    async fn discover(&self, backend_name: &str) -> Arc<Vec<DiscoveredModel>> {
        if let Ok(cache) = self.discovered.lock()
            && let Some((at, ok, list)) = cache.get(backend_name)
            && at.elapsed()
                < if *ok {
                    DISCOVERY_TTL
                } else {
                    FAILED_DISCOVERY_TTL
                }
        {
            return list.clone();
        }
        let Some(backend) = self.backend(backend_name) else {
            return Arc::default();
        };
        let (ok, list) = match tokio::time::timeout(DISCOVERY_DEADLINE, backend.list_models()).await
        {
            Ok(Ok(list)) => (true, Arc::new(list)),
            Ok(Err(err)) => {
                tracing::warn!(backend = backend_name, error = %err, "model discovery failed; listing without it");
                (false, Arc::default())
            }
            Err(_) => {
                tracing::warn!(
                    backend = backend_name,
                    "model discovery timed out; listing without it"
                );
                (false, Arc::default())
            }
        };
        if let Ok(mut cache) = self.discovered.lock() {
            cache.insert(backend_name.to_owned(), (Instant::now(), ok, list.clone()));
        }
        list
    }
}
