//! `[server.cors]` and `[metrics]`: what browsers on other origins may do, and where metrics
//! are served.

use std::net::SocketAddr;

use super::Validator;
use crate::config::raw::{RawCors, RawMetrics};
use crate::config::{CorsOrigins, MetricsConfig};

impl Validator<'_> {
    pub(super) fn cors(&mut self, raw: &RawCors) -> CorsOrigins {
        if raw.allowed_origins.iter().any(|o| o.get_ref() == "*") {
            if raw.allowed_origins.len() > 1 {
                self.error(
                    raw.allowed_origins[0].span(),
                    "`allowed_origins`: `\"*\"` allows every origin and must stand alone",
                );
            }
            return CorsOrigins::Any;
        }
        let mut origins = Vec::with_capacity(raw.allowed_origins.len());
        for origin in &raw.allowed_origins {
            match canonical_origin(origin.get_ref()) {
                Ok(text) => origins.push(text),
                Err(message) => self.error(
                    origin.span(),
                    format!("`allowed_origins`: `{}` {message}", origin.get_ref()),
                ),
            }
        }
        CorsOrigins::List(origins)
    }

    pub(super) fn metrics(&mut self, raw: &RawMetrics) -> MetricsConfig {
        let listen = raw
            .listen
            .as_ref()
            .and_then(|l| match l.get_ref().parse::<SocketAddr>() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    self.error(
                        l.span(),
                        format!(
                            "`[metrics] listen` must be an address such as 127.0.0.1:9100, not `{}`",
                            l.get_ref()
                        ),
                    );
                    None
                }
            });
        MetricsConfig { listen }
    }
}

/// The origin as a browser sends it in `Origin` (`scheme://host[:port]`, lowercase, no default
/// port, no path), or why `text` is not one. Origins are compared byte for byte, so anything
/// else would silently never match.
fn canonical_origin(text: &str) -> Result<String, String> {
    let url = url::Url::parse(text).map_err(|e| format!("is not an origin ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must start with http:// or https://".to_owned());
    }
    let origin = url.origin().ascii_serialization();
    if origin != text {
        return Err(format!(
            "must be written as a browser sends it: `{origin}` (scheme, host and port only)"
        ));
    }
    Ok(origin)
}

#[cfg(test)]
mod tests {
    use super::canonical_origin;

    #[test]
    fn only_origins_written_as_browsers_send_them_are_accepted() {
        assert_eq!(
            canonical_origin("https://app.example").unwrap(),
            "https://app.example"
        );
        assert_eq!(
            canonical_origin("http://127.0.0.1:5173").unwrap(),
            "http://127.0.0.1:5173"
        );
        for bad in [
            "https://app.example/",
            "https://APP.example",
            "https://app.example:443",
            "https://app.example/path",
            "ftp://app.example",
            "app.example",
            "https://user@app.example",
        ] {
            assert!(canonical_origin(bad).is_err(), "{bad}");
        }
    }
}
