//! Checking a batch's input file as OpenAI does, before any line runs: each line a JSON object
//! with a unique `custom_id`, `method: "POST"`, the batch's endpoint as `url`, and a `body`
//! naming one model (the same in every line); at most `max_lines` lines, each at most
//! `max_line_bytes`. The file is read line by line: memory stays at one line.

use std::collections::HashSet;

use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use crate::schema::batch_api::BatchError;
use crate::store::LineSpan;

/// Most problems reported for one file (OpenAI lists a sample, not every line).
const MAX_ERRORS: usize = 100;
/// Longest `custom_id`: every id is held while the file is checked and kept with its line, so
/// their size is bounded apart from the file's.
const MAX_CUSTOM_ID_BYTES: usize = 512;

/// The limits a file is checked against.
#[derive(Debug, Clone, Copy)]
pub struct FileLimits {
    /// Most lines.
    pub max_lines: usize,
    /// Largest line.
    pub max_line_bytes: usize,
}

/// What a valid file holds: where each line is, and the one model they name.
#[derive(Debug)]
pub struct ValidFile {
    /// Every line, in order.
    pub lines: Vec<LineSpan>,
}

/// One input line as OpenAI defines it (`BatchRequestInput`).
#[derive(Deserialize)]
struct InputLine<'a> {
    #[serde(borrow)]
    custom_id: Option<&'a RawValue>,
    #[serde(borrow)]
    method: Option<&'a RawValue>,
    #[serde(borrow)]
    url: Option<&'a RawValue>,
    #[serde(borrow)]
    body: Option<&'a RawValue>,
}

/// The one line being read: its bytes (up to the cap) and whether it went past it.
struct Line {
    bytes: Vec<u8>,
    too_long: bool,
    at: u64,
}

/// Reads the next line (without its `\n`), keeping at most `cap` bytes of it.
async fn next_line<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    cap: usize,
    at: &mut u64,
) -> std::io::Result<Option<Line>> {
    let mut line = Line {
        bytes: Vec::new(),
        too_long: false,
        at: *at,
    };
    let mut any = false;
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(any.then_some(line));
        }
        any = true;
        let (piece, used, ended) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], i + 1, true),
            None => (buf, buf.len(), false),
        };
        if line.bytes.len() + piece.len() > cap {
            line.too_long = true;
        } else if !line.too_long {
            line.bytes.extend_from_slice(piece);
        }
        reader.consume(used);
        *at += used as u64;
        if ended {
            return Ok(Some(line));
        }
    }
}

/// Checks the file `reader` reads for a batch on `endpoint`.
pub async fn check<R: AsyncBufRead + Unpin>(
    mut reader: R,
    endpoint: &str,
    limits: FileLimits,
) -> std::io::Result<Result<ValidFile, Vec<BatchError>>> {
    let mut state = Checked::default();
    let mut at = 0u64;
    let mut number = 0i64;
    while let Some(line) = next_line(&mut reader, limits.max_line_bytes, &mut at).await? {
        number += 1;
        if line.bytes.iter().all(u8::is_ascii_whitespace) && !line.too_long {
            // A blank line (a trailing newline, CRLF endings) is not a request.
            continue;
        }
        if state.lines.len() == limits.max_lines {
            let message = format!(
                "The file has more than {} requests; a batch holds at most {}.",
                limits.max_lines, limits.max_lines
            );
            return Ok(Err(vec![error("too_many_requests", None, message, None)]));
        }
        state.line(number, &line, endpoint, limits);
        if state.errors.len() >= MAX_ERRORS {
            break;
        }
    }
    if state.lines.is_empty() && state.errors.is_empty() {
        let message = "The input file holds no requests.".to_owned();
        return Ok(Err(vec![error("empty_file", None, message, None)]));
    }
    Ok(if state.errors.is_empty() {
        Ok(ValidFile { lines: state.lines })
    } else {
        Err(state.errors)
    })
}

#[derive(Default)]
struct Checked {
    lines: Vec<LineSpan>,
    errors: Vec<BatchError>,
    seen: HashSet<String>,
    model: Option<String>,
}

impl Checked {
    fn line(&mut self, number: i64, line: &Line, endpoint: &str, limits: FileLimits) {
        let len = line.bytes.len();
        match self.problem(line, endpoint, limits) {
            Ok(custom_id) => self.lines.push(LineSpan {
                line: number,
                custom_id,
                at: i64::try_from(line.at).unwrap_or(i64::MAX),
                len: i64::try_from(len).unwrap_or(i64::MAX),
            }),
            Err((code, message, param)) => {
                self.errors
                    .push(error(code, Some(number), message, param.map(str::to_owned)));
            }
        }
    }

