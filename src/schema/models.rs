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
