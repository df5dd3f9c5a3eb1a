//! Whether bytes are one UTF-8 JSON value: a validating scan that neither allocates nor
//! decodes, for the stream relay, which must refuse a garbled event but has no use for its
//! contents.
//!
//! It accepts exactly what `serde_json` accepts when it parses into `IgnoredAny` (RFC 8259:
//! no trailing commas, no control characters inside strings, `\u` escapes of four hex digits
//! whatever code point they name) and nests at most `MAX_DEPTH` arrays or objects. A
//! property test holds it to `serde_json` on arbitrary input.

/// The deepest nesting accepted (serde_json's own limit is 128).
pub const MAX_DEPTH: u32 = 127;

/// Whether `bytes` are UTF-8 and hold one JSON value, with optional whitespace around it.
pub fn is_json(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok()
        && Scanner {
            b: bytes,
            i: 0,
            marks: None,
        }
        .document(START)
}

/// The most resume points kept per document.
const MAX_MARKS: usize = 64;

/// Checks a sequence of documents that mostly begin alike, as a stream's events do (the same
/// id, model and field names before each token's text), without scanning their common start
/// again: `is_json` of each, but resumed from the last point where the previous document,
/// found valid, agrees with this one. The scan's state at a point is a function of the bytes
/// before it and of the byte at it (after `[`, the scan has looked at the next byte to see
/// whether the array is empty), so where those bytes agree, so does the scan.
#[derive(Debug, Default)]
pub struct JsonSequence {
    /// The last document found valid (empty after one that was not).
    previous: Vec<u8>,
    /// Where its scan was about to read a value, in order.
    marks: Vec<Mark>,
}

/// The scan's whole state where it is about to read a value.
#[derive(Debug, Clone, Copy)]
struct Mark {
    at: usize,
    stack: u128,
    depth: u32,
}

const START: Mark = Mark {
    at: 0,
    stack: 0,
    depth: 0,
};

impl JsonSequence {
    /// Whether `bytes` are UTF-8 and hold one JSON value (exactly `is_json`).
    pub fn is_json(&mut self, bytes: &[u8]) -> bool {
        let agreed = common_prefix(&self.previous, bytes);
        // The marks of the previous document before where it stops agreeing with this one
        // hold here: the byte at a mark agrees too.
        let kept = self.marks.partition_point(|mark| mark.at < agreed);
        self.marks.truncate(kept);
        let resume = self.marks.pop().unwrap_or(START);
        // A mark sits before an ASCII byte of a valid document, so the agreed part before it
        // is whole UTF-8 characters, already checked.
        let valid = std::str::from_utf8(&bytes[resume.at..]).is_ok()
            && Scanner {
                b: bytes,
                i: resume.at,
                marks: Some(&mut self.marks),
            }
            .document(resume);
        if valid {
            self.previous.truncate(resume.at);
            self.previous.extend_from_slice(&bytes[resume.at..]);
        } else {
            self.previous.clear();
            self.marks.clear();
        }
        valid
    }
}

/// How many bytes `a` and `b` begin with alike, 16 at a time.
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let mut agreed = 0;
    for (x, y) in a.chunks_exact(16).zip(b.chunks_exact(16)) {
        if x != y {
            break;
        }
        agreed += 16;
    }
    agreed
        + a[agreed..]
            .iter()
            .zip(&b[agreed..])
            .take_while(|(x, y)| x == y)
            .count()
}

/// Bytes that end the fast part of a string: its quote, an escape, a control character.
static STRING_STOP: [bool; 256] = {
    let mut stop = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        stop[b] = true;
        b += 1;
    }
    stop[b'"' as usize] = true;
    stop[b'\\' as usize] = true;
    stop
};

struct Scanner<'a, 'm> {
    b: &'a [u8],
    i: usize,
    /// Where to note each point the scan is about to read a value, if anywhere.
    marks: Option<&'m mut Vec<Mark>>,
}

impl Scanner<'_, '_> {
    /// One value and nothing after it but whitespace, from `from` (`START`, or a mark of an
    /// earlier scan of the same bytes).
    fn document(mut self, from: Mark) -> bool {
        if !self.value(from) {
            return false;
        }
        self.ws();
        self.i == self.b.len()
    }

