//! The echo backend's answers, built with the same chunk writer as real adapters: the last user
//! message back, word by word when streamed, with token counts (one token per word), and
//! deterministic embeddings.

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use serde_json::Value;

use super::chunk::{self, ChunkWriter};
use super::text_completion::TextCompletionWriter;
use crate::adapters::openai::DONE_EVENT;
use crate::schema::embeddings::{Embedding, EmbeddingUsage};
use crate::schema::{
    ChatCompletionRequest, CompletionRequest, EmbeddingInput, EmbeddingRequest, EmbeddingResponse,
    EncodingFormat, Usage,
};

/// Dimensions of a vector when the request does not ask.
pub const DEFAULT_DIMENSIONS: usize = 8;
/// Largest dimensions served (that of OpenAI's largest embedding model); more is capped.
pub const MAX_DIMENSIONS: usize = 3072;
/// Content events of one streamed answer at most: a long message is sent several words per
/// event, so the stream's size stays proportional to the text (one event per character-long
/// word would multiply it by two orders of magnitude).
pub const MAX_CONTENT_EVENTS: usize = 256;

fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

fn reply_and_usage(request: &ChatCompletionRequest) -> (String, Usage) {
    let reply = request.last_user_text().unwrap_or_default();
    let prompt: u64 = request
        .messages
        .iter()
        .map(|m| match m {
            crate::schema::ChatMessage::System(x) | crate::schema::ChatMessage::Developer(x) => {
                words(&x.content.text())
            }
            crate::schema::ChatMessage::User(x) => words(&x.content.text()),
            crate::schema::ChatMessage::Assistant(x) => {
                x.content.as_ref().map_or(0, |c| words(&c.text()))
            }
            crate::schema::ChatMessage::Tool(x) => words(&x.content.text()),
            crate::schema::ChatMessage::Function(x) => x.content.as_deref().map_or(0, words),
        })
        .sum();
    let completion = words(&reply);
    (reply, Usage::new(prompt, completion))
}

/// The non-streamed answer, as JSON bytes.
pub fn chat_completion(request: &ChatCompletionRequest, model: &str) -> Bytes {
    let (reply, usage) = reply_and_usage(request);
    let completion = chunk::completion(model, chunk::text_message(reply), "stop", usage);
    Bytes::from(serde_json::to_vec(&completion).unwrap_or_default())
}

/// The streamed answer: role, the reply word by word (keeping the spacing; several words per
/// event past `MAX_CONTENT_EVENTS`), finish, usage, [DONE].
pub fn chat_chunks(request: &ChatCompletionRequest, model: &str) -> Vec<Bytes> {
    let (reply, usage) = reply_and_usage(request);
    let writer = ChunkWriter::new(model, request.include_usage());
    let pieces = pieces(&reply);
    let mut events = Vec::with_capacity(pieces.len() + 4);
    events.push(writer.role());
    events.extend(pieces.into_iter().map(|piece| writer.content(piece)));
    events.push(writer.finish("stop"));
    events.extend(writer.usage(usage));
    events.push(Bytes::from_static(DONE_EVENT));
    events
}

/// The text cut word by word, each piece keeping the spaces after it, grouped so that there
/// are at most `MAX_CONTENT_EVENTS` pieces: they spell the text exactly.
fn pieces(text: &str) -> Vec<&str> {
    let words = piece_ends(text).count() + 1;
    let per_event = words.div_ceil(MAX_CONTENT_EVENTS);
    let mut pieces = Vec::with_capacity(words.min(MAX_CONTENT_EVENTS));
    let (mut group_start, mut in_group) = (0, 0);
    for end in piece_ends(text) {
        in_group += 1;
        if in_group == per_event {
            pieces.push(&text[group_start..=end]);
            (group_start, in_group) = (end + 1, 0);
        }
    }
    if group_start < text.len() {
        pieces.push(&text[group_start..]);
    }
    pieces
}

/// Where each word of the reply ends: at a space that follows something other than a space
/// (the space stays with the word before it, so the pieces spell the text exactly).
fn piece_ends(reply: &str) -> impl Iterator<Item = usize> + '_ {
    let mut start = 0;
    reply.match_indices(' ').map(|(i, _)| i).filter(move |&i| {
        let ends_a_word = i > start;
        if ends_a_word {
            start = i + 1;
        }
        ends_a_word
    })
}

