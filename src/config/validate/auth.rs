//! `[store]`, `[auth]` and `[server] tls`: the keys that gateway keys depend on.

use std::ops::Range;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::{SecretBox, SecretString};
use toml::Spanned;

use super::Validator;
use crate::config::raw::{RawAuth, RawStore, RawTls};
use crate::config::{AuthConfig, StoreConfig, TlsConfig};

/// The store when `[auth]` needs one and the file names none: a SQLite file beside routes.toml.
const DEFAULT_STORE_URL: &str = "sqlite://switchyard.db";
/// The shortest admin token accepted: guessing it must be out of reach.
const MIN_ADMIN_TOKEN: usize = 16;

impl Validator<'_> {
    pub(super) fn auth(&mut self, raw: &Spanned<RawAuth>) -> Option<AuthConfig> {
        let raw = raw.get_ref();
        let master_key = self.master_key(&raw.master_key, "master_key");
        let previous: Vec<_> = raw
            .previous_master_keys
            .iter()
            .flatten()
            .filter_map(|k| self.master_key(k, "previous_master_keys"))
            .collect();
        let admin_token = self.resolve(&raw.admin_token).and_then(|token| {
            if token.len() < MIN_ADMIN_TOKEN {
                self.error(
                    raw.admin_token.span(),
                    format!("`admin_token` must be at least {MIN_ADMIN_TOKEN} characters"),
                );
                return None;
            }
            Some(SecretString::from(token))
        });
        Some(AuthConfig {
            master_key: master_key?,
            previous_master_keys: previous,
            admin_token: admin_token?,
        })
    }

    fn master_key(&mut self, value: &Spanned<String>, key: &str) -> Option<SecretBox<[u8; 32]>> {
        let text = self.resolve(value)?;
        match STANDARD
            .decode(text.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
        {
            Some(bytes) => Some(SecretBox::new(Box::new(bytes))),
            None => {
                // Never quote the value: it is the secret.
                self.error(
                    value.span(),
                    format!("`{key}` must be 32 bytes in base64 (e.g. `openssl rand -base64 32`)"),
                );
                None
            }
        }
    }

    /// `[store]`, or the default SQLite file when `needed` and absent.
    pub(super) fn store(
        &mut self,
        raw: Option<&Spanned<RawStore>>,
        needed: bool,
    ) -> Option<StoreConfig> {
        let (text, span) = match raw {
            Some(store) => {
                let url = &store.get_ref().url;
                (self.resolve(url)?, url.span())
            }
            None if needed => (DEFAULT_STORE_URL.to_owned(), 0..0),
            None => return None,
        };
        if let Some(path) = text
            .strip_prefix("sqlite://")
            .or_else(|| text.strip_prefix("sqlite:"))
        {
            return self.sqlite_store(path, span);
        }
        match url::Url::parse(&text) {
            Ok(mut url) if matches!(url.scheme(), "postgres" | "postgresql") => {
                if url.password().is_some() {
                    let _ = url.set_password(Some("<redacted>"));
                }
                Some(StoreConfig {
                    display: url.to_string(),
                    url: SecretString::from(text),
                })
            }
            _ => {
                self.error(span, "`url` must be a sqlite:// or postgres:// URL");
                None
            }
        }
    }

    /// `sqlite://PATH[?options]`, PATH made absolute beside the config file.
    fn sqlite_store(&mut self, path: &str, span: Range<usize>) -> Option<StoreConfig> {
        let (file, query) = path
            .split_once('?')
            .map_or((path, None), |(f, q)| (f, Some(q)));
        if file.is_empty() || file.starts_with(":memory:") {
            self.error(
                span,
                "`url` must name a SQLite file (instances and `switchyard admin` share it)",
            );
            return None;
        }
        let absolute = self.beside_config(file);
        let url = match query {
            Some(q) => format!("sqlite://{}?{q}", absolute.display()),
            None => format!("sqlite://{}", absolute.display()),
        };
        Some(StoreConfig {
            display: url.clone(),
            url: SecretString::from(url),
        })
    }

    pub(super) fn tls(&mut self, raw: &Spanned<RawTls>) -> TlsConfig {
        let raw = raw.get_ref();
        let mut path = |value: &Spanned<String>| {
            let text = self.resolve(value).unwrap_or_default();
            self.beside_config(&text)
        };
        TlsConfig {
            cert: path(&raw.cert),
            key: path(&raw.key),
        }
    }

    /// A relative path is relative to the config file's directory, not the working directory.
    pub(super) fn beside_config(&self, path: &str) -> PathBuf {
        let path = Path::new(path);
        match Path::new(self.file).parent() {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path.to_owned(),
        }
    }
}
