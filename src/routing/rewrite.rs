//! Rewriting the model name in a request body without re-serialising it.
//!
//! Only the top-level `model` value is replaced; every other byte of the client's body, field
//! order and whitespace included, reaches the upstream as sent.
//!
//! The body has already been parsed (and so validated) when it is rewritten, so finding the
//! value needs no second full parse: `locate_model` walks the top-level object only, jumping
//! over strings with a vectorised search, which is what made the rewrite cost half as much as
//! the typed parse itself on large bodies. Its answer is checked (the bytes found must decode to
//! the model the parse saw); anything unusual, such as an escaped key, falls back to serde.

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::GatewayError;

#[derive(Deserialize)]
struct ModelField<'a> {
    #[serde(borrow)]
    model: Option<&'a RawValue>,
}

/// The body, whose top-level `model` is `current`, with that value replaced by `model`.
pub fn replace_model(body: &Bytes, current: &str, model: &str) -> Result<Bytes, GatewayError> {
    let span = match locate_model(body) {
        Some(span) if decodes_to(&body[span.clone()], current) => span,
        _ => locate_model_with_serde(body)?,
    };
    let (start, end) = (span.start, span.end);
    let mut out = BytesMut::with_capacity(body.len() + model.len());
    out.extend_from_slice(&body[..start]);
    let mut writer = (&mut out).writer();
    serde_json::to_writer(&mut writer, model).map_err(|e| GatewayError::Internal {
        message: e.to_string(),
    })?;
    out.extend_from_slice(&body[end..]);
    Ok(out.freeze())
}

/// The span of the top-level `model` value, found by a full parse.
fn locate_model_with_serde(body: &Bytes) -> Result<Range<usize>, GatewayError> {
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
    Ok(start..start + raw.get().len())
}

fn decodes_to(raw: &[u8], expected: &str) -> bool {
    serde_json::from_slice::<std::borrow::Cow<'_, str>>(raw).is_ok_and(|s| s == expected)
}

/// The span of the top-level `"model"` value of a JSON object that is already known to be
/// valid. `None` when it is absent, or when the walk meets anything it does not expect (the
/// caller then asks serde).
fn locate_model(body: &[u8]) -> Option<Range<usize>> {
    let mut i = skip_ws(body, 0);
    if body.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    loop {
        i = skip_ws(body, i);
        if body.get(i)? != &b'"' {
            return None; // `}`: no model; anything else: not what a valid object holds
        }
        let key_end = string_end(body, i)?;
        let key = &body[i + 1..key_end];
        if key.contains(&b'\\') {
            return None; // an escaped key may spell `model`
        }
        i = skip_ws(body, key_end + 1);
        if body.get(i)? != &b':' {
            return None;
        }
        let start = skip_ws(body, i + 1);
        let end = value_end(body, start)?;
        if key == b"model" {
            return Some(start..end);
        }
        i = skip_ws(body, end);
        if body.get(i)? != &b',' {
            return None;
        }
        i += 1;
    }
}

