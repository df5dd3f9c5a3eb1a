//! Logging: the tracing subscriber (text or JSON) and the per-request span with its request id.
//!
//! Nothing here logs headers or bodies, so a credential can only reach a log by being put into
//! an error message, which the backends never do (`config::HttpSettings` keeps keys in
//! `SecretString` and sensitive header values).

use std::time::Instant;

use actix_web::HttpMessage;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use tracing::Instrument;
use tracing_subscriber::EnvFilter;

/// A URL fit for a log line or a printout: a password in it (`https://user:pw@host`) is
/// replaced by `<redacted>`.
pub fn redacted_url(url: &url::Url) -> String {
    if url.password().is_none() {
        return url.to_string();
    }
    let mut shown = url.clone();
    let _ = shown.set_password(Some("<redacted>"));
    shown.to_string()
}

/// A URL as written (which may not parse, e.g. with `${VAR}` in it), with the password of its
/// userinfo, if any, replaced by `<redacted>`.
pub fn redacted_url_text(text: &str) -> String {
    let Some(scheme_end) = text.find("://") else {
        return text.to_owned();
    };
    let rest = &text[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return text.to_owned();
    };
    let Some(colon) = rest[..at].find(':') else {
        return text.to_owned();
    };
    format!(
        "{}{}:<redacted>{}",
        &text[..scheme_end + 3],
        &rest[..colon],
        &rest[at..]
    )
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber; `RUST_LOG` overrides the default `info` filter.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::new(log_filter(std::env::var("RUST_LOG").ok().as_deref()));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    // A second init (tests) is harmless: the first subscriber stays.
    let _ = match format {
        LogFormat::Text => builder
            .with_writer(|| OneLinePerEvent(std::io::stderr()))
            .try_init(),
        // JSON escapes control characters itself.
        LogFormat::Json => builder
            .with_writer(std::io::stderr)
            .json()
            .flatten_event(true)
            .try_init(),
    };
}

/// The filter directives for `RUST_LOG` (`info` without it). The file watcher (`notify`) logs
/// every event it reads at debug and trace level: with a log file beside routes.toml, each such
/// line is itself an event, and the watcher would log for ever (a measured 22,000 lines a second
/// and half a core, idle). So `notify` is kept at `info` unless `RUST_LOG` names it.
pub fn log_filter(rust_log: Option<&str>) -> String {
    match rust_log {
        Some(directives) if !directives.trim().is_empty() => {
            if directives.contains("notify") {
                directives.to_owned()
            } else {
                format!("{directives},notify=info")
            }
        }
        _ => "info".to_owned(),
    }
}

/// A text-log writer that keeps each event on one line: text a client or an upstream chose (a
/// model name, an error body) may hold a newline, which would otherwise forge a log line. The
/// formatter writes each event, with its final newline, in one call; control characters before
/// that newline are written escaped (`\n`, `\r`, `\x01`). ESC is left to the formatter, which
/// already escapes it in values and uses it for colours.
struct OneLinePerEvent<W>(W);

fn needs_escape(b: u8) -> bool {
    (b < 0x20 && b != b'\t' && b != 0x1b) || b == 0x7f
}

impl<W: std::io::Write> std::io::Write for OneLinePerEvent<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let (line, end) = match buf.strip_suffix(b"\n") {
            Some(line) => (line, &b"\n"[..]),
            None => (buf, &b""[..]),
        };
        if !line.iter().copied().any(needs_escape) {
            self.0.write_all(buf)?;
            return Ok(buf.len());
        }
        let mut out = Vec::with_capacity(buf.len() + 16);
        for &b in line {
            match b {
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b if needs_escape(b) => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
                b => out.push(b),
            }
        }
        out.extend_from_slice(end);
        self.0.write_all(&out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request's id, as `request_span` chose it, for handlers (usage records).
#[derive(Debug, Clone)]
pub struct RequestId(pub std::sync::Arc<str>);

/// Middleware: one span per request carrying its id (the client's `x-request-id` when it sent
/// a sane one, else a new UUID), echoed in the response, and one line when it is answered.
pub async fn request_span(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    // A new id is written on the stack: one allocation for the id kept, one for the header.
    let mut fresh = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let id: &str = match req
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
    {
        Some(sent) => sent,
        None => uuid::Uuid::new_v4().hyphenated().encode_lower(&mut fresh),
    };
    let id: std::sync::Arc<str> = id.into();
    let span = tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.path());
    let started = Instant::now();
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut response = next.call(req).instrument(span.clone()).await?;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            elapsed_us = started.elapsed().as_micros() as u64,
            "answered"
        );
    });
    Ok(response)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn the_file_watcher_stays_at_info_unless_rust_log_names_it() {
        assert_eq!(log_filter(None), "info");
        assert_eq!(log_filter(Some(" ")), "info");
        assert_eq!(log_filter(Some("trace")), "trace,notify=info");
        assert_eq!(
            log_filter(Some("switchyard=debug,notify=trace")),
            "switchyard=debug,notify=trace"
        );
        // The directive added wins over the general level for notify's events only.
        let filter = EnvFilter::new(log_filter(Some("trace")));
        assert_eq!(
            filter.max_level_hint(),
            Some(tracing::level_filters::LevelFilter::TRACE)
        );
    }

    #[test]
    fn passwords_in_url_text_are_redacted() {
        assert_eq!(
            redacted_url_text("redis://:${PW:-<redacted>}@h:6379/0"),
            "redis://:<redacted>@h:6379/0"
        );
        assert_eq!(
            redacted_url_text("rediss://user:hunter2@${HOST}/1"),
            "rediss://user:<redacted>@${HOST}/1"
        );
        assert_eq!(redacted_url_text("${REDIS_URL}"), "${REDIS_URL}");
        assert_eq!(redacted_url_text("redis://h:1/x@y"), "redis://h:1/x@y");
    }

    #[test]
    fn an_event_stays_on_one_line_whatever_its_text_holds() {
        let mut out = OneLinePerEvent(Vec::new());
        out.write_all(b"INFO refused model=x\nERROR forged\r\x01\tok\n")
            .unwrap();
        out.write_all(b"INFO plain line\n").unwrap();
        assert_eq!(
            String::from_utf8(out.0).unwrap(),
            "INFO refused model=x\\nERROR forged\\r\\x01\tok\nINFO plain line\n"
        );
    }
}
