//! Adapters: pure, synchronous conversion between backend wire formats and OpenAI's.
//! No I/O, no clocks beyond a response's `created`, no config.
//!
//! Streams of every backend kind go through one layer, `stream`: framing (`sse`, `ndjson`) cuts
//! upstream reads into whole frames, and a per-format `StreamAdapter` (`openai`, `ollama`) turns
//! them into canonical OpenAI events (`json_check` tells, without allocating, whether an event's
//! payload is JSON); `chunk` builds the events of formats that are not OpenAI's.
//! `responses` serves the Responses API over chat completions (request, response and a
//! `StreamAdapter` from chat chunks to Responses events); `text_completion` writes legacy
//! completions.

pub mod chunk;
pub mod echo;
#[cfg(test)]
mod framing_props;
pub mod json_check;
pub mod ndjson;
pub mod ollama;
pub mod openai;
pub mod responses;
pub mod sse;
pub mod stream;
pub mod text_completion;
