//! Token counts as upstreams report them, read leniently from OpenAI-shaped answers: a chat or
//! legacy completion's `usage`, an embedding's, and the Responses API's (`input_tokens`,
//! `output_tokens`). Pure: no I/O, no clocks.

use memchr::memmem;
use serde::{Deserialize, Serialize};

/// The most tokens one count may claim. An upstream reporting more (a bug, or a hostile
/// upstream) is clamped here, so a single answer cannot exhaust a token budget for years or
/// overflow a sum.
pub const MAX_TOKENS: u64 = 100_000_000;

/// What one request cost, in tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tokens {
    /// Tokens in the prompt.
    pub prompt_tokens: u64,
    /// Tokens generated.
    pub completion_tokens: u64,
    /// Their sum, as the upstream reported it (or computed when it did not).
    pub total_tokens: u64,
    /// Prompt tokens served from the upstream's cache.
    pub cached_tokens: u64,
    /// Completion tokens spent on reasoning.
    pub reasoning_tokens: u64,
}

/// `usage` as OpenAI-compatible upstreams write it; unknown fields are ignored.
#[derive(Debug, Deserialize)]
struct WireUsage {
    #[serde(default, alias = "input_tokens")]
    prompt_tokens: u64,
    #[serde(default, alias = "output_tokens")]
    completion_tokens: u64,
    #[serde(default)]
    total_tokens: Option<u64>,
    #[serde(default, alias = "input_tokens_details")]
    prompt_tokens_details: Option<PromptDetails>,
    #[serde(default, alias = "output_tokens_details")]
    completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Debug, Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct CompletionDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

impl From<WireUsage> for Tokens {
    fn from(wire: WireUsage) -> Self {
        let prompt = wire.prompt_tokens.min(MAX_TOKENS);
        let completion = wire.completion_tokens.min(MAX_TOKENS);
        Tokens {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: wire
                .total_tokens
                .unwrap_or(prompt + completion)
                .min(2 * MAX_TOKENS),
            cached_tokens: wire
                .prompt_tokens_details
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0)
                .min(prompt),
            reasoning_tokens: wire
                .completion_tokens_details
                .and_then(|d| d.reasoning_tokens)
                .unwrap_or(0)
                .min(completion),
        }
    }
}

/// The usage of a whole JSON answer (`{"usage": {…}, …}`), when it has a readable one. A
/// count that is negative, fractional or not a number makes the usage unreadable (`None`,
/// logged by the caller) rather than guessed.
pub fn in_json(body: &[u8]) -> Option<Tokens> {
    #[derive(Deserialize)]
    struct Answer {
        usage: Option<WireUsage>,
    }
    // Most of an answer is text: skip the parse when no `usage` key can be in it.
    memmem::find(body, b"\"usage\"")?;
    serde_json::from_slice::<Answer>(body)
        .ok()?
        .usage
        .map(Tokens::from)
}

/// The usage object right after a `"usage"` key at the start of `tail` (the rest of a JSON
/// body, read no further than the object's end).
pub fn after_usage_key(tail: &[u8]) -> Option<Tokens> {
    let rest = tail.strip_prefix(b"\"usage\"")?.trim_ascii_start();
    let rest = rest.strip_prefix(b":")?;
    let mut values = serde_json::Deserializer::from_slice(rest).into_iter::<Option<WireUsage>>();
    values.next()?.ok()?.map(Tokens::from)
}

/// A stream chunk's usage and whether it carries choices (a usage-only chunk has none).
pub fn in_chunk(data: &[u8]) -> Option<(Tokens, bool)> {
    #[derive(Deserialize)]
    struct Chunk {
        usage: Option<WireUsage>,
        #[serde(default)]
        choices: Vec<serde::de::IgnoredAny>,
    }
    let chunk = serde_json::from_slice::<Chunk>(data).ok()?;
    Some((chunk.usage?.into(), !chunk.choices.is_empty()))
}

/// The Responses API's final event (`response.completed`), whose usage is under `response`.
pub fn in_response_event(data: &[u8]) -> Option<Tokens> {
    #[derive(Deserialize)]
    struct Event {
        response: Answer,
    }
    #[derive(Deserialize)]
    struct Answer {
        usage: Option<WireUsage>,
    }
    let event = serde_json::from_slice::<Event>(data).ok()?;
    event.response.usage.map(Tokens::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_usage_with_details_is_read_and_a_missing_total_is_summed() {
        let body = br#"{"id":"x","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17,
            "prompt_tokens_details":{"cached_tokens":4},"completion_tokens_details":{"reasoning_tokens":2}}}"#;
        assert_eq!(
            in_json(body),
            Some(Tokens {
                prompt_tokens: 12,
                completion_tokens: 5,
                total_tokens: 17,
                cached_tokens: 4,
                reasoning_tokens: 2,
            })
        );
        let embedding = br#"{"data":[],"usage":{"prompt_tokens":3}}"#;
        assert_eq!(in_json(embedding).map(|t| t.total_tokens), Some(3));
        assert_eq!(in_json(br#"{"choices":[]}"#), None);
    }

    #[test]
    fn absurd_counts_are_clamped_and_nonsense_is_unreadable() {
        let huge = br#"{"usage":{"prompt_tokens":18446744073709551615,"completion_tokens":1,"total_tokens":18446744073709551615}}"#;
        let tokens = in_json(huge).unwrap();
        assert_eq!(tokens.prompt_tokens, MAX_TOKENS);
        assert_eq!(tokens.total_tokens, 2 * MAX_TOKENS);
        assert_eq!(in_json(br#"{"usage":{"prompt_tokens":-5}}"#), None);
        assert_eq!(in_json(br#"{"usage":{"prompt_tokens":1.5}}"#), None);
        assert_eq!(in_json(br#"{"usage":{"prompt_tokens":"many"}}"#), None);
        // Details cannot claim more than their whole.
        let details = br#"{"usage":{"prompt_tokens":2,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":99}}}"#;
        assert_eq!(in_json(details).unwrap().cached_tokens, 2);
    }

    #[test]
    fn chunks_and_responses_events_give_their_usage() {
        let last = br#"{"id":"c","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#;
        assert_eq!(
            in_chunk(last).map(|(t, c)| (t.total_tokens, c)),
            Some((3, false))
        );
        let with_choice =
            br#"{"choices":[{"index":0}],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#;
        assert_eq!(in_chunk(with_choice).map(|(_, c)| c), Some(true));
        assert_eq!(in_chunk(br#"{"choices":[],"usage":null}"#), None);
        let completed = br#"{"type":"response.completed","response":{"id":"r","usage":{"input_tokens":7,"output_tokens":3,"total_tokens":10,"output_tokens_details":{"reasoning_tokens":1}}}}"#;
        let tokens = in_response_event(completed).unwrap();
        assert_eq!(
            (
                tokens.prompt_tokens,
                tokens.completion_tokens,
                tokens.reasoning_tokens
            ),
            (7, 3, 1)
        );
    }
}
