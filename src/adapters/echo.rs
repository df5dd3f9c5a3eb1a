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

const DEFAULT_DIMENSIONS: usize = 8;
const MAX_DIMENSIONS: usize = 4096;

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

/// The streamed answer: role, one chunk per word (keeping the spacing), finish, usage, [DONE].
pub fn chat_chunks(request: &ChatCompletionRequest, model: &str) -> Vec<Bytes> {
    let (reply, usage) = reply_and_usage(request);
    let writer = ChunkWriter::new(model, request.include_usage());
    let mut events = Vec::with_capacity(words(&reply) as usize + 4);
    events.push(writer.role());
    events.extend(pieces(&reply).map(|piece| writer.content(piece)));
    events.push(writer.finish("stop"));
    events.extend(writer.usage(usage));
    events.push(Bytes::from_static(DONE_EVENT));
    events
}

/// The reply cut word by word, each piece keeping the spaces after it.
fn pieces(reply: &str) -> impl Iterator<Item = &str> {
    let mut start = 0;
    let mut cuts = reply.match_indices(' ');
    std::iter::from_fn(move || {
        for (i, _) in cuts.by_ref() {
            if i > start {
                let piece = &reply[start..=i];
                start = i + 1;
                return Some(piece);
            }
        }
        (start < reply.len()).then(|| {
            let piece = &reply[start..];
            start = reply.len();
            piece
        })
    })
}

/// A legacy completion answering `request`: its prompt back, as JSON bytes.
pub fn completion(request: &CompletionRequest, model: &str) -> Bytes {
    let prompt = request.prompt_text();
    let usage = Usage::new(words(prompt), words(prompt));
    TextCompletionWriter::new(model, false).whole(prompt, "stop", usage)
}

/// The streamed legacy completion: the prompt word by word, finish, usage, [DONE].
pub fn completion_events(request: &CompletionRequest, model: &str) -> Vec<Bytes> {
    let prompt = request.prompt_text();
    let writer = TextCompletionWriter::new(model, request.include_usage());
    let mut out = BytesMut::new();
    let mut events: Vec<Bytes> = pieces(prompt)
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

/// Deterministic embeddings: the same text always gives the same unit vector.
pub fn embeddings(request: &EmbeddingRequest, model: &str) -> Bytes {
    let dims = request.dimensions.map_or(DEFAULT_DIMENSIONS, |d| {
        (d as usize).clamp(1, MAX_DIMENSIONS)
    });
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
