//! Routing: from a model name to the backend serving it, and the model catalogue.

mod catalog;
pub mod explain;
pub mod reload;
pub mod rewrite;
mod table;

pub use table::{Resolved, Route, RouteTable};