    /// One value, nested containers included; iterative, with the open containers as a stack
    /// of bits (1: object, 0: array).
    fn value(&mut self, from: Mark) -> bool {
        let (mut stack, mut depth) = (from.stack, from.depth);
        self.i = from.at;
        loop {
            if let Some(marks) = self.marks.as_deref_mut()
                && marks.len() < MAX_MARKS
            {
                marks.push(Mark {
                    at: self.i,
                    stack,
                    depth,
                });
            }
            self.ws();
            let opened = match self.peek() {
                Some(open @ (b'{' | b'[')) => {
                    if depth == MAX_DEPTH {
                        return false;
                    }
                    self.i += 1;
                    self.ws();
                    let close = if open == b'{' { b'}' } else { b']' };
                    if self.eat(close) {
                        false
                    } else {
                        stack = stack << 1 | u128::from(open == b'{');
                        depth += 1;
                        true
                    }
                }
                _ if self.scalar() => false,
                _ => return false,
            };
            if opened {
                if stack & 1 == 1 && !self.key() {
                    return false;
                }
                continue;
            }
            // After a value: close what ends here, then a comma leads to the next value.
            loop {
                if depth == 0 {
                    return true;
                }
                self.ws();
                let in_object = stack & 1 == 1;
                match self.next() {
                    Some(b',') if in_object => {
                        self.ws();
                        if !self.key() {
                            return false;
                        }
                        break;
                    }
                    Some(b',') => break,
                    Some(b'}') if in_object => {}
                    Some(b']') if !in_object => {}
                    _ => return false,
                }
                stack >>= 1;
                depth -= 1;
            }
        }
    }

    /// An object's key and its colon.
    fn key(&mut self) -> bool {
        if !(self.peek() == Some(b'"') && self.string()) {
            return false;
        }
        self.ws();
        self.eat(b':')
    }

    fn scalar(&mut self) -> bool {
        match self.peek() {
            Some(b'"') => self.string(),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => false,
        }
    }

    /// A string, from its opening quote.
    fn string(&mut self) -> bool {
        self.i += 1;
        loop {
            while self.i < self.b.len() && !STRING_STOP[usize::from(self.b[self.i])] {
                self.i += 1;
            }
            match self.next() {
                Some(b'"') => return true,
                Some(b'\\') => match self.next() {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {}
                    Some(b'u') => {
                        for _ in 0..4 {
                            if !self.next().is_some_and(|h| h.is_ascii_hexdigit()) {
                                return false;
                            }
                        }
                    }
                    _ => return false,
                },
                _ => return false,
            }
        }
    }

    fn number(&mut self) -> bool {
        self.eat(b'-');
        match self.next() {
            Some(b'0') => {}
            Some(b'1'..=b'9') => self.digits(),
            _ => return false,
        }
        if self.eat(b'.') && !self.one_or_more_digits() {
            return false;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if !self.eat(b'+') {
                self.eat(b'-');
            }
            return self.one_or_more_digits();
        }
        true
    }

