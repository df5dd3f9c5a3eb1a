//! Routing: from a model name to the backends serving it, the choice among them and failover,
//! and the model catalogue.

mod budget;
mod catalog;
pub mod explain;
pub mod failover;
pub mod health;
pub mod reload;
pub mod rewrite;
mod table;
mod weighted;

pub use table::{BuildError, Member, Resolved, Route, RouteTable};

use std::path::Path;

use crate::config::{self, Config, ConfigError, ConfigErrors};

/// The one pipeline from a routes.toml's text to a serving table, run alike by `serve`,
/// `check` and every reload: validate, then build every backend (clients and pools, connecting
/// to nothing), so a file one of them accepts is a file all of them accept, and every fault,
/// even one found only by building, is reported at its `file:line:col`. `previous` lends its
/// unchanged backends to a reload.
pub fn load_table(
    source: &str,
    path: &Path,
    previous: Option<&RouteTable>,
) -> Result<(Config, RouteTable), ConfigErrors> {
    let config = config::parse(source, path)?;
    let table = RouteTable::rebuild(&config, previous).map_err(|err| {
        ConfigErrors(vec![ConfigError {
            file: path.display().to_string(),
            line: err.line,
            col: err.col,
            message: err.message,
        }])
    })?;
    Ok((config, table))
}

#[cfg(test)]
mod proptests {
    use proptest::prelude::*;

    use super::*;

    /// A TOML basic string holding `s` (JSON's escapes are a subset of TOML's).
    fn quoted(s: &str) -> String {
        serde_json::to_string(s).unwrap_or_default()
    }

    /// One line of a routes.toml: real keys and tables with arbitrary values, or junk.
    fn line() -> impl Strategy<Value = String> {
        // Mostly values that mean something here (so some files load), sometimes anything.
        let text = prop_oneof![
            prop::sample::select(vec![
                "e",
                "a/",
                "",
                "http://127.0.0.1:1/v1",
                "https://u:p@h/v1",
                "redis://:pw@127.0.0.1:1",
                "5s",
                "0s",
                "${HOME}",
                "${SWITCHYARD_UNSET:-d}",
                "${",
                "127.0.0.1:0",
            ])
            .prop_map(str::to_owned),
            any::<String>(),
        ];
        prop_oneof![
            text.clone()
                .prop_map(|s| format!("[backends.{}]", quoted(&s))),
            Just("[backends.e]".to_owned()),
            Just("[[routes]]".to_owned()),
            Just("[server]".to_owned()),
            prop::sample::select(vec!["openai", "proxy", "ollama", "echo", "redis", "x"])
                .prop_map(|k| format!("kind = \"{k}\"")),
            (
                prop::sample::select(vec![
                    "base_url",
                    "api_key",
                    "redis_url",
                    "timeout",
                    "request_timeout",
                    "connect_timeout",
                    "prefix",
                    "backend",
                    "default_backend",
                    "listen",
                    "shutdown_timeout",
                ]),
                text.clone()
            )
                .prop_map(|(k, v)| format!("{k} = {}", quoted(&v))),
            (
                prop::sample::select(vec!["max_body_bytes", "workers", "strip_prefix"]),
                any::<i64>()
            )
                .prop_map(|(k, v)| format!("{k} = {v}")),
            text.clone()
                .prop_map(|v| format!("headers = {{ \"x-h\" = {} }}", quoted(&v))),
            text.clone()
                .prop_map(|v| format!("models = [{}]", quoted(&v))),
            text,
        ]
    }

    fn assert_positioned(errors: &ConfigErrors, source: &str) -> Result<(), TestCaseError> {
        let lines = source.split('\n').count();
        for e in &errors.0 {
            prop_assert!(
                e.line >= 1 && e.line <= lines,
                "{e} in a file of {lines} lines"
            );
            prop_assert!(e.col >= 1, "{e}");
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_and_every_fault_has_a_position(
            bytes in prop::collection::vec(any::<u8>(), 0..512)
        ) {
            let source = String::from_utf8_lossy(&bytes);
            if let Err(errors) = load_table(&source, Path::new("routes.toml"), None) {
                assert_positioned(&errors, &source)?;
            }
        }

        #[test]
        fn arbitrary_routes_files_load_or_are_refused_at_a_position(
            lines in prop::collection::vec(line(), 0..24)
        ) {
            let source = lines.join("\n");
            match load_table(&source, Path::new("routes.toml"), None) {
                Ok((config, table)) => {
                    for route in &config.routes {
                        let model = format!("{}m", route.prefix);
                        prop_assert!(table.resolve(&model).is_some(), "{model}");
                    }
                }
                Err(errors) => assert_positioned(&errors, &source)?,
            }
        }
    }
}
