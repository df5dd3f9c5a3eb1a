//! OpenAI wire types: what clients send and receive. No I/O and no routing here.

pub mod batch_api;
pub mod chat;
pub mod chunk;
pub mod completions;
pub mod embeddings;
pub mod error;
pub mod integer;
pub mod models;
pub mod responses;

pub use chat::{ChatCompletion, ChatCompletionRequest, ChatMessage, MessageContent};
pub use chunk::{ChatCompletionChunk, Usage};
pub use completions::{CompletionRequest, TextCompletion};
pub use embeddings::{EmbeddingInput, EmbeddingRequest, EmbeddingResponse, EncodingFormat};
pub use error::{ErrorBody, ErrorObject};
pub use models::{DiscoveredModel, Model, ModelList};
pub use responses::{Response, ResponseStreamEvent, ResponsesRequest};
