//! Observing requests: timing headers on every answer (`timing`, llm-proxy's contract) and
//! Prometheus metrics (`metrics`), both fed by one middleware (`middleware::observe`) and by the
//! task-local record of the request's upstream exchange (`exchange`).
//!
//! What does not belong here: logging (`telemetry`), admission (`limits`), CORS
//! (`server::cors`).

pub mod exchange;
pub mod metrics;
mod middleware;
pub mod timing;

pub use metrics::Metrics;
pub use middleware::{Observer, Relayed, observe};
