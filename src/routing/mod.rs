//! Routing: from a model name to the backends serving it, the choice among them and failover,
//! and the model catalogue.

mod budget;
mod catalog;
pub mod failover;
pub mod health;
pub mod reload;
pub mod rewrite;
mod table;
mod weighted;

pub use table::{Member, Resolved, Route, RouteTable};
