//! Batch lines, both ways: a client's request as the body of an input line, and the lines of
//! the output and error files as each client's answer. Output lines are read loosely: a line
//! that does not parse, or has fields this version does not know, costs only itself.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::error::GatewayError;
use crate::store::{LineOutcome, SentLine};

/// A request ready to wait as a line.
#[derive(Debug)]
pub struct RequestLine {
    /// The model the line is for (its batch holds this model only).
    pub model: String,
    /// The body as it goes into the input file.
    pub body: String,
}

/// The client's body (model already rewritten) as a line body: as it came, except without
/// `stream` and `stream_options`, which a batch line may not carry.
pub fn request_line(body: &[u8], stream: bool) -> Result<RequestLine, GatewayError> {
    let mut object: Map<String, Value> =
        serde_json::from_slice(body).map_err(|e| GatewayError::InvalidJson {
            message: e.to_string(),
        })?;
    if stream || object.get("stream") == Some(&Value::Bool(true)) {
        return Err(GatewayError::InvalidField {
            param: Some("stream".to_owned()),
            message: "a batch route answers once its batch is done and cannot stream; send the \
                      request without `stream`"
                .to_owned(),
        });
    }
    let model = match object.get("model") {
        Some(Value::String(model)) => model.clone(),
        _ => {
            return Err(GatewayError::InvalidField {
                param: Some("model".to_owned()),
                message: "a string is required".to_owned(),
            });
        }
    };
    let had_stream = object.remove("stream").is_some();
    let had_options = object.remove("stream_options").is_some();
    let body = if had_stream || had_options {
        Value::Object(object).to_string()
    } else {
        // Untouched: the client's bytes go into the line as they came.
        String::from_utf8_lossy(body).into_owned()
    };
    Ok(RequestLine { model, body })
}

/// The input file: one `{custom_id, method, url, body}` line per request, each ending in a
/// newline.
pub fn input_file(endpoint: &str, lines: &[SentLine]) -> Vec<u8> {
    let mut file = Vec::new();
    for line in lines {
        let body = serde_json::from_str::<&serde_json::value::RawValue>(&line.body)
            .map(|raw| raw.get())
            .unwrap_or("{}");
        let head = json!({ "custom_id": line.id, "method": "POST", "url": endpoint });
        let mut text = head.to_string();
        text.pop();
        file.extend_from_slice(text.as_bytes());
        file.extend_from_slice(b",\"body\":");
        file.extend_from_slice(body.as_bytes());
        file.extend_from_slice(b"}\n");
    }
    file
}

#[derive(Deserialize)]
struct OutputLine {
    custom_id: Option<String>,
    response: Option<OutputResponse>,
    error: Option<LineError>,
}

#[derive(Deserialize)]
struct OutputResponse {
    status_code: Option<u16>,
    body: Option<Value>,
}

#[derive(Deserialize)]
struct LineError {
    code: Option<String>,
    message: Option<String>,
}

/// One line of an output or error file: whose line it is and its answer. `None` for a line
/// that names no request or carries neither a response nor an error.
pub fn answer_of(text: &str) -> Option<(String, LineOutcome)> {
    let line: OutputLine = serde_json::from_str(text).ok()?;
    let id = line.custom_id?;
    if let Some(OutputResponse {
        status_code: Some(status),
        body: Some(body),
    }) = line.response
    {
        let outcome = LineOutcome {
            status: i64::from(status),
            body: body.to_string(),
        };
        return Some((id, outcome));
    }
    let error = line.error?;
    let message = error
        .message
        .unwrap_or_else(|| "the batch could not answer this request".to_owned());
    Some((id, failure(500, &message, error.code.as_deref())))
}

/// An OpenAI-shaped error answer.
pub fn failure(status: i64, message: &str, code: Option<&str>) -> LineOutcome {
    let body = json!({
        "error": { "message": message, "type": "api_error", "param": null, "code": code }
    });
    LineOutcome {
        status,
        body: body.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_lines_are_read_loosely_and_stream_is_refused() {
        let ok = r#"{"id":"r","custom_id":"a","response":{"status_code":200,"request_id":"x","body":{"choices":[{"message":{"content":null}}],"new":1}},"error":null,"extra":true}"#;
        let (id, outcome) = answer_of(ok).unwrap();
        assert_eq!((id.as_str(), outcome.status), ("a", 200));
        assert!(outcome.body.contains("\"content\":null"));
        let failed = r#"{"custom_id":"b","response":null,"error":{"code":"oops","message":"no"}}"#;
        let (_, outcome) = answer_of(failed).unwrap();
        assert_eq!(outcome.status, 500);
        assert!(outcome.body.contains("\"code\":\"oops\""));
        assert!(answer_of("{not json").is_none());
        assert!(answer_of(r#"{"custom_id":"c"}"#).is_none());
        assert!(request_line(br#"{"model":"m","stream":true}"#, false).is_err());
        let line = request_line(
            br#"{"model":"m","stream":false,"stream_options":{}}"#,
            false,
        );
        assert_eq!(line.unwrap().body, r#"{"model":"m"}"#);
        let file = input_file(
            "/v1/embeddings",
            &[SentLine {
                id: "a".into(),
                body: r#"{"model":"m","input":"x"}"#.into(),
            }],
        );
        let text = String::from_utf8(file).unwrap();
        assert!(text.ends_with("}\n"));
        let back: Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(back["body"]["input"], "x");
        assert_eq!(back["url"], "/v1/embeddings");
    }
}