/// A legacy completion answering `request`: its prompt back, as JSON bytes.
pub fn completion(request: &CompletionRequest, model: &str) -> Bytes {
    let prompt = request.prompt_text();
    let usage = Usage::new(words(prompt), words(prompt));
    TextCompletionWriter::new(model, false).whole(prompt, "stop", usage)
}

/// The streamed legacy completion: the prompt word by word (bounded as chat is), finish,
/// usage, [DONE].
pub fn completion_events(request: &CompletionRequest, model: &str) -> Vec<Bytes> {
    let prompt = request.prompt_text();
    let writer = TextCompletionWriter::new(model, request.include_usage());
    let mut out = BytesMut::new();
    let mut events: Vec<Bytes> = pieces(prompt)
        .into_iter()
        .map(|piece| {
            writer.write_text(&mut out, piece, None);
            out.split().freeze()
        })
        .collect();
    writer.write_text(&mut out, "", Some("stop"));
    writer.write_usage(&mut out, Usage::new(words(prompt), words(prompt)));
    out.extend_from_slice(DONE_EVENT);
    events.push(out.freeze());
    events
}

/// The dimensions of the vectors answered: as asked, capped at `MAX_DIMENSIONS`.
pub fn dimensions(request: &EmbeddingRequest) -> usize {
    request.dimensions.map_or(DEFAULT_DIMENSIONS, |d| {
        (d as usize).clamp(1, MAX_DIMENSIONS)
    })
}

/// Deterministic embeddings: the same text always gives the same unit vector. The caller
/// bounds the number of inputs.
pub fn embeddings(request: &EmbeddingRequest, model: &str) -> Bytes {
    let dims = dimensions(request);
    let inputs: Vec<Vec<u8>> = match &request.input {
        EmbeddingInput::Text(t) => vec![t.as_bytes().to_vec()],
        EmbeddingInput::Texts(ts) => ts.iter().map(|t| t.as_bytes().to_vec()).collect(),
        EmbeddingInput::Tokens(ts) => vec![ts.iter().flat_map(|t| t.to_le_bytes()).collect()],
        EmbeddingInput::TokenArrays(a) => a
            .iter()
            .map(|ts| ts.iter().flat_map(|t| t.to_le_bytes()).collect())
            .collect(),
    };
    let tokens: u64 = match &request.input {
        EmbeddingInput::Text(t) => words(t),
        EmbeddingInput::Texts(ts) => ts.iter().map(|t| words(t)).sum(),
        EmbeddingInput::Tokens(ts) => ts.len() as u64,
        EmbeddingInput::TokenArrays(a) => a.iter().map(|t| t.len() as u64).sum(),
    };
    let base64 = request.encoding_format == Some(EncodingFormat::Base64);
    let data = inputs
        .iter()
        .enumerate()
        .map(|(index, bytes)| {
            let vector = vector_of(bytes, dims);
            Embedding {
                object: "embedding".to_owned(),
                index: index as u32,
                embedding: if base64 {
                    let raw: Vec<u8> = vector.iter().flat_map(|f| f.to_le_bytes()).collect();
                    Value::String(base64::engine::general_purpose::STANDARD.encode(raw))
                } else {
                    Value::from(vector)
                },
            }
        })
        .collect();
    let response = EmbeddingResponse {
        object: "list".to_owned(),
        data,
        model: model.to_owned(),
        usage: EmbeddingUsage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    };
    Bytes::from(serde_json::to_vec(&response).unwrap_or_default())
}

