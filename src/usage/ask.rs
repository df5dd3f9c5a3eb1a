//! Asking the upstream for a stream's usage when the client did not (`stream_options.
//! include_usage`): the gateway needs the counts whatever the client wants to see.

use std::sync::LazyLock;

use bytes::{Bytes, BytesMut};
use memchr::memmem;
use serde_json::{Map, Value};

use crate::error::GatewayError;
use crate::schema::chat::StreamOptions;

/// The key looked for in every streamed request's body; its searcher is built once.
static STREAM_OPTIONS: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\"stream_options\""));

/// `body` (whose typed view has `options`) made to ask for usage, both views changed alike:
/// the bytes go upstream, the typed value goes to backends that rebuild the body (Ollama).
///
/// A body without `stream_options` (the common case) gets the key spliced in after its opening
/// brace, with no parse; one that has it (say `{"include_usage": false}`) is re-serialised.
pub fn ask_for_usage(
    body: &Bytes,
    options: &mut Option<StreamOptions>,
) -> Result<Bytes, GatewayError> {
    const KEY: &[u8] = br#""stream_options":{"include_usage":true}"#;
    options
        .get_or_insert_with(|| StreamOptions {
            include_usage: None,
            extra: Map::new(),
        })
        .include_usage = Some(true);
    if STREAM_OPTIONS.find(body).is_none() {
        let open = body
            .iter()
            .position(|b| *b == b'{')
            .ok_or_else(not_an_object)?;
        let empty = body[open + 1..]
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b == b'}');
        let mut out = BytesMut::with_capacity(body.len() + KEY.len() + 1);
        out.extend_from_slice(&body[..=open]);
        out.extend_from_slice(KEY);
        if !empty {
            out.extend_from_slice(b",");
        }
        out.extend_from_slice(&body[open + 1..]);
        return Ok(out.freeze());
    }
    let mut value: Value = serde_json::from_slice(body).map_err(|_| not_an_object())?;
    let object = value.as_object_mut().ok_or_else(not_an_object)?;
    let entry = object
        .entry("stream_options")
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    if let Some(stream_options) = entry.as_object_mut() {
        stream_options.insert("include_usage".to_owned(), Value::Bool(true));
    }
    serde_json::to_vec(&value)
        .map(Bytes::from)
        .map_err(|_| not_an_object())
}

fn not_an_object() -> GatewayError {
    GatewayError::InvalidField {
        param: None,
        message: "the request body must be a JSON object".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(body: &str) -> (Value, Option<StreamOptions>) {
        let mut options: Option<StreamOptions> = serde_json::from_str::<Value>(body)
            .unwrap()
            .get("stream_options")
            .and_then(|o| serde_json::from_value(o.clone()).ok());
        let out = ask_for_usage(&Bytes::copy_from_slice(body.as_bytes()), &mut options).unwrap();
        (serde_json::from_slice(&out).unwrap(), options)
    }

    #[test]
    fn the_key_is_added_and_everything_else_kept() {
        for body in [
            r#"{"model":"m","stream":true,"messages":[]}"#,
            r#"  { "model":"m","stream":true,"extra":{"stream_options":1} }"#,
            r#"{"model":"m","stream_options":{"include_usage":false,"x":1}}"#,
            r#"{"model":"m","stream_options":null}"#,
        ] {
            let (value, options) = asked(body);
            assert_eq!(value["stream_options"]["include_usage"], true, "{body}");
            assert_eq!(value["model"], "m", "{body}");
            assert_eq!(options.and_then(|o| o.include_usage), Some(true));
        }
        let (value, _) = asked(r#"{"model":"m","stream_options":{"include_usage":false,"x":1}}"#);
        assert_eq!(value["stream_options"]["x"], 1);
        let (value, _) = asked("{}");
        assert_eq!(value["stream_options"]["include_usage"], true);
    }
}
