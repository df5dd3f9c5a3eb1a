//! Rewriting the model name in a request body without re-serialising it.
//!
//! Only the top-level `model` value is replaced; every other byte of the client's body, field
//! order and whitespace included, reaches the upstream as sent.

use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::GatewayError;

#[derive(Deserialize)]
struct ModelField<'a> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
}

/// The body with its top-level `model` replaced by `model`.
pub fn replace_model(body: &Bytes, model: &str) -> Result<Bytes, GatewayError> {
    let field: ModelField<'_> =
        serde_json::from_slice(body).map_err(|e| GatewayError::InvalidJson {
            message: e.to_string(),
        })?;
    let Some(raw) = field.model else {
        return Err(GatewayError::InvalidField {
            param: Some("model".to_owned()),
            message: "missing field `model`".to_owned(),
        });
    };
    // The raw value borrows from `body`, so its address locates it in the body.
    let start = raw.get().as_ptr() as usize - body.as_ptr() as usize;
    let end = start + raw.get().len();
    let mut out = BytesMut::with_capacity(body.len() + model.len());
    out.extend_from_slice(&body[..start]);
    let mut writer = (&mut out).writer();
    serde_json::to_writer(&mut writer, model).map_err(|e| GatewayError::Internal {
        message: e.to_string(),
    })?;
    out.extend_from_slice(&body[end..]);
    Ok(out.freeze())
}

/// The top-level `model` of a JSON body, when there is one (pass-through routing).
pub fn peek_model(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Model {
        model: Option<String>,
    }
    serde_json::from_slice::<Model>(body).ok()?.model
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_top_level_model_changes() {
        let body = Bytes::from_static(
            br#"{ "messages":[{"role":"user","content":"model"}],"model" : "openai/gpt-4o",  "guided_json":{"model":"x"}}"#,
        );
        let out = replace_model(&body, "gpt-4o").unwrap();
        assert_eq!(
            &out[..],
            &br#"{ "messages":[{"role":"user","content":"model"}],"model" : "gpt-4o",  "guided_json":{"model":"x"}}"#[..]
        );
    }

    #[test]
    fn names_needing_escapes_are_escaped() {
        let out = replace_model(&Bytes::from_static(br#"{"model":"p/a\"b"}"#), "a\"b").unwrap();
        assert_eq!(&out[..], &br#"{"model":"a\"b"}"#[..]);
    }

    #[test]
    fn peek_reads_only_a_string_model() {
        assert_eq!(
            peek_model(br#"{"model":"x","file":"y"}"#).as_deref(),
            Some("x")
        );
        assert_eq!(peek_model(b"--boundary"), None);
    }
}
