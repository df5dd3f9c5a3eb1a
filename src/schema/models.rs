//! `GET /v1/models` types.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One model the gateway can route to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Model {
    /// The name a client sends, prefix included.
    #[schema(example = "echo/hello")]
    pub id: String,
    /// Always `model`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// The backend serving it, or the owner the backend reported.
    pub owned_by: String,
}

/// The list shape of `GET /v1/models`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ModelList {
    /// Always `list`.
    pub object: String,
    /// The models.
    pub data: Vec<Model>,
}

/// A model a backend reported in its own listing.
#[derive(Debug, Clone)]
pub struct DiscoveredModel {
    /// The backend's own name for it.
    pub id: String,
    /// Unix seconds, when the backend says.
    pub created: Option<u64>,
    /// Owner, when the backend says.
    pub owned_by: Option<String>,
}
