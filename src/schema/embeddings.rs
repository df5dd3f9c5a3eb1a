//! `POST /v1/embeddings` request and response types.

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::integer::Integer;

/// An embeddings request.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EmbeddingRequest {
    /// Model name, `prefix/model` as routed by `routes.toml`.
    #[schema(example = "echo/embed")]
    pub model: String,
    /// What to embed.
    pub input: EmbeddingInput,
    /// `float` (default) or `base64` (little-endian f32).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<EncodingFormat>,
    /// Output dimensions, for models that support it (at least 1, as in OpenAI's API; each
    /// backend has its own maximum; echo caps it at 3072).
    #[schema(minimum = 1, maximum = 4294967295_u64, format = Int64)]
    #[serde(
        default,
        deserialize_with = "super::integer::optional",
        skip_serializing_if = "Option::is_none"
    )]
    pub dimensions: Option<u32>,
    /// End-user identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Unmodelled fields, kept verbatim.
    #[serde(flatten)]
    #[schema(additional_properties)]
    pub extra: Map<String, Value>,
}

/// How embeddings are encoded in the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    /// JSON arrays of numbers.
    Float,
    /// Base64 of little-endian f32s.
    Base64,
}

/// `input`: a string, strings, a token array, or token arrays.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum EmbeddingInput {
    /// One text.
    Text(String),
    /// Several texts.
    Texts(Vec<String>),
    /// One pre-tokenised input.
    Tokens(Vec<u32>),
    /// Several pre-tokenised inputs.
    TokenArrays(Vec<Vec<u32>>),
}

impl EmbeddingInput {
    /// How many embeddings the request asks for.
    pub fn len(&self) -> usize {
        match self {
            EmbeddingInput::Text(_) | EmbeddingInput::Tokens(_) => 1,
            EmbeddingInput::Texts(t) => t.len(),
            EmbeddingInput::TokenArrays(t) => t.len(),
        }
    }

    /// Whether there is nothing to embed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum InputItem {
    Text(String),
    Token(Integer<u32>),
    Tokens(Vec<Integer<u32>>),
}

// Hand-written so that a wrong shape says what is allowed, and so a mixed array is refused.
impl<'de> Deserialize<'de> for EmbeddingInput {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct InputVisitor;
        const EXPECTED: &str =
            "a string, an array of strings, an array of token ids, or an array of token-id arrays";
        impl<'de> Visitor<'de> for InputVisitor {
            type Value = EmbeddingInput;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(EXPECTED)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(EmbeddingInput::Text(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(EmbeddingInput::Text(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items: Vec<InputItem> = Vec::with_capacity(seq.size_hint().unwrap_or(1));
                while let Some(item) = seq.next_element::<InputItem>()? {
                    items.push(item);
                }
                let mixed = || de::Error::custom(format!("a mixed array; expected {EXPECTED}"));
                match items.first() {
                    None => Ok(EmbeddingInput::Texts(Vec::new())),
                    Some(InputItem::Text(_)) => items
                        .into_iter()
                        .map(|i| match i {
                            InputItem::Text(t) => Ok(t),
                            _ => Err(mixed()),
                        })
                        .collect::<Result<_, _>>()
                        .map(EmbeddingInput::Texts),
                    Some(InputItem::Token(_)) => items
                        .into_iter()
                        .map(|i| match i {
                            InputItem::Token(Integer(t)) => Ok(t),
                            _ => Err(mixed()),
                        })
                        .collect::<Result<_, _>>()
                        .map(EmbeddingInput::Tokens),
                    Some(InputItem::Tokens(_)) => items
                        .into_iter()
                        .map(|i| match i {
                            InputItem::Tokens(t) => Ok(t.into_iter().map(|Integer(t)| t).collect()),
                            _ => Err(mixed()),
                        })
                        .collect::<Result<_, _>>()
                        .map(EmbeddingInput::TokenArrays),
                }
            }
        }
        deserializer.deserialize_any(InputVisitor)
    }
}

/// An embeddings response.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct EmbeddingResponse {
    /// Always `list`.
    pub object: String,
    /// One embedding per input, in input order.
    pub data: Vec<Embedding>,
    /// The model, as the client named it.
    pub model: String,
    /// Token counts.
    pub usage: EmbeddingUsage,
}

/// One embedding.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Embedding {
    /// Always `embedding`.
    pub object: String,
    /// Position of the input it embeds.
    pub index: u32,
    /// Floats, or a base64 string when `encoding_format` was `base64`.
    #[schema(schema_with = embedding_vector)]
    pub embedding: Value,
}

/// The schema of `Embedding::embedding`: the vector as numbers, or as base64 of little-endian
/// f32s.
fn embedding_vector() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Type};
    OneOfBuilder::new()
        .description(Some(
            "The vector: numbers (`encoding_format: float`, the default) or a base64 string of \
             little-endian f32s (`encoding_format: base64`).",
        ))
        .item(ArrayBuilder::new().items(ObjectBuilder::new().schema_type(Type::Number)))
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .content_encoding("base64"),
        )
        .into()
}

/// Token counts of an embeddings request.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, ToSchema)]
pub struct EmbeddingUsage {
    /// Tokens in the input.
    pub prompt_tokens: u64,
    /// Same as `prompt_tokens`.
    pub total_tokens: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_input_shape_parses_and_mixed_is_refused() {
        let p = |s: &str| serde_json::from_str::<EmbeddingInput>(s);
        assert!(matches!(p(r#""a""#).unwrap(), EmbeddingInput::Text(_)));
        assert_eq!(p(r#"["a","b"]"#).unwrap().len(), 2);
        assert!(matches!(p("[1,2,3]").unwrap(), EmbeddingInput::Tokens(_)));
        assert_eq!(p("[[1],[2,3]]").unwrap().len(), 2);
        let err = p(r#"["a",1]"#).unwrap_err().to_string();
        assert!(err.contains("mixed"), "{err}");
        assert!(p("{}").is_err());
    }
}