    fn one_or_more_digits(&mut self) -> bool {
        let start = self.i;
        self.digits();
        self.i > start
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.i += 1;
        }
    }

    fn literal(&mut self, word: &[u8]) -> bool {
        let found = self.b[self.i..].starts_with(word);
        self.i += word.len();
        found
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        if found {
            self.i += 1;
        }
        found
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.i += 1;
        Some(byte)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn serde_accepts(bytes: &[u8]) -> bool {
        std::str::from_utf8(bytes)
            .is_ok_and(|text| serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok())
    }

    #[test]
    fn agrees_with_serde_json_on_awkward_documents() {
        let cases: &[&[u8]] = &[
            b"{}",
            b" [ ] ",
            b"{\"a\":1}",
            b"{\"a\":[1,2,{\"b\":null}],\"c\":\"x\\\"y\\u00e9\\n\"}",
            b"-0.5e+10",
            b"0",
            b"01",
            b"1.",
            b".5",
            b"1e",
            b"-",
            b"true",
            b"tru",
            b"nul",
            b"\"\\x\"",
            b"\"\\u12g4\"",
            b"\"tab\there\"",
            b"\"caf\xc3\xa9\"",
            b"\"\xff\"",
            b"{\"a\":1,}",
            b"[1,]",
            b"[1 2]",
            b"{\"a\" 1}",
            b"{1:2}",
            b"{\"a\":1}}",
            b"{\"a\":1} x",
            b"",
            b"   ",
            b"not json",
            b"[DONE]",
            b"{\"a\":",
            b"\"open",
        ];
        for case in cases {
            assert_eq!(
                is_json(case),
                serde_accepts(case),
                "{:?}",
                String::from_utf8_lossy(case)
            );
        }
    }

    #[test]
    fn a_stop_byte_anywhere_in_a_long_string_is_seen() {
        let text = "0123456789abcdefghijklmnopqrstuv";
        for at in 0..text.len() {
            for stop in [
                "\"", "\\", "\\n", "\\u00e9", "\t", "\u{1}", "\u{1f}", "é", "\\q", " ",
            ] {
                let doc = format!("[\"{}{stop}{}\",1]", &text[..at], &text[at..]);
                assert_eq!(
                    is_json(doc.as_bytes()),
                    serde_accepts(doc.as_bytes()),
                    "{doc:?}"
                );
            }
        }
    }

    #[test]
    fn a_sequence_resumes_after_the_shared_start_and_still_sees_what_follows() {
        let mut sequence = JsonSequence::default();
        let event =
            |text: &str| format!(r#"{{"id":"c","choices":[{{"delta":{{"content":"{text}"}}}}]}}"#);
        assert!(sequence.is_json(event("one").as_bytes()));
        assert!(sequence.is_json(event("two").as_bytes()));
        assert_eq!(sequence.previous, event("two").as_bytes());
        // Changed only after the shared start: still judged whole.
        assert!(
            !sequence.is_json(b"{\"id\":\"c\",\"choices\":[{\"delta\":{\"content\":\"x\x01\"}}]}")
        );
        assert!(!sequence.is_json(event("\u{ff}").replace('}', "]").as_bytes()));
        assert!(sequence.is_json(event("three").as_bytes()));
        assert!(!sequence.is_json(&[event("caf").as_bytes(), b"\xff"].concat()));
        assert!(sequence.is_json(event("caf\u{e9}").as_bytes()));
    }

    #[test]
    fn an_empty_array_where_the_previous_document_had_a_value_is_still_valid() {
        let mut sequence = JsonSequence::default();
        for doc in [
            &b"[1]"[..],
            b"[]",
            b"{\"choices\":[{\"a\":1}],\"u\":null}",
            b"{\"choices\":[],\"u\":{\"n\":1}}",
            b"{\"choices\":[ {\"a\":1}]}",
            b"{\"choices\":[ ]}",
            b"{\"choices\":{\"a\":1}}",
            b"{\"choices\":{}}",
        ] {
            assert!(sequence.is_json(doc), "{}", String::from_utf8_lossy(doc));
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(is_json(deep(MAX_DEPTH as usize).as_bytes()));
        assert!(!is_json(deep(MAX_DEPTH as usize + 1).as_bytes()));
        assert!(!is_json(deep(100_000).as_bytes()), "no stack overflow");
    }

    /// JSON-like bytes: the tokens JSON is made of, mixed with arbitrary bytes.
    fn json_like() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"{".to_vec()),
            Just(b"}".to_vec()),
            Just(b"[".to_vec()),
            Just(b"]".to_vec()),
            Just(b",".to_vec()),
            Just(b":".to_vec()),
            Just(b"\"".to_vec()),
            Just(b"\"k\":".to_vec()),
            Just(b"\\".to_vec()),
            Just(b"\\u00".to_vec()),
            Just(b" ".to_vec()),
            Just(b"-1.5e3".to_vec()),
            Just(b"0".to_vec()),
            Just(b"true".to_vec()),
            Just(b"null".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..4),
        ];
        proptest::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
    }

    /// Documents alike at the start, as a stream's events are: a chunk with a varying text,
    /// then each cut short, changed at one byte, or given a tail; or a usage chunk, whose
    /// `choices` is empty where the others' is not.
    fn alike() -> impl Strategy<Value = Vec<Vec<u8>>> {
        let event = |text: &str| {
            serde_json::json!({"id": "c-1", "object": "chat.completion.chunk", "created": 1,
                "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]})
            .to_string()
            .into_bytes()
        };
        let doc = (
            any::<String>(),
            any::<usize>(),
            any::<u8>(),
            0u8..5,
            json_like(),
        )
            .prop_map(move |(text, at, byte, how, tail)| {
                let mut doc = event(&text);
                let at = at % (doc.len() + 1);
                match how {
                    0 => {}
                    1 => doc.truncate(at),
                    2 if at < doc.len() => doc[at] = byte,
                    3 => {
                        doc = serde_json::json!({"id": "c-1", "object": "chat.completion.chunk",
                            "created": 1, "choices": [], "usage": {"total_tokens": at}})
                        .to_string()
                        .into_bytes();
                    }
                    _ => {
                        doc.truncate(at);
                        doc.extend_from_slice(&tail);
                    }
                }
                doc
            });
        proptest::collection::vec(doc, 1..12)
    }

    proptest! {
        #[test]
        fn a_sequence_judges_each_document_as_a_fresh_scan_does(docs in alike()) {
            let mut sequence = JsonSequence::default();
            for doc in &docs {
                prop_assert_eq!(sequence.is_json(doc), is_json(doc), "{:?}", String::from_utf8_lossy(doc));
            }
        }

        #[test]
        fn a_sequence_of_arbitrary_documents_agrees_too(docs in proptest::collection::vec(json_like(), 1..12)) {
            let mut sequence = JsonSequence::default();
            for doc in &docs {
                prop_assert_eq!(sequence.is_json(doc), is_json(doc));
            }
        }

        #[test]
        fn accepts_exactly_what_serde_json_accepts(bytes in json_like()) {
            prop_assert_eq!(is_json(&bytes), serde_accepts(&bytes));
        }

        #[test]
        fn accepts_every_document_serde_json_writes(value in any::<(String, Vec<(String, f64, bool)>)>()) {
            let bytes = serde_json::to_vec(&value).unwrap();
            prop_assert!(is_json(&bytes));
        }
    }
}