/// A unit vector seeded by FNV-1a of the input, stepped with xorshift.
fn vector_of(input: &[u8], dims: usize) -> Vec<f32> {
    let mut state = input.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    }) | 1;
    let mut v: Vec<f32> = (0..dims)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    let norm = v
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::EPSILON);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(json: &str) -> ChatCompletionRequest {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn the_stream_spells_the_last_user_message_word_by_word() {
        let req = request(
            r#"{"model":"echo/x","messages":[{"role":"user","content":"old"},{"role":"assistant","content":"a"},{"role":"user","content":"hello brave  world"}],"stream":true}"#,
        );
        let events = chat_chunks(&req, "echo/x");
        let text: String = events
            .iter()
            .flat_map(|e| crate::adapters::sse::data_payloads(e))
            .filter(|d| d != b"[DONE]")
            .filter_map(|d| serde_json::from_slice::<crate::schema::ChatCompletionChunk>(&d).ok())
            .filter_map(|c| c.choices.first().and_then(|ch| ch.delta.content.clone()))
            .collect();
        assert_eq!(text, "hello brave  world");
        assert_eq!(events.last().unwrap(), &Bytes::from_static(DONE_EVENT));
    }

    #[test]
    fn a_legacy_completion_streams_the_prompt_word_by_word_with_usage() {
        let req: CompletionRequest = serde_json::from_str(
            r#"{"model":"echo/x","prompt":["say  it twice"],"stream":true,"stream_options":{"include_usage":true}}"#,
        )
        .unwrap();
        let payloads: Vec<Vec<u8>> = completion_events(&req, "echo/x")
            .iter()
            .flat_map(|e| crate::adapters::sse::data_payloads(e))
            .collect();
        assert_eq!(payloads.last().unwrap(), b"[DONE]");
        let events: Vec<crate::schema::TextCompletion> = payloads[..payloads.len() - 1]
            .iter()
            .map(|p| serde_json::from_slice(p).unwrap())
            .collect();
        let text: String = events
            .iter()
            .flat_map(|e| e.choices.iter().map(|c| c.text.as_str()))
            .collect();
        assert_eq!(text, "say  it twice");
        assert_eq!(events.last().unwrap().usage.unwrap().total_tokens, 6);
        let whole: crate::schema::TextCompletion =
            serde_json::from_slice(&completion(&req, "echo/x")).unwrap();
        assert_eq!(whole.choices[0].text, "say  it twice");
    }

    #[test]
    fn a_long_message_streams_in_at_most_the_event_cap_and_spells_it_exactly() {
        let text = "a ".repeat(100_000) + "end";
        let body =
            json!({"model":"echo/x","messages":[{"role":"user","content":text}],"stream":true});
        let events = chat_chunks(&request(&body.to_string()), "echo/x");
        let sent: usize = events.iter().map(Bytes::len).sum();
        assert!(events.len() <= MAX_CONTENT_EVENTS + 4, "{}", events.len());
        assert!(
            sent < 2 * text.len(),
            "{sent} bytes for {} of text",
            text.len()
        );
        let spelled: String = events
            .iter()
            .flat_map(|e| crate::adapters::sse::data_payloads(e))
            .filter(|d| d != b"[DONE]")
            .filter_map(|d| serde_json::from_slice::<crate::schema::ChatCompletionChunk>(&d).ok())
            .filter_map(|c| c.choices.first().and_then(|ch| ch.delta.content.clone()))
            .collect();
        assert_eq!(spelled, text);
    }

    #[test]
    fn embeddings_are_deterministic_unit_vectors_in_either_encoding() {
        let req: EmbeddingRequest =
            serde_json::from_str(r#"{"model":"e","input":["a","b","a"]}"#).unwrap();
        let out: EmbeddingResponse = serde_json::from_slice(&embeddings(&req, "e")).unwrap();
        assert_eq!(out.data.len(), 3);
        assert_eq!(out.data[0].embedding, out.data[2].embedding);
        assert_ne!(out.data[0].embedding, out.data[1].embedding);
        let v: Vec<f32> = serde_json::from_value(out.data[0].embedding.clone()).unwrap();
        assert!((v.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-4);
        let req: EmbeddingRequest =
            serde_json::from_str(r#"{"model":"e","input":"a","encoding_format":"base64"}"#)
                .unwrap();
        let out: EmbeddingResponse = serde_json::from_slice(&embeddings(&req, "e")).unwrap();
        let raw = base64::engine::general_purpose::STANDARD
            .decode(out.data[0].embedding.as_str().unwrap())
            .unwrap();
        let decoded: Vec<f32> = raw
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(decoded, v);
    }
}
