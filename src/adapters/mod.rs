//! Adapters: pure, synchronous conversion between backend wire formats and OpenAI's.
//! No I/O, no clocks beyond a response's `created`, no config.

pub mod chunk;
pub mod echo;
pub mod openai;
pub mod sse;