    /// The line's `custom_id`, or what is wrong with it.
    fn problem(
        &mut self,
        line: &Line,
        endpoint: &str,
        limits: FileLimits,
    ) -> Result<String, (&'static str, String, Option<&'static str>)> {
        if line.too_long {
            let message = format!(
                "The line is longer than {} bytes, the largest request body accepted.",
                limits.max_line_bytes
            );
            return Err(("line_too_large", message, None));
        }
        let invalid = || {
            let message = "This line is not parseable as a JSON object.".to_owned();
            ("invalid_json_line", message, None)
        };
        let input: InputLine = serde_json::from_slice(&line.bytes).map_err(|_| invalid())?;
        let custom_id = string_field(input.custom_id, "custom_id")?;
        if custom_id.len() > MAX_CUSTOM_ID_BYTES {
            let message = format!("`custom_id` is longer than {MAX_CUSTOM_ID_BYTES} bytes.");
            return Err(("invalid_request", message, Some("custom_id")));
        }
        let method = string_field(input.method, "method")?;
        if method != "POST" {
            let message = format!("The method `{method}` is not supported; use POST.");
            return Err(("invalid_method", message, Some("method")));
        }
        let url = string_field(input.url, "url")?;
        if url != endpoint {
            let message = format!(
                "The provided URL `{url}` does not match the batch's endpoint `{endpoint}`."
            );
            return Err(("mismatched_endpoint", message, Some("url")));
        }
        self.check_model(input.body)?;
        if !self.seen.insert(custom_id.clone()) {
            let message = "The custom_id for this request is a duplicate of another request. \
                 The custom_id parameter must be unique for each request in a batch."
                .to_owned();
            return Err(("duplicate_custom_id", message, Some("custom_id")));
        }
        Ok(custom_id)
    }

    /// The body is an object naming a model, the same as every other line's.
    fn check_model(
        &mut self,
        body: Option<&RawValue>,
    ) -> Result<(), (&'static str, String, Option<&'static str>)> {
        #[derive(Deserialize)]
        struct Body {
            model: Option<String>,
        }
        let body: Body = body
            .and_then(|raw| serde_json::from_str(raw.get()).ok())
            .ok_or_else(|| {
                let message = "`body` must be a JSON object.".to_owned();
                ("invalid_request", message, Some("body"))
            })?;
        let model = body.model.ok_or_else(|| {
            let message = "`body.model` must be a string.".to_owned();
            ("invalid_request", message, Some("body.model"))
        })?;
        match &self.model {
            None => self.model = Some(model),
            Some(first) if *first != model => {
                let message = format!(
                    "The model `{model}` does not match the model of the other requests \
                     (`{first}`): a batch is for one model."
                );
                return Err(("mismatched_model", message, Some("body.model")));
            }
            Some(_) => {}
        }
        Ok(())
    }
}

fn string_field(
    raw: Option<&RawValue>,
    name: &'static str,
) -> Result<String, (&'static str, String, Option<&'static str>)> {
    raw.and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
        .ok_or_else(|| {
            let message = format!("`{name}` must be a string.");
            ("invalid_request", message, Some(name))
        })
}

fn error(code: &str, line: Option<i64>, message: String, param: Option<String>) -> BatchError {
    BatchError {
        code: code.to_owned(),
        line,
        message,
        param,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: FileLimits = FileLimits {
        max_lines: 3,
        max_line_bytes: 1000,
    };

    fn line(id: &str, url: &str, model: &str) -> String {
        format!(
            r#"{{"custom_id":"{id}","method":"POST","url":"{url}","body":{{"model":"{model}","messages":[]}}}}"#
        )
    }

    async fn run(text: &str) -> Result<ValidFile, Vec<BatchError>> {
        check(text.as_bytes(), "/v1/chat/completions", LIMITS)
            .await
            .unwrap()
    }

    fn codes(errors: Vec<BatchError>) -> Vec<(String, Option<i64>)> {
        errors.into_iter().map(|e| (e.code, e.line)).collect()
    }

    #[tokio::test]
    async fn a_good_file_gives_each_line_with_its_place() {
        let text = format!(
            "{}\r\n\n{}\n",
            line("a", "/v1/chat/completions", "m"),
            line("b", "/v1/chat/completions", "m")
        );
        let valid = run(&text).await.unwrap();
        let spans: Vec<_> = valid
            .lines
            .iter()
            .map(|s| (s.line, s.custom_id.as_str()))
            .collect();
        assert_eq!(spans, [(1, "a"), (3, "b")]);
        let second = &valid.lines[1];
        let at = usize::try_from(second.at).unwrap();
        let len = usize::try_from(second.len).unwrap();
        assert_eq!(&text[at..at + len], line("b", "/v1/chat/completions", "m"));
    }

    #[tokio::test]
    async fn each_rule_names_its_line() {
        let text = [
            "not json".to_owned(),
            line("a", "/v1/embeddings", "m"),
            line("b", "/v1/chat/completions", "m"),
            line("b", "/v1/chat/completions", "m"),
            line("c", "/v1/chat/completions", "other"),
            r#"{"custom_id":"d","method":"GET","url":"/v1/chat/completions","body":{}}"#.to_owned(),
            format!("{{\"custom_id\":\"{}\"}}", "x".repeat(1100)),
            line(&"z".repeat(600), "/v1/chat/completions", "m"),
        ]
        .join("\n");
        let errors = codes(run(&text).await.unwrap_err());
        let want = [
            ("invalid_json_line", 1),
            ("mismatched_endpoint", 2),
            ("duplicate_custom_id", 4),
            ("mismatched_model", 5),
            ("invalid_method", 6),
            ("line_too_large", 7),
            ("invalid_request", 8),
        ];
        let want: Vec<_> = want
            .iter()
            .map(|(c, l)| (c.to_string(), Some(*l)))
            .collect();
        assert_eq!(errors, want);
    }

    #[tokio::test]
    async fn too_many_lines_and_an_empty_file_fail_the_whole_file() {
        let many: Vec<String> = (0..4)
            .map(|i| line(&i.to_string(), "/v1/chat/completions", "m"))
            .collect();
        let errors = codes(run(&many.join("\n")).await.unwrap_err());
        assert_eq!(errors, [("too_many_requests".to_owned(), None)]);
        let errors = codes(run("\n\n").await.unwrap_err());
        assert_eq!(errors, [("empty_file".to_owned(), None)]);
    }
}