fn skip_ws(body: &[u8], mut i: usize) -> usize {
    while matches!(body.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The index of the quote closing the string that opens at `open`.
fn string_end(body: &[u8], open: usize) -> Option<usize> {
    let mut i = open + 1;
    loop {
        i += memchr::memchr2(b'"', b'\\', body.get(i..)?)?;
        if body[i] == b'"' {
            return Some(i);
        }
        i += 2; // an escape: the next byte cannot close the string
    }
}

/// The index just past the value that starts at `start`.
fn value_end(body: &[u8], start: usize) -> Option<usize> {
    match body.get(start)? {
        b'"' => string_end(body, start).map(|e| e + 1),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = start;
            loop {
                match body.get(i)? {
                    b'"' => i = string_end(body, i)?,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            let mut i = start;
            while !matches!(
                body.get(i),
                None | Some(b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            ) {
                i += 1;
            }
            Some(i)
        }
    }
}

/// The top-level `model` as written, `null` included (which `Option` alone would hide).
#[derive(Deserialize)]
struct PeekedModel<'a> {
    #[serde(borrow, default, deserialize_with = "present")]
    model: Option<&'a RawValue>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// The top-level `model` of a JSON body, for pass-through routing. `None` when the body is not
/// a JSON object (multipart uploads, empty bodies) or has no `model`: the default backend then
/// serves it. A `model` that is not a string, or appears twice, is refused rather than routed to
/// the default backend, whose key the client did not ask for; so is an object that does not parse.
pub fn peek_model(body: &[u8]) -> Result<Option<String>, GatewayError> {
    if body.get(skip_ws(body, 0)) != Some(&b'{') {
        return Ok(None);
    }
    let field: PeekedModel<'_> = serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            // Only `model` is typed, so a data error is about it (`duplicate field `model``).
            GatewayError::InvalidField {
                param: Some("model".to_owned()),
                message: e.to_string(),
            }
        } else {
            GatewayError::InvalidJson {
                message: e.to_string(),
            }
        }
    })?;
    let Some(raw) = field.model else {
        return Ok(None);
    };
    serde_json::from_str::<String>(raw.get())
        .map(Some)
        .map_err(|_| GatewayError::InvalidField {
            param: Some("model".to_owned()),
            message: "`model` must be a string".to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_top_level_model_changes() {
        let body = Bytes::from_static(
            br#"{ "messages":[{"role":"user","content":"model"}],"model" : "openai/gpt-4o",  "guided_json":{"model":"x"}}"#,
        );
        let out = replace_model(&body, "openai/gpt-4o", "gpt-4o").unwrap();
        assert_eq!(
            &out[..],
            &br#"{ "messages":[{"role":"user","content":"model"}],"model" : "gpt-4o",  "guided_json":{"model":"x"}}"#[..]
        );
    }

    #[test]
    fn names_needing_escapes_are_escaped() {
        let out = replace_model(
            &Bytes::from_static(br#"{"model":"p/a\"b"}"#),
            "p/a\"b",
            "a\"b",
        )
        .unwrap();
        assert_eq!(&out[..], &br#"{"model":"a\"b"}"#[..]);
    }

    #[test]
    fn peek_reads_only_a_string_model() {
        assert_eq!(
            peek_model(br#"{"model":"x","file":"y"}"#)
                .unwrap()
                .as_deref(),
            Some("x")
        );
        assert_eq!(peek_model(b"--boundary").unwrap(), None);
        assert_eq!(peek_model(b"").unwrap(), None);
        assert_eq!(peek_model(br#"{"file":"y"}"#).unwrap(), None);
        assert_eq!(peek_model(b"[1]").unwrap(), None);
    }

    #[test]
    fn peek_refuses_a_model_that_is_not_one_string() {
        for body in [
            &br#"{"model":"a/x","model":"b/y"}"#[..],
            br#"{"model":["a/x"]}"#,
            br#"{"model":7}"#,
            br#"{"model":null}"#,
        ] {
            let err = peek_model(body).unwrap_err();
            assert!(
                matches!(&err, GatewayError::InvalidField { param: Some(p), .. } if p == "model"),
                "{err:?}"
            );
        }
        assert!(matches!(
            peek_model(br#"{"model":"a/x""#),
            Err(GatewayError::InvalidJson { .. })
        ));
    }
}

#[cfg(test)]
mod locate_tests {
    use super::*;

    /// The scanner either finds exactly the span serde finds, or defers to it.
    fn agrees_with_serde(body: &str) {
        let bytes = Bytes::copy_from_slice(body.as_bytes());
        let by_serde = locate_model_with_serde(&bytes).ok();
        // When the walk gives up, the fallback answers; that is checked through replace_model.
        if let Some(span) = locate_model(body.as_bytes()) {
            assert_eq!(Some(span), by_serde, "{body}");
        }
        if let Some(span) = by_serde {
            let current: String = serde_json::from_slice(&bytes[span.clone()]).unwrap();
            let out = replace_model(&bytes, &current, "NEW").unwrap();
            let expected = format!("{}\"NEW\"{}", &body[..span.start], &body[span.end..]);
            assert_eq!(String::from_utf8(out.to_vec()).unwrap(), expected, "{body}");
        }
    }

    #[test]
    fn the_walk_finds_what_serde_finds_in_awkward_bodies() {
        for body in [
            r#"{"model":"a/b"}"#,
            r#"  {  "model"  :  "a/b"  ,"x":1}  "#,
            "{\n\t\"stream\": true,\r\n \"model\":\"a/b\"\n}",
            r#"{"messages":[{"role":"user","content":"\"model\": \"fake\" \\"}],"model":"a/b"}"#,
            r#"{"tools":[{"function":{"parameters":{"properties":{"model":{"type":"string"}}}}}],"model":"a/b"}"#,
            r#"{"a":[1,2,[3,{"b":"}]"}]],"n":-1.5e3,"t":true,"f":false,"z":null,"model":"a/b"}"#,
            r#"{"x":"\\\\","y":"\\\"","model":"a\"b\\c"}"#,
            r#"{"model":"é/ü","emoji":"🚀"}"#,
            r#"{"k":{},"l":[],"model":"a/b","m":{"model":"no"}}"#,
            r#"{"mod\u0065l":"a/b"}"#,
            r#"{"x":"model","y":{"model":"nested"},"model":"top"}"#,
        ] {
            agrees_with_serde(body);
        }
    }

    #[test]
    fn an_escaped_key_is_left_to_serde() {
        assert_eq!(locate_model(br#"{"mod\u0065l":"a/b"}"#), None);
        let body = Bytes::from_static(br#"{"mod\u0065l":"a/b"}"#);
        assert_eq!(
            &replace_model(&body, "a/b", "b").unwrap()[..],
            &br#"{"mod\u0065l":"b"}"#[..]
        );
    }

    #[test]
    fn a_wrong_expectation_falls_back_rather_than_splicing_blindly() {
        let body = Bytes::from_static(br#"{"model":"a/b"}"#);
        // The walk finds "a/b", which is not what the caller parsed: serde decides (same span).
        assert_eq!(
            &replace_model(&body, "other", "b").unwrap()[..],
            &br#"{"model":"b"}"#[..]
        );
    }
}

#[cfg(test)]
mod proptests {
    use proptest::prelude::*;
    use serde_json::Value;

    use super::*;

    /// Any JSON value, nested a few levels, with objects that may hold `"model"` keys of their
    /// own (which the splice must leave alone).
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            any::<String>().prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
                prop::collection::btree_map(
                    prop_oneof![any::<String>(), Just("model".to_owned())],
                    inner,
                    0..4
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn whitespace() -> impl Strategy<Value = String> {
        prop::collection::vec(
            prop_oneof![Just(' '), Just('\n'), Just('\t'), Just('\r')],
            0..3,
        )
        .prop_map(|v| v.into_iter().collect())
    }

    /// A request body as text: other fields around one top-level `model` (its key sometimes
    /// written with an escape), arbitrary whitespace between tokens.
    fn body_with_model() -> impl Strategy<Value = (String, String)> {
        (
            prop::collection::vec(
                (
                    any::<String>().prop_filter("not model", |k| k != "model"),
                    json_value(),
                ),
                0..5,
            ),
            any::<String>(),
            any::<prop::sample::Index>(),
            any::<bool>(),
            prop::collection::vec(whitespace(), 4),
        )
            .prop_map(|(fields, model, at, escaped_key, ws)| {
                let mut parts: Vec<String> = fields
                    .iter()
                    .map(|(k, v)| {
                        format!(
                            "{}{}{}:{}{}",
                            ws[0],
                            Value::from(k.as_str()),
                            ws[1],
                            ws[2],
                            v
                        )
                    })
                    .collect();
                let key = if escaped_key {
                    r#""mod\u0065l""#
                } else {
                    r#""model""#
                };
                let model_json = Value::from(model.as_str());
                parts.insert(
                    at.index(parts.len() + 1),
                    format!("{}{key}{}:{}{model_json}", ws[3], ws[0], ws[1]),
                );
                (format!("{}{{{}}}{}", ws[2], parts.join(","), ws[3]), model)
            })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let body = Bytes::from(bytes);
            let _ = peek_model(&body);
            let _ = locate_model(&body);
            let _ = replace_model(&body, "a", "b");
        }

        #[test]
        fn the_splice_agrees_with_serde((text, model) in body_with_model(), new in any::<String>()) {
            let body = Bytes::from(text.clone());
            // The walk finds serde's span, or defers to serde.
            let by_serde = locate_model_with_serde(&body).unwrap();
            if let Some(span) = locate_model(&body) {
                prop_assert_eq!(span, by_serde.clone());
            }
            // The result is the same document with only the top-level model replaced...
            let out = replace_model(&body, &model, &new).unwrap();
            let mut expected: Value = serde_json::from_slice(&body).unwrap();
            expected["model"] = Value::from(new.as_str());
            let got: Value = serde_json::from_slice(&out).unwrap();
            prop_assert_eq!(got, expected);
            // ...and every byte outside the model's value is the client's own.
            prop_assert_eq!(&out[..by_serde.start], &body[..by_serde.start]);
            prop_assert_eq!(&out[out.len() - (body.len() - by_serde.end)..], &body[by_serde.end..]);
            // Pass-through routing reads the same model.
            prop_assert_eq!(peek_model(&body).unwrap(), Some(model));
        }
    }
}
