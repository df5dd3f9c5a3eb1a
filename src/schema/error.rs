//! The OpenAI error body: `{"error":{"message","type","param","code"}}`.
//!
//! Only the wire shape lives here; which error gets which status is decided in `crate::error`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The body of every error response, as OpenAI sends it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// The error itself.
    pub error: ErrorObject,
}

/// One error, with the fields the OpenAI SDKs read.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorObject {
    /// Human-readable explanation.
    pub message: String,
    /// Error class, e.g. `invalid_request_error`, `api_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The request field at fault, when there is one (`null` otherwise).
    pub param: Option<String>,
    /// Machine-readable code, e.g. `model_not_found` (`null` otherwise).
    pub code: Option<String>,
}

impl ErrorBody {
    /// Builds a body from its parts.
    pub fn new(
        message: impl Into<String>,
        kind: &str,
        param: Option<String>,
        code: Option<&str>,
    ) -> Self {
        Self {
            error: ErrorObject {
                message: message.into(),
                kind: kind.to_owned(),
                param,
                code: code.map(str::to_owned),
            },
        }
    }

    /// The body serialised as JSON bytes.
    pub fn to_bytes(&self) -> bytes::Bytes {
        // Serialising a struct of strings cannot fail; fall back to a fixed body all the same.
        serde_json::to_vec(self)
            .map(bytes::Bytes::from)
            .unwrap_or_else(|_| {
                bytes::Bytes::from_static(
                    br#"{"error":{"message":"internal error","type":"api_error","param":null,"code":null}}"#,
                )
            })
    }
}
