//! Legacy `POST /v1/completions` request and response types (`text_completion`), for the
//! backends that answer them without an OpenAI-compatible server (Ollama's `/api/generate`,
//! echo). Routes to OpenAI-compatible backends relay the client's body as it is.

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};

use super::chat::{Stop, StreamOptions};
use super::chunk::Usage;

/// A legacy completion request.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct CompletionRequest {
    /// Model name, `prefix/model` as routed by `routes.toml`.
    #[schema(example = "echo/hello")]
    pub model: String,
    /// The prompt: a string, or a list holding one string.
    pub prompt: Prompt,
    /// Text after the insertion point (fill-in-the-middle), for models that support it.
    #[serde(default)]
    pub suffix: Option<String>,
    /// Upper bound on generated tokens.
    #[serde(default, deserialize_with = "super::integer::optional")]
    pub max_tokens: Option<u32>,
    /// Sampling temperature, 0 to 2.
    #[serde(default)]
    pub temperature: Option<f32>,
    /// Nucleus sampling mass.
    #[serde(default)]
    pub top_p: Option<f32>,
    /// Up to 4 sequences where generation stops.
    #[serde(default)]
    pub stop: Option<Stop>,
    /// Seed for best-effort deterministic sampling.
    #[serde(default, deserialize_with = "super::integer::optional")]
    pub seed: Option<i64>,
    /// -2 to 2.
    #[serde(default)]
    pub presence_penalty: Option<f32>,
    /// -2 to 2.
    #[serde(default)]
    pub frequency_penalty: Option<f32>,
    /// Stream the answer as server-sent events.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Streaming options, e.g. `{"include_usage": true}`.
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// How many completions: only 1 is served.
    #[serde(default, deserialize_with = "super::integer::optional")]
    #[schema(minimum = 1, maximum = 1, format = Int64)]
    pub n: Option<u32>,
    /// End-user identifier.
    #[serde(default)]
    pub user: Option<String>,
    /// Every field not modelled above (`keep_alive`, `top_k`, `raw`, ...): Ollama's own
    /// request fields and options pass on to `/api/generate`; others are not sent.
    #[serde(flatten)]
    #[schema(additional_properties)]
    pub extra: Map<String, Value>,
}

impl CompletionRequest {
    /// Whether the client asked for a stream.
    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// Whether a streaming client asked for a final usage chunk.
    pub fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false)
    }

    /// The one prompt.
    pub fn prompt_text(&self) -> &str {
        &self.prompt.0
    }
}

/// `prompt`: one string, or a list of exactly one string (the SDKs' `prompt=["…"]`). Several
/// prompts (a batch) and token ids are refused: one prompt per request.
#[derive(Debug, Clone)]
pub struct Prompt(pub String);

impl<'de> Deserialize<'de> for Prompt {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Prompt;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or a list of one string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Prompt, E> {
                Ok(Prompt(v.to_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Prompt, A::Error> {
                let one: Option<String> = seq.next_element()?;
                match (one, seq.next_element::<de::IgnoredAny>()?) {
                    (Some(text), None) => Ok(Prompt(text)),
                    _ => Err(de::Error::custom(
                        "one prompt per request: a list of several prompts (or none) is not \
                         supported",
                    )),
                }
            }
        }
        deserializer.deserialize_any(V)
    }
}

impl utoipa::PartialSchema for Prompt {
    fn schema() -> RefOr<Schema> {
        let text = ObjectBuilder::new().schema_type(Type::String);
        let list = ArrayBuilder::new()
            .items(ObjectBuilder::new().schema_type(Type::String))
            .min_items(Some(1))
            .max_items(Some(1));
        OneOfBuilder::new()
            .description(Some(
                "The prompt: a string, or a list of one string. Several prompts (a batch) and \
                 token ids are not served.",
            ))
            .item(text)
            .item(list)
            .into()
    }
}

impl ToSchema for Prompt {}

/// A legacy completion (`object: "text_completion"`), or one event of its stream.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TextCompletion {
    /// `cmpl-…`, the same on every event of a stream.
    pub id: String,
    /// Always `text_completion`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// The model, as the client named it.
    pub model: String,
    /// One choice; none on a stream's final usage event.
    pub choices: Vec<TextChoice>,
    /// Token counts: on a whole completion, and on the last event of a stream when
    /// `stream_options.include_usage` is set (`null` on the others).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
}

/// One choice of a legacy completion.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TextChoice {
    /// The generated text (a piece of it in a stream).
    pub text: String,
    /// Always 0.
    pub index: u32,
    /// Always `null`.
    pub logprobs: Option<Value>,
    /// `stop` or `length`, on the last piece.
    pub finish_reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prompt_is_a_string_or_a_list_of_one() {
        for (json, ok) in [
            (r#""Say hi""#, true),
            (r#"["Say hi"]"#, true),
            (r#"["a","b"]"#, false),
            (r#"[1]"#, false),
            (r#"[]"#, false),
        ] {
            let body = format!(r#"{{"model":"m","prompt":{json}}}"#);
            let parsed = serde_json::from_str::<CompletionRequest>(&body);
            assert_eq!(parsed.is_ok(), ok, "{json}");
            if let Ok(req) = parsed {
                assert_eq!(req.prompt_text(), "Say hi");
            }
        }
    }
}
