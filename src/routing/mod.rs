//! Routing: from a model name to the backend serving it, and the model catalogue.

mod catalog;
pub mod reload;
pub mod rewrite;
mod table;

pub use table::{BuildError, Resolved, Route, RouteTable};

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
